//! Reconciliation's side of the state file: when each repository was last
//! found equal to the primary (`compared_at`), the syncs a difference
//! queues (with why), the passes and what they found, and what failover
//! readiness reads of it.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::handles::{Queue, Snapshot};
use super::shared::NOW;
use crate::error::Result;

/// One pass, to record when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassRecord {
    pub started_at: String,
    /// `fingerprints` or `direct`.
    pub mode: &'static str,
    pub repositories: u64,
    pub compared: u64,
    pub requests: u64,
    /// Differences found, by kind (`tags differ`, `new repository`...).
    pub differences: std::collections::BTreeMap<String, u64>,
    pub queued: u64,
}

/// The last pass, as the pages show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRow {
    pub started_at: String,
    pub finished_at: String,
    pub mode: String,
    pub seconds: i64,
    pub repositories: i64,
    pub compared: i64,
    pub requests: i64,
    pub differences: std::collections::BTreeMap<String, u64>,
    pub queued: i64,
    /// Seconds since it ended.
    pub age_seconds: i64,
}

/// Where comparison stands for failover readiness and the pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// `replication.reconcile_interval_seconds`.
    pub window_seconds: i64,
    /// Replicated repositories.
    pub repositories: i64,
    /// Never found equal to the primary.
    pub never: i64,
    /// Found equal, but longer ago than the window.
    pub outside_window: i64,
    /// The oldest comparison of a repository compared at all, and which.
    pub oldest_at: Option<String>,
    pub oldest: Option<String>,
    pub last_pass: Option<PassRow>,
    /// When the primary's list of repositories was last read, and how
    /// many seconds ago.
    pub listed_at: Option<String>,
    pub listed_seconds_ago: Option<i64>,
}

impl Comparison {
    /// Every replicated repository was found equal within the window.
    #[cfg(test)]
    pub fn complete(&self) -> bool {
        self.never == 0 && self.outside_window == 0
    }
}

impl Queue {
    /// Queues a full sync of the repository before other work, saying why
    /// (a reconciliation found it differs, a write made on the secondary).
    pub fn request_reconcile(&self, name: &str, reason: &str) -> Result<()> {
        self.ensure_repository(name)?;
        self.conn()
            .prepare_cached(
                "UPDATE repositories SET full_sync_requested = 1, sync_priority = 1, retry_at = NULL, sync_reason = ?2,
                 sync_state = CASE sync_state WHEN 'started' THEN 'started' ELSE 'pending' END
                 WHERE name = ?1 AND excluded = 0",
            )?
            .execute([name, reason])?;
        self.work.ring();
        Ok(())
    }

    /// Records that the repositories were found equal to the primary at
    /// the times given (a comparison never moves `compared_at` back).
    pub fn mark_compared(&self, compared: &[(String, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (name, at) in compared {
            tx.prepare_cached(
                "UPDATE repositories SET compared_at = ?2 WHERE name = ?1 AND (compared_at IS NULL OR compared_at < ?2)",
            )?
            .execute([name, at])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replicated repositories, least recently compared first (never
    /// compared ones first of all).
    pub fn least_recently_compared(&self, limit: usize) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM repositories WHERE excluded = 0 ORDER BY compared_at IS NOT NULL, compared_at, id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn record_pass(&self, p: &PassRecord) -> Result<()> {
        let differences = serde_json::to_string(&p.differences).unwrap_or_else(|_| "{}".into());
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO reconcile_passes (started_at, mode, repositories, compared, requests, differences, queued)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            p.started_at,
            p.mode,
            p.repositories as i64,
            p.compared as i64,
            p.requests as i64,
            differences,
            p.queued as i64
        ])?;
        // A day of passes is plenty of history.
        conn.prepare_cached(
            "DELETE FROM reconcile_passes WHERE finished_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')
             AND id < (SELECT MAX(id) FROM reconcile_passes)",
        )?
        .execute([])?;
        Ok(())
    }

    /// Records that the primary's list of repositories was just read
    /// (`how`: `catalog`, `fingerprints`, `direct`).
    pub fn record_listing(&self, how: &str) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO primary_listing (id, listed_at, how) VALUES (1, {NOW}, ?1)
                 ON CONFLICT (id) DO UPDATE SET listed_at = excluded.listed_at, how = excluded.how"
            ))?
            .execute([how])?;
        Ok(())
    }

    /// The time `seconds` ago, as the state file writes it.
    pub fn ago(&self, seconds: u64) -> Result<String> {
        Ok(self.conn().query_row(
            "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)",
            [format!("-{seconds} seconds")],
            |r| r.get(0),
        )?)
    }

    /// The current time as the state file writes it.
    pub fn now(&self) -> Result<String> {
        Ok(self.conn().query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))?)
    }
}

