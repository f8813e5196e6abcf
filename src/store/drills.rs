//! Drills: which tags to pull from the secondary (a random sample of
//! those georeg placed there, in synced repositories), what each drill
//! found, and the failures a resync has still to repair.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::handles::{Queue, Snapshot, Store};
use super::shared::NOW;
use super::states::Damage;
use crate::error::Result;

/// A tag of the secondary to pull, with the digest georeg left it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillTag {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// One tag a drill could not pull whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillFailure {
    pub repository: String,
    pub tag: String,
    /// `blob`, `manifest` (damaged or missing) or `tag` (missing); or
    /// `unreachable` (the registry did not answer), which no resync
    /// repairs and `drill_failures` does not keep.
    pub kind: Damage,
    /// The first failing digest.
    pub digest: String,
    pub message: String,
}

/// What one drill did, to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillRecord {
    /// `schedule` or `command`.
    pub trigger: &'static str,
    pub seconds: u64,
    pub tags: u64,
    pub manifests: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub failures: Vec<DrillFailure>,
}

/// A drill as the pages show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRow {
    pub started_at: String,
    pub finished_at: String,
    pub trigger: String,
    pub tags: i64,
    pub manifests: i64,
    pub blobs: i64,
    pub bytes: i64,
    pub failures: i64,
    pub first_failure: Option<String>,
    pub first_failing_digest: Option<String>,
}

/// Drills at a glance, for the status everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillSummary {
    /// The last drill, if any ran.
    pub last: Option<DrillRow>,
    /// When the last drill without a failure ended.
    pub last_success_at: Option<String>,
    /// Failures found by drills that no resync has repaired yet.
    pub unrepaired: i64,
}

