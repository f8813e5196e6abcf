//! The endpoint the registry posts its notifications to
//! (`POST /api/v4/container_registry_event/events`).
//!
//! The registry keeps undelivered events in memory, sends them one at a
//! time and retries a non-2xx answer forever, blocking everything queued
//! behind it. So a well-formed envelope is always answered 2xx, even when
//! georeg acts on none of its events (pulls, mounts, blob pushes), and the
//! answer is sent only after the events it acts on are committed.

use std::io::Read;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::app::App;
use super::auth::constant_time_eq;
use super::http::{Incoming, Reply};
use super::refusals::{accepted, refused, Refusal};
use crate::config::Role;
use crate::registry::{self, Digest};
use crate::store::{Action, NewEvent};

/// Content types the registry sends: distribution 2.x, 3.x, and plain JSON.
const CONTENT_TYPES: [&str; 3] = [
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

#[derive(Deserialize)]
struct Envelope {
    events: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    #[serde(default)]
    id: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: RawTarget,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTarget {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// `POST /api/v4/container_registry_event/events`. Envelopes larger than
/// `limit` are refused with 413.
pub fn receive(app: &App, req: &mut Incoming, limit: u64) -> Reply {
    let Some(secret) = app.config.notifications.secret.as_deref() else {
        return Reply::error(401, "this node has no notification secret configured (notifications.secret_file)");
    };
    let remote = req.remote.clone();
    let refuse = |reason, status, why: &str| refused(app, reason, &remote, status, why);
    let given = req.header("Authorization").unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), secret.as_bytes()) {
        let why = if given.is_empty() { "no Authorization header" } else { "wrong Authorization header" };
        return refuse(Refusal::Secret, 401, &format!("{why}: it must be the notification secret"));
    }
    let content_type = req.header("Content-Type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !CONTENT_TYPES.contains(&media.as_str()) {
        let why = format!("Content-Type {content_type:?} is not a registry event envelope");
        return refuse(Refusal::Malformed, 415, &why);
    }
    if req.content_length.is_some_and(|n| n > limit) {
        return refuse(Refusal::TooLarge, 413, &format!("envelope larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    if let Err(e) = req.body.take(limit + 1).read_to_end(&mut body) {
        return refuse(Refusal::Malformed, 400, &format!("cannot read the request body: {e}"));
    }
    if body.len() as u64 > limit {
        return refuse(Refusal::TooLarge, 413, &format!("envelope larger than {limit} bytes"));
    }
    let (events, ignored) = match parse_envelope(&body) {
        Ok(parsed) => parsed,
        Err(message) => return refuse(Refusal::Malformed, 400, &message),
    };
    accepted(app);
    let schedule = app.config.role == Role::Secondary;
    match app.log.record_events(&events, schedule) {
        Ok(stored) => {
            app.stats.events_received.fetch_add(stored as u64, Ordering::Relaxed);
            if stored > 0 {
                log::info!("stored {stored} event(s) from {}", req.remote);
            }
            Reply::json(
                200,
                &serde_json::json!({"stored": stored, "duplicates": events.len() - stored, "ignored": ignored}),
            )
        }
        // Not stored: a 5xx makes the registry deliver it again later.
        Err(e) => {
            log::error!("cannot store events: {e}");
            Reply::error(503, &format!("cannot store events: {e}"))
        }
    }
}

/// The events georeg acts on, and how many it does not act on.
pub fn parse_envelope(body: &[u8]) -> Result<(Vec<NewEvent>, usize), String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let raw_events = envelope.events.ok_or("the envelope has no \"events\" array")?;
    let mut events = Vec::new();
    let mut ignored = 0;
    for value in raw_events {
        match serde_json::from_value::<RawEvent>(value.clone()).map(|raw| classify(raw, &value)) {
            Ok(Some(e)) => events.push(e),
            Ok(None) => ignored += 1,
            Err(e) => {
                log::warn!(
                    "ignoring an event georeg cannot read ({}): {}",
                    crate::format::printable(&e.to_string()),
                    crate::format::printable(clip(&value.to_string()))
                );
                ignored += 1;
            }
        }
    }
    Ok((events, ignored))
}

/// The event georeg acts on, if any: manifest pushes (by tag or digest),
/// tag deletes, manifest deletes and repository deletes. One that names a
/// repository, tag or digest the registry's grammar refuses is not stored,
/// with one warning naming the field: above all, a delete whose digest is
/// malformed is never read as the deletion of the whole repository.
fn classify(raw: RawEvent, value: &serde_json::Value) -> Option<NewEvent> {
    let t = raw.target;
    let is_blob = t.url.as_deref().is_some_and(|u| u.contains("/blobs/"))
        || t.media_type.as_deref() == Some("application/octet-stream");
    let tag = t.tag.filter(|tag| !tag.is_empty());
    let action = match raw.action.as_str() {
        "push" if !is_blob && (tag.is_some() || t.digest.is_some()) => Action::Push,
        "delete" if !is_blob || tag.is_some() => Action::Delete,
        _ => return None,
    };
    let refuse = |field: &str, what: &Option<String>| {
        log::warn!(
            "not storing {} event {:?}: its {field} {:?} is not one the registry accepts",
            action.as_str(),
            clip(&raw.id),
            what.as_deref().map(clip).unwrap_or("(missing)")
        );
        None
    };
    let repository = match t.repository {
        Some(r) if registry::valid_repository(&r) => r,
        other => return refuse("repository", &other),
    };
    if tag.as_deref().is_some_and(|tag| !registry::valid_tag(tag)) {
        return refuse("tag", &tag);
    }
    let digest = t.digest.filter(|d| !d.is_empty());
    if digest.as_deref().is_some_and(|d| Digest::parse(d).is_err()) {
        return refuse("digest", &digest);
    }
    // The registry always sends an id; derive a stable one if it did not.
    let event_id = if raw.id.is_empty() { Digest::sha256_of(value.to_string().as_bytes()).to_string() } else { raw.id };
    Some(NewEvent {
        event_id,
        repository,
        action,
        tag,
        digest,
        media_type: t.media_type.filter(|m| m.starts_with("application/vnd.")),
    })
}

/// At most 100 characters of what a client sent, for a log line.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(100) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        // Envelopes captured from a real distribution 2.8 registry.
        std::fs::read(format!("{}/tests/data/notifications/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn acts_on_manifest_pushes_and_deletes_only() {
        let (e, ignored) = parse_envelope(&sample("push-manifest-tagged")).unwrap();
        assert_eq!((e.len(), ignored), (1, 0));
        assert_eq!(
            (e[0].action, e[0].repository.as_str(), e[0].tag.as_deref()),
            (crate::store::Action::Push, "group/app", Some("v1"))
        );
        assert!(e[0].digest.is_some());

        let (e, _) = parse_envelope(&sample("push-manifest-by-digest")).unwrap();
        assert_eq!((e[0].action, e[0].tag.as_deref()), (Action::Push, None));

        let (e, _) = parse_envelope(&sample("delete-tag")).unwrap();
        assert_eq!((e[0].action, e[0].tag.as_deref(), e[0].digest.as_deref()), (Action::Delete, Some("v1"), None));

        for ignored_kind in ["push-blob", "pull-index"] {
            let (e, ignored) = parse_envelope(&sample(ignored_kind)).unwrap();
            assert!(e.is_empty() && ignored == 1, "{ignored_kind}");
        }
    }

    #[test]
    fn repository_and_manifest_deletes() {
        let body = br#"{"events":[
            {"id":"1","action":"delete","target":{"repository":"g/app","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},
            {"id":"2","action":"delete","target":{"repository":"g/app"}},
            {"id":"3","action":"mount","target":{"repository":"g/app"}},
            {"id":"4","action":"push","target":{"repository":"Bad Name","tag":"x"}},
            {"id":"5","action":"delete","target":{"repository":"g/app","digest":"md5:abc"}},
            {"id":"6","action":"delete","target":{"repository":"g/app","digest":"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
            {"id":"7","action":"push","target":{"repository":"a..b","tag":"x"}}
        ]}"#;
        let (e, ignored) = parse_envelope(body).unwrap();
        assert_eq!(e.len(), 2, "a malformed digest is never a repository delete: {e:?}");
        assert!(e[0].digest.is_some() && e[0].tag.is_none());
        assert!(e[1].digest.is_none() && e[1].tag.is_none());
        assert_eq!(ignored, 5);
    }

    #[test]
    fn malformed_envelopes_are_rejected_with_a_reason() {
        assert!(parse_envelope(b"{not json").unwrap_err().contains("malformed JSON"));
        assert!(parse_envelope(br#"{"foo": []}"#).unwrap_err().contains("\"events\""));
        assert_eq!(parse_envelope(br#"{"events": []}"#).unwrap().0.len(), 0);
    }
}
