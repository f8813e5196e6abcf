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

/// Bytes as people read them: `999 B`, `1.5 MB`, `200.0 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_formats() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(200_000_000), "200.0 MB");
    }
}
