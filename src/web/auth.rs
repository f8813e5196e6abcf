//! Who may do what on georeg's server: the admin credential (dashboard,
//! status API, metrics, admin actions), the CSRF token its forms carry, and
//! the JWT secondaries sign with the shared key (event log, reports). The
//! notification secret is checked by the notification endpoint itself.

use super::app::App;
use super::http::{Incoming, Reply};
use crate::peer::NODE_AUDIENCE;
use crate::registry::digest::Digest;
use crate::registry::encoding;
use crate::registry::token::Claims;

/// The admin credential as a bearer token or a Basic auth password. Without
/// one configured, the pages are open (georeg refuses that on a
/// non-loopback address unless `admin_open = true`).
pub fn admin_allowed(app: &App, req: &Incoming) -> bool {
    let Some(token) = app.config.admin_token.as_deref() else { return true };
    let header = req.header("Authorization").unwrap_or_default();
    let given = if let Some(t) = header.strip_prefix("Bearer ") {
        t.trim().to_string()
    } else if let Some(b) = header.strip_prefix("Basic ") {
        let decoded = encoding::base64_decode(b.trim()).unwrap_or_default();
        let text = String::from_utf8_lossy(&decoded).into_owned();
        text.split_once(':').map(|(_, pw)| pw.to_string()).unwrap_or_default()
    } else {
        return false;
    };
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The 401 for a page that needs the admin credential.
pub fn admin_required() -> Reply {
    let mut reply = Reply::error(
        401,
        "this page needs the admin credential (admin_token_file): as a bearer token, or as the password of HTTP Basic auth",
    );
    reply.headers.push(("WWW-Authenticate", "Basic realm=\"georeg\", charset=\"UTF-8\"".into()));
    reply
}

/// The token admin forms carry, so another site cannot make an operator's
/// browser press a button (it would carry the Basic credentials along).
pub fn csrf_token(app: &App) -> String {
    let secret = app.config.admin_token.as_deref().unwrap_or(&app.form_secret);
    Digest::sha256_of(format!("georeg-csrf\n{secret}").as_bytes()).as_str()[7..39].to_string()
}

/// Checks `Authorization: Bearer JWT` signed with the shared key for
/// audience "georeg": how secondaries prove themselves to the primary.
pub fn check_node_token(app: &App, req: &Incoming) -> Result<Claims, Reply> {
    let header = req.header("Authorization").unwrap_or_default();
    let Some(token) = header.strip_prefix("Bearer ") else {
        return Err(Reply::error(401, "missing 'Authorization: Bearer' token signed with the shared key"));
    };
    let Some(signer) = app.signer else {
        return Err(Reply::error(401, "this node has no registry.key_file: it accepts no node tokens"));
    };
    signer.verify(token.trim(), NODE_AUDIENCE).map_err(|why| {
        log::warn!("request from {} refused: {why}", req.remote);
        Reply::error(401, &format!("token refused: {why}"))
    })
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
