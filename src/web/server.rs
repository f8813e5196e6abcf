//! georeg's own HTTP server: a fixed pool of named tiny_http threads and a
//! plain router over (method, path). Handlers take an [`Incoming`] and
//! return a [`Reply`], so they are testable without a socket.
//!
//! Access: `/-/health` and `/-/readiness` are open; the notification
//! endpoint checks the notification secret; the event log and node reports
//! check a JWT signed with the shared key; everything else (dashboard,
//! status API, metrics, admin actions) needs the admin credential when one
//! is configured.

use std::io::{Cursor, Read};
use std::time::Duration;

use crate::config::Role;
use crate::dashboard::{self, NODES_PATH, PAGE_SIZE, REPOSITORIES_PATH};
use crate::encoding;
use crate::events;
use crate::node::Node;
use crate::status;
use crate::store::RepositoryFilter;

pub const NOTIFICATION_PATH: &str = "/api/v4/container_registry_event/events";
pub const EVENTS_PATH: &str = "/api/v1/events";
pub const NODE_STATUS_PATH: &str = "/api/v1/nodes/status";
pub const STATUS_PATH: &str = "/api/v1/status";
const MAX_FORM: u64 = 64 * 1024;

/// A request as handlers see it.
pub struct Incoming<'a> {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<u64>,
    pub body: &'a mut dyn Read,
    pub remote: String,
}

impl Incoming<'_> {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        form_value(&self.query, name)
    }
}

/// A response: status, content type, body and extra headers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply { status, content_type: "application/json", body: value.to_string().into_bytes(), headers: vec![] }
    }

    /// `{"error": message}`, the shape of every error georeg answers.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: text.as_bytes().to_vec(), headers: vec![] }
    }

    pub fn html(html: String) -> Reply {
        Reply { status: 200, content_type: "text/html; charset=utf-8", body: html.into_bytes(), headers: vec![] }
    }

    pub fn redirect(to: &str) -> Reply {
        Reply { status: 303, content_type: "text/plain", body: vec![], headers: vec![("Location", to.to_string())] }
    }
}

/// Routes one request.
pub fn route(node: &Node, req: &mut Incoming) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", NOTIFICATION_PATH) => return events::receive(node, req),
        ("GET", EVENTS_PATH) => return events::serve_log(node, req),
        ("POST", NODE_STATUS_PATH) => return receive_node_status(node, req),
        ("GET", "/-/health") => return Reply::text(200, "ok\n"),
        ("GET", "/-/readiness") => return readiness(node),
        _ => {}
    }
    if !admin_allowed(node, req) {
        let mut reply = Reply::error(401, "this page needs the admin credential (admin_token_file): as a bearer token, or as the password of HTTP Basic auth");
        reply.headers.push(("WWW-Authenticate", "Basic realm=\"georeg\", charset=\"UTF-8\"".into()));
        return reply;
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") | ("GET", "/admin") | ("GET", "/admin/geo") => Reply::redirect(NODES_PATH),
        ("GET", STATUS_PATH) => with_status(node, |s| Reply::json(200, &serde_json::to_value(s).unwrap_or_default())),
        ("GET", "/metrics") => with_status(node, |s| Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: crate::metrics::render(s, &node.stats).into_bytes(),
            headers: vec![],
        }),
        ("GET", NODES_PATH) => with_status(node, |s| Reply::html(dashboard::nodes(s))),
        ("GET", REPOSITORIES_PATH) => repositories_page(node, req),
        ("POST", p) if p == format!("{REPOSITORIES_PATH}/resync") => resync(node, req, false),
        ("POST", p) if p == format!("{REPOSITORIES_PATH}/resync_failed") => resync(node, req, true),
        _ => Reply::error(404, &format!("no such page: {} {}", req.method, req.path)),
    }
}

fn with_status(node: &Node, f: impl FnOnce(&status::Status) -> Reply) -> Reply {
    let problem = node.health_problem.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match status::collect(&node.config, &node.store, Some(&node.stats), problem) {
        Ok(s) => f(&s),
        Err(e) => Reply::error(503, &format!("cannot read the state file: {e}")),
    }
}

