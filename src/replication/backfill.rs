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
use crate::error::{Error, Result};
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
    /// Why the primary's catalog could not be read, when
    /// `replication.repositories` stood in for it.
    pub catalog_refused: Option<String>,
}

impl Scan {
    /// The one line that says what the scan found.
    pub fn summary(&self, primary: &str) -> String {
        match &self.catalog_refused {
            None => format!(
                "catalog: {} repositories to replicate ({} new), {} excluded, {} gone from the primary",
                self.included, self.added, self.excluded, self.gone
            ),
            Some(why) => format!(
                "catalog: {primary} refuses its catalog ({why}): replicating the {} repositories of \
                 replication.repositories ({} new, {} excluded) and those events name",
                self.included, self.added, self.excluded
            ),
        }
    }
}

pub fn scan(r: &Replicator, selection: &Selection) -> Result<Scan> {
    let (primary, store) = (r.primary, r.engine.store);
    // `_catalog` is optional in the OCI spec, and often refused to all but
    // administrators: the repositories named in the configuration stand
    // in for it (they are replicated whether it lists them or not).
    let catalog = match primary.catalog() {
        Ok(catalog) => Ok(catalog),
        Err(e @ Error::Registry { .. }) if !r.repositories.is_empty() => Err(e.to_string()),
        Err(Error::Registry { request, status, code, message }) => {
            return Err(Error::Registry {
                request,
                status,
                code,
                message: format!(
                    "{message}; if this registry does not serve its catalog to georeg, list the repositories to \
                     replicate in replication.repositories"
                ),
            })
        }
        Err(e) => return Err(e),
    };
    let (catalog, catalog_refused) = match catalog {
        Ok(catalog) => (catalog, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    let mut names = catalog.clone();
    names.extend(r.repositories.iter().filter(|n| !catalog.contains(n)).cloned());
    let included: Vec<String> =
        names.iter().filter(|n| registry::valid_repository(n) && selection.includes(n)).cloned().collect();
    let added = store.add_repositories(&included)?;
    let excluded = store.apply_selection(|n| selection.includes(n))?;
    if let Some(why) = catalog_refused {
        // Without the catalog, nothing tells a repository gone from the
        // primary: the syncs of the named ones find out for themselves.
        return Ok(Scan { included: included.len(), added, excluded, gone: 0, catalog_refused: Some(why) });
    }
    // Only once what it found is recorded: readiness trusts this time.
    store.record_listing("catalog")?;
    let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut gone = 0;
    for name in store.repository_names()? {
        if listed.contains(name.as_str()) || !selection.includes(&name) || !registry::valid_repository(&name) {
            continue;
        }
        // Absent from the catalog and unknown to the primary: deleted there.
        // Tags whose deletion is held back or cancelled need no new look.
        if primary.tags(&name)?.is_none() && primary.lists_tags() {
            let left = r.engine.secondary.tags(&name)?.unwrap_or_default();
            let kept = store.kept_deletions(&name)?;
            if left.iter().any(|tag| !kept.tags.contains_key(tag)) {
                store.request_full_sync(&name)?;
                gone += 1;
            }
        }
    }
    Ok(Scan { included: included.len(), added, excluded, gone, catalog_refused: None })
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
                match &scan.catalog_refused {
                    Some(_) => log::warn!("{}", scan.summary(r.primary.url())),
                    None => log::info!(
                        "catalog of {}: {} repositories to replicate ({} new), {} excluded by selective sync, {} \
                         gone from the primary",
                        r.primary.url(),
                        scan.included,
                        scan.added,
                        scan.excluded,
                        scan.gone
                    ),
                }
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
