//! Deletions held back (`replication.delete_delay_hours`). A primary that
//! deletes everything (a bad cleanup policy, a mistaken script, an
//! intruder) would otherwise empty every secondary within seconds. So each
//! deletion georeg would apply to the secondary (a tag gone, a manifest
//! deleted, a repository emptied) is recorded here and held until its delay
//! ends; the worker that next holds the repository applies the due ones.
//! Operators list them, apply them early or cancel them (`georeg
//! deletions`); a cancelled one is kept on the secondary and verification
//! expects the difference. With a delay of 0 deletions apply at once and are
//! recorded as applied.
//!
//! A burst (more than `replication.delete_burst_share` of a repository's or
//! the registry's tags removed within an hour, at least
//! `delete_burst_min_tags` of them) is written onto its deletions, and keeps
//! the node unhealthy until an operator decides on them or, with no delay,
//! for an hour.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::handles::{Queue, Snapshot, Store};
use super::shared::NOW;
use super::states::{Cause, DecidedBy, DeletionKind, DeletionState};
use crate::error::Result;
use crate::registry::Digest;

pub(super) const HOUR_AGO: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 hour')";
/// States of a deletion not yet done with: the ones verification expects.
const OPEN: &str = "('held', 'applying', 'cancelled')";
const COLUMNS: &str = "h.id, r.name, h.kind, h.tag, h.digest, h.cause, h.tags, h.state, h.seen_at, h.applies_at, \
                       h.decided_at, h.decided_by, h.last_error, h.bundle, \
                       CASE WHEN h.kind = 'manifest' THEN (SELECT group_concat(name, ',') FROM \
                         (SELECT t.name FROM tags t WHERE t.repository_id = h.repository_id AND t.digest = h.digest \
                          ORDER BY t.name)) END, h.replaced_by";

/// How deletions are held, and when they raise the burst alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeletionPolicy {
    /// `replication.delete_delay_hours`; 0 applies deletions at once.
    pub delay_hours: u64,
    /// `replication.delete_burst_share`.
    pub burst_share: f64,
    /// `replication.delete_burst_min_tags`.
    pub burst_min_tags: u64,
}

impl Default for DeletionPolicy {
    fn default() -> Self {
        DeletionPolicy { delay_hours: 0, burst_share: 0.5, burst_min_tags: 10 }
    }
}

/// A deletion georeg would apply to the secondary now.
#[derive(Debug, Clone, Copy)]
pub struct NewDeletion<'a> {
    pub kind: DeletionKind,
    /// The tag (kind tag).
    pub tag: Option<&'a str>,
    /// The manifest (kind manifest), or the tag's digest on the secondary.
    pub digest: Option<&'a Digest>,
    /// `tag removed`, `manifest deleted` or `repository emptied`.
    pub cause: Cause,
    /// The transfer bundle whose import asks for it (None: the primary).
    pub bundle: Option<&'a str>,
    /// Tags it takes off the secondary.
    pub tags: i64,
}

/// What is already recorded about a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// Nothing: it is new.
    None,
    /// Held (or being applied), until `applies_at`.
    Held { applies_at: String },
    /// An operator cancelled it: the secondary keeps it.
    Cancelled,
}

/// A deletion, as `georeg deletions` and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub id: i64,
    pub repository: String,
    pub kind: DeletionKind,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub cause: Cause,
    pub tags: i64,
    pub state: DeletionState,
    pub seen_at: String,
    pub applies_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<DecidedBy>,
    pub last_error: Option<String>,
    /// The transfer bundle whose import asked for it (None: the primary).
    #[serde(default)]
    pub bundle: Option<String>,
    /// The tags a manifest deletion takes off the secondary, as the state
    /// file records them now (none for a tag deletion: `tag` names it).
    pub tag_names: Vec<String>,
    /// An overwrite: the digest the primary moved the tag to (`digest` is
    /// the one it left).
    #[serde(default)]
    pub replaced_by: Option<String>,
}

impl Deletion {
    /// The digest it names, when it names a valid one.
    pub fn digest(&self) -> Option<Digest> {
        self.digest.as_deref().and_then(|d| Digest::parse(d).ok())
    }

