//! The verification queue: which synced repositories to compare with the
//! primary next, and what the comparison found.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::handles::Queue;
use super::shared::NOW;
use crate::error::{Error, Result};
use crate::registry::token::random_hex;

/// A repository claimed for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub id: i64,
    pub name: String,
    /// Also read back every blob (`georeg verify --blobs`).
    pub blobs: bool,
    /// This claim's id: recording the outcome checks it is still ours.
    pub claim: String,
}

/// The repository whose verification is most due (`?1`: the
/// reverification interval as a modifier, `-604800 seconds`). One
/// candidate per kind, each the first entry of an index in the order
/// wanted (schema version 10), so that a claim reads a few index entries
/// instead of sorting the whole table: idle workers ask every few seconds
/// and whenever the work bell rings, holding the state file meanwhile.
pub(super) const NEXT_VERIFICATION: &str = "SELECT id, name, verification_requested FROM (
       SELECT * FROM (SELECT 0 AS kind, id, name, verification_requested, verified_at FROM repositories
         WHERE verification_requested > 0 AND sync_state <> 'started' AND verification_state <> 'started'
         ORDER BY verification_state <> 'pending', verified_at, id LIMIT 1)
       UNION ALL
       SELECT * FROM (SELECT 1, id, name, verification_requested, verified_at FROM repositories
         WHERE verification_state = 'pending' AND sync_state = 'synced' AND excluded = 0
           AND (verification_retry_at IS NULL OR verification_retry_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
         ORDER BY verified_at, id LIMIT 1)
       UNION ALL
       SELECT * FROM (SELECT 2, id, name, verification_requested, verified_at FROM repositories
         WHERE verification_state = 'succeeded' AND sync_state = 'synced' AND excluded = 0
           AND verified_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)
         ORDER BY verified_at, id LIMIT 1)
       UNION ALL
       -- could not reach a registry: try again when its retry is due
       SELECT * FROM (SELECT 2, id, name, verification_requested, verified_at
         FROM repositories INDEXED BY repositories_verification_retry
         WHERE verification_retry_at IS NOT NULL AND verification_retry_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
           AND sync_state = 'synced'
           AND excluded = 0 AND verification_state <> 'started'
         ORDER BY verification_retry_at LIMIT 1)
       UNION ALL
       -- could not run (a registry was down): try again later
       SELECT * FROM (SELECT 2, id, name, verification_requested, verified_at FROM repositories
         WHERE verification_state = 'failed' AND sync_state = 'synced' AND excluded = 0
           AND verification_started_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-300 seconds')
         ORDER BY verified_at, id LIMIT 1))
     ORDER BY kind, verified_at, id LIMIT 1";

impl Queue {
    /// Claims the repository whose verification is most due: those an
    /// operator asked for first (`georeg verify` through the daemon), then
    /// pending ones, then those verified longest ago, once
    /// `reverify_after_seconds` have passed. Only synced repositories that
    /// no worker is syncing are verified, so a check never races a copy
    /// (one an operator asked for is verified whatever its sync state).
    pub fn claim_next_verification(&self, reverify_after_seconds: u64) -> Result<Option<Verification>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(i64, String, i64)> = tx
            .prepare_cached(NEXT_VERIFICATION)?
            .query_row([format!("-{reverify_after_seconds} seconds")], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((id, name, requested)) = found else { return Ok(None) };
        let v = claim(&tx, id, name, requested == 2)?;
        tx.commit()?;
        Ok(Some(v))
    }

    /// Claims one repository for verification in the foreground (`georeg
    /// verify`, holding the state file's lock).
    pub fn claim_verification(&self, name: &str, blobs: bool) -> Result<Verification> {
        let id = self.ensure_repository(name)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v = claim(&tx, id, name.to_string(), blobs)?;
        tx.commit()?;
        Ok(v)
    }

    /// Asks the daemon holding the state file to verify the repository
    /// next (`georeg verify` while `georeg serve` runs).
    pub fn request_verification(&self, name: &str, blobs: bool) -> Result<()> {
        self.ensure_repository(name)?;
        self.conn()
            .prepare_cached(
                "UPDATE repositories SET verification_requested = MAX(verification_requested, ?2),
                 verification_state = CASE verification_state WHEN 'started' THEN 'started' ELSE 'pending' END
                 WHERE name = ?1",
            )?
            .execute(params![name, if blobs { 2 } else { 1 }])?;
        self.work.ring();
        Ok(())
    }

