//! What every request to a registry shares: the one `ureq::Agent`, the
//! token actions each kind of request needs, error answers turned into
//! [`Error::Registry`], JSON answers read within a bound, and the small
//! URL helpers (`Link` headers, digests in paths, redacted queries).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::digest::Digest;
use crate::error::{Error, Result};

pub(super) const PULL: &[&str] = &["pull"];
pub(super) const PUSH_PULL: &[&str] = &["push", "pull"];
/// Distribution checks a separate `delete` action for DELETE requests.
pub(super) const DELETE: &[&str] = &["push", "pull", "delete"];
/// The largest `n` distribution accepts for `_catalog` (above: 400 PAGINATION_NUMBER_INVALID).
pub(super) const CATALOG_PAGE: usize = 1000;

/// The one HTTP agent of the process. Reads wait up to two minutes for the
/// next bytes: long enough for a slow storage backend, short enough that a
/// dead connection fails the sync instead of hanging it. `tls` decides
/// which https servers are trusted (see `tls::client_config`).
pub fn agent(tls: Arc<rustls::ClientConfig>) -> ureq::Agent {
    agent_timing_out(tls, Duration::from_secs(120))
}

/// An agent whose reads give up after `read` without a byte.
pub fn agent_timing_out(tls: Arc<rustls::ClientConfig>, read: Duration) -> ureq::Agent {
    agent_for(tls, read, concat!("georeg/", env!("CARGO_PKG_VERSION")))
}

/// The User-Agent of reconciliation's requests, so that a registry's
/// access log tells them from replication's.
pub const RECONCILE_USER_AGENT: &str = concat!("georeg/", env!("CARGO_PKG_VERSION"), " (reconcile)");

/// An agent whose reads give up after `read` without a byte, sending
/// `user_agent`.
pub fn agent_for(tls: Arc<rustls::ClientConfig>, read: Duration, user_agent: &str) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(read)
        .timeout_write(Duration::from_secs(120))
        .max_idle_connections_per_host(32)
        .user_agent(user_agent)
        // Blob GETs may redirect to object storage, which must not see the registry token.
        .redirect_auth_headers(ureq::RedirectAuthHeaders::Never)
        .build()
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: serde_json::Value,
}

pub(super) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read),
}

/// Checks the status; anything unexpected becomes an [`Error::Registry`].
pub(super) fn expect(resp: ureq::Response, method: &str, url: &str, ok: &[u16]) -> Result<ureq::Response> {
    if ok.contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(registry_error(resp, method, url))
    }
}

/// An error answer, with the registry's `{"errors":[{code, message, detail}]}`.
pub(super) fn registry_error(resp: ureq::Response, method: &str, url: &str) -> Error {
    let status = resp.status();
    let status_text = resp.status_text().to_string();
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut body);
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { errors }) if !errors.is_empty() => {
            let e = &errors[0];
            let mut message = e.message.clone();
            if !e.detail.is_null() {
                message.push_str(&format!(" ({})", e.detail));
            }
            (e.code.clone(), message)
        }
        _ => {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            (String::new(), if text.is_empty() { status_text } else { text.chars().take(200).collect() })
        }
    };
    Error::Registry { request: format!("{method} {url}"), status, code, message }
}

/// A transport failure in words; a TLS failure says what to change.
pub fn transport_message(t: &ureq::Transport) -> String {
    if let Some(tls) = std::error::Error::source(t).and_then(crate::tls::explain) {
        return tls;
    }
    let mut message = t.kind().to_string();
    if let Some(m) = t.message() {
        message = format!("{message}: {m}");
    }
    if let Some(source) = std::error::Error::source(t) {
        message = format!("{message}: {source}");
    }
    message
}

pub(super) fn encode_digest(d: &Digest) -> String {
    d.as_str().replace(':', "%3A")
}

/// Upload locations carry session state in their query; keep messages short.
pub(super) fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?..."),
        None => url.to_string(),
    }
}

/// The target of `rel="next"` in a `Link` header, e.g.
/// `</v2/_catalog?last=b&n=2>; rel="next"`.
pub fn link_next(header: Option<&str>) -> Option<String> {
    for part in header?.split(',') {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        if is_next && target.starts_with('<') && target.ends_with('>') {
            return Some(target[1..target.len() - 1].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_parsing() {
        assert_eq!(
            link_next(Some("</v2/_catalog?last=b&n=2>; rel=\"next\"")).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            link_next(Some("<https://r.example/v2/x/tags/list?last=a>; rel=\"prev\", <https://r.example/v2/x/tags/list?last=z>; rel=\"next\"")).as_deref(),
            Some("https://r.example/v2/x/tags/list?last=z")
        );
        assert_eq!(link_next(Some("</x>; rel=\"prev\"")), None);
        assert_eq!(link_next(None), None);
        assert_eq!(link_next(Some("garbage")), None);
    }
}
