//! What georeg tells operators about itself: one status snapshot shared by
//! the dashboard, the status API, `/metrics`, `georeg status` and the
//! reports secondaries send (its shape in `snapshot`, read from the state
//! file by `status`), the live counters of this process (`stats`), the
//! periodic health check and report to the primary georeg (`report`, which
//! keeps the last finding in [`Health`]), and disaster-recovery readiness
//! (`dr`: failover findings).

pub mod failover;
pub mod lines;
pub mod report;
pub mod snapshot;
pub mod stats;
pub mod status;

pub use report::Health;
pub use snapshot::Status;
pub use stats::Stats;
