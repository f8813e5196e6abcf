//! The server: a fixed pool of named tiny_http threads and a plain router
//! over (method, path). One table names every endpoint with who may call
//! it and the largest body it takes; [`route`] dispatches on it and the
//! front reads the body limits from it. [`route`] takes an [`Incoming`]
//! and returns a [`Reply`], so routing is tested without a socket.
//!
//! Access: `/-/health` and `/-/readiness` are open; the notification
//! endpoint checks the notification secret; the event log and node reports
//! check a JWT signed with the shared key; everything else (dashboard,
//! status API, metrics, admin actions) needs the admin credential when one
//! is configured.

use std::io::{Cursor, Read};
use std::time::Duration;

use super::app::App;
use super::auth::{admin_allowed, admin_required, constant_time_eq, csrf_token};
use super::dashboard::{self, RepositoryList, NODES_PATH, PAGE_SIZE, REPOSITORIES_PATH};
use super::held::DELETION_PATH;
use super::http::{form_value, Incoming, Reply};
use super::{event_log, fingerprints, metrics, notifications, own_registry};
use crate::health::{status, Status};
use crate::peer::{EVENTS_PATH, FINGERPRINTS_PATH, NODE_STATUS_PATH};
use crate::registry;
use crate::store::{Key, Page, Position, RepositoryFilter, Snapshot, Total};

pub const NOTIFICATION_PATH: &str = "/api/v4/container_registry_event/events";
pub const STATUS_PATH: &str = "/api/v1/status";
const RESYNC_PATH: &str = "/admin/geo/replication/container_repositories/resync";
const RESYNC_FAILED_PATH: &str = "/admin/geo/replication/container_repositories/resync_failed";
/// Fixed pool of HTTP threads. Each follower's long poll holds one for up
/// to a few seconds (at most `event_log::MAX_WAITING` at once); the others
/// answer notifications, pages and reports in milliseconds.
pub const THREADS: usize = 40;
// Long polls leave threads for notifications, pages and reports.
const _: () = assert!(super::event_log::MAX_WAITING + 4 <= THREADS);
/// The largest notification envelope or status report.
pub const MAX_API_BODY: u64 = 1 << 20;
/// The largest body anywhere else (the admin forms; requests no endpoint takes).
pub const MAX_OTHER_BODY: u64 = 64 * 1024;

/// A handler: the app, the request, and its endpoint's body limit.
type Handler = fn(&App, &mut Incoming, u64) -> Reply;

/// One endpoint: where it is, who may call it, how large a body it takes.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    /// Needs the admin credential. The others check their own access (the
    /// notification secret, a node token) or are open.
    admin: bool,
    /// The largest body it accepts: the front refuses a larger one before
    /// reading it, and the handler reads no more.
    body_limit: u64,
    handler: Handler,
}

impl Endpoint {
    const fn open(method: &'static str, path: &'static str, body_limit: u64, handler: Handler) -> Endpoint {
        Endpoint { method, path, admin: false, body_limit, handler }
    }

    const fn admin(method: &'static str, path: &'static str, handler: Handler) -> Endpoint {
        Endpoint { method, path, admin: true, body_limit: MAX_OTHER_BODY, handler }
    }
}

/// Every endpoint of the server: [`route`] dispatches on it and the front
/// reads each one's body limit from it ([`body_limit`]).
const ENDPOINTS: &[Endpoint] = &[
    Endpoint::open("POST", NOTIFICATION_PATH, MAX_API_BODY, notifications::receive),
    Endpoint::open("GET", EVENTS_PATH, MAX_OTHER_BODY, |app, req, _| event_log::serve(app, req)),
    Endpoint::open("POST", NODE_STATUS_PATH, MAX_API_BODY, event_log::receive_report),
    Endpoint::open("GET", FINGERPRINTS_PATH, MAX_OTHER_BODY, |app, req, _| fingerprints::serve(app, req)),
    Endpoint::open("POST", own_registry::PATH, MAX_API_BODY, own_registry::receive),
    Endpoint::open("GET", "/-/health", MAX_OTHER_BODY, |_, _, _| Reply::text(200, "ok\n")),
    Endpoint::open("GET", "/-/readiness", MAX_OTHER_BODY, |app, _, _| readiness(app)),
    Endpoint::admin("GET", "/", |_, _, _| Reply::redirect(NODES_PATH)),
    Endpoint::admin("GET", "/admin", |_, _, _| Reply::redirect(NODES_PATH)),
    Endpoint::admin("GET", "/admin/geo", |_, _, _| Reply::redirect(NODES_PATH)),
    Endpoint::admin("GET", STATUS_PATH, |app, _, _| {
        with_status(app, |s, _| Ok(Reply::json(200, &serde_json::to_value(s).unwrap_or_default())))
    }),
    Endpoint::admin("GET", "/metrics", |app, _, _| {
        with_status(app, |s, _| {
            Ok(Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics::render(s, app.stats).into_bytes(),
                headers: vec![],
            })
        })
    }),
    Endpoint::admin("GET", NODES_PATH, |app, req, _| {
        let done = req.query("done");
        with_status(app, |s, snap| {
            let deletions = if s.node.role == crate::config::Role::Secondary { snap.open_deletions()? } else { vec![] };
            Ok(Reply::html(dashboard::nodes(s, &snap.samples()?, &deletions, &csrf_token(app), done.as_deref())))
        })
    }),
    Endpoint::admin("GET", REPOSITORIES_PATH, |app, req, _| repositories_page(app, req)),
    Endpoint::admin("POST", RESYNC_PATH, |app, req, limit| resync(app, req, false, limit)),
    Endpoint::admin("POST", RESYNC_FAILED_PATH, |app, req, limit| resync(app, req, true, limit)),
    Endpoint::admin("POST", DELETION_PATH, decide_deletion),
];

