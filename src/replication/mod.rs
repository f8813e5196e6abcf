//! Replication: everything that makes the secondary registry hold what the
//! primary holds. Three layers, each on the one before:
//!
//! - the copy engine ([`Engine`], `engine`): copies a manifest and what it
//!   references (`blobs`, `chunks`, large ones over several streams: `ranges`) into the secondary and removes a tag
//!   from it (`deletion`), reading from a [`source::Source`] (the primary,
//!   or a transfer bundle); it cannot reach the primary registry itself;
//! - the job loop (`job`): runs a claimed repository and records its
//!   outcome, for a sync and an import alike;
//! - the [`Replicator`] (`replicator`): the engine plus the primary it
//!   compares with. It decides what to copy and remove: the full
//!   comparison, the events (`events`), OCI referrers (`referrers`),
//!   deletions held back (`held`, `replication.delete_delay_hours`), the
//!   repair of what a drill found damaged (`repair`), verification
//!   (`verify`).
//!
//! Around them: `worker` claims repositories from the state file and runs
//! them; `backfill` scans the primary's catalog for what events missed;
//! `drill` pulls a sample of tags from the secondary as a client would;
//! `cursor` reads the primary georeg's event log into the state file;
//! `prefetcher` copies the blobs the primary registry notifies as pushed
//! before their manifest's event comes (`prefetch`: the hints, in memory);
//! `pool` runs all of it on named threads; `import` applies a bundle's
//! repositories with the engine and the job loop, with no primary at all.
//! Which repositories are replicated at all is the configuration's
//! (`config::selective`).
//!
//! Replication never talks to the HTTP server: events arrive as rows in the
//! state file, and progress leaves as rows and counters. The one thing
//! passed in memory is the prefetcher's hints, which nothing relies on.

pub mod backfill;
mod blobs;
mod chunks;
pub mod cursor;
mod deletions;
pub mod drill;
mod engine;
mod events;
mod held;
pub mod import;
mod job;
mod overwrites;
pub mod pool;
pub mod prefetch;
pub mod prefetcher;
pub mod pushed;
mod ranges;
mod referrers;
mod repair;
mod replicator;
mod report;
pub mod source;
mod tombstone;
pub mod verify;
pub mod worker;

pub use engine::Engine;
pub use replicator::Replicator;
