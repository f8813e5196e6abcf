//! The endpoint the registry posts its notifications to
//! (`POST /api/v4/container_registry_event/events`).
//!
//! The registry keeps undelivered events in memory, sends them one at a
//! time and retries a non-2xx answer forever, blocking everything queued
//! behind it. So a well-formed envelope is always answered 2xx, even when
//! georeg acts on none of its events (pulls, mounts), and the answer is
//! sent only after the events it acts on are committed. Blob pushes are
//! stored nowhere: on a secondary the registry notifies directly, they are
//! offered to the prefetcher (`replication::prefetch`), which copies them
//! while the client pushes the rest of its image; on a primary georeg they
//! are kept in memory for the followers' long polls
//! (`replication::pushed`).

use std::io::Read;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::app::App;
use super::auth::constant_time_eq;
use super::http::{Incoming, Reply};
use super::refusals::{accepted, refused, Refusal};
use crate::config::Role;
use crate::registry::{self, Digest};
use crate::replication::prefetch::Hint;
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
    #[serde(default)]
    size: Option<u64>,
}

/// What an envelope holds for georeg: the events it stores, the blob
/// pushes it may copy ahead, and how many it does nothing with.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<NewEvent>,
    pub blobs: Vec<Hint>,
    pub ignored: usize,
}

/// One event, read.
enum Classified {
    Event(NewEvent),
    Blob(Hint),
    Ignored,
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
    let Parsed { events, blobs, ignored } = match parse_envelope(&body) {
        Ok(parsed) => parsed,
        Err(message) => return refuse(Refusal::Malformed, 400, &message),
    };
    accepted(app);
    if let Some(prefetch) = app.prefetch {
        prefetch.offer(blobs);
    } else if app.config.role == Role::Primary && !blobs.is_empty() {
        // Passed on to followers by their long polls, which this wakes.
        app.pushed.add(&blobs);
        app.log.appended.ring();
    }
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

/// The events georeg acts on, the blob pushes, and how many it does
/// nothing with.
pub fn parse_envelope(body: &[u8]) -> Result<Parsed, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let raw_events = envelope.events.ok_or("the envelope has no \"events\" array")?;
    let mut parsed = Parsed::default();
    for value in raw_events {
        match serde_json::from_value::<RawEvent>(value.clone()).map(|raw| classify(raw, &value)) {
            Ok(Classified::Event(e)) => parsed.events.push(e),
            Ok(Classified::Blob(b)) => parsed.blobs.push(b),
            Ok(Classified::Ignored) => parsed.ignored += 1,
            Err(e) => {
                log::warn!(
                    "ignoring an event georeg cannot read ({}): {}",
                    crate::format::printable(&e.to_string()),
                    crate::format::printable(clip(&value.to_string()))
                );
                parsed.ignored += 1;
            }
        }
    }
    Ok(parsed)
}