/// The admin credential as a bearer token or a Basic auth password. Without
/// one configured, the pages are open (georeg refuses that on a
/// non-loopback address unless `admin_open = true`).
fn admin_allowed(node: &Node, req: &Incoming) -> bool {
    let Some(token) = node.config.admin_token.as_deref() else { return true };
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
    events::constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The token admin forms carry, so another site cannot make an operator's
/// browser press a button (it would carry the Basic credentials along).
pub fn csrf_token(node: &Node) -> String {
    let secret = node.config.admin_token.clone().unwrap_or_else(|| node.process_secret.clone());
    crate::digest::Digest::sha256_of(format!("georeg-csrf\n{secret}").as_bytes()).as_str()[7..39].to_string()
}

fn repositories_page(node: &Node, req: &Incoming) -> Reply {
    let filter = RepositoryFilter {
        state: req.query("state").filter(|s| !s.is_empty()),
        name: req.query("name").filter(|s| !s.is_empty()),
    };
    let page_no: usize = req.query("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let rows = node.store.repository_page(&filter, (page_no - 1) * PAGE_SIZE, PAGE_SIZE);
    let total = node.store.repository_count(&filter);
    match (rows, total) {
        (Ok(rows), Ok(total)) => with_status(node, |s| {
            Reply::html(dashboard::repositories(s, &rows, &filter, total, page_no, &csrf_token(node)))
        }),
        (Err(e), _) | (_, Err(e)) => Reply::error(503, &format!("cannot read the state file: {e}")),
    }
}

/// The Resync buttons: one repository, or every failed one.
fn resync(node: &Node, req: &mut Incoming, all_failed: bool) -> Reply {
    let mut body = String::new();
    if req.body.take(MAX_FORM).read_to_string(&mut body).is_err() {
        return Reply::error(400, "cannot read the form");
    }
    let csrf = form_value(&body, "csrf").unwrap_or_default();
    if !events::constant_time_eq(csrf.as_bytes(), csrf_token(node).as_bytes()) {
        return Reply::error(
            403,
            "the form's csrf token is missing or stale: reload the page and press the button again",
        );
    }
    let result = if all_failed {
        node.store
            .resync_failed()
            .map(|n| log::info!("resync of {n} failed repositories requested from {}", req.remote))
    } else {
        let name = form_value(&body, "name").unwrap_or_default();
        if !crate::registry::valid_repository(&name) {
            return Reply::error(400, &format!("{name:?} is not a repository name"));
        }
        log::info!("resync of {name} requested from {}", req.remote);
        node.store.request_full_sync(&name)
    };
    match result {
        Ok(()) => Reply::redirect(
            &req.header("Referer").filter(|r| r.contains(REPOSITORIES_PATH)).unwrap_or(REPOSITORIES_PATH.into()),
        ),
        Err(e) => Reply::error(503, &format!("cannot record the resync: {e}")),
    }
}

/// `POST /api/v1/nodes/status`: a secondary's report, on the primary.
fn receive_node_status(node: &Node, req: &mut Incoming) -> Reply {
    if node.config.role != Role::Primary {
        return Reply::error(404, "this node is a secondary; secondaries report to the primary georeg");
    }
    let claims = match events::check_node_token(node, req) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let mut body = Vec::new();
    if req.body.take(events::MAX_BODY + 1).read_to_end(&mut body).is_err() || body.len() as u64 > events::MAX_BODY {
        return Reply::error(413, "status report too large or unreadable");
    }
    let report: status::Status = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return Reply::error(400, &format!("malformed status report: {e}")),
    };
    let name = if claims.sub.is_empty() { report.node.name.clone() } else { claims.sub };
    match node.store.record_node(
        &name,
        report.healthy,
        report.health_message.as_deref(),
        &String::from_utf8_lossy(&body),
    ) {
        Ok(()) => Reply::json(200, &serde_json::json!({"recorded": name})),
        Err(e) => Reply::error(503, &format!("cannot record the report: {e}")),
    }
}

/// `/-/readiness`: the state file answers and this node's registry is up.
fn readiness(node: &Node) -> Reply {
    let mut problems = Vec::new();
    if let Err(e) = node.store.ping() {
        problems.push(format!("state file: {e}"));
    }
    if let Err(e) = node.local.ping() {
        problems.push(format!("registry: {e}"));
    }
    if problems.is_empty() {
        Reply::text(200, "ready\n")
    } else {
        Reply::text(503, &format!("not ready: {}\n", problems.join("; ")))
    }
}

/// A value from `application/x-www-form-urlencoded` text (or a query string).
pub fn form_value(text: &str, name: &str) -> Option<String> {
    text.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves requests on one pool thread until georeg shuts down.
pub fn serve_thread(node: &Node, server: &tiny_http::Server) {
    while !node.quitting() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(rq)) => respond(node, rq),
            Ok(None) => {}
            Err(e) => log::warn!("HTTP server: {e}"),
        }
    }
}

fn respond(node: &Node, mut rq: tiny_http::Request) {
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let headers =
        rq.headers().iter().map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string())).collect();
    // None behind the TLS front, whose Unix socket hides the peer.
    let remote = rq.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "an https client".into());
    let method = rq.method().as_str().to_ascii_uppercase();
    let content_length = rq.body_length().map(|n| n as u64);
    let reply = {
        let mut incoming = Incoming {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            content_length,
            body: rq.as_reader(),
            remote,
        };
        route(node, &mut incoming)
    };
    let len = reply.body.len();
    let mut response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        Vec::new(),
        Cursor::new(reply.body),
        Some(len),
        None,
    );
    let mut headers = vec![("Content-Type", reply.content_type.to_string())];
    headers.extend(reply.headers);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("answering {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(form_value("name=group%2Fapp&csrf=ab+c", "name").as_deref(), Some("group/app"));
        assert_eq!(form_value("name=group%2Fapp&csrf=ab+c", "csrf").as_deref(), Some("ab c"));
        assert_eq!(form_value("a=%zz&b=%4", "a").as_deref(), Some("%zz"));
        assert_eq!(form_value("a=%zz&b=%4", "b").as_deref(), Some("%4"));
        assert_eq!(form_value("a=1", "b"), None);
    }
}
