//! The fingerprint keeper: keeps the fingerprint of every repository of
//! this node's own registry fresh in the state file. Repositories an event
//! or a sync touched are read first; every other one is read again once
//! its fingerprint is older than half the reconciliation window, the reads
//! spread over that half window rather than in bursts. A primary serves
//! these fingerprints to its followers; a secondary compares its own with
//! them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::fingerprint;
use crate::error::Result;
use crate::registry::Client;
use crate::shutdown::Shutdown;
use crate::store::Fingerprints;

/// Repositories taken from the state file at a time.
const BATCH: usize = 64;
/// The longest pause between two reads (a small registry is read at once).
const MAX_SPACING: Duration = Duration::from_millis(250);

pub(crate) struct Keeper<'a> {
    /// This node's own registry, read with pull-only tokens.
    pub registry: &'a Client,
    pub store: &'a Fingerprints,
    pub shutdown: &'a Shutdown,
    /// `replication.reconcile_interval_seconds`.
    pub window: Duration,
    /// On a secondary: what differs from the primary on purpose is taken
    /// out of each fingerprint (see `fingerprint::as_expected`).
    pub secondary: bool,
}

impl Keeper<'_> {
    /// Until shutdown.
    pub fn run(&self) {
        let half = (self.window / 2).max(Duration::from_secs(1));
        let mut discovered: Option<Instant> = None;
        let mut known = 0usize;
        let mut failing = false;
        while !self.shutdown.requested() {
            if discovered.is_none_or(|at| at.elapsed() >= half) {
                match self.discover() {
                    Ok(n) => known = n,
                    Err(e) => log::warn!(
                        "fingerprints: cannot list {}: {e}; reading the repositories known",
                        self.registry.url()
                    ),
                }
                discovered = Some(Instant::now());
            }
            let due = match self.store.take_due(BATCH, half.as_secs()) {
                Ok(due) => due,
                Err(e) => {
                    log::error!("fingerprints: {e}");
                    self.shutdown.sleep(Duration::from_secs(5));
                    continue;
                }
            };
            if due.is_empty() {
                self.shutdown.sleep(Duration::from_secs(1).min(half / 4));
                continue;
            }
            let spacing = (half / known.max(1) as u32).min(MAX_SPACING);
            for repo in &due {
                if self.shutdown.requested() {
                    return;
                }
                match self.read(repo) {
                    Ok(()) if failing => {
                        log::info!("fingerprints: {} answers again", self.registry.url());
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if !failing {
                            log::warn!("fingerprints: cannot read {repo} from {}: {e}; retrying", self.registry.url());
                            failing = true;
                        }
                        let _ = self.store.mark_stale(repo);
                        self.shutdown.sleep(Duration::from_secs(5));
                        break;
                    }
                }
                self.shutdown.sleep(spacing);
            }
        }
    }

    /// Gives every repository of the registry (and, on a secondary, every
    /// one it replicates) a row, and reads again those it no longer lists.
    /// Returns how many there are.
    fn discover(&self) -> Result<usize> {
        let mut listed: BTreeSet<String> = self.store.replicated_names()?.into_iter().collect();
        // A registry that refuses its catalog (optional in the OCI spec):
        // the repositories known here are still kept.
        let catalog = match self.registry.catalog() {
            Ok(catalog) => Some(catalog),
            Err(e @ crate::error::Error::Registry { .. }) => {
                log::debug!("fingerprints: the catalog of {}: {e}", self.registry.url());
                None
            }
            Err(e) => return Err(e),
        };
        let complete = catalog.is_some();
        listed.extend(catalog.unwrap_or_default().into_iter().filter(|n| crate::registry::valid_repository(n)));
        let have: BTreeSet<String> = self.store.names()?.into_iter().collect();
        for name in listed.difference(&have) {
            self.store.mark_stale(name)?;
        }
        if complete {
            for name in have.difference(&listed) {
                self.store.mark_stale(name)?;
            }
        }
        Ok(listed.len().max(have.len()))
    }

    /// Reads one repository and records its fingerprint (or that the
    /// registry no longer has it).
    fn read(&self, repo: &str) -> Result<()> {
        let read_at = self.store.now()?;
        let read = match fingerprint::read(self.registry, repo)?.0 {
            // A secondary's registry that lists no tags: the tags georeg
            // left there, each read by name.
            None if self.secondary && !self.registry.lists_tags() => {
                Some(self.registry.digests_of(repo, &self.store.recorded_tags(repo)?)?)
            }
            read => read,
        };
        match read {
            None if !self.secondary || !self.store.is_replicated(repo)? => self.store.remove(repo),
            tags => {
                let mut tags = tags.unwrap_or_default();
                if self.secondary {
                    let (kept, unsupported) = self.store.expected_differences(repo)?;
                    tags = fingerprint::as_expected(tags, &kept, &unsupported);
                }
                self.store.set(repo, &fingerprint::of(&tags), tags.len(), &read_at)
            }
        }
    }
}
