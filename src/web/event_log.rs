//! What a primary georeg serves its secondaries: the event log
//! (`GET /api/v1/events?after=ID&limit=N&wait=SECONDS`, a long poll) and the
//! endpoint their status reports go to. Both need a JWT signed with the
//! shared key (`auth::check_node_token`); a secondary answers 404.

use std::io::Read;
use std::time::{Duration, Instant};

use super::app::App;
use super::auth::check_node_token;
use super::http::{Incoming, Reply};
use crate::config::Role;
use crate::health::Status;
use crate::peer::Page;

/// Longest long poll of the log a secondary may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
const MAX_PAGE: usize = 1000;

/// `GET /api/v1/events`: up to `limit` events after `after`, waiting up to
/// `wait` seconds for the first.
pub fn serve(app: &App, req: &mut Incoming) -> Reply {
    if app.config.role != Role::Primary {
        return Reply::error(404, "this node is a secondary; secondaries read the event log of the primary georeg");
    }
    if let Err(reply) = check_node_token(app, req) {
        return reply;
    }
    let after: i64 = req.query("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = req.query("limit").and_then(|v| v.parse().ok()).unwrap_or(500).clamp(1, MAX_PAGE);
    let wait = Duration::from_secs(req.query("wait").and_then(|v| v.parse().ok()).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        let rung = app.log.appended.count();
        let events = match app.log.events_after(after, limit) {
            Ok(events) => events,
            Err(e) => return Reply::error(503, &format!("cannot read the event log: {e}")),
        };
        let now = Instant::now();
        if !events.is_empty() || now >= deadline || app.shutdown.requested() {
            let (epoch, oldest_event_id) = match app.log.log_position() {
                Ok(position) => position,
                Err(e) => return Reply::error(503, &format!("cannot read the event log: {e}")),
            };
            let last_event_id = app.log.last_event_id().unwrap_or(0);
            let page = Page { events, last_event_id, oldest_event_id, epoch };
            return Reply::json(200, &serde_json::to_value(&page).unwrap_or_default());
        }
        app.log.appended.wait(rung, (deadline - now).min(Duration::from_secs(1)));
    }
}

/// `POST /api/v1/nodes/status`: a secondary's report, on the primary. A
/// report is a few kilobytes; one larger than `limit` is refused.
pub fn receive_report(app: &App, req: &mut Incoming, limit: u64) -> Reply {
    if app.config.role != Role::Primary {
        return Reply::error(404, "this node is a secondary; secondaries report to the primary georeg");
    }
    let claims = match check_node_token(app, req) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let mut body = Vec::new();
    if req.body.take(limit + 1).read_to_end(&mut body).is_err() || body.len() as u64 > limit {
        return Reply::error(413, "status report too large or unreadable");
    }
    let report: Status = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return Reply::error(400, &format!("malformed status report: {e}")),
    };
    let name = if claims.sub.is_empty() { report.node.name.clone() } else { claims.sub };
    match app.log.record_node(&name, report.healthy, report.health_message.as_deref(), &String::from_utf8_lossy(&body))
    {
        Ok(()) => Reply::json(200, &serde_json::json!({"recorded": name})),
        Err(e) => Reply::error(503, &format!("cannot record the report: {e}")),
    }
}
