//! The read side: what the dashboard, the status API, `/metrics` and
//! `georeg status` show, and the two admin actions of the repository list.

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::handles::{Log, Snapshot};
use super::shared::NOW;
use super::states::{SyncState, VerificationState};
use crate::error::Result;

/// A repository whose syncs are failing: failed, or being tried again
/// after a failure.
/// (Written so that the state's index narrows it to failed and started
/// rows: counting it does not read every repository.)
const FAILING: &str = "(sync_state IN ('failed', 'started') AND (sync_state = 'failed' OR failing_since IS NOT NULL))";

/// Repository counts by state; excluded repositories are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub total: i64,
    pub synced: i64,
    pub failed: i64,
    pub pending: i64,
    pub started: i64,
    pub verified: i64,
    pub verification_failed: i64,
    pub verification_pending: i64,
    /// Tags the secondary refuses (schema 1 where it does not accept it).
    #[serde(default)]
    pub unsupported_tags: i64,
}

/// The repository failing longest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongestFailing {
    pub name: String,
    pub since: String,
    pub seconds: i64,
    pub reason: Option<String>,
}

/// A repository row as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RepositoryRow {
    pub name: String,
    pub sync_state: SyncState,
    pub verification_state: VerificationState,
    pub last_synced_at: Option<String>,
    pub last_sync_failure: Option<String>,
    pub retry_count: i64,
    pub retry_at: Option<String>,
    pub verified_at: Option<String>,
    pub verification_failure: Option<String>,
    /// When it last started syncing (for failures: when the failed attempt began).
    pub sync_started_at: Option<String>,
    /// Tags georeg holds for it on the secondary.
    #[serde(default)]
    pub tag_count: i64,
    /// Deletions held back for it (replication.delete_delay_hours): the
    /// secondary still holds what the primary lost.
    #[serde(default)]
    pub held_deletions: i64,
}

/// The columns of a [`RepositoryRow`], for [`repository_row`].
pub(super) const ROW_COLUMNS: &str =
    "name, sync_state, verification_state, last_synced_at, last_sync_failure, retry_count, \
                           retry_at, verified_at, verification_failure, sync_started_at, \
                           (SELECT COUNT(*) FROM tags t WHERE t.repository_id = repositories.id), \
                           (SELECT COUNT(*) FROM deletions d WHERE d.repository_id = repositories.id \
                              AND d.state IN ('held', 'applying'))";

pub(super) fn repository_row(r: &rusqlite::Row) -> rusqlite::Result<RepositoryRow> {
    Ok(RepositoryRow {
        name: r.get(0)?,
        sync_state: r.get(1)?,
        verification_state: r.get(2)?,
        last_synced_at: r.get(3)?,
        last_sync_failure: r.get(4)?,
        retry_count: r.get(5)?,
        retry_at: r.get(6)?,
        verified_at: r.get(7)?,
        verification_failure: r.get(8)?,
        sync_started_at: r.get(9)?,
        tag_count: r.get(10)?,
        held_deletions: r.get(11)?,
    })
}

/// Tags the secondary refuses, of repositories not excluded: read from
/// the (usually empty) table of them outwards (`CROSS JOIN` keeps that
/// order), not by looking each repository up in it.
pub(super) const UNSUPPORTED: &str = "SELECT COUNT(*) FROM unsupported_tags u CROSS JOIN repositories r
     ON r.id = u.repository_id WHERE r.excluded = 0";

/// Seconds since the oldest event not applied yet was received, failing
/// repositories left out. A repository with events not applied is pending
/// or syncing (storing an event makes a synced or failed one pending, and
/// a sync that ends with events after its own goes back to pending), so
/// only those are looked at, from an index, not every repository.
pub(super) const LAG: &str = "SELECT CAST(strftime('%s', 'now') AS INTEGER)
         - CAST(strftime('%s', MIN(e.received_at)) AS INTEGER)
     FROM events e JOIN repositories r ON r.name = e.repository
     WHERE e.id > r.events_done_through AND r.excluded = 0 AND r.sync_state IN ('pending', 'started')";

