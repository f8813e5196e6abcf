//! TLS, both sides, with rustls and its ring provider only: the same rustls
//! ureq uses, so the process carries one TLS stack and one crypto provider
//! and needs no OpenSSL at run time.
//!
//! Client side: the system trust store plus the certificates of
//! `tls.ca_file`, for https registries and georeg nodes behind an internal
//! CA; one `ClientConfig` for the one `ureq::Agent`. Server side: the
//! certificate and key of georeg's optional HTTPS listener (see `https`).
//! And [`explain`], which turns a failed handshake into a sentence that
//! says what to change.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ring, named explicitly rather than left to rustls to guess from features.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file; an error when it holds none.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {}", path.display(), pem_message(e)))?;
    if certs.is_empty() {
        return Err(format!("{} holds no BEGIN CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// The client side: system roots plus `ca_file`'s certificates.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    // An air-gapped host may have no system store at all; `tls.ca_file`
    // then carries all the trust there is, so a missing store is no error.
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (added, ignored) = roots.add_parsable_certificates(certs);
            log::debug!("trusting {added} certificates of the system store ({ignored} unusable)");
        }
        Err(e) => log::debug!("no system trust store: {e}"),
    }
    if let Some(path) = ca_file {
        for cert in load_certificates(path)? {
            roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server side, or the configuration key to blame and what is wrong.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let certs = load_certificates(cert_file).map_err(|m| ("tls.cert_file", m))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ("tls.key_file", format!("{}: {}", key_file.display(), pem_message(e))))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls.cert_file", e.to_string()))?
        .with_no_client_auth()
        // Also refuses a key that is not the certificate's.
        .with_single_cert(certs, key)
        .map_err(|e| ("tls.key_file", format!("{} cannot serve tls.cert_file: {e}", key_file.display())))?;
    Ok(Arc::new(config))
}

fn pem_message(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read: {e}"),
        pem::Error::NoItemsFound => "no PEM block of the expected kind found".into(),
        other => format!("not valid PEM: {other}"),
    }
}

/// What a TLS failure somewhere in `error`'s chain means for an operator,
/// or `None` when the failure was not TLS.
pub fn explain(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        // rustls' streams report through std::io::Error.
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(describe(tls));
        }
        current = e.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "its TLS certificate does not name this host ({e}): use a host name or address the certificate lists"
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => format!("its TLS certificate is expired or not yet valid ({e}): renew it, or check this host's clock"),
        rustls::Error::InvalidCertificate(_) => format!(
            "its TLS certificate is not trusted ({e}): set tls.ca_file to the certificate of the CA that signed it"
        ),
        rustls::Error::InvalidMessage(_) => {
            format!("TLS handshake failed ({e}): does this address speak https, or should the URL be http://?")
        }
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_an_untrusted_certificate_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let text = explain(&io).unwrap();
        assert!(text.contains("not trusted") && text.contains("tls.ca_file"), "{text}");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&plain), None);
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("georeg-tls-test-{}", crate::registry::token::random_hex(8)));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = load_certificates(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains("no BEGIN CERTIFICATE"), "{e}");
        assert!(load_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn the_system_store_alone_builds() {
        client_config(None).unwrap();
    }
}
