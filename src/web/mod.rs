//! georeg's own HTTP server: the notification endpoint the registry posts
//! to, the event log and report endpoint a primary serves its secondaries,
//! the dashboard, the status API and `/metrics`, and the https front.
//!
//! Handlers read and write the state file and nothing else: the server
//! never calls into replication. A notification becomes rows in SQLite and
//! a ring of the work bell; workers take it from there.

mod app;
mod auth;
mod chart;
mod dashboard;
mod dr;
mod event_log;
pub mod front;
mod html;
pub mod http;
mod metrics;
mod notifications;
pub mod server;
#[cfg(test)]
mod tests;
pub mod wire;

pub use app::App;