/// What a reconciliation pass needs to know of the repositories.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Replicated repositories (selective sync includes them).
    pub replicated: std::collections::BTreeSet<String>,
    /// Left out by selective sync.
    pub excluded: std::collections::BTreeSet<String>,
    /// Queued or syncing now: their sync compares them.
    pub busy: std::collections::BTreeSet<String>,
}

impl Snapshot<'_> {
    pub fn known_repositories(&self) -> Result<Known> {
        let conn = self.conn();
        let mut known = Known::default();
        let mut stmt =
            conn.prepare_cached("SELECT name, excluded, sync_state IN ('pending', 'started') FROM repositories")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (name, excluded, busy): (String, bool, bool) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if excluded {
                known.excluded.insert(name);
            } else {
                if busy {
                    known.busy.insert(name.clone());
                }
                known.replicated.insert(name);
            }
        }
        Ok(known)
    }

    /// Where comparison stands, for a window of `window_seconds`.
    pub fn comparison(&self, window_seconds: u64) -> Result<Comparison> {
        let conn = self.conn();
        let modifier = format!("-{window_seconds} seconds");
        // The total as the triggers keep it; the others from the index on
        // (excluded, compared_at), reading only the rows they count.
        let (repositories, never, outside_window) = conn.query_row(
            "SELECT (SELECT COALESCE(SUM(n), 0) FROM repository_counts WHERE is_excluded = 0),
                    (SELECT COUNT(*) FROM repositories WHERE excluded = 0 AND compared_at IS NULL),
                    (SELECT COUNT(*) FROM repositories
                     WHERE excluded = 0 AND compared_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1))",
            [&modifier],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let oldest: Option<(String, String)> = conn
            .query_row(
                "SELECT name, compared_at FROM repositories WHERE excluded = 0 AND compared_at IS NOT NULL
                 ORDER BY compared_at, id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let last_pass = conn
            .query_row(
                &format!(
                    "SELECT started_at, finished_at, mode,
                            CAST(strftime('%s', finished_at) AS INTEGER) - CAST(strftime('%s', started_at) AS INTEGER),
                            repositories, compared, requests, differences, queued,
                            CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', finished_at) AS INTEGER)
                     FROM reconcile_passes ORDER BY id DESC LIMIT 1"
                ),
                [],
                |r| {
                    Ok(PassRow {
                        started_at: r.get(0)?,
                        finished_at: r.get(1)?,
                        mode: r.get(2)?,
                        seconds: r.get(3)?,
                        repositories: r.get(4)?,
                        compared: r.get(5)?,
                        requests: r.get(6)?,
                        differences: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                        queued: r.get(8)?,
                        age_seconds: r.get(9)?,
                    })
                },
            )
            .optional()?;
        let (oldest, oldest_at) = oldest.unzip();
        let listed: Option<(String, i64)> = conn
            .query_row(
                &format!(
                    "SELECT listed_at, CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', listed_at) AS INTEGER)
                     FROM primary_listing WHERE id = 1"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (listed_at, listed_seconds_ago) = listed.unzip();
        Ok(Comparison {
            window_seconds: window_seconds as i64,
            repositories,
            never,
            outside_window,
            oldest_at,
            oldest,
            last_pass,
            listed_at,
            listed_seconds_ago,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn a_repository_counts_as_compared_only_within_the_window() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into(), "b".into()]).unwrap();
        let c = store.read(|s| s.comparison(60)).unwrap();
        assert_eq!((c.repositories, c.never, c.complete()), (2, 2, false));
        let now = store.now().unwrap();
        store.mark_compared(&[("a".into(), now.clone()), ("b".into(), "2000-01-01T00:00:00Z".into())]).unwrap();
        let c = store.read(|s| s.comparison(60)).unwrap();
        assert_eq!((c.never, c.outside_window, c.oldest.as_deref()), (0, 1, Some("b")));
        // A comparison never moves compared_at back.
        store.mark_compared(&[("a".into(), "2000-01-01T00:00:00Z".into()), ("b".into(), now)]).unwrap();
        assert!(store.read(|s| s.comparison(60)).unwrap().complete());
        assert_eq!(store.least_recently_compared(1).unwrap().len(), 1);
    }

    #[test]
    fn a_reconcile_request_carries_its_reason_into_the_job_and_a_full_sync_counts_as_compared() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into()]).unwrap();
        let job = store.claim_next().unwrap().unwrap();
        store.finish_job(&job, "").unwrap();
        assert!(store.read(|s| s.comparison(60)).unwrap().complete(), "a full sync compared every tag");
        store.request_reconcile("a", "reconcile: tags differ").unwrap();
        let job = store.claim_next().unwrap().unwrap();
        assert_eq!((job.full, job.reason.as_deref()), (true, Some("reconcile: tags differ")));
        store.finish_job(&job, "").unwrap();
        store.request_full_sync("a").unwrap();
        assert_eq!(store.claim_next().unwrap().unwrap().reason, None, "the reason went with its sync");
    }
}
