//! The configuration's defaults: what a key is when the file leaves it
//! out, and why each value was chosen.

use std::path::PathBuf;

pub(super) fn default_listen() -> String {
    "127.0.0.1:5050".into()
}
pub(super) fn default_state_file() -> PathBuf {
    "/var/lib/georeg/state.sqlite3".into()
}
pub(super) fn default_issuer() -> String {
    "gitlab-issuer".into()
}
pub(super) fn default_service() -> String {
    "container_registry".into()
}
pub(super) fn default_ttl() -> u64 {
    300
}
/// 8 MiB: a crash costs at most that much re-read, and each worker
/// copying a large blob holds one chunk in memory.
pub(super) const DEFAULT_CHUNK_BYTES: u64 = 8 << 20;
pub(super) fn default_chunk_size() -> String {
    "8MiB".into()
}
/// 4: enough streams to fill a long link that one TCP stream cannot, and
/// at most 16 MiB read ahead by the whole process (`replication/ranges.rs`).
pub(super) fn default_blob_streams() -> usize {
    4
}
pub(super) fn default_stall_seconds() -> u64 {
    30
}
/// A link slower than this copies nothing useful, and a trickle is hostile.
pub(super) fn default_min_rate() -> String {
    "16KiB/s".into()
}
/// An hour: a repository of 50 GB new at 20 MB/s fits; what a sync copied
/// before its budget ran out stays, so even a larger one gets there.
pub(super) fn default_sync_budget() -> u64 {
    3600
}
/// A million tags: a sync of a repository that large peaked at 293 MiB
/// in the benchmark (docs/benchmark.md).
pub(super) fn default_max_tags() -> usize {
    1_000_000
}
/// What the benchmark's workers sweep (`tests/bench/run.sh --only
/// workers`) found best: 8 is within 1 % of the fastest count on loopback
/// and 1.8x faster than 4 across a 40 ms WAN, where round trips dominate.
pub(super) fn default_workers() -> usize {
    8
}
pub(super) fn default_backfill_interval() -> u64 {
    3600
}
/// An hour: a node sustains a pass over 100,000 repositories within it
/// (see docs/how-it-works.md, "Reconciliation").
pub(super) fn default_reconcile_interval() -> u64 {
    3600
}
pub(super) fn default_reverification_interval() -> u64 {
    7 * 24 * 3600
}
pub(super) fn default_event_retention_max_days() -> u64 {
    90
}

pub(super) fn default_event_retention_days() -> u64 {
    30
}
pub(super) fn default_failing_alert() -> u64 {
    3600
}

/// A week: a weekly carry across the air gap, with a day's slack, stays
/// healthy; a missed one does not.
pub(super) fn default_bundle_max_age() -> u64 {
    192
}

pub(super) fn default_report_interval() -> u64 {
    60
}
/// More than half of a repository's tags gone within an hour is rarely a
/// cleanup policy at work; ten tags keep small repositories from alarming.
pub(super) fn default_burst_share() -> f64 {
    0.5
}
pub(super) fn default_burst_min_tags() -> u64 {
    10
}
pub(super) fn default_drill_interval() -> u64 {
    24 * 3600
}
pub(super) fn default_drill_sample() -> usize {
    10
}
pub(super) fn yes() -> bool {
    true
}
