//! What georeg tells operators about itself: one status snapshot shared by
//! the dashboard, the status API, `/metrics`, `georeg status` and the
//! reports secondaries send (`status`), the live counters of this process
//! (`stats`), the periodic health check and report to the primary georeg
//! (`report`), and disaster-recovery readiness (`dr`: failover findings).

pub mod dr;
pub mod report;
pub mod stats;
pub mod status;

use std::sync::Mutex;

pub use stats::Stats;
pub use status::Status;

/// The last health check's finding: written by the report thread, read by
/// the pages. `None` while nothing is wrong (or nothing was checked yet).
#[derive(Default)]
pub struct Health {
    problem: Mutex<Option<String>>,
}

impl Health {
    pub fn set(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