fn endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.method == method && e.path == path)
}

/// The largest body the endpoint at (`method`, `path`) accepts.
pub fn body_limit(method: &str, path: &str) -> u64 {
    endpoint(method, path).map_or(MAX_OTHER_BODY, |e| e.body_limit)
}

/// Routes one request. A request for no endpoint needs the admin
/// credential before it learns that (404).
pub fn route(app: &App, req: &mut Incoming) -> Reply {
    match endpoint(&req.method, &req.path) {
        Some(e) if !e.admin => (e.handler)(app, req, e.body_limit),
        _ if !admin_allowed(app, req) => admin_required(),
        Some(e) => (e.handler)(app, req, e.body_limit),
        None => Reply::error(404, &format!("no such page: {} {}", req.method, req.path)),
    }
}

/// Answers from one snapshot of the state file: the status and whatever
/// else the page reads agree with each other, and reading never makes a
/// notification wait.
fn with_status(app: &App, f: impl FnOnce(&Status, &Snapshot) -> crate::error::Result<Reply>) -> Reply {
    let problem = app.health.problem();
    match app.reader.read(|snap| f(&status::collect(app.config, snap, Some(app.stats), problem)?, snap)) {
        Ok(reply) => reply,
        Err(e) => Reply::error(503, &format!("cannot read the state file: {e}")),
    }
}

/// The repository list: one page found by key (`after` or `before` a
/// row's name, with its `group`, or the `last` page; `page=N` of older
/// links is the first page), read from one snapshot with the node's
/// header only, not the whole status: at 100,000 repositories it costs
/// what a page of 50 does.
fn repositories_page(app: &App, req: &Incoming) -> Reply {
    let filter = RepositoryFilter {
        state: req.query("state").filter(|s| !s.is_empty()),
        name: req.query("name").filter(|s| !s.is_empty()),
    };
    let at = position(req);
    let done = req.query("done");
    let read = app.reader.read(|snap| {
        let node = status::node(app.config, snap)?;
        if node.role == crate::config::Role::Primary {
            let list = RepositoryList { page: &Page::default(), filter: &filter, total: Total::Exactly(0) };
            return Ok(dashboard::repositories(&node, snap.event_count()?, &list, "", None));
        }
        let page = snap.repository_page(&filter, &at, PAGE_SIZE)?;
        let list = RepositoryList { page: &page, filter: &filter, total: snap.repository_total(&filter)? };
        Ok(dashboard::repositories(&node, 0, &list, &csrf_token(app), done.as_deref()))
    });
    match read {
        Ok(html) => Reply::html(html),
        Err(e) => Reply::error(503, &format!("cannot read the state file: {e}")),
    }
}

/// The list's position a link names; the first page when it names none
/// (or an odd one).
fn position(req: &Incoming) -> Position {
    let group = req.query("group").and_then(|g| g.parse::<u8>().ok()).filter(|g| *g < crate::store::GROUPS);
    let key = |name: String| group.map(|group| Key { group, name });
    if req.query("last").is_some() {
        Position::Last
    } else if let Some(key) = req.query("after").and_then(key) {
        Position::After(key)
    } else if let Some(key) = req.query("before").and_then(key) {
        Position::Before(key)
    } else {
        Position::First
    }
}

/// A button's form, read whole (at most `limit` bytes) and checked for the
/// page's CSRF token; the refusal to send otherwise.
fn form(app: &App, req: &mut Incoming, limit: u64) -> std::result::Result<String, Reply> {
    let mut body = String::new();
    if req.body.take(limit).read_to_string(&mut body).is_err() {
        return Err(Reply::error(400, "cannot read the form"));
    }
    let csrf = form_value(&body, "csrf").unwrap_or_default();
    if !constant_time_eq(csrf.as_bytes(), csrf_token(app).as_bytes()) {
        return Err(Reply::error(
            403,
            "the form's csrf token is missing or stale: reload the page and press the button again",
        ));
    }
    Ok(body)
}