    pub fn verification_succeeded(&self, v: &Verification, checksum: &str) -> Result<()> {
        let changed = self
            .conn()
            .prepare_cached(&format!(
                "UPDATE repositories SET verification_state = 'succeeded', verified_at = {NOW}, compared_at = {NOW},
                 verification_retry_at = NULL,
                 verification_checksum = ?2, verification_failure = NULL, verification_retry_count = 0,
                 verification_requested = 0, verification_claim_id = NULL
                 WHERE id = ?1 AND verification_claim_id = ?3"
            ))?
            .execute(params![v.id, checksum, v.claim])?;
        claimed(v, changed)
    }

    /// Records a mismatch (or an error while verifying) and queues a full
    /// sync, whose success queues the next verification.
    pub fn verification_failed(&self, v: &Verification, failure: &str, resync: bool) -> Result<()> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE repositories SET verification_state = 'failed', verification_failure = ?2,
                 verification_retry_at = NULL,
                 verification_retry_count = verification_retry_count + 1, verification_requested = 0,
                 verification_claim_id = NULL,
                 full_sync_requested = MAX(full_sync_requested, ?3),
                 sync_state = CASE WHEN ?3 AND sync_state IN ('synced', 'failed') THEN 'pending' ELSE sync_state END
                 WHERE id = ?1 AND verification_claim_id = ?4",
            )?
            .execute(params![v.id, failure, resync, v.claim])?;
        if resync {
            self.work.ring();
        }
        claimed(v, changed)
    }

    /// A verification that could not reach a registry proved nothing: the
    /// state it replaced stands (a pending one says why it is still
    /// pending), and it is tried again in `retry_seconds`.
    pub fn verification_deferred(&self, v: &Verification, why: &str, retry_seconds: u64) -> Result<()> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE repositories SET verification_state = COALESCE(NULLIF(verification_before, 'started'), 'pending'),
                 verification_failure = CASE WHEN COALESCE(verification_before, 'pending') = 'failed'
                                             THEN verification_failure ELSE ?2 END,
                 verification_retry_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3),
                 verification_requested = 0, verification_claim_id = NULL
                 WHERE id = ?1 AND verification_claim_id = ?4",
            )?
            .execute(params![v.id, why, format!("+{retry_seconds} seconds"), v.claim])?;
        claimed(v, changed)
    }

    /// Hands a verification back untouched (shutdown).
    pub fn release_verification(&self, v: &Verification) -> Result<()> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE repositories SET verification_state = 'pending', verification_claim_id = NULL
                 WHERE id = ?1 AND verification_claim_id = ?2",
            )?
            .execute(params![v.id, v.claim])?;
        claimed(v, changed)
    }
}

fn claim(tx: &rusqlite::Transaction, id: i64, name: String, blobs: bool) -> Result<Verification> {
    let claim = random_hex(8);
    tx.prepare_cached(&format!(
        "UPDATE repositories SET verification_before = verification_state, verification_state = 'started',
         verification_started_at = {NOW},
         verification_claim_id = ?2 WHERE id = ?1"
    ))?
    .execute(params![id, claim])?;
    Ok(Verification { id, name, blobs, claim })
}