impl Queue {
    /// Up to `n` tags picked at random among those georeg placed on the
    /// secondary, in repositories it counts as synced.
    pub fn drill_sample(&self, n: usize) -> Result<Vec<DrillTag>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.name, t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE r.excluded = 0 AND r.sync_state = 'synced' ORDER BY random() LIMIT ?1",
        )?;
        let rows =
            stmt.query_map([n as i64], |r| Ok(DrillTag { repository: r.get(0)?, tag: r.get(1)?, digest: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a finished drill and its failures, in one transaction.
    pub fn record_drill(&self, d: &DrillRecord) -> Result<()> {
        let ids: Vec<i64> = d.failures.iter().map(|f| self.ensure_repository(&f.repository)).collect::<Result<_>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let first = d.failures.first();
        tx.prepare_cached(
            "INSERT INTO drills (started_at, trigger, tags, manifests, blobs, bytes, failures, first_failure,
                                 first_failing_digest)
             VALUES (strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            format!("-{} seconds", d.seconds),
            d.trigger,
            d.tags as i64,
            d.manifests as i64,
            d.blobs as i64,
            d.bytes as i64,
            d.failures.len() as i64,
            first.map(|f| format!("{}:{}: {}", f.repository, f.tag, f.message)),
            first.map(|f| f.digest.clone()),
        ])?;
        let drill = tx.last_insert_rowid();
        for (f, repository_id) in d.failures.iter().zip(ids).filter(|(f, _)| f.kind != Damage::Unreachable) {
            tx.prepare_cached(
                "INSERT INTO drill_failures (drill_id, repository_id, tag, kind, digest, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![drill, repository_id, f.tag, f.kind, f.digest, f.message])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Seconds since the last drill started (None: never drilled).
    pub fn last_drill_age(&self) -> Result<Option<i64>> {
        let age = self.conn().query_row(
            &format!(
                "SELECT CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', MAX(started_at)) AS INTEGER)
                 FROM drills"
            ),
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?;
        Ok(age.map(|a| a.max(0)))
    }

    /// What drills found wrong in the repository that no resync has
    /// repaired yet: (kind, digest), each once.
    pub fn drill_repairs(&self, repository: &str) -> Result<Vec<(Damage, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT f.kind, f.digest FROM drill_failures f JOIN repositories r ON r.id = f.repository_id
             WHERE r.name = ?1 AND f.repaired_at IS NULL ORDER BY f.kind, f.digest",
        )?;
        let rows = stmt.query_map([repository], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// After a full sync that repaired what drills found: marks it so.
    pub fn drill_failures_repaired(&self, repository: &str) -> Result<usize> {
        let n = self
            .conn()
            .prepare_cached(&format!(
                "UPDATE drill_failures SET repaired_at = {NOW}
                 WHERE repaired_at IS NULL AND repository_id = (SELECT id FROM repositories WHERE name = ?1)"
            ))?
            .execute([repository])?;
        Ok(n)
    }
}

impl Snapshot<'_> {
    pub fn drill_summary(&self) -> Result<DrillSummary> {
        let conn = self.conn();
        let last = conn
            .query_row(
                "SELECT started_at, finished_at, trigger, tags, manifests, blobs, bytes, failures, first_failure,
                        first_failing_digest
                 FROM drills ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(DrillRow {
                        started_at: r.get(0)?,
                        finished_at: r.get(1)?,
                        trigger: r.get(2)?,
                        tags: r.get(3)?,
                        manifests: r.get(4)?,
                        blobs: r.get(5)?,
                        bytes: r.get(6)?,
                        failures: r.get(7)?,
                        first_failure: r.get(8)?,
                        first_failing_digest: r.get(9)?,
                    })
                },
            )
            .optional()?;
        let last_success_at =
            conn.query_row("SELECT MAX(finished_at) FROM drills WHERE failures = 0", [], |r| r.get(0))?;
        // From the few failures not repaired to their repositories, never
        // the other way round (CROSS JOIN keeps that order in SQLite).
        let unrepaired = conn.query_row(
            "SELECT COUNT(*) FROM drill_failures f CROSS JOIN repositories r ON r.id = f.repository_id
             WHERE f.repaired_at IS NULL AND r.excluded = 0",
            [],
            |r| r.get(0),
        )?;
        Ok(DrillSummary { last, last_success_at, unrepaired })
    }
}

impl Store {
    /// Keeps the newest `keep` drills (and their failures not yet repaired).
    pub fn prune_drills(&self, keep: usize) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM drills WHERE id <= (SELECT MAX(id) FROM drills) - ?1
             AND NOT EXISTS (SELECT 1 FROM drill_failures f WHERE f.drill_id = drills.id AND f.repaired_at IS NULL)",
            [keep as i64],
        )?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Digest;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn samples_only_synced_tags_and_records_what_a_drill_found() {
        let store = Store::open_in_memory().unwrap();
        let d = Digest::sha256_of(b"m");
        store.add_repositories(&["a".into(), "b".into()]).unwrap();
        let job = store.claim_next().unwrap().unwrap();
        store.set_tag(&job.name, "v1", &d).unwrap();
        store.finish_job(&job, "").unwrap();
        let other = if job.name == "a" { "b" } else { "a" };
        store.set_tag(other, "v1", &d).unwrap(); // never synced: not drilled
        let sample = store.drill_sample(10).unwrap();
        assert_eq!(sample, vec![DrillTag { repository: job.name.clone(), tag: "v1".into(), digest: d.to_string() }]);
        assert_eq!(store.last_drill_age().unwrap(), None);

        let failure = DrillFailure {
            repository: job.name.clone(),
            tag: "v1".into(),
            kind: Damage::Blob,
            digest: "sha256:bad".into(),
            message: "did not match its digest".into(),
        };
        let record = DrillRecord {
            trigger: "command",
            seconds: 2,
            tags: 1,
            manifests: 1,
            blobs: 2,
            bytes: 10,
            failures: vec![failure.clone(), failure],
        };
        store.record_drill(&record).unwrap();
        let s = store.read(|s| s.drill_summary()).unwrap();
        let last = s.last.unwrap();
        assert_eq!((last.tags, last.failures, s.unrepaired), (1, 2, 2));
        assert_eq!(last.first_failing_digest.as_deref(), Some("sha256:bad"));
        assert!(last.first_failure.unwrap().starts_with(&format!("{}:v1: did not match", job.name)));
        assert_eq!(s.last_success_at, None);
        assert!(store.last_drill_age().unwrap().unwrap() >= 2);
        assert_eq!(store.drill_repairs(&job.name).unwrap(), vec![(Damage::Blob, "sha256:bad".to_string())]);
        assert_eq!(store.drill_failures_repaired(&job.name).unwrap(), 2);
        assert!(store.drill_repairs(&job.name).unwrap().is_empty());

        store.record_drill(&DrillRecord { trigger: "schedule", tags: 1, ..DrillRecord::default() }).unwrap();
        let s = store.read(|s| s.drill_summary()).unwrap();
        assert!(s.last_success_at.is_some() && s.unrepaired == 0);
        assert_eq!(store.prune_drills(1).unwrap(), 1);
        assert_eq!(store.read(|s| s.drill_summary()).unwrap().last.unwrap().trigger, "schedule");
    }
}
