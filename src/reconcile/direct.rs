//! A pass without a primary georeg: the primary registry's catalog finds
//! repositories new there (and the hourly scan's work is done sooner), and
//! each replicated repository's tags are read on both registries and
//! compared, least recently compared first. The reads of the primary go
//! through its paced client (`replication.max_requests_per_second`), and
//! the repositories are spread over half the window, so a pass never
//! bursts.

use std::collections::BTreeSet;
use std::time::Duration;

use super::fingerprint;
use super::pass::{kind_of_difference, Reconciler, Tally};
use crate::error::Result;

impl Reconciler<'_> {
    pub(super) fn direct_pass(&self) -> Result<Tally> {
        let mut tally = Tally::new("direct", self.queue.now()?);
        let known = self.reader.read(|s| s.known_repositories())?;
        match self.primary.catalog() {
            Ok(names) => {
                tally.record.requests += 1 + names.len() as u64 / 1000;
                for name in names.iter().filter(|n| !known.replicated.contains(*n) && !known.excluded.contains(*n)) {
                    self.new_repository(&mut tally, name)?;
                }
                // Only once what it found is recorded: readiness trusts this time.
                self.queue.record_listing("direct")?;
            }
            // A primary that refuses its catalog: the known repositories
            // are still compared.
            Err(e) => log::debug!("reconciliation: the primary's catalog: {e}"),
        }
        let names: Vec<String> = self.queue.least_recently_compared(usize::MAX >> 1)?;
        tally.record.repositories = names.len() as u64;
        let spacing = (self.window / 2) / names.len().max(1) as u32;
        for name in names {
            self.shutdown.check()?;
            if !known.busy.contains(&name) {
                self.compare_directly(&mut tally, &name)?;
            }
            self.shutdown.sleep(spacing.min(Duration::from_secs(5)));
        }
        Ok(tally)
    }

    /// Reads one repository's tags on both registries and compares them.
    pub(super) fn compare_directly(&self, tally: &mut Tally, name: &str) -> Result<()> {
        let at = self.queue.now()?;
        let (primary, requests) = fingerprint::read(self.primary, name)?;
        tally.record.requests += requests;
        // A primary that lists no tags tells nothing to compare with.
        if primary.is_none() && !self.primary.lists_tags() {
            return Ok(());
        }
        let (secondary, _) = fingerprint::read(self.secondary, name)?;
        // A secondary that lists no tags: the primary's, read there by name.
        let secondary = match (secondary, &primary) {
            (None, Some(wanted)) if !self.secondary.lists_tags() => {
                Some(self.secondary.digests_of(name, wanted.keys())?)
            }
            (secondary, _) => secondary,
        };
        let kept = self.queue.kept_deletions(name)?;
        let unsupported = self.queue.unsupported_tags(name)?;
        let primary = primary.unwrap_or_default();
        let secondary = fingerprint::as_expected(secondary.unwrap_or_default(), &kept, &unsupported);
        if primary == secondary {
            tally.equal(name, &at);
            return Ok(());
        }
        // Recheck in a moment what could be a push landing right now.
        let busy: BTreeSet<String> = self.reader.read(|s| s.known_repositories())?.busy;
        if busy.contains(name) {
            return Ok(());
        }
        self.differs(tally, name, kind_of_difference(&primary, &secondary))
    }
}
