//! What a georeg node serves the nodes that follow it: the event log
//! (`GET /api/v1/events?after=ID&limit=N&wait=SECONDS`, a long poll) and the
//! endpoint their status reports go to. A primary serves the events its
//! registry notified; a secondary serves what it applied to its own
//! registry (`store::applied`), which makes it a relay. Each page names the
//! serving node, its chain of upstreams and whether it is behind the
//! primary. Both need a JWT signed with the shared key
//! (`auth::check_node_token`).

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::app::App;
use super::auth::check_node_token;
use super::http::{Incoming, Reply};
use crate::config::Role;
use crate::error::Result;
use crate::health::Status;
use crate::peer::{BlobMark, Page, PushedBlob};
use crate::store::Event;

/// Longest long poll of the log a follower may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
const MAX_PAGE: usize = 1000;
/// Long polls that may wait at once: so many followers are told of an
/// event the moment it is stored. Each holds one of the server's threads
/// (40) while it waits; the others stay free for notifications, pages and
/// reports, so that many followers never delay a notification. A poll
/// beyond this answers at once, and its follower polls again a second
/// later.
pub const MAX_WAITING: usize = 32;

/// One waiting long poll, counted for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn take(count: &'a AtomicUsize) -> Option<Waiting<'a>> {
        let taken = count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_WAITING).then_some(n + 1));
        taken.ok().map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `GET /api/v1/events`: up to `limit` events after `after`, waiting up to
/// `wait` seconds for the first. A follower that gives its place in the
/// blobs it may land ahead (`blobs_epoch`, `blobs_after`: the primary's
/// notified pushes, or what a relay landed) also gets those after it, and
/// the wait ends at the first of either.
pub fn serve(app: &App, req: &mut Incoming) -> Reply {
    if let Err(reply) = check_node_token(app, req) {
        return reply;
    }
    let after: i64 = req.query("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = req.query("limit").and_then(|v| v.parse().ok()).unwrap_or(500).clamp(1, MAX_PAGE);
    let wait = Duration::from_secs(req.query("wait").and_then(|v| v.parse().ok()).unwrap_or(0)).min(MAX_WAIT);
    // Placed once, so that pushes arriving while this poll waits are
    // the follower's even on its first poll.
    let mark = req.query("blobs_epoch").map(|epoch| {
        let through = req.query("blobs_after").and_then(|v| v.parse().ok()).unwrap_or(0);
        app.pushed.place(&BlobMark { epoch, through })
    });
    let waiting = if wait.is_zero() { None } else { Waiting::take(&app.long_polls) };
    let deadline = Instant::now() + if waiting.is_some() { wait } else { Duration::ZERO };
    loop {
        let rung = app.log.appended.count();
        let events = match read(app, after, limit) {
            Ok(events) => events,
            Err(e) => return Reply::error(503, &format!("cannot read the event log: {e}")),
        };
        let (blobs, blob_mark) = match &mark {
            Some(mark) => {
                let (blobs, now) = app.pushed.after(mark);
                (blobs, Some(now))
            }
            None => (Vec::new(), None),
        };
        let now = Instant::now();
        if !events.is_empty() || !blobs.is_empty() || now >= deadline || app.shutdown.requested() {
            return match page(app, events, blobs, blob_mark) {
                Ok(page) => Reply::json(200, &serde_json::to_value(&page).unwrap_or_default()),
                Err(e) => Reply::error(503, &format!("cannot read the event log: {e}")),
            };
        }
        app.log.appended.wait(rung, (deadline - now).min(Duration::from_secs(1)));
    }
}

/// The log this node serves: the primary's events, or what this secondary
/// applied.
fn read(app: &App, after: i64, limit: usize) -> Result<Vec<Event>> {
    match app.config.role {
        Role::Primary => app.log.events_after(after, limit),
        Role::Secondary => app.log.applied_after(after, limit),
    }
}

/// A page of `events` (and blob pushes), with where the log stands and who
/// serves it.
fn page(app: &App, events: Vec<Event>, blobs: Vec<PushedBlob>, blob_mark: Option<BlobMark>) -> Result<Page> {
    let node = app.config.node_name.clone();
    Ok(match app.config.role {
        Role::Primary => {
            let (epoch, oldest_event_id) = app.log.log_position()?;
            let last_event_id = app.log.last_event_id()?;
            Page {
                events,
                last_event_id,
                oldest_event_id,
                epoch,
                node,
                chain: Vec::new(),
                behind: None,
                blobs,
                blob_mark,
            }
        }
        Role::Secondary => {
            let (epoch, oldest_event_id, last_event_id) = app.log.applied_position()?;
            let chain = app.log.cursor()?.upstream_chain;
            let behind = app.health.behind();
            Page { events, last_event_id, oldest_event_id, epoch, node, chain, behind, blobs, blob_mark }
        }
    })
}

/// `POST /api/v1/nodes/status`: a follower's report, on the node it
/// follows (the primary, or a relay). A report is a few kilobytes, a
/// relay's with its followers' summaries; one larger than `limit` is refused.
pub fn receive_report(app: &App, req: &mut Incoming, limit: u64) -> Reply {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_polls_beyond_the_limit_do_not_wait_and_each_frees_its_place() {
        let count = AtomicUsize::new(0);
        let held: Vec<Waiting> = (0..MAX_WAITING).map(|_| Waiting::take(&count).unwrap()).collect();
        assert!(Waiting::take(&count).is_none(), "one more poll would wait");
        drop(held);
        assert_eq!(count.load(Ordering::SeqCst), 0);
        assert!(Waiting::take(&count).is_some());
    }
}
