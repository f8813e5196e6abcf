//! The read side: what the dashboard, the status API, `/metrics` and
//! `georeg status` show, and the two admin actions of the repository list.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Store, SyncState, VerificationState, NOW};
use crate::error::Result;

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
}

/// Filter of the repository list: by state (a sync or verification state)
/// and by a substring of the name.
#[derive(Debug, Clone, Default)]
pub struct RepositoryFilter {
    pub state: Option<String>,
    pub name: Option<String>,
}

const ROW_COLUMNS: &str = "name, sync_state, verification_state, last_synced_at, last_sync_failure, retry_count, \
                           retry_at, verified_at, verification_failure, sync_started_at, \
                           (SELECT COUNT(*) FROM tags t WHERE t.repository_id = repositories.id)";

fn repository_row(r: &rusqlite::Row) -> rusqlite::Result<RepositoryRow> {
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
    })
}

impl RepositoryFilter {
    /// The WHERE clause and its two parameters (state, name pattern).
    fn clause(&self) -> (&'static str, String, String) {
        let state = self.state.clone().unwrap_or_default();
        let name = format!("%{}%", self.name.clone().unwrap_or_default().replace(['%', '_'], ""));
        (
            "excluded = 0 AND (?1 = '' OR sync_state = ?1 OR ('verification_' || verification_state) = ?1)
             AND name LIKE ?2",
            state,
            name,
        )
    }
}

impl Store {
    pub fn counts(&self) -> Result<Counts> {
        let conn = self.conn();
        let counts = conn.query_row(
            "SELECT COUNT(*),
                    COALESCE(SUM(sync_state = 'synced'), 0), COALESCE(SUM(sync_state = 'failed'), 0),
                    COALESCE(SUM(sync_state = 'pending'), 0), COALESCE(SUM(sync_state = 'started'), 0),
                    COALESCE(SUM(verification_state = 'succeeded'), 0), COALESCE(SUM(verification_state = 'failed'), 0),
                    COALESCE(SUM(verification_state IN ('pending', 'started')), 0),
                    (SELECT COUNT(*) FROM unsupported_tags u JOIN repositories r ON r.id = u.repository_id
                     WHERE r.excluded = 0)
             FROM repositories WHERE excluded = 0",
            [],
            |r| {
                Ok(Counts {
                    total: r.get(0)?,
                    synced: r.get(1)?,
                    failed: r.get(2)?,
                    pending: r.get(3)?,
                    started: r.get(4)?,
                    verified: r.get(5)?,
                    verification_failed: r.get(6)?,
                    verification_pending: r.get(7)?,
                    unsupported_tags: r.get(8)?,
                })
            },
        )?;
        Ok(counts)
    }

    /// The repository unsynced for longest, and since when.
    pub fn oldest_unsynced(&self) -> Result<Option<(String, String)>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, COALESCE(last_synced_at, created_at) AS since FROM repositories
                 WHERE excluded = 0 AND sync_state <> 'synced' ORDER BY since, id LIMIT 1",
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

    /// One page of the repository list, by name.
    pub fn repository_page(
        &self,
        filter: &RepositoryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RepositoryRow>> {
        let (clause, state, name) = filter.clause();
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM repositories WHERE {clause}
             ORDER BY sync_state <> 'failed', verification_state <> 'failed', name LIMIT ?3 OFFSET ?4"
        ))?;
        let rows = stmt.query_map(params![state, name, limit as i64, offset as i64], repository_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn repository_count(&self, filter: &RepositoryFilter) -> Result<i64> {
        let (clause, state, name) = filter.clause();
        let conn = self.conn();
        let n = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM repositories WHERE {clause}"))?
            .query_row(params![state, name], |r| r.get(0))?;
        Ok(n)
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

    /// Seconds since the oldest event not yet applied to the secondary
    /// registry was received, leaving out repositories that are failing
    /// (counted apart, see [`Store::failing`]): 0 when every event is
    /// applied. A lag alert clears when replication catches up, and a real
    /// one does not hide behind one stuck repository.
    pub fn lag_seconds(&self) -> Result<i64> {
        let conn = self.conn();
        let lag: Option<i64> = conn.query_row(
            &format!(
                "SELECT CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', MIN(e.received_at)) AS INTEGER)
                 FROM events e JOIN repositories r ON r.name = e.repository
                 WHERE e.id > r.events_done_through AND r.excluded = 0 AND r.sync_state <> 'failed'"
            ),
            [],
            |r| r.get(0),
        )?;
        Ok(lag.unwrap_or(0).max(0))
    }

    /// Repositories whose syncs are failing: how many, and the one failing
    /// longest (name, since, seconds, last reason).
    pub fn failing(&self) -> Result<(i64, Option<LongestFailing>)> {
        let conn = self.conn();
        let count: i64 = conn.query_row(
            "SELECT COUNT(*) FROM repositories WHERE excluded = 0 AND sync_state = 'failed'",
            [],
            |r| r.get(0),
        )?;
        let oldest = conn
            .query_row(
                &format!(
                    "SELECT name, COALESCE(failing_since, sync_started_at, created_at) AS since,
                            CAST(strftime('%s', {NOW}) AS INTEGER)
                              - CAST(strftime('%s', COALESCE(failing_since, sync_started_at, created_at)) AS INTEGER),
                            last_sync_failure
                     FROM repositories WHERE excluded = 0 AND sync_state = 'failed' ORDER BY since, id LIMIT 1"
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

    /// Is the state file readable right now? (readiness)
    pub fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_filters_and_pages() {
        let store = Store::open_in_memory().unwrap();
        let names: Vec<String> = (0..25).map(|i| format!("g/r{i:02}")).collect();
        store.add_repositories(&names).unwrap();
        for _ in 0..10 {
            let job = store.claim_next().unwrap().unwrap();
            store.finish_job(&job, "").unwrap();
        }
        let job = store.claim_next().unwrap().unwrap();
        store.fail_job(&job, "boom").unwrap();
        let c = store.counts().unwrap();
        assert_eq!((c.total, c.synced, c.failed, c.pending, c.started), (25, 10, 1, 14, 0));
        assert_eq!(c.verification_pending, 25);
        assert_eq!(store.recent_failures(5).unwrap()[0].last_sync_failure.as_deref(), Some("boom"));
        let failed = RepositoryFilter { state: Some("failed".into()), name: None };
        assert_eq!(store.repository_count(&failed).unwrap(), 1);
        let by_name = RepositoryFilter { state: None, name: Some("r1".into()) };
        assert_eq!(store.repository_count(&by_name).unwrap(), 10);
        let page = store.repository_page(&RepositoryFilter::default(), 20, 10).unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(page[0].name, "g/r20");
        let vfilter = RepositoryFilter { state: Some("verification_pending".into()), name: None };
        assert_eq!(store.repository_count(&vfilter).unwrap(), 25);
        assert_eq!(store.oldest_unsynced().unwrap().unwrap().0, job.name);
        assert_eq!(store.resync_failed().unwrap(), 1);
        assert_eq!(store.counts().unwrap().failed, 0);
    }
}
