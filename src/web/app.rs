//! [`App`]: what the server's handlers may use, borrowed from the node
//! for as long as the server runs.

use crate::config::Config;
use crate::health::{Health, Stats};
use crate::registry::token::Signer;
use crate::shutdown::Shutdown;

use super::streak::Refusals;
use crate::store::{Log, Reader};

/// What the server's handlers may use.
pub struct App<'a> {
    pub config: &'a Config,
    /// What comes in (notifications, reports) and operators' requests:
    /// the web side cannot claim or finish work.
    pub log: &'a Log,
    /// The pages, the status API and `/metrics` read snapshots here.
    pub reader: &'a Reader,
    pub stats: &'a Stats,
    pub health: &'a Health,
    /// Verifies the tokens secondaries send (event log, reports).
    /// The shared key, which checks the tokens of secondaries; `None`
    /// on a node without one (only a secondary that follows no primary georeg).
    pub signer: Option<&'a Signer>,
    /// Keys the admin forms' CSRF tokens when no admin credential is
    /// configured; random per process.
    pub form_secret: String,
    pub shutdown: &'a Shutdown,
    /// The streak of refused notifications in progress (the alarm).
    pub refusals: Refusals,
    /// Long polls of the event log waiting right now (`event_log`).
    pub long_polls: std::sync::atomic::AtomicUsize,
    /// Where blob pushes the primary registry notifies go to be copied
    /// ahead of their manifest: on a secondary it notifies directly.
    pub prefetch: Option<&'a crate::replication::prefetch::Prefetch>,
    /// The blobs followers may land ahead (a primary's notified pushes, a
    /// relay's landed blobs), for the event log's long polls.
    pub pushed: &'a crate::replication::pushed::Pushed,
}
