//! Replication: everything that makes the secondary registry hold what the
//! primary holds. `copy`, `blobs` and `chunks` are the copy engine for one
//! repository; `worker` claims repositories from the state file and runs
//! it; `backfill` scans the primary's catalog for what events missed;
//! `events` applies new events; `referrers` follows OCI referrers;
//! `removal` removes tags and `held` holds removals back
//! (`replication.delete_delay_hours`); `drill` pulls a sample of tags from
//! the secondary as a client would and `repair` copies again what it found
//! damaged; `verify` proves a repository matches; `cursor`
//! reads the primary georeg's event log into the state file; `pool` runs
//! all of it on named threads; `source` is where the engine reads what it
//! copies (the primary, or a transfer bundle), and `import` applies a
//! bundle's repositories with the same engine. Which repositories are
//! replicated at all is the configuration's (`config::selective`).
//!
//! Replication never talks to the HTTP server: events arrive as rows in the
//! state file, and progress leaves as rows and counters.

pub mod backfill;
mod blobs;
mod chunks;
pub mod copy;
pub mod cursor;
pub mod drill;
mod events;
mod held;
pub mod import;
pub mod pool;
mod referrers;
mod removal;
mod repair;
pub mod source;
pub mod verify;
pub mod worker;

use crate::health::Stats;
use crate::registry::{Client, Target};
use crate::shutdown::Shutdown;
use crate::store::{Queue, RemovalPolicy};
use source::Source;

/// What replicating needs: the primary registry (read-only), the secondary
/// registry, the state file, the live counters and the stop request.
pub struct Replicator<'a> {
    pub primary: &'a Client,
    /// Where the manifests and blobs the secondary lacks are read: the
    /// primary itself when replicating, a transfer bundle when importing.
    pub source: &'a dyn Source,
    pub secondary: &'a Target,
    pub store: &'a Queue,
    pub stats: &'a Stats,
    /// Checked between tags, between blobs and inside every blob stream.
    pub shutdown: &'a Shutdown,
    /// Blobs larger than this are copied in chunks that survive a restart
    /// (`replication.chunk_size`; 0: never).
    pub chunk_size: u64,
    /// How removals are held back (`replication.delete_delay_hours`) and
    /// when they raise the burst alarm.
    pub removals: RemovalPolicy,
}