impl Snapshot<'_> {
    /// Counted by (sync state, verification state) group, as the state
    /// file's triggers keep them (schema version 15), and summed here: the
    /// dashboard, the status API, `/metrics` and `georeg status` all ask,
    /// on every view, and read a few rows rather than every repository.
    pub fn counts(&self) -> Result<Counts> {
        let conn = self.conn();
        let mut c = Counts::default();
        let mut stmt = conn.prepare_cached(
            "SELECT sync_state, verification_state, n FROM repository_counts WHERE is_excluded = 0 AND n > 0",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (sync, verification, n): (SyncState, VerificationState, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            c.total += n;
            match sync {
                SyncState::Synced => c.synced += n,
                SyncState::Failed => c.failed += n,
                SyncState::Pending => c.pending += n,
                SyncState::Started => c.started += n,
            }
            match verification {
                VerificationState::Succeeded => c.verified += n,
                VerificationState::Failed => c.verification_failed += n,
                VerificationState::Pending | VerificationState::Started => c.verification_pending += n,
                VerificationState::Disabled => {}
            }
        }
        c.unsupported_tags = conn.query_row(UNSUPPORTED, [], |r| r.get(0))?;
        Ok(c)
    }

    /// The repository unsynced for longest, and since when.
    pub fn oldest_unsynced(&self) -> Result<Option<(String, String)>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, COALESCE(last_synced_at, created_at) AS since FROM repositories
                 WHERE excluded = 0 AND sync_state IN ('pending', 'started', 'failed') ORDER BY since, id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row)
    }

    /// The most recent sync failures.
    pub fn recent_failures(&self, limit: usize) -> Result<Vec<RepositoryRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM repositories WHERE excluded = 0 AND sync_state = 'failed'
             ORDER BY sync_started_at DESC, id LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], repository_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Seconds since the oldest event not yet applied to the secondary
    /// registry was received, leaving out repositories that are failing
    /// (counted apart, see [`Store::failing`]): 0 when every event is
    /// applied. A lag alert clears when replication catches up, and a real
    /// one does not hide behind one stuck repository.
    pub fn lag_seconds(&self) -> Result<i64> {
        let conn = self.conn();
        let lag: Option<i64> = conn.query_row(LAG, [], |r| r.get(0))?;
        Ok(lag.unwrap_or(0).max(0))
    }

    /// Repositories whose syncs are failing: how many, and the one failing
    /// longest (name, since, seconds, last reason). A repository tried
    /// again after a failure (one that overran its budget, say) is failing
    /// until a sync of it succeeds, not merely "syncing".
    pub fn failing(&self) -> Result<(i64, Option<LongestFailing>)> {
        let conn = self.conn();
        let count: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM repositories WHERE excluded = 0 AND {FAILING}"), [], |r| {
                r.get(0)
            })?;
        let oldest = conn
            .query_row(
                &format!(
                    "SELECT name, COALESCE(failing_since, sync_started_at, created_at) AS since,
                            CAST(strftime('%s', {NOW}) AS INTEGER)
                              - CAST(strftime('%s', COALESCE(failing_since, sync_started_at, created_at)) AS INTEGER),
                            last_sync_failure
                     FROM repositories WHERE excluded = 0 AND {FAILING} ORDER BY since, id LIMIT 1"
                ),
                [],
                |r| Ok(LongestFailing { name: r.get(0)?, since: r.get(1)?, seconds: r.get(2)?, reason: r.get(3)? }),
            )
            .optional()?;
        Ok((count, oldest))
    }

    /// Seconds since a time the state file recorded.
    pub fn age_seconds(&self, at: &str) -> Result<i64> {
        let n: Option<i64> = self.conn().query_row(
            &format!("SELECT CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', ?1) AS INTEGER)"),
            [at],
            |r| r.get(0),
        )?;
        Ok(n.unwrap_or(0).max(0))
    }

    /// When a sync last finished well, when the newest event arrived, and
    /// when a repository was last verified.
    pub fn last_activity(&self) -> Result<(Option<String>, Option<String>, Option<String>)> {
        let conn = self.conn();
        let synced = conn.query_row("SELECT MAX(last_synced_at) FROM repositories", [], |r| r.get(0))?;
        let event = conn.query_row("SELECT MAX(received_at) FROM events", [], |r| r.get(0))?;
        let verified = conn.query_row("SELECT MAX(verified_at) FROM repositories", [], |r| r.get(0))?;
        Ok((synced, event, verified))
    }

    /// Events stored in the last `seconds` seconds.
    pub fn events_since(&self, seconds: u64) -> Result<i64> {
        let n = self.conn().query_row(
            "SELECT COUNT(*) FROM events WHERE received_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
            [format!("-{seconds} seconds")],
            |r| r.get(0),
        )?;
        Ok(n)
    }

    pub fn event_count(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
    }
}

impl Log {
    /// Queues a full sync of the repository before other work, saying why
    /// (a write made straight on the secondary).
    pub fn request_reconcile(&self, name: &str, reason: &str) -> Result<()> {
        self.queue().request_reconcile(name, reason)
    }

