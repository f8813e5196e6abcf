//! The test keys and certificates: the key pair shared by all nodes, a
//! test CA with a server certificate, and HTTP agents that trust it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use georeg::registry::token::Signer;

use super::registry::{self, Https};

/// The key pair shared by all nodes, in both PEM formats, and its certificate.
pub struct Keys {
    pub pkcs1: PathBuf,
    pub pkcs8: PathBuf,
    pub cert: PathBuf,
    pub signer: Arc<Signer>,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("georeg-shared-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pkcs1 = dir.join("gitlab-registry.key");
        let pkcs8 = dir.join("gitlab-registry-pkcs8.key");
        let cert = dir.join("gitlab-registry.crt");
        openssl(&["genrsa", "-traditional", "-out", pkcs1.to_str().unwrap(), "2048"]);
        openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", pkcs1.to_str().unwrap(), "-out", pkcs8.to_str().unwrap()]);
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            pkcs1.to_str().unwrap(),
            "-subj",
            "/CN=georeg-test",
            "-days",
            "3650",
            "-out",
            cert.to_str().unwrap(),
        ]);
        let signer = Arc::new(Signer::load(&pkcs1, None, registry::ISSUER).unwrap());
        Keys { pkcs1, pkcs8, cert, signer }
    })
}

/// A test CA, and a server certificate it signed for 127.0.0.1
/// (subjectAltName IP:127.0.0.1), generated with the openssl CLI.
pub fn test_ca(dir: &Path) -> Https {
    let ca = dir.join("test-ca.crt");
    let ca_key = dir.join("test-ca.key");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let ext = dir.join("server-ext.cnf");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p(&ca_key),
        "-subj",
        "/CN=georeg test CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        &p(&ca),
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p(&key),
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        &p(&csr),
    ]);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    Https { cert, key, ca }
}

/// The tests' own HTTP agent, trusting `ca` when given. Built here with
/// rustls directly, not with georeg's code, so that it checks georeg.
pub fn agent(ca: Option<&Path>) -> ureq::Agent {
    let builder = ureq::AgentBuilder::new().timeout(Duration::from_secs(300));
    let Some(ca) = ca else {
        return builder.build();
    };
    builder.tls_config(client_tls(ca)).build()
}

/// A TLS client configuration that trusts the certificates in `ca` alone.
pub fn client_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A connection from 127.0.0.2 (a second client address on loopback) that
/// sends `head`, then stays open, non-blocking, for its owner to trickle
/// bytes into: a slow client.
pub fn slow_connection(addr: std::net::SocketAddr, head: &str) -> Option<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    use std::io::Write;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().unwrap().into()).ok()?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(2)).ok()?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    let _ = stream.write_all(head.as_bytes());
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed by the tests: apt-get install -y openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
