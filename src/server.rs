//! georeg's own HTTP server: a fixed pool of named tiny_http threads and a
//! plain router over (method, path). Handlers take an [`Incoming`] and
//! return a [`Reply`], so they are testable without a socket.

use std::io::{Cursor, Read};
use std::time::Duration;

use crate::events;
use crate::node::Node;

pub const NOTIFICATION_PATH: &str = "/api/v4/container_registry_event/events";
pub const EVENTS_PATH: &str = "/api/v1/events";

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

    /// A query parameter (no percent-decoding: georeg's parameters are plain).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// A response: status, content type and body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply { status, content_type: "application/json", body: value.to_string().into_bytes() }
    }

    /// `{"error": message}`, the shape of every error georeg answers.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: text.as_bytes().to_vec() }
    }
}

/// Routes one request.
pub fn route(node: &Node, req: &mut Incoming) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", NOTIFICATION_PATH) => events::receive(node, req),
        ("GET", EVENTS_PATH) => events::serve_log(node, req),
        ("GET", "/-/health") => Reply::text(200, "ok\n"),
        (_, NOTIFICATION_PATH) | (_, EVENTS_PATH) | (_, "/-/health") => Reply::error(405, "method not allowed"),
        _ => Reply::error(404, &format!("no such page: {}", req.path)),
    }
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
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(h);
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("answering {path}: {e}");
    }
}
