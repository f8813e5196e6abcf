//! Reconciliation: georeg does not take the notifications' word for what
//! the primary holds. The registry keeps its notification queue in memory
//! and delivers it best effort; a restart loses it, a wrong secret refuses
//! it, and a write made straight on the secondary sends nothing at all. So
//! every replicated repository is compared with the primary again and
//! again, at least once per `replication.reconcile_interval_seconds`, and
//! whatever differs is queued for a full sync, with the kind of difference
//! as its reason. Failover readiness counts a repository only when it was
//! found equal within that window.
//!
//! - `fingerprint`: what a repository's fingerprint is (the verification
//!   checksum of its tags), and what of the secondary's differs on purpose.
//! - `keeper`: keeps the fingerprints of this node's own registry fresh,
//!   on every node; a primary serves them to its followers in pages.
//! - `pages`: a follower's pass, comparing pages of fingerprints with the
//!   primary georeg's, so that nothing changed costs a request or two
//!   across the WAN whatever the number of repositories.
//! - `direct`: the pass without a primary georeg, reading the primary
//!   registry's catalog and tags, paced.
//! - `pass`: what both passes share (the loop, the bookkeeping).

pub mod direct;
pub mod fingerprint;
pub mod keeper;
pub mod pages;
pub mod pass;
