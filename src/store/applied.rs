//! A secondary's log of what it applied to its own registry (`applied` in
//! schema.sql): every manifest it put under a tag or by digest, every tag
//! and manifest it removed, in order. Its followers read it exactly as a
//! primary's followers read the primary's events, which makes any
//! secondary a relay: the sites behind it cost the primary's link nothing.
//!
//! A change is logged once it is in the registry, so a follower reading
//! the log finds it there; a held removal is logged only when applied.

use rusqlite::params;

use super::event::{event_row, Action, Event, EVENT_COLUMNS};
use super::handles::{Log, Queue, Store};
use crate::error::Result;
use crate::registry::Digest;

/// Appended to the state file's epoch for this log: a relay's log and the
/// events it would serve once promoted are two different logs, and a
/// follower that finds the other one compares everything once.
const EPOCH_SUFFIX: &str = ".applied";

impl Queue {
    /// Logs one change made to this node's registry: `push` of a manifest
    /// (under `tag`, or by digest), `delete` of a tag or of a manifest.
    pub fn log_applied(
        &self,
        repository: &str,
        action: Action,
        tag: Option<&str>,
        digest: Option<&Digest>,
        media_type: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO applied (repository, action, tag, digest, media_type) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![repository, action, tag, digest.map(Digest::as_str), media_type])?;
        self.appended.ring();
        Ok(())
    }
}

impl Log {
    /// Up to `limit` changes after position `after`, oldest first.
    pub fn applied_after(&self, after: i64, limit: usize) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM applied WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
        let rows = stmt.query_map(params![after, limit as i64], event_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// This log's epoch, its oldest id still stored and its newest (both 0
    /// when nothing was ever applied).
    pub fn applied_position(&self) -> Result<(String, i64, i64)> {
        let conn = self.conn();
        let epoch: String = conn.query_row("SELECT epoch FROM log_epoch WHERE id = 1", [], |r| r.get(0))?;
        let (oldest, last) = conn.query_row(
            "SELECT COALESCE(MIN(id), 0), COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'applied'), 0)
             FROM applied",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((format!("{epoch}{EPOCH_SUFFIX}"), oldest, last))
    }
}

impl Store {
    /// Deletes changes older than `days` days that every follower that
    /// reported within `days` has read, and everything older than
    /// `max_days` whatever they read; the newest always stays. A follower
    /// that finds its place pruned compares everything (gap detection).
    pub fn prune_applied(&self, days: u64, max_days: u64) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM applied WHERE id < (SELECT MAX(id) FROM applied)
             AND (received_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2)
                  OR (received_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)
                      AND id <= COALESCE(
                          (SELECT MIN(CAST(json_extract(n.status, '$.events.cursor_last_event_id') AS INTEGER))
                           FROM nodes n WHERE n.reported_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)),
                          id)))",
            params![format!("-{days} days"), format!("-{max_days} days")],
        )?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_served_in_order_from_a_log_of_their_own() {
        let store = Store::open_in_memory().unwrap();
        let (queue, log) = (store.queue(), store.log());
        let d = Digest::sha256_of(b"m");
        queue
            .log_applied(
                "g/app",
                Action::Push,
                Some("v1"),
                Some(&d),
                Some("application/vnd.oci.image.manifest.v1+json"),
            )
            .unwrap();
        queue.log_applied("g/app", Action::Delete, Some("v0"), None, None).unwrap();
        let served = log.applied_after(0, 10).unwrap();
        assert_eq!(served.len(), 2);
        assert_eq!((served[0].action, served[0].tag.as_deref()), (Action::Push, Some("v1")));
        assert_eq!(served[0].digest.as_deref(), Some(d.as_str()));
        assert_eq!((served[1].action, served[1].tag.as_deref()), (Action::Delete, Some("v0")));
        assert_ne!(served[0].event_id, served[1].event_id, "each change has an id of its own");
        assert_eq!(log.applied_after(1, 10).unwrap().len(), 1);
        let (epoch, oldest, last) = log.applied_position().unwrap();
        assert!(epoch.ends_with(EPOCH_SUFFIX), "{epoch}");
        assert_eq!((oldest, last), (1, 2));
        assert!(log.events_after(0, 10).unwrap().is_empty(), "the events this node read are another log");
    }

    #[test]
    fn a_sync_cut_short_is_logged_as_a_change_to_the_whole_repository() {
        let store = Store::open_in_memory().unwrap();
        let queue = store.queue();
        queue.ensure_repository("g/app").unwrap();
        queue.ensure_repository("g/other").unwrap();
        let job = queue.claim_next().unwrap().unwrap();
        assert_eq!(queue.recover_started().unwrap(), 1);
        let served = store.log().applied_after(0, 10).unwrap();
        assert_eq!(served.len(), 1, "{served:?}");
        let hint = &served[0];
        assert_eq!((hint.repository.as_str(), hint.action), (job.name.as_str(), Action::Delete));
        assert!(hint.tag.is_none() && hint.digest.is_none(), "names neither a tag nor a digest: compare it all");
    }

    #[test]
    fn pruning_keeps_what_a_follower_has_not_read_and_the_newest() {
        let store = Store::open_in_memory().unwrap();
        let queue = store.queue();
        for tag in ["a", "b", "c"] {
            queue.log_applied("g/app", Action::Push, Some(tag), None, None).unwrap();
        }
        store.conn().execute("UPDATE applied SET received_at = '2000-01-01T00:00:00Z'", []).unwrap();
        let report = serde_json::json!({"events": {"cursor_last_event_id": 1}}).to_string();
        store.log().record_node("hop", true, None, &report).unwrap();
        assert_eq!(store.prune_applied(7, 36500).unwrap(), 1, "only what the follower read");
        assert_eq!(store.prune_applied(7, 0).unwrap(), 1, "past the maximum, all but the newest");
        let (_, oldest, last) = store.log().applied_position().unwrap();
        assert_eq!((oldest, last), (3, 3));
    }
}