fn claimed(v: &Verification, changed: usize) -> Result<()> {
    if changed == 0 {
        return Err(Error::ClaimLost { repository: v.name.clone() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    /// The claim's query before schema version 10, which sorted the whole
    /// table: the oracle for the one that reads indexes.
    const SORTING_THE_TABLE: &str = "SELECT id FROM repositories
         WHERE sync_state <> 'started' AND verification_state <> 'started'
           AND (verification_requested > 0
                OR (sync_state = 'synced' AND excluded = 0
                    AND (verification_state = 'pending'
                         OR (verification_state = 'succeeded'
                             AND verified_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1))
                         OR (verification_state = 'failed'
                             AND verification_started_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-300 seconds')))))
         ORDER BY verification_requested = 0, verification_state <> 'pending', verified_at, id
         LIMIT 1";

    #[test]
    fn the_claim_reads_indexes_and_picks_what_sorting_the_table_picked() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for i in 0..400 {
            let sync = ["pending", "started", "synced", "synced", "synced", "failed"][next(6)];
            let verification = ["pending", "started", "succeeded", "succeeded", "failed", "disabled"][next(6)];
            // Whole hours ago, many alike (ties go by id), or never.
            let verified = (next(4) > 0).then(|| format!("-{} seconds", next(20) * 3600));
            let started = ["-10 seconds", "-100000 seconds"][next(2)];
            conn.execute(
                "INSERT INTO repositories (name, sync_state, verification_state, excluded, verification_requested,
                     verified_at, verification_started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?6),
                     strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?7))",
                params![
                    format!("r{i}"),
                    sync,
                    verification,
                    next(10) == 0,
                    [0, 0, 0, 0, 0, 0, 0, 0, 1, 2][next(10)],
                    verified,
                    started
                ],
            )
            .unwrap();
        }
        for interval in ["-0 seconds", "-5000 seconds", "-604800 seconds"] {
            // Claim after claim, as workers do, until none is due.
            conn.execute_batch("SAVEPOINT claims").unwrap();
            for _ in 0..=400 {
                let want: Option<i64> = conn.query_row(SORTING_THE_TABLE, [interval], |r| r.get(0)).optional().unwrap();
                let got: Option<i64> = conn.query_row(NEXT_VERIFICATION, [interval], |r| r.get(0)).optional().unwrap();
                assert_eq!(got, want, "interval {interval}");
                let Some(id) = got else { break };
                conn.execute("UPDATE repositories SET verification_state = 'started' WHERE id = ?1", [id]).unwrap();
            }
            conn.execute_batch("ROLLBACK TO claims; RELEASE claims").unwrap();
        }
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {NEXT_VERIFICATION}"))
            .unwrap()
            .query_map(["-1 seconds"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!plan.iter().any(|step| step.starts_with("SCAN repositories")), "a full scan: {plan:?}");
    }

    #[test]
    fn only_synced_repositories_are_verified_and_failures_resync() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into(), "b".into()]).unwrap();
        assert!(store.claim_next_verification(3600).unwrap().is_none(), "nothing synced yet");
        let job = store.claim_next().unwrap().unwrap();
        store.finish_job(&job, "").unwrap();
        let v = store.claim_next_verification(3600).unwrap().unwrap();
        assert_eq!(v.name, job.name);
        // A sync claim skips a repository under verification.
        store.request_full_sync(&job.name).unwrap();
        let other = store.claim_next().unwrap().unwrap();
        assert_ne!(other.name, job.name);
        store.verification_failed(&v, "checksum mismatch", true).unwrap();
        let r = store.repository(&job.name).unwrap().unwrap();
        assert_eq!((r.sync_state, r.full_sync_requested), (SyncState::Pending, true));
    }

    #[test]
    fn success_is_reverified_after_the_interval() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into()]).unwrap();
        let job = store.claim_next().unwrap().unwrap();
        store.finish_job(&job, "").unwrap();
        let v = store.claim_next_verification(3600).unwrap().unwrap();
        store.verification_succeeded(&v, "sha256:x").unwrap();
        assert!(store.claim_next_verification(3600).unwrap().is_none());
        // With a zero interval it is due again at once.
        assert!(store.claim_next_verification(0).unwrap().is_some());
    }

    #[test]
    fn selection_excludes_and_readmits() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["team/a".into(), "other/b".into()]).unwrap();
        assert_eq!(store.apply_selection(|n| n.starts_with("team/")).unwrap(), 1);
        assert_eq!(store.claim_next().unwrap().unwrap().name, "team/a");
        assert!(store.claim_next().unwrap().is_none(), "other/b is excluded");
        assert_eq!(store.apply_selection(|_| true).unwrap(), 0);
        assert_eq!(store.claim_next().unwrap().unwrap().name, "other/b");
    }

    #[test]
    fn a_verification_that_could_not_reach_a_registry_leaves_the_previous_state_and_comes_back() {
        let store = Store::open_in_memory().unwrap();
        store.add_repositories(&["a".into()]).unwrap();
        let job = store.claim_next().unwrap().unwrap();
        store.finish_job(&job, "").unwrap();
        let state = |store: &Store| -> (String, Option<String>) {
            store
                .conn()
                .query_row("SELECT verification_state, verification_failure FROM repositories", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
        };
        // Never verified: still pending, saying why, and not claimed again at once.
        let v = store.claim_next_verification(3600).unwrap().unwrap();
        store.verification_deferred(&v, "could not verify: primary down", 300).unwrap();
        assert_eq!(state(&store), ("pending".into(), Some("could not verify: primary down".into())));
        assert!(store.claim_next_verification(3600).unwrap().is_none(), "retried in 300 s, not now");
        // Verified before: it stays verified (no failure to report).
        store.conn().execute("UPDATE repositories SET verification_retry_at = NULL", []).unwrap();
        let v = store.claim_next_verification(3600).unwrap().unwrap();
        store.verification_succeeded(&v, "sha256:x").unwrap();
        let v = store.claim_verification("a", false).unwrap();
        store.verification_deferred(&v, "could not verify: primary down", 0).unwrap();
        assert_eq!(state(&store).0, "succeeded");
        assert!(store.claim_next_verification(3600).unwrap().is_some(), "its retry is due");
    }
}
