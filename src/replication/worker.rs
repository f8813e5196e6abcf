//! Replication workers: each claims the repository most worth syncing from
//! the state file, syncs it, records the outcome, and sleeps on the work
//! bell when nothing is due. Claiming happens in SQLite, so no two workers
//! ever hold the same repository.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::node::Node;
use crate::replicate::Replicator;
use crate::verify;

/// How long an idle worker sleeps before looking for due retries again.
const IDLE: Duration = Duration::from_secs(5);

pub fn run(node: &Node, replicator: &Replicator) {
    while !node.quitting() {
        let rung = node.store.work.count();
        match node.store.claim_next() {
            Ok(Some(job)) => {
                let started = Instant::now();
                let kind = if job.full { "full sync" } else { "events" };
                log::debug!("{}: {kind} started", job.name);
                match replicator.run(&job) {
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
                if !verify_next(node, replicator) {
                    node.store.work.wait(rung, IDLE);
                }
            }
            Err(e) => {
                log::error!("cannot claim work from the state file: {e}");
                node.store.work.wait(rung, IDLE);
            }
        }
    }
}

/// Verifies the most overdue repository, if any; false when none is due.
fn verify_next(node: &Node, replicator: &Replicator) -> bool {
    let interval = node.config.replication.reverification_interval_seconds;
    let v = match node.store.claim_next_verification(interval) {
        Ok(Some(v)) => v,
        Ok(None) => return false,
        Err(e) => {
            log::error!("cannot claim a verification from the state file: {e}");
            return false;
        }
    };
    match verify::run(&node.store, replicator.primary, replicator.secondary, &v, false, &node.quit) {
        Ok(outcome @ verify::Outcome::Match { .. }) => log::info!("{}: {}", v.name, outcome.describe()),
        Ok(outcome) => log::warn!("{}: verification failed, resync queued: {}", v.name, outcome.describe()),
        Err(Error::Interrupted) => {}
        Err(e) => log::warn!("{}: could not verify: {e}", v.name),
    }
    true
}