    /// `tag v1 (sha256:0123456789ab)`, `manifest sha256:0123456789ab
    /// (tags latest, v1)`, or `(2 tags)` when their names are not known.
    pub fn what(&self) -> String {
        let short = |d: &str| d.get(..19).unwrap_or(d).to_string();
        match (self.kind, &self.tag, &self.digest) {
            (DeletionKind::Overwrite, Some(tag), Some(d)) => format!(
                "tag {tag} (was {}, now {})",
                short(d),
                self.replaced_by.as_deref().map(short).unwrap_or_else(|| "?".into())
            ),
            (DeletionKind::Tag, Some(tag), Some(d)) => format!("tag {tag} ({})", short(d)),
            (DeletionKind::Tag, Some(tag), None) => format!("tag {tag}"),
            (_, _, Some(d)) if self.tag_names.is_empty() => {
                format!("manifest {} ({})", short(d), crate::format::count(self.tags as u64, "tag", "tags"))
            }
            (_, _, Some(d)) => format!(
                "manifest {} ({} {})",
                short(d),
                if self.tag_names.len() == 1 { "tag" } else { "tags" },
                self.tag_names.join(", ")
            ),
            _ => format!("{} #{}", self.kind, self.id),
        }
    }
}

/// Held deletions at a glance, for the status everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionSummary {
    /// Deletions held (waiting for their delay), and the tags they would remove.
    pub held: i64,
    pub held_tags: i64,
    /// Deletions an operator cancelled: kept on the secondary.
    pub cancelled: i64,
    /// When the next held one applies.
    pub next_applies_at: Option<String>,
    /// The burst alarm's text, while it stands.
    pub burst: Option<String>,
    /// `replication.delete_delay_hours` (the status fills it in).
    #[serde(default)]
    pub delay_hours: u64,
}

/// Which deletions an operator's command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Ids(Vec<i64>),
}

impl Selector {
    /// `(all, ids as JSON)` for `?1 OR h.id IN (SELECT value FROM json_each(?2))`.
    fn params(&self) -> (bool, String) {
        match self {
            Selector::All => (true, "[]".into()),
            Selector::Ids(ids) => (false, serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())),
        }
    }
}

fn deletion_row(r: &rusqlite::Row) -> rusqlite::Result<Deletion> {
    Ok(Deletion {
        id: r.get(0)?,
        repository: r.get(1)?,
        kind: r.get(2)?,
        tag: r.get(3)?,
        digest: r.get(4)?,
        cause: r.get(5)?,
        tags: r.get(6)?,
        state: r.get(7)?,
        seen_at: r.get(8)?,
        applies_at: r.get(9)?,
        decided_at: r.get(10)?,
        decided_by: r.get(11)?,
        last_error: r.get(12)?,
        bundle: r.get(13)?,
        tag_names: r
            .get::<_, Option<String>>(14)?
            .map(|names| names.split(',').map(String::from).collect())
            .unwrap_or_default(),
        replaced_by: r.get(15)?,
    })
}

