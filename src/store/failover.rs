//! The state file's side of failover readiness (`georeg failover-check`):
//! what the secondary does not hold yet, or has not proved it holds, if
//! the primary vanished now.

use rusqlite::{OptionalExtension, ToSql};

use super::handles::Snapshot;
use super::shared::NOW;
use crate::error::Result;

/// A count and one repository it counts, for a finding's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted {
    pub count: i64,
    pub example: Option<String>,
    /// What the state file says about the example (a failure, a time).
    pub detail: Option<String>,
}

/// What the secondary has not applied or proved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Events received but not applied, failing repositories included.
    pub unapplied_events: Counted,
    /// Age of the oldest of them (0: every change is applied).
    pub oldest_unapplied_seconds: i64,
    /// Repositories queued or syncing now (new, resync, new events).
    pub not_synced: Counted,
    /// Repositories never verified, or waiting for verification since
    /// their last full sync.
    pub unverified: Counted,
    /// Repositories whose last verification failed.
    pub verification_failed: Counted,
    /// Verified repositories whose verification is older than the
    /// reverification interval.
    pub verification_stale: Counted,
    /// Repositories selective sync leaves out.
    pub excluded: i64,
    /// The highest lag sampled over the last hour (the chart's samples).
    pub recent_lag_seconds: i64,
}

/// The sync states of repositories that may have events not applied.
const MAY_LAG: &str = "('pending', 'started', 'failed')";

impl Snapshot<'_> {
    /// Reads everything failover readiness needs; `reverify_after` is
    /// `replication.reverification_interval_seconds`. (`+excluded` keeps
    /// SQLite from reading every repository through the index that starts
    /// with `excluded`, when the verification state's index finds the few
    /// rows asked for.)
    pub fn readiness(&self, reverify_after: u64) -> Result<Readiness> {
        let conn = self.conn();
        let counted = |sql: &str, args: &[&dyn ToSql]| -> rusqlite::Result<Counted> {
            let count = conn.query_row(&format!("SELECT COUNT(*) FROM ({sql})"), args, |r| r.get(0))?;
            let first = conn.query_row(&format!("{sql} LIMIT 1"), args, |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            let (example, detail) = first.unzip();
            Ok(Counted { count, example, detail: detail.flatten() })
        };
        // Only a pending, syncing or failed repository has events not
        // applied (storing one makes its repository pending; a sync that
        // ends with events after its own goes back to pending): read from
        // the state's index, not by probing the log for every repository.
        let unapplied_events = counted(
            &format!(
                "SELECT e.repository, e.received_at FROM events e JOIN repositories r ON r.name = e.repository
                 WHERE e.id > r.events_done_through AND r.excluded = 0 AND r.sync_state IN {MAY_LAG} ORDER BY e.id"
            ),
            &[],
        )?;
        let oldest_unapplied_seconds: Option<i64> = conn.query_row(
            &format!(
                "SELECT CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', MIN(e.received_at)) AS INTEGER)
                 FROM events e JOIN repositories r ON r.name = e.repository
                 WHERE e.id > r.events_done_through AND r.excluded = 0 AND r.sync_state IN {MAY_LAG}"
            ),
            [],
            |r| r.get(0),
        )?;
        let not_synced = counted(
            "SELECT name, COALESCE(last_synced_at, 'never synced') FROM repositories
             WHERE excluded = 0 AND sync_state IN ('pending', 'started')
             ORDER BY last_synced_at IS NOT NULL, last_synced_at, id",
            &[],
        )?;
        let unverified = counted(
            "SELECT name, COALESCE('last verified ' || verified_at, 'never verified') FROM repositories
             WHERE +excluded = 0 AND verification_state IN ('pending', 'started')
             ORDER BY verified_at IS NOT NULL, verified_at, id",
            &[],
        )?;
        let verification_failed = counted(
            "SELECT name, verification_failure FROM repositories
             WHERE +excluded = 0 AND verification_state = 'failed'
             ORDER BY verification_started_at, id",
            &[],
        )?;
        let verification_stale = counted(
            "SELECT name, 'last verified ' || verified_at FROM repositories
             WHERE +excluded = 0 AND verification_state = 'succeeded'
               AND verified_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)
             ORDER BY verified_at, id",
            &[&format!("-{reverify_after} seconds")],
        )?;
        let excluded = conn.query_row("SELECT COUNT(*) FROM repositories WHERE excluded = 1", [], |r| r.get(0))?;
        let recent_lag_seconds: Option<i64> = conn.query_row(
            "SELECT MAX(lag_seconds) FROM samples WHERE at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 hour')",
            [],
            |r| r.get(0),
        )?;
        Ok(Readiness {
            unapplied_events,
            oldest_unapplied_seconds: oldest_unapplied_seconds.unwrap_or(0).max(0),
            not_synced,
            unverified,
            verification_failed,
            verification_stale,
            excluded,
            recent_lag_seconds: recent_lag_seconds.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn counts_what_is_not_synced_or_not_proved() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into(), "b".into()]).unwrap();
        let r = store.read(|s| s.readiness(3600)).unwrap();
        assert_eq!((r.not_synced.count, r.unverified.count), (2, 2));
        assert_eq!(r.not_synced.detail.as_deref(), Some("never synced"));
        for _ in 0..2 {
            let job = store.claim_next().unwrap().unwrap();
            store.finish_job(&job, "").unwrap();
        }
        let r = store.read(|s| s.readiness(3600)).unwrap();
        assert_eq!((r.not_synced.count, r.unverified.count, r.unapplied_events.count), (0, 2, 0));
        while let Some(v) = store.claim_next_verification(3600).unwrap() {
            store.verification_succeeded(&v, "sha256:x").unwrap();
        }
        let r = store.read(|s| s.readiness(3600)).unwrap();
        assert_eq!((r.unverified.count, r.verification_stale.count, r.oldest_unapplied_seconds), (0, 0, 0));
        assert_eq!(store.read(|s| s.readiness(0)).unwrap().verification_stale.count, 0, "verified this very second");
    }
}
