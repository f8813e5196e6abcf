//! The endpoint a secondary's own registry may notify
//! (`POST /api/v1/registry/events`, with the same notification secret):
//! the writes made straight on the secondary. georeg's own writes arrive
//! here too and are known by their actor (the subject of the tokens georeg
//! signs); any other push or delete is logged, counted and queues its
//! repository for a full sync at once, which puts the secondary back to
//! what the primary holds (deletions through `delete_delay_hours` like any
//! other). Nothing here is stored as an event: the log holds the
//! primary's changes only. Reconciliation finds such writes anyway, within
//! its window; this makes it seconds.

use std::io::Read;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::app::App;
use super::auth::constant_time_eq;
use super::http::{Incoming, Reply};
use crate::config::Role;
use crate::registry;

/// Where a secondary's own registry posts its notifications.
pub const PATH: &str = "/api/v1/registry/events";

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    events: Vec<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Write {
    action: String,
    target: Target,
    actor: Actor,
    request: Request,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Target {
    media_type: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Actor {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Request {
    addr: String,
    useragent: String,
}

/// `POST /api/v1/registry/events`.
pub fn receive(app: &App, req: &mut Incoming, limit: u64) -> Reply {
    if app.config.role != Role::Secondary {
        return Reply::error(404, "only a secondary watches its own registry's writes");
    }
    let Some(secret) = app.config.notifications.secret.as_deref() else {
        return Reply::error(401, "this node has no notification secret configured (notifications.secret_file)");
    };
    let given = req.header("Authorization").unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), secret.as_bytes()) {
        log::warn!(
            "notification from this node's registry at {} refused: wrong or missing Authorization header",
            req.remote
        );
        return Reply::error(401, "wrong or missing Authorization header: it must be the notification secret");
    }
    let mut body = Vec::new();
    if req.body.take(limit + 1).read_to_end(&mut body).is_err() || body.len() as u64 > limit {
        return Reply::error(413, &format!("envelope larger than {limit} bytes, or unreadable"));
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return Reply::error(400, &format!("malformed JSON: {e}")),
    };
    let mut queued = 0;
    for value in envelope.events {
        let Ok(w) = serde_json::from_value::<Write>(value) else { continue };
        if !foreign(&w) {
            continue;
        }
        let Some(repo) = w.target.repository.as_deref().filter(|r| registry::valid_repository(r)) else { continue };
        let what = match (&w.target.tag, &w.target.digest) {
            (Some(tag), _) if registry::valid_tag(tag) => format!("{repo}:{tag}"),
            (_, Some(digest)) => format!("{repo}@{}", crate::format::printable(digest)),
            _ => repo.to_string(),
        };
        log::warn!(
            "write made on the secondary: {} {what} by {:?} from {}; a full sync puts it back to what the primary holds",
            w.action,
            crate::format::printable(&w.actor.name),
            crate::format::printable(&w.request.addr)
        );
        app.stats.writes_on_secondary.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = app.log.request_reconcile(repo, &format!("write made on the secondary: {} {what}", w.action)) {
            return Reply::error(503, &format!("cannot queue {repo}: {e}"));
        }
        queued += 1;
    }
    Reply::json(200, &serde_json::json!({ "queued": queued }))
}

/// A manifest push or a delete that georeg did not make itself: georeg's
/// tokens name it as their subject, which the registry reports as the
/// actor. Blob pushes, pulls and mounts change no tag.
fn foreign(w: &Write) -> bool {
    let is_blob = w.target.url.as_deref().is_some_and(|u| u.contains("/blobs/"))
        || w.target.media_type.as_deref() == Some("application/octet-stream");
    let changes = match w.action.as_str() {
        "push" => !is_blob,
        "delete" => !is_blob || w.target.tag.is_some(),
        _ => false,
    };
    changes && w.actor.name != registry::token::SUBJECT && !w.request.useragent.starts_with("georeg/")
}