impl Queue {
    /// What is recorded about removing `tag` (at `digest` on the
    /// secondary) or, with no tag, the manifest `digest`: a deletion of the
    /// tag, or of the manifest it points at, counts.
    pub fn open_deletion(&self, repository: &str, tag: Option<&str>, digest: Option<&Digest>) -> Result<Open> {
        let conn = self.conn();
        let found: Option<(String, String)> = conn
            .prepare_cached(&format!(
                "SELECT h.state, h.applies_at FROM deletions h JOIN repositories r ON r.id = h.repository_id
                 WHERE r.name = ?1 AND h.state IN {OPEN}
                   AND ((h.kind = 'tag' AND h.tag = ?2) OR (h.kind = 'manifest' AND h.digest = ?3))
                 ORDER BY h.state = 'cancelled' DESC LIMIT 1"
            ))?
            .query_row(params![repository, tag, digest.map(Digest::as_str)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match found {
            None => Open::None,
            Some((state, _)) if state == "cancelled" => Open::Cancelled,
            Some((_, applies_at)) => Open::Held { applies_at },
        })
    }

    /// Holds a deletion until the delay ends (a deletion held already keeps
    /// its time); returns when it applies.
    pub fn hold_deletion(&self, repository: &str, r: &NewDeletion, policy: &DeletionPolicy) -> Result<String> {
        let id = self.ensure_repository(repository)?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT OR IGNORE INTO deletions (repository_id, kind, tag, digest, cause, tags, applies_at, bundle)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?7), ?8)",
        )?
        .execute(params![
            id,
            r.kind.as_str(),
            r.tag,
            r.digest.map(Digest::as_str),
            r.cause.as_str(),
            r.tags,
            format!("+{} hours", policy.delay_hours),
            r.bundle
        ])?;
        let applies_at = conn
            .prepare_cached(&format!(
                "SELECT applies_at FROM deletions WHERE repository_id = ?1 AND kind = ?2
                 AND COALESCE(tag, digest) = COALESCE(?3, ?4) AND state IN {OPEN}"
            ))?
            .query_row(params![id, r.kind.as_str(), r.tag, r.digest.map(Digest::as_str)], |r| r.get(0))?;
        Ok(applies_at)
    }

    /// Records a deletion applied at once (no delay), for the burst alarm
    /// and as a history.
    pub fn record_applied_deletion(&self, repository: &str, r: &NewDeletion) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO deletions (repository_id, kind, tag, digest, cause, tags, state, applies_at, decided_at,
                                       decided_by, bundle)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'applied', {NOW}, {NOW}, 'delay', ?7)"
            ))?
            .execute(params![
                id,
                r.kind.as_str(),
                r.tag,
                r.digest.map(Digest::as_str),
                r.cause.as_str(),
                r.tags,
                r.bundle
            ])?;
        Ok(())
    }

    /// Claims the repository's held deletions that are due (their delay
    /// ran out, or an operator asked): they become `applying`.
    pub fn claim_due_deletions(&self, repository: &str) -> Result<Vec<Deletion>> {
        let conn = self.conn();
        let ids: Vec<i64> = conn
            .prepare_cached(&format!(
                "UPDATE deletions SET state = 'applying', last_error = NULL
                 WHERE state = 'held' AND applies_at <= {NOW}
                   AND repository_id = (SELECT id FROM repositories WHERE name = ?1)
                 RETURNING id"
            ))?
            .query_map([repository], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        drop(conn);
        self.deletions_by_id(&ids)
    }

    /// Records a claimed deletion's outcome: applied, or dropped because
    /// the primary has it again.
    pub fn finish_deletion(&self, id: i64, applied: bool) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "UPDATE deletions SET state = CASE WHEN ?2 THEN 'applied' ELSE 'dropped' END, decided_at = {NOW},
                 decided_by = COALESCE(decided_by, CASE WHEN ?2 THEN 'delay' ELSE 'primary' END), last_error = NULL
                 WHERE id = ?1 AND state = 'applying'"
            ))?
            .execute(params![id, applied])?;
        Ok(())
    }

    /// Puts claimed deletions back to held after a failed attempt, with why.
    pub fn release_deletions(&self, ids: &[i64], error: Option<&str>) -> Result<()> {
        let conn = self.conn();
        for id in ids {
            conn.prepare_cached(
                "UPDATE deletions SET state = 'held', last_error = COALESCE(?2, last_error)
                 WHERE id = ?1 AND state = 'applying'",
            )?
            .execute(params![id, error])?;
        }
        Ok(())
    }

    /// The primary has `tag` at `digest` (again): nothing of it, nor of
    /// the manifest, is to be removed. Called with the connection of
    /// `set_tag`.
    pub(super) fn drop_deletions_of(conn: &Connection, repository_id: i64, tag: &str, digest: &str) -> Result<()> {
        conn.prepare_cached(&format!(
            "UPDATE deletions SET state = 'dropped', decided_at = {NOW}, decided_by = 'primary'
             WHERE repository_id = ?1 AND state IN ('held', 'cancelled')
               AND ((kind = 'tag' AND tag = ?2) OR (kind = 'manifest' AND digest = ?3))"
        ))?
        .execute(params![repository_id, tag, digest])?;
        Ok(())
    }

    /// The primary has the manifest `digest` (again): it is not to be removed.
    pub fn manifest_back(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "UPDATE deletions SET state = 'dropped', decided_at = {NOW}, decided_by = 'primary'
                 WHERE state IN ('held', 'cancelled') AND kind = 'manifest' AND digest = ?2
                   AND repository_id = (SELECT id FROM repositories WHERE name = ?1)"
            ))?
            .execute(params![repository, digest.as_str()])?;
        Ok(())
    }

    pub fn deletions_by_id(&self, ids: &[i64]) -> Result<Vec<Deletion>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deletions h JOIN repositories r ON r.id = h.repository_id
             WHERE h.id IN (SELECT value FROM json_each(?1)) ORDER BY h.id"
        ))?;
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows = stmt.query_map([ids], deletion_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// An operator's `--apply`: the selected held deletions are due now.
    /// A failed repository among theirs is queued again at once, so that
    /// its backoff does not delay them. Returns the deletions marked.
    pub fn apply_deletions_now(&self, which: &Selector) -> Result<Vec<Deletion>> {
        let (all, ids) = which.params();
        let conn = self.conn();
        let marked: Vec<i64> = conn
            .prepare_cached(&format!(
                "UPDATE deletions SET applies_at = {NOW}, decided_by = 'operator', last_error = NULL
                 WHERE state = 'held' AND (?1 OR id IN (SELECT value FROM json_each(?2))) RETURNING id"
            ))?
            .query_map(params![all, ids], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        conn.prepare_cached(
            "UPDATE repositories SET sync_state = 'pending', retry_at = NULL, sync_priority = 1
             WHERE sync_state = 'failed'
               AND id IN (SELECT repository_id FROM deletions WHERE id IN (SELECT value FROM json_each(?1)))",
        )?
        .execute([serde_json::to_string(&marked).unwrap_or_else(|_| "[]".into())])?;
        drop(conn);
        self.work.ring();
        self.deletions_by_id(&marked)
    }

    /// An operator's `--cancel`: the selected held deletions are kept on
    /// the secondary for good; a tag whose overwrite is cancelled goes back
    /// to the digest it left, by a full sync of its repository, queued
    /// here. Returns the deletions cancelled.
    pub fn cancel_deletions(&self, which: &Selector) -> Result<Vec<Deletion>> {
        let (all, ids) = which.params();
        let cancelled: Vec<i64> = self
            .conn()
            .prepare_cached(&format!(
                "UPDATE deletions SET state = 'cancelled', decided_at = {NOW}, decided_by = 'operator'
                 WHERE state = 'held' AND (?1 OR id IN (SELECT value FROM json_each(?2))) RETURNING id"
            ))?
            .query_map(params![all, ids], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let cancelled = self.deletions_by_id(&cancelled)?;
        let restore: BTreeSet<&str> =
            cancelled.iter().filter(|d| d.kind == DeletionKind::Overwrite).map(|d| d.repository.as_str()).collect();
        for repository in restore {
            self.request_full_sync(repository)?;
        }
        Ok(cancelled)
    }
}

impl Snapshot<'_> {
    /// Deletions not done with: held (soonest first), then cancelled.
    pub fn open_deletions(&self) -> Result<Vec<Deletion>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deletions h JOIN repositories r ON r.id = h.repository_id
             WHERE h.state IN {OPEN} ORDER BY h.state = 'cancelled', h.applies_at, h.id"
        ))?;
        let rows = stmt.query_map([], deletion_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many deletions are held and cancelled, when the next applies,
    /// and the burst alarm while it stands: a burst deletion still held
    /// that no operator decided on, or, applied at once (no delay),
    /// within the hour.
    pub fn deletion_summary(&self) -> Result<DeletionSummary> {
        let conn = self.conn();
        let (held, held_tags, cancelled, next_applies_at) = conn.query_row(
            "SELECT COALESCE(SUM(state IN ('held', 'applying')), 0),
                    COALESCE(SUM(CASE WHEN state IN ('held', 'applying') THEN tags END), 0),
                    COALESCE(SUM(state = 'cancelled'), 0),
                    MIN(CASE WHEN state IN ('held', 'applying') THEN applies_at END)
             FROM deletions WHERE state IN ('held', 'applying', 'cancelled')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let burst = conn
            .query_row(
                // Two halves, so that each reads the partial index of
                // burst deletions rather than every deletion applied.
                &format!(
                    "SELECT burst FROM (
                       SELECT id, burst FROM deletions
                       WHERE burst IS NOT NULL AND state IN ('held', 'applying') AND decided_by IS NULL
                       UNION ALL
                       SELECT id, burst FROM deletions
                       WHERE burst IS NOT NULL AND state = 'applied' AND decided_by = 'delay' AND seen_at >= {HOUR_AGO})
                     ORDER BY id DESC LIMIT 1"
                ),
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(DeletionSummary { held, held_tags, cancelled, next_applies_at, burst, delay_hours: 0 })
    }
}

impl Store {
    /// Forgets applied and dropped deletions decided more than `days` ago.
    pub fn prune_deletions(&self, days: u64) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM deletions WHERE state IN ('applied', 'dropped')
             AND decided_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
            [format!("-{days} days")],
        )?;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "deletions_tests.rs"]
mod tests;
