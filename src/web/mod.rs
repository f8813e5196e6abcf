//! georeg's own HTTP server: the notification endpoint the registry posts
//! to (and the one a secondary's own registry may post its writes to), the
//! event log, fingerprints and report endpoint a node serves the nodes
//! that follow it (a primary's secondaries, a relay's followers), the
//! dashboard (with the tree of nodes, `tree.rs`), the status API and `/metrics` (`exposition.rs` the text format, `node_metrics.rs` the nodes that report in), and the https front.
//!
//! Handlers read and write the state file and nothing else: the server
//! never calls into replication. A notification becomes rows in SQLite and
//! a ring of the work bell; workers take it from there.

mod app;
mod auth;
mod bars;
mod chart;
mod dashboard;
mod event_log;
mod exposition;
mod failover;
mod fingerprints;
pub mod front;
mod held;
mod html;
pub mod http;
mod metrics;
mod node_metrics;
mod notifications;
mod own_registry;
mod refusals;
pub mod server;
mod streak;
#[cfg(test)]
mod tests;
mod tree;
pub mod wire;

pub use app::App;