/// The event georeg acts on, if any: manifest pushes (by tag or digest),
/// tag deletes, manifest deletes and repository deletes. One that names a
/// repository, tag or digest the registry's grammar refuses is not stored,
/// with one warning naming the field: above all, a delete whose digest is
/// malformed is never read as the deletion of the whole repository.
fn classify(raw: RawEvent, value: &serde_json::Value) -> Classified {
    let t = raw.target;
    let is_blob = t.url.as_deref().is_some_and(|u| u.contains("/blobs/"))
        || t.media_type.as_deref() == Some("application/octet-stream");
    let tag = t.tag.filter(|tag| !tag.is_empty());
    if raw.action == "push" && is_blob && tag.is_none() {
        return blob_pushed(t.repository, t.digest, t.size);
    }
    let action = match raw.action.as_str() {
        "push" if !is_blob && (tag.is_some() || t.digest.is_some()) => Action::Push,
        "delete" if !is_blob || tag.is_some() => Action::Delete,
        _ => return Classified::Ignored,
    };
    let refuse = |field: &str, what: &Option<String>| {
        log::warn!(
            "not storing {} event {:?}: its {field} {:?} is not one the registry accepts",
            action.as_str(),
            clip(&raw.id),
            what.as_deref().map(clip).unwrap_or("(missing)")
        );
        Classified::Ignored
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
    Classified::Event(NewEvent {
        event_id,
        repository,
        action,
        tag,
        digest,
        media_type: t.media_type.filter(|m| m.starts_with("application/vnd.")),
    })
}

/// A blob push, as a hint for the prefetcher when it names a valid
/// repository, a digest and a size.
fn blob_pushed(repository: Option<String>, digest: Option<String>, size: Option<u64>) -> Classified {
    match (repository, digest, size) {
        (Some(r), Some(d), Some(size)) => Hint::read(&r, &d, size).map_or(Classified::Ignored, Classified::Blob),
        _ => Classified::Ignored,
    }
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

    /// The events and the ignored count of an envelope.
    fn events(body: &[u8]) -> (Vec<NewEvent>, usize) {
        let parsed = parse_envelope(body).unwrap();
        (parsed.events, parsed.ignored)
    }

    #[test]
    fn acts_on_manifest_pushes_and_deletes_only() {
        let (e, ignored) = events(&sample("push-manifest-tagged"));
        assert_eq!((e.len(), ignored), (1, 0));
        assert_eq!(
            (e[0].action, e[0].repository.as_str(), e[0].tag.as_deref()),
            (crate::store::Action::Push, "group/app", Some("v1"))
        );
        assert!(e[0].digest.is_some());

        let (e, _) = events(&sample("push-manifest-by-digest"));
        assert_eq!((e[0].action, e[0].tag.as_deref()), (Action::Push, None));

        let (e, _) = events(&sample("delete-tag"));
        assert_eq!((e[0].action, e[0].tag.as_deref(), e[0].digest.as_deref()), (Action::Delete, Some("v1"), None));

        let (e, ignored) = events(&sample("pull-index"));
        assert!(e.is_empty() && ignored == 1);
    }

    #[test]
    fn a_blob_push_is_a_hint_to_copy_ahead_never_an_event() {
        let parsed = parse_envelope(&sample("push-blob")).unwrap();
        assert!(parsed.events.is_empty() && parsed.ignored == 0);
        let digest = "sha256:8b5d37778d8a79944a8df61236b134f4ccbe6afa2b50db5498fc898a170c3e83";
        assert_eq!(
            parsed.blobs,
            [Hint { repository: "group/app".into(), digest: Digest::parse(digest).unwrap(), size: 4820 }]
        );
        // A blob push without a size, or naming a repository the registry
        // refuses, is nothing.
        let body = br#"{"events":[
            {"id":"1","action":"push","target":{"mediaType":"application/octet-stream","repository":"g/app","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},
            {"id":"2","action":"push","target":{"mediaType":"application/octet-stream","repository":"Bad Name","size":3,"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},
            {"id":"3","action":"push","target":{"mediaType":"application/octet-stream","repository":"g/app","size":3,"digest":"md5:abc"}}
        ]}"#;
        let parsed = parse_envelope(body).unwrap();
        assert!(parsed.events.is_empty() && parsed.blobs.is_empty());
        assert_eq!(parsed.ignored, 3);
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
        let (e, ignored) = events(body);
        assert_eq!(e.len(), 2, "a malformed digest is never a repository delete: {e:?}");
        assert!(e[0].digest.is_some() && e[0].tag.is_none());
        assert!(e[1].digest.is_none() && e[1].tag.is_none());
        assert_eq!(ignored, 5);
    }

    #[test]
    fn malformed_envelopes_are_rejected_with_a_reason() {
        assert!(parse_envelope(b"{not json").unwrap_err().contains("malformed JSON"));
        assert!(parse_envelope(br#"{"foo": []}"#).unwrap_err().contains("\"events\""));
        assert_eq!(parse_envelope(br#"{"events": []}"#).unwrap().events.len(), 0);
    }
}
