//! Backfill: replicating what the primary held before events started
//! flowing, and what events missed (the registry keeps its notification
//! queue in memory and loses it on restart).
//!
//! A scan reads the primary's catalog (pull-only catalog token, `Link`
//! pagination), records repositories georeg has never seen (they are then
//! synced, never-synced first), applies selective sync, and queues a full
//! sync of repositories that are gone from the primary so that their tags
//! are removed from the secondary too (or their deletion held back,
//! `replication.delete_delay_hours`). The daemon scans at start and every
//! `replication.backfill_interval_seconds`; `georeg backfill` runs one pass
//! in the foreground.

use std::collections::HashSet;
use std::time::Duration;

use super::replicator::Replicator;
use crate::config::selective::Selection;
use crate::error::Result;
use crate::registry;

/// What a scan of the primary's catalog found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Repositories in the catalog that selective sync includes.
    pub included: usize,
    /// Of those, never seen before.
    pub added: usize,
    /// Repositories left out by selective sync.
    pub excluded: usize,
    /// Known repositories gone from the primary, queued to be emptied.
    pub gone: usize,
}

pub fn scan(r: &Replicator, selection: &Selection) -> Result<Scan> {
    let (primary, store) = (r.primary, r.engine.store);
    let catalog = primary.catalog()?;
    let listed: HashSet<&str> = catalog.iter().map(String::as_str).collect();
    let included: Vec<String> =
        catalog.iter().filter(|n| registry::valid_repository(n) && selection.includes(n)).cloned().collect();
    let added = store.add_repositories(&included)?;
    // Only once what it found is recorded: readiness trusts this time.
    store.record_listing("catalog")?;
    let excluded = store.apply_selection(|n| selection.includes(n))?;
    let mut gone = 0;
    for name in store.repository_names()? {
        if listed.contains(name.as_str()) || !selection.includes(&name) || !registry::valid_repository(&name) {
            continue;
        }
        // Absent from the catalog and unknown to the primary: deleted there.
        // Tags whose deletion is held back or cancelled need no new look.
        if primary.tags(&name)?.is_none() {
            let left = r.engine.secondary.tags(&name)?.unwrap_or_default();
            let kept = store.kept_deletions(&name)?;
            if left.iter().any(|tag| !kept.tags.contains_key(tag)) {
                store.request_full_sync(&name)?;
                gone += 1;
            }
        }
    }
    Ok(Scan { included: included.len(), added, excluded, gone })
}

/// The daemon's backfill thread: a scan at start and every `interval`
/// (`replication.backfill_interval_seconds`); a failed scan is tried again
/// within a minute.
pub fn run(r: &Replicator, selection: &Selection, interval: Duration) {
    loop {
        let wait = match scan(r, selection) {
            Ok(scan) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs());
                r.engine.stats.last_backfill.store(now.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
                log::info!(
                    "catalog of {}: {} repositories to replicate ({} new), {} excluded by selective sync, {} gone \
                     from the primary",
                    r.primary.url(),
                    scan.included,
                    scan.added,
                    scan.excluded,
                    scan.gone
                );
                interval
            }
            Err(e) => {
                let retry = interval.min(Duration::from_secs(60));
                log::warn!("backfill scan failed: {e}; next try in {}s", retry.as_secs());
                retry
            }
        };
        if !r.engine.shutdown.sleep(wait) {
            return;
        }
    }
}
