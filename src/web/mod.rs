//! georeg's own HTTP server: the notification endpoint the registry posts
//! to, the event log and report endpoint a primary serves its secondaries,
//! the dashboard, the status API and `/metrics`, and the https front.
//!
//! Handlers read and write the state file and nothing else: the server
//! never calls into replication. A notification becomes rows in SQLite and
//! a ring of the work bell; workers take it from there.

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

use crate::config::Config;
use crate::health::{Health, Stats};
use crate::registry::token::Signer;
use crate::registry::Client;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// What the server's handlers may use.
pub struct App<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub stats: &'a Stats,
    pub health: &'a Health,
    /// Verifies the tokens secondaries send (event log, reports).
    pub signer: &'a Signer,
    /// This node's registry, which `/-/readiness` asks.
    pub registry: &'a Client,
    /// Keys the admin forms' CSRF tokens when no admin credential is
    /// configured; random per process.
    pub form_secret: String,
    pub shutdown: &'a Shutdown,
}
