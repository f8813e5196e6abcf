//! Repositories and their sync queue; the tags and blobs georeg placed on
//! the secondary.
//!
//! A repository is claimed by one worker at a time: claiming flips it to
//! `started` inside a transaction, so two workers (or the daemon and a
//! foreground `georeg sync`) can never sync the same repository at once. An
//! event or resync request that arrives while it is `started` leaves a mark
//! (a newer event id, or `full_sync_requested`) that sends it back to
//! `pending` when the running sync finishes: nothing that arrives mid-sync
//! is lost (GitLab issue 32899).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::handles::Queue;
use super::shared::{jitter, retry_delay, NOW};
use super::states::{SyncState, VerificationState};
use crate::error::{Error, Result};
use crate::registry::token::random_hex;

/// A repository's row, as the operator sees it (tests read it whole).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub sync_state: SyncState,
    pub retry_count: u32,
    pub retry_at: Option<String>,
    pub last_synced_at: Option<String>,
    pub last_sync_failure: Option<String>,
    pub full_sync_requested: bool,
    pub events_done_through: i64,
}

/// A repository's sync and verification, as a follower sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub sync_state: SyncState,
    /// A full sync is still asked for (not yet claimed).
    pub sync_requested: bool,
    pub last_sync_failure: Option<String>,
    pub last_sync_report: Option<String>,
    pub verification_state: VerificationState,
    /// A verification is still asked for (not yet finished).
    pub verification_requested: bool,
    pub verification_failure: Option<String>,
    pub verification_checksum: Option<String>,
    /// The last verification could not reach a registry: it proved nothing
    /// and waits for its retry (the state before it stands).
    pub verification_deferred: bool,
}

impl Progress {
    /// The sync asked for is over: `Ok(report)` or `Err(failure)`. Asking
    /// puts the row back to pending, so a failed row has failed since; a
    /// failed full sync stays asked for (its retry is a full sync too), so
    /// the request does not tell whether it ran.
    pub fn sync_outcome(&self) -> Option<std::result::Result<String, String>> {
        match (self.sync_requested, self.sync_state) {
            (false, SyncState::Synced) => Some(Ok(self.last_sync_report.clone().unwrap_or_default())),
            (_, SyncState::Failed) => Some(Err(self.last_sync_failure.clone().unwrap_or_default())),
            _ => None,
        }
    }

    /// The verification asked for is over: `Ok(checksum)` or `Err(failure)`.
    /// One that could not reach a registry is a failure to verify, never the
    /// success it left standing from before.
    pub fn verification_outcome(&self) -> Option<std::result::Result<String, String>> {
        if !self.verification_requested && self.verification_deferred {
            return Some(Err(self.verification_failure.clone().unwrap_or_else(|| "could not verify".into())));
        }
        match (self.verification_requested, self.verification_state) {
            (false, VerificationState::Succeeded) => Some(Ok(self.verification_checksum.clone().unwrap_or_default())),
            (false, VerificationState::Failed) => Some(Err(self.verification_failure.clone().unwrap_or_default())),
            _ => None,
        }
    }
}

/// A claimed repository: what the worker must do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub name: String,
    /// Compare every tag, rather than only apply the new events.
    pub full: bool,
    /// Apply events with ids in (after, through].
    pub after: i64,
    pub through: i64,
    /// This claim's id: recording the outcome checks it is still ours.
    pub claim: String,
    /// Why the sync was asked for, when it was not an event or a new
    /// repository (`reconcile: tags differ`, `write made on the secondary`).
    pub reason: Option<String>,
}

