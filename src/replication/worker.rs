//! Replication workers: each claims the repository most worth syncing from
//! the state file, syncs it with the replicator (whose job loop records
//! the outcome), and sleeps on the work bell when nothing is due. Claiming
//! happens in SQLite, so no two workers ever hold the same repository. A
//! worker with no sync to do verifies the repository whose verification
//! is most overdue.

use std::time::{Duration, Instant};

use super::replicator::Replicator;
use super::verify::Outcome;
use crate::error::Error;

/// How long an idle worker sleeps before looking for due retries again.
const IDLE: Duration = Duration::from_secs(5);

/// One worker, until shutdown. `reverify_after` is
/// `replication.reverification_interval_seconds`.
pub fn run(r: &Replicator, reverify_after: Duration) {
    let store = r.engine.store;
    while !r.engine.shutdown.requested() {
        let rung = store.work.count();
        match store.claim_next() {
            Ok(Some(job)) => {
                let started = Instant::now();
                let kind = if job.full { "full sync" } else { "events" };
                log::debug!("{}: {kind} started", job.name);
                match r.run(&job) {
                    Ok(report) => {
                        log::info!(
                            "{}: synced ({kind}) in {:.1}s: {report}",
                            job.name,
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Err(Error::Interrupted) => {
                        log::info!("{}: interrupted by shutdown; resumes at next start", job.name)
                    }
                    Err(e) => log::warn!("{e}"),
                }
            }
            Ok(None) => {
                if !verify_next(r, reverify_after) {
                    store.work.wait(rung, IDLE);
                }
            }
            Err(e) => {
                log::error!("cannot claim work from the state file: {e}");
                store.work.wait(rung, IDLE);
            }
        }
    }
}

/// Verifies the most overdue repository, if any; false when none is due.
fn verify_next(r: &Replicator, reverify_after: Duration) -> bool {
    let v = match r.engine.store.claim_next_verification(reverify_after.as_secs()) {
        Ok(Some(v)) => v,
        Ok(None) => return false,
        Err(e) => {
            log::error!("cannot claim a verification from the state file: {e}");
            return false;
        }
    };
    match r.verify(&v) {
        Ok(outcome @ Outcome::Match { .. }) => log::info!("{}: {}", v.name, outcome.describe()),
        Ok(outcome) => log::warn!("{}: verification failed, resync queued: {}", v.name, outcome.describe()),
        Err(Error::Interrupted) => {}
        Err(e) => log::warn!("{}: could not verify: {e}", v.name),
    }
    true
}
