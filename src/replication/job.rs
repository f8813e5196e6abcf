//! The job loop that a sync and an import share: a repository claimed in
//! the state file (by the caller) is worked on, counted live on the
//! dashboard, and its outcome recorded: synced with its report, failed
//! with the reason (retried later), or handed back untouched when georeg
//! is stopping. Recording is retried while the state file cannot take it,
//! since a row left `started` would be claimed by nobody until the next
//! start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::engine::Engine;
use super::report::Report;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::store::Job;

/// How long recording a job's outcome is retried, and the first wait.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);
const RECORD_FIRST_WAIT: Duration = Duration::from_secs(1);

impl Engine<'_> {
    /// Runs a claimed job and records its outcome. `work` does the job,
    /// given the dashboard's byte counter for it and the report to fill
    /// in; an error it returns is recorded as the job's failure, except
    /// `Interrupted`, which hands the job back untouched.
    pub(super) fn run_job(
        &self,
        job: &Job,
        work: impl FnOnce(&Arc<AtomicU64>, &mut Report) -> Result<()>,
    ) -> Result<Report> {
        let mut report = Report::default();
        let progress = self.stats.begin(&job.name);
        let result = work(&progress, &mut report);
        self.stats.end(&job.name, result.is_ok());
        self.conclude(job, result, report)
    }

    /// Records how a job ended: synced, failed with its reason and next
    /// retry, or handed back when interrupted by shutdown. The error
    /// returned names the repository.
    fn conclude(&self, job: &Job, result: Result<()>, report: Report) -> Result<Report> {
        let repo = job.name.as_str();
        match result {
            Ok(()) => {
                self.record(repo, "synced", || self.store.finish_job(job, &report.to_string()))?;
                self.stats.events_processed.fetch_add(report.events_applied, Ordering::Relaxed);
                Ok(report)
            }
            Err(Error::Interrupted) => {
                self.record(repo, "handed back", || self.store.release_job(job))?;
                Err(Error::Interrupted)
            }
            Err(e @ Error::OverBudget { .. }) => {
                self.record(repo, "overran its budget", || self.store.fail_overrun(job, &e.reason()))?;
                Err(e.in_repository(repo))
            }
            Err(e) => {
                self.record(repo, "failed", || self.store.fail_job(job, &e.reason()))?;
                Err(e.in_repository(repo))
            }
        }
    }

    /// Records a job's outcome in the state file, retrying while another
    /// connection holds it busy or locked past the busy timeout: a row left
    /// `started` would be claimed by nobody until the next start. Any other
    /// failure (disk full, a corrupt file) is not going away by waiting,
    /// and fails at once. Gives up on shutdown, or after about ten minutes;
    /// either way the next start of georeg recovers the row.
    fn record(&self, repo: &str, outcome: &str, write: impl Fn() -> Result<()>) -> Result<()> {
        record_patiently(self.shutdown, RECORD_PATIENCE, RECORD_FIRST_WAIT, repo, outcome, write)
    }
}

/// [`Engine::record`], with its patience and first wait as arguments.
fn record_patiently(
    shutdown: &Shutdown,
    patience: Duration,
    first_wait: Duration,
    repo: &str,
    outcome: &str,
    write: impl Fn() -> Result<()>,
) -> Result<()> {
    let mut wait = first_wait;
    let mut waited = Duration::ZERO;
    loop {
        match write() {
            Err(e) if e.is_busy() && waited < patience && !shutdown.requested() => {
                log::error!(
                    "{repo}: cannot record that it {outcome} in the state file: {e}; retrying in {}s",
                    wait.as_secs()
                );
                shutdown.sleep(wait);
                waited += wait;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            Err(e) if e.is_state_file() => {
                let given_up = if e.is_busy() { "gave up recording" } else { "cannot record" };
                log::error!(
                    "{repo}: {given_up} that it {outcome}: {e}; it stays 'started' until georeg next starts and \
                     recovers it"
                );
                return Err(e);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn busy() -> Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None).into()
    }

    fn full() -> Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None).into()
    }

    /// Runs `record_patiently` over `answers`, one per attempt; returns
    /// the outcome and how many attempts were made.
    fn attempts(answers: Vec<fn() -> Result<()>>) -> (Result<()>, usize) {
        let calls = Cell::new(0);
        let shutdown = Shutdown::default();
        let ms = Duration::from_millis(1);
        let outcome = record_patiently(&shutdown, 10 * ms, ms, "app", "synced", || {
            let n = calls.get();
            calls.set(n + 1);
            answers.get(n).map_or_else(|| Err(busy()), |answer| answer())
        });
        (outcome, calls.get())
    }

    #[test]
    fn recording_retries_while_busy_only() {
        let (outcome, calls) = attempts(vec![|| Err(busy()), || Err(busy()), || Ok(())]);
        assert!(outcome.is_ok() && calls == 3, "busy twice, then recorded: {outcome:?} after {calls}");
        let (outcome, calls) = attempts(vec![|| Err(full())]);
        assert!(outcome.is_err_and(|e| !e.is_busy()) && calls == 1, "a full disk fails at once");
        let (outcome, calls) = attempts(vec![|| Err(Error::ClaimLost { repository: "app".into() })]);
        assert!(matches!(outcome, Err(Error::ClaimLost { .. })) && calls == 1);
        // Busy for ever: gives up once the patience (10 ms) is spent.
        let (outcome, calls) = attempts(vec![]);
        assert!(outcome.is_err_and(|e| e.is_busy()) && (2..10).contains(&calls), "{calls}");
    }
}