/// The Resync buttons: one repository, or every failed one.
fn resync(app: &App, req: &mut Incoming, all_failed: bool, limit: u64) -> Reply {
    let body = match form(app, req, limit) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let result = if all_failed {
        app.log.resync_failed().map(|n| log::info!("resync of {n} failed repositories requested from {}", req.remote))
    } else {
        let name = form_value(&body, "name").unwrap_or_default();
        if !registry::valid_repository(&name) {
            return Reply::error(400, &format!("{name:?} is not a repository name"));
        }
        log::info!("resync of {name} requested from {}", req.remote);
        app.log.request_full_sync(&name)
    };
    match result {
        Ok(()) => {
            // Back to the list the button was on (its filter and page), saying
            // what was done.
            let back = req.header("Referer").filter(|r| r.contains(REPOSITORIES_PATH));
            let back = back.as_deref().unwrap_or(REPOSITORIES_PATH);
            let back = back.split("&done=").next().unwrap_or(back).split("?done=").next().unwrap_or(back);
            let done = if all_failed { "resync-failed" } else { "resync" };
            Reply::redirect(&format!("{back}{}done={done}", if back.contains('?') { '&' } else { '?' }))
        }
        Err(e) => Reply::error(503, &format!("cannot record the resync: {e}")),
    }
}

/// The Apply and Keep buttons of a held deletion (the dashboard's list).
fn decide_deletion(app: &App, req: &mut Incoming, limit: u64) -> Reply {
    let body = match form(app, req, limit) {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Some(id) = form_value(&body, "id").and_then(|id| id.parse::<i64>().ok()) else {
        return Reply::error(400, "the form names no deletion ID");
    };
    let (decided, done) = match form_value(&body, "action").as_deref() {
        Some("apply") => (app.log.apply_deletion_now(id), "applied"),
        Some("keep") => (app.log.cancel_deletion(id), "kept"),
        _ => return Reply::error(400, "the form's action is neither apply nor keep"),
    };
    match decided {
        Ok(true) => {
            log::info!("held deletion {id} to be {done}, as requested from {}", req.remote);
            Reply::redirect(&format!("{NODES_PATH}?done=deletion-{id}-{done}#deletions"))
        }
        Ok(false) => Reply::error(409, &format!("no deletion {id} is held any more: reload the page")),
        Err(e) => Reply::error(503, &format!("cannot record the decision on deletion {id}: {e}")),
    }
}

/// `/-/readiness`: what the status says (the same snapshot as every other
/// view): the daemon's last check found this node's registry answering,
/// and the state file can be read (and, as this process found, written).
fn readiness(app: &App) -> Reply {
    let problem = app.health.problem().filter(|p| p.starts_with("state file"));
    let status = app.reader.read(|snap| status::collect(app.config, snap, Some(app.stats), problem.clone()));
    match status {
        Ok(s) if s.ready && problem.is_none() => Reply::text(200, "ready\n"),
        Ok(s) => Reply::text(503, &format!("not ready: {}\n", problem.or(s.ready_message).unwrap_or_default())),
        Err(e) => Reply::text(503, &format!("not ready: state file: {e}\n")),
    }
}

/// Serves requests on one pool thread until georeg shuts down.
pub fn serve_thread(app: &App, server: &tiny_http::Server) {
    while !app.shutdown.requested() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(rq)) => respond(app, rq),
            Ok(None) => {}
            Err(e) => log::warn!("HTTP server: {e}"),
        }
    }
}

/// Routes a tiny_http request and sends the reply.
pub fn respond(app: &App, mut rq: tiny_http::Request) {
    let response = response(handle(app, &mut rq));
    let url = rq.url().to_string();
    if let Err(e) = rq.respond(response) {
        log::debug!("answering {url}: {e}");
    }
}

/// The reply as tiny_http sends it: always framed by `Content-Length`,
/// whatever its size. tiny_http would switch to chunked from 32 KiB (a
/// page of 50 repositories with failures, `/metrics` or the status of a
/// large node), and the front relays a chunked answer until the server
/// closes the connection, which it keeps open: the client's next request
/// on that connection waited up to two minutes.
pub fn response(reply: Reply) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let len = reply.body.len();
    let mut response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        Vec::new(),
        Cursor::new(reply.body),
        Some(len),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    let mut headers = vec![("Content-Type", reply.content_type.to_string())];
    headers.extend(reply.headers);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}

/// A tiny_http request as an [`Incoming`], routed.
pub fn handle(app: &App, rq: &mut tiny_http::Request) -> Reply {
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let headers: Vec<(String, String)> =
        rq.headers().iter().map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string())).collect();
    // The front names the client (the server's own socket is a Unix one).
    let remote = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(super::wire::CLIENT_HEADER))
        .map(|(_, v)| v.clone())
        .or_else(|| rq.remote_addr().map(|a| a.to_string()))
        .unwrap_or_else(|| "a client".into());
    let method = rq.method().as_str().to_ascii_uppercase();
    let content_length = rq.body_length().map(|n| n as u64);
    let mut incoming = Incoming {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        content_length,
        body: rq.as_reader(),
        remote,
    };
    route(app, &mut incoming)
}