    /// Queues a full sync of the repository (the dashboard's Resync).
    pub fn request_full_sync(&self, name: &str) -> Result<()> {
        self.queue().request_full_sync(name)
    }

    /// An operator's Apply on the dashboard: the held deletion is due now
    /// (the daemon applies it). False when no deletion `id` is held.
    pub fn apply_deletion_now(&self, id: i64) -> Result<bool> {
        Ok(!self.queue().apply_deletions_now(&super::deletions::Selector::Ids(vec![id]))?.is_empty())
    }

    /// An operator's Keep on the dashboard: the held deletion is cancelled,
    /// the secondary keeps what the primary lost. False when none is held.
    pub fn cancel_deletion(&self, id: i64) -> Result<bool> {
        Ok(!self.queue().cancel_deletions(&super::deletions::Selector::Ids(vec![id]))?.is_empty())
    }

    /// Queues a full sync of every failed repository; returns how many.
    pub fn resync_failed(&self) -> Result<usize> {
        let n = self.conn().execute(
            "UPDATE repositories SET full_sync_requested = 1, sync_state = 'pending', retry_at = NULL
             WHERE sync_state = 'failed' AND excluded = 0",
            [],
        )?;
        if n > 0 {
            self.work.ring();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn counts_and_failures() {
        let store = Store::open_in_memory().unwrap();
        let names: Vec<String> = (0..25).map(|i| format!("g/r{i:02}")).collect();
        store.add_repositories(&names).unwrap();
        for _ in 0..10 {
            let job = store.claim_next().unwrap().unwrap();
            store.finish_job(&job, "").unwrap();
        }
        let job = store.claim_next().unwrap().unwrap();
        store.fail_job(&job, "boom").unwrap();
        let c = store.read(|s| s.counts()).unwrap();
        assert_eq!((c.total, c.synced, c.failed, c.pending, c.started), (25, 10, 1, 14, 0));
        assert_eq!(c.verification_pending, 25);
        assert_eq!(store.read(|s| s.recent_failures(5)).unwrap()[0].last_sync_failure.as_deref(), Some("boom"));
        assert_eq!(store.read(|s| s.oldest_unsynced()).unwrap().unwrap().0, job.name);
        assert_eq!(store.log().resync_failed().unwrap(), 1);
        assert_eq!(store.read(|s| s.counts()).unwrap().failed, 0);
    }

    #[test]
    fn the_counts_the_triggers_keep_equal_a_count_of_every_row_after_any_change() {
        let store = Store::open_in_memory().unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("g/r{i:02}")).collect();
        store.add_repositories(&names).unwrap();
        let counted = |store: &Store| -> Vec<(i64, String, String, i64)> {
            let conn = store.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT * FROM (SELECT excluded, sync_state, verification_state, COUNT(*) FROM repositories
                                   GROUP BY 1, 2, 3
                                   EXCEPT SELECT is_excluded, sync_state, verification_state, n FROM repository_counts)
                     UNION ALL
                     SELECT * FROM (SELECT is_excluded, sync_state, verification_state, n FROM repository_counts
                                   WHERE n <> 0
                                   EXCEPT SELECT excluded, sync_state, verification_state, COUNT(*) FROM repositories
                                   GROUP BY 1, 2, 3)",
                )
                .unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
            rows.collect::<rusqlite::Result<_>>().unwrap()
        };
        let sync = ["pending", "started", "synced", "failed"];
        let verification = ["pending", "started", "succeeded", "failed", "disabled"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("g/r{:02}", x % 40);
            let sql = match (x >> 8) % 5 {
                0 => format!("UPDATE repositories SET sync_state = '{}' WHERE name = '{name}'", sync[(x >> 16) as usize % 4]),
                1 => format!(
                    "UPDATE repositories SET verification_state = '{}' WHERE name = '{name}'",
                    verification[(x >> 16) as usize % 5]
                ),
                2 => format!("UPDATE repositories SET excluded = 1 - excluded, retry_count = retry_count + 1 WHERE name = '{name}'"),
                3 => format!("DELETE FROM repositories WHERE name = '{name}'"),
                _ => format!("INSERT OR IGNORE INTO repositories (name, sync_state) VALUES ('{name}', '{}')", sync[(x >> 16) as usize % 4]),
            };
            store.conn().execute(&sql, []).unwrap();
            assert_eq!(counted(&store), vec![], "after step {step}: {sql}");
        }
        // The queue's own paths, too: claims, outcomes, a resync of everything failed.
        let job = store.queue().claim_next().unwrap().unwrap();
        store.queue().fail_job(&job, "boom").unwrap();
        store.log().resync_failed().unwrap();
        assert_eq!(counted(&store), vec![]);
    }
}
