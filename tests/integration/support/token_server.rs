//! A token realm as docker_auth, Harbor or a cloud registry run one: it
//! takes HTTP Basic credentials and hands out tokens signed with its own
//! key (not georeg's), which a real registry configured for token auth
//! trusts. It grants what is asked to a known user; everything to
//! `writer`, pull (and the catalog) only to `reader`, pull alone to an
//! anonymous request (a public registry); nothing to a wrong password.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use georeg::registry::token::{Scope, Signer};

use super::registry::{ISSUER, SERVICE};

pub struct TokenServer {
    /// The realm to put in the registry's configuration.
    pub realm: String,
    /// The certificate of the realm's key, the registry's rootcertbundle.
    pub cert: PathBuf,
    /// The realm's key, to sign tokens for the test's own client.
    pub signer: Arc<Signer>,
    /// Tokens handed out so far.
    pub issued: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const WRITER: (&str, &str) = ("writer", "writer-password-1");
pub const READER: (&str, &str) = ("reader", "reader-password-2");

impl TokenServer {
    pub fn start(dir: &Path) -> TokenServer {
        let key = dir.join("realm.key");
        let cert = dir.join("realm.crt");
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"]);
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            "/CN=test-token-realm",
            "-days",
            "30",
            "-out",
            cert.to_str().unwrap(),
        ]);
        let signer = Arc::new(Signer::load(&key, None, ISSUER).unwrap());
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let (srv, sig, count) = (server.clone(), signer.clone(), issued.clone());
        let thread = std::thread::Builder::new()
            .name("token-realm".into())
            .spawn(move || {
                for request in srv.incoming_requests() {
                    let (status, body) = answer(&request, &sig, &count);
                    let response = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap());
                    let _ = request.respond(response);
                }
            })
            .unwrap();
        TokenServer {
            realm: format!("http://127.0.0.1:{port}/token"),
            cert,
            signer,
            issued,
            server,
            thread: Some(thread),
        }
    }
}

fn answer(request: &tiny_http::Request, signer: &Signer, issued: &AtomicUsize) -> (u16, String) {
    let basic = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| georeg::registry::encoding::base64_decode(&b))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let user = match basic.split_once(':') {
        Some(creds) if creds == WRITER => "writer",
        Some(creds) if creds == READER => "reader",
        // A public registry's anonymous token flow: pull only, no catalog.
        None if basic.is_empty() => "anonymous",
        _ => return (401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.into()),
    };
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    if path != "/token" {
        return (404, "{}".into());
    }
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "service" => service = v,
            "scope" => scopes.extend(Scope::parse(&v)),
            _ => {}
        }
    }
    if service != SERVICE {
        return (400, format!(r#"{{"errors":[{{"code":"DENIED","message":"unknown service {service:?}"}}]}}"#));
    }
    if user == "reader" {
        for s in &mut scopes {
            s.actions.retain(|a| a == "pull" || (s.kind == "registry" && a == "*"));
        }
    }
    if user == "anonymous" {
        for s in &mut scopes {
            s.actions.retain(|a| a == "pull" && s.kind == "repository");
        }
    }
    issued.fetch_add(1, Ordering::SeqCst);
    let token = signer.sign(SERVICE, user, Duration::from_secs(300), &scopes);
    (200, serde_json::json!({"token": token.text, "expires_in": 300}).to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