/// The repository most worth syncing now: the first entry of the index
/// `repositories_claim_order` (schema version 10), whose columns are this
/// ORDER BY word for word and whose rows are those of this `IN`, so that
/// the lookup neither reads the synced repositories nor sorts the queue,
/// however long it is. Idle workers ask every few seconds and whenever the
/// work bell rings, holding the state file meanwhile.
pub(super) const NEXT_JOB: &str = "SELECT id FROM repositories
     WHERE excluded = 0 AND sync_state IN ('pending', 'failed')
       AND (sync_state = 'pending' OR retry_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
       AND verification_state <> 'started'
       -- ?1: whether one more repository that overran its budget may start.
       AND (?1 OR overran_at IS NULL)
     ORDER BY sync_priority DESC,
              CASE WHEN sync_state = 'pending' AND full_sync_requested = 0 THEN 0
                   WHEN last_synced_at IS NULL THEN 1
                   WHEN sync_state = 'pending' THEN 2
                   ELSE 3 END,
              retry_at, id
     LIMIT 1";

/// A synced repository with deletions held back whose delay ran out, from
/// the deletions index: the worker that claims it applies them.
pub(super) const NEXT_HELD: &str = "SELECT r.id FROM deletions h JOIN repositories r ON r.id = h.repository_id
     WHERE h.state = 'held' AND h.applies_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
       AND r.sync_state = 'synced' AND r.excluded = 0 AND r.verification_state <> 'started'
     ORDER BY h.applies_at
     LIMIT 1";

impl Queue {
    /// Makes sure the repository has a row; returns its id.
    pub fn ensure_repository(&self, name: &str) -> Result<i64> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO repositories (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
            .execute([name])?;
        let id = conn.prepare_cached("SELECT id FROM repositories WHERE name = ?1")?.query_row([name], |r| r.get(0))?;
        Ok(id)
    }

    #[cfg(test)]
    pub fn repository(&self, name: &str) -> Result<Option<Repository>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, sync_state, retry_count, retry_at, last_synced_at, last_sync_failure,
                    full_sync_requested, events_done_through
             FROM repositories WHERE name = ?1",
        )?;
        let row = stmt
            .query_row([name], |r| {
                Ok(Repository {
                    name: r.get(0)?,
                    sync_state: r.get(1)?,
                    retry_count: r.get(2)?,
                    retry_at: r.get(3)?,
                    last_synced_at: r.get(4)?,
                    last_sync_failure: r.get(5)?,
                    full_sync_requested: r.get(6)?,
                    events_done_through: r.get(7)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Queues a full sync of the repository (a resync). A running sync
    /// finishes first and then the repository goes round again.
    pub fn request_full_sync(&self, name: &str) -> Result<()> {
        self.ensure_repository(name)?;
        self.conn()
            .prepare_cached(
                "UPDATE repositories SET full_sync_requested = 1,
                 sync_state = CASE sync_state WHEN 'started' THEN 'started' ELSE 'pending' END
                 WHERE name = ?1",
            )?
            .execute([name])?;
        self.work.ring();
        Ok(())
    }

    /// Asks the daemon holding the state file for a full sync of the
    /// repository before other work (`georeg sync` and `georeg backfill`
    /// while `georeg serve` runs), whatever its retry time.
    pub fn request_priority_sync(&self, name: &str) -> Result<()> {
        self.ensure_repository(name)?;
        self.conn()
            .prepare_cached(
                "UPDATE repositories SET full_sync_requested = 1, sync_priority = 1, retry_at = NULL,
                 sync_state = CASE sync_state WHEN 'started' THEN 'started' ELSE 'pending' END
                 WHERE name = ?1",
            )?
            .execute([name])?;
        self.work.ring();
        Ok(())
    }

    /// Where a repository's sync and verification stand, for a command
    /// that follows work it handed to the daemon.
    pub fn progress(&self, name: &str) -> Result<Option<Progress>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sync_state, full_sync_requested, last_sync_failure, last_sync_report,
                    verification_state, verification_requested, verification_failure, verification_checksum,
                    verification_retry_at IS NOT NULL
             FROM repositories WHERE name = ?1",
        )?;
        let row = stmt
            .query_row([name], |r| {
                Ok(Progress {
                    sync_state: r.get(0)?,
                    sync_requested: r.get(1)?,
                    last_sync_failure: r.get(2)?,
                    last_sync_report: r.get(3)?,
                    verification_state: r.get(4)?,
                    verification_requested: r.get::<_, i64>(5)? > 0,
                    verification_failure: r.get(6)?,
                    verification_checksum: r.get(7)?,
                    verification_deferred: r.get(8)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Puts back in the queue what a process that ended without cleaning up
    /// (kill -9, power loss, a failed write) left `started`. Only the holder
    /// of the state file's lock runs it, right after taking the lock and
    /// before any worker exists: nobody else can hold a claim then.
    ///
    /// A sync cut short may have changed the registry without logging it
    /// for this node's followers (the change lands, then its log row): each
    /// such repository is logged as changed as a whole, so that a follower
    /// compares all of it with this node's registry.
    pub fn recover_started(&self) -> Result<usize> {
        let conn = self.conn();
        conn.execute("INSERT INTO applied (repository, action) SELECT name, 'delete' FROM repositories WHERE sync_state = 'started'", [])?;
        let n = conn.execute(
            "UPDATE repositories SET sync_state = 'pending', claim_id = NULL,
             full_sync_requested = MAX(full_sync_requested, full_sync_running), full_sync_running = 0
             WHERE sync_state = 'started'",
            [],
        )?;
        conn.execute(
            "UPDATE repositories SET verification_state = 'pending', verification_claim_id = NULL
             WHERE verification_state = 'started'",
            [],
        )?;
        conn.execute("UPDATE deletions SET state = 'held' WHERE state = 'applying'", [])?;
        Ok(n)
    }

    /// Claims the repository most worth syncing now: repositories with new
    /// events first (small, and someone is waiting for them), then never
    /// synced ones, then other pending ones, then failed ones whose retry
    /// time has come, and synced ones with held deletions whose delay ran
    /// out (the job applies them).
    pub fn claim_next(&self) -> Result<Option<Job>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The queue first (its own index); then a synced repository whose
        // held deletions are due (replication.delete_delay_hours).
        let slow: usize = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM repositories WHERE sync_state = 'started' AND overran_at IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))?;
        let allow_slow = slow < self.slow_share();
        let mut candidate: Option<i64> =
            tx.prepare_cached(NEXT_JOB)?.query_row([allow_slow], |r| r.get(0)).optional()?;
        if candidate.is_none() {
            candidate = tx.prepare_cached(NEXT_HELD)?.query_row([], |r| r.get(0)).optional()?;
        }
        let Some(id) = candidate else { return Ok(None) };
        let job = claim_row(&tx, id)?;
        tx.commit()?;
        Ok(Some(job))
    }

    /// Claims one repository for a full sync in the foreground (`georeg
    /// sync`), refusing when something else is syncing it right now.
    pub fn claim_for_full_sync(&self, name: &str) -> Result<Job> {
        self.ensure_repository(name)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, state): (i64, SyncState) = tx
            .prepare_cached("SELECT id, sync_state FROM repositories WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if state == SyncState::Started {
            return Err(Error::Store {
                message: format!("{name} is being synced by this process already (is it named twice?)"),
            });
        }
        tx.execute("UPDATE repositories SET full_sync_requested = 1 WHERE id = ?1", [id])?;
        let job = claim_row(&tx, id)?;
        tx.commit()?;
        Ok(job)
    }

    /// Records a successful job. Events that arrived meanwhile, or a resync
    /// requested meanwhile, send the repository straight back to `pending`.
    /// A full sync queues a verification; an event sync does not: it touched
    /// only the tags its events named, and checksumming every tag after each
    /// push would turn a handful of requests into thousands. Verification
    /// still comes round every reverification interval.
    pub fn finish_job(&self, job: &Job, report: &str) -> Result<()> {
        let requeued: Option<SyncState> = self
            .conn()
            .prepare_cached(&format!(
                "UPDATE repositories SET
                   events_done_through = MAX(events_done_through, ?2), full_sync_running = 0, claim_id = NULL,
                   retry_count = 0, retry_at = NULL, last_sync_failure = NULL, last_synced_at = {NOW},
                   failing_since = NULL, overran_at = NULL,
                   last_sync_report = ?5,
                   -- A full sync compared every tag with the primary.
                   compared_at = CASE WHEN ?3 THEN {NOW} ELSE compared_at END,
                   sync_reason = CASE WHEN full_sync_requested = 1 THEN sync_reason END,
                   verification_state = CASE WHEN excluded = 1 THEN 'disabled'
                                             WHEN ?3 THEN 'pending' ELSE verification_state END,
                   sync_state = CASE WHEN full_sync_requested = 1
                                       OR EXISTS (SELECT 1 FROM events e WHERE e.repository = repositories.name AND e.id > ?2)
                                     THEN 'pending' ELSE 'synced' END
                 WHERE id = ?1 AND claim_id = ?4
                 RETURNING sync_state"
            ))?
            .query_row(params![job.id, job.through, job.full, job.claim, report], |r| r.get(0))
            .optional()?;
        // The job changed this node's registry: its fingerprint is read again.
        self.conn().prepare_cached(super::fingerprints::MARK_STALE)?.execute([&job.name])?;
        match requeued {
            None => Err(claim_lost(job)),
            Some(SyncState::Pending) => {
                self.work.ring();
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// Records a failed job; the retry waits longer with every consecutive
    /// failure, and the count keeps growing until a sync succeeds.
    /// Records that a job ran past its budget and was stopped: besides
    /// failing it, the repository holds at most a share of the workers
    /// from now until a sync of it succeeds.
    pub fn fail_overrun(&self, job: &Job, failure: &str) -> Result<()> {
        self.conn()
            .prepare_cached(&format!("UPDATE repositories SET overran_at = {NOW} WHERE id = ?1"))?
            .execute([job.id])?;
        self.fail_job(job, failure)
    }

    pub fn fail_job(&self, job: &Job, failure: &str) -> Result<()> {
        let conn = self.conn();
        let count: u32 = conn
            .prepare_cached("SELECT retry_count FROM repositories WHERE id = ?1")?
            .query_row([job.id], |r| r.get(0))?;
        let delay = retry_delay(count + 1, jitter());
        let changed = conn
            .prepare_cached(
                "UPDATE repositories SET sync_state = 'failed', retry_count = retry_count + 1, full_sync_running = 0,
                 retry_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2), last_sync_failure = ?3,
                 full_sync_requested = MAX(full_sync_requested, ?4), claim_id = NULL,
                 failing_since = COALESCE(failing_since, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
                 WHERE id = ?1 AND claim_id = ?5",
            )?
            .execute(params![job.id, format!("+{} seconds", delay.as_secs()), failure, job.full, job.claim])?;
        if changed == 0 {
            return Err(claim_lost(job));
        }
        Ok(())
    }

    /// Gives an unfinished job back (shutdown), as if it had not started.
    pub fn release_job(&self, job: &Job) -> Result<()> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE repositories SET sync_state = 'pending', full_sync_requested = MAX(full_sync_requested, ?2),
                 full_sync_running = 0, claim_id = NULL WHERE id = ?1 AND claim_id = ?3",
            )?
            .execute(params![job.id, job.full, job.claim])?;
        if changed == 0 {
            return Err(claim_lost(job));
        }
        self.work.ring();
        Ok(())
    }

    /// Repositories selective sync includes that are not synced (pending,
    /// failed whatever their retry time, or never synced), oldest first.
    pub fn unsynced_repositories(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM repositories WHERE excluded = 0 AND sync_state IN ('pending', 'failed')
             ORDER BY last_synced_at IS NOT NULL, id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn claim_lost(job: &Job) -> Error {
    Error::ClaimLost { repository: job.name.clone() }
}

/// Flips one repository to `started` and describes the job (inside the
/// caller's transaction). The job covers every event stored so far.
fn claim_row(tx: &rusqlite::Transaction, id: i64) -> Result<Job> {
    let (name, full, after, reason): (String, bool, i64, Option<String>) = tx
        .prepare_cached(
            "SELECT name, full_sync_requested, events_done_through, sync_reason FROM repositories WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let through: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let claim = random_hex(8);
    tx.prepare_cached(&format!(
        "UPDATE repositories SET sync_state = 'started', full_sync_running = full_sync_requested,
         full_sync_requested = 0, sync_priority = 0, sync_started_at = {NOW}, claim_id = ?2
         WHERE id = ?1"
    ))?
    .execute(params![id, claim])?;
    Ok(Job { id, name, full, after, through, claim, reason })
}

#[cfg(test)]
#[path = "repos_tests.rs"]
mod tests;
