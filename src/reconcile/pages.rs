//! A follower's pass: the primary georeg serves the fingerprints of its
//! registry in pages of 1,000 repositories, each with a digest over its
//! entries; this node compares each page's digest with one over its own
//! fingerprints of the same names, fetches the entries of a page only when
//! they differ, and compares repository by repository only there. With
//! nothing changed a pass costs one request across the WAN, whatever the
//! number of repositories; a repository counts as compared as of the older
//! of the two reads.

use std::collections::{BTreeMap, BTreeSet};

use super::pass::{Reconciler, Tally};
use crate::error::{Error, Result};
use crate::peer::PrimaryNode;
use crate::store::{page_digest, FingerprintPage, Known, LocalFingerprint};

impl Reconciler<'_> {
    pub(super) fn pages_pass(&self, node: &PrimaryNode) -> Result<Tally> {
        let offline = |message: String| Error::Transport { url: node.url().to_string(), message };
        let Some(primary) = node.fingerprints().map_err(offline)? else {
            log::debug!("reconciliation: the primary georeg serves no fingerprints (an older georeg): reading tags");
            return self.direct_pass();
        };
        let mut tally = Tally::new("fingerprints", self.queue.now()?);
        // Fingerprints the primary read longer ago than this window allows
        // (its own window is longer) cannot vouch for anything: those
        // repositories are compared by reading the primary registry.
        let stale_before = self.queue.ago(self.window.as_secs())?;
        let stale = primary.pages.iter().any(|p| p.oldest_checked_at < stale_before);
        if stale && !self.stale_fingerprints_told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "the primary georeg's fingerprints are older than replication.reconcile_interval_seconds here ({} s): \
                 set it on the primary no larger; meanwhile their repositories are compared by reading the primary \
                 registry",
                self.window.as_secs()
            );
        }
        tally.record.requests = 1;
        let (known, local) = self.reader.read(|s| Ok((s.known_repositories()?, s.local_fingerprints()?)))?;
        tally.record.repositories = known.replicated.len() as u64;
        // Each page stands for the names from its first up to the next
        // page's first: a name of this node in between is one the primary
        // does not have.
        let pages = &primary.pages;
        let bounds: Vec<(&str, Option<&str>)> = (0..pages.len())
            .map(|i| {
                let from = if i == 0 { "" } else { pages[i].first.as_str() };
                (from, pages.get(i + 1).map(|p| p.first.as_str()))
            })
            .collect();
        if pages.is_empty() {
            self.compare_range(node, &mut tally, &known, &local, "", None, None, primary.complete)?;
        }
        for (page, (from, to)) in pages.iter().zip(bounds) {
            self.shutdown.check()?;
            if page.oldest_checked_at < stale_before {
                self.compare_page_directly(node, &mut tally, &known, page)?;
                continue;
            }
            self.compare_range(node, &mut tally, &known, &local, from, to, Some(page), primary.complete)?;
        }
        // Only once every repository it names is recorded: readiness trusts this time.
        if primary.complete {
            self.queue.record_listing("fingerprints")?;
        }
        Ok(tally)
    }

    /// Compares each repository of a page the primary's fingerprints are
    /// too old for by reading both registries.
    fn compare_page_directly(
        &self,
        node: &PrimaryNode,
        tally: &mut Tally,
        known: &Known,
        page: &FingerprintPage,
    ) -> Result<()> {
        tally.record.requests += 1;
        let entries = node
            .fingerprints_in(&page.first, &page.last)
            .map_err(|message| Error::Transport { url: node.url().to_string(), message })?;
        let names: BTreeSet<&str> = entries
            .iter()
            .map(|e| e.repository.as_str())
            .chain(
                known
                    .replicated
                    .iter()
                    .map(String::as_str)
                    .filter(|n| *n >= page.first.as_str() && *n <= page.last.as_str()),
            )
            .collect();
        for name in names {
            self.shutdown.check()?;
            if known.busy.contains(name) || known.excluded.contains(name) || !self.selection.includes(name) {
                continue;
            }
            if known.replicated.contains(name) {
                self.compare_directly(tally, name)?;
            } else {
                self.new_repository(tally, name)?;
            }
        }
        Ok(())
    }

    /// Compares the names `from..to` (to: open end) with `page`, the
    /// primary's page for them.
    #[allow(clippy::too_many_arguments)]
    fn compare_range(
        &self,
        node: &PrimaryNode,
        tally: &mut Tally,
        known: &Known,
        local: &BTreeMap<String, LocalFingerprint>,
        from: &str,
        to: Option<&str>,
        page: Option<&FingerprintPage>,
        complete: bool,
    ) -> Result<()> {
        let in_range = |name: &str| name >= from && to.is_none_or(|to| name < to);
        let mine: BTreeMap<&str, &LocalFingerprint> = local
            .iter()
            .filter(|(name, _)| in_range(name) && !known.excluded.contains(*name) && self.selection.includes(name))
            .map(|(name, fp)| (name.as_str(), fp))
            .collect();
        // Replicated names this node has not read yet cannot be compared.
        let unread = known
            .replicated
            .iter()
            .any(|n| in_range(n) && mine.get(n.as_str()).is_none_or(|f| f.fingerprint.is_empty()));
        let with_tags = || mine.iter().filter(|(_, f)| f.tags > 0 && !f.fingerprint.is_empty());
        let digest = page_digest(with_tags().map(|(n, f)| (*n, f.fingerprint.as_str())));
        if !unread && page.is_some_and(|p| p.digest == digest) || (page.is_none() && with_tags().next().is_none()) {
            let oldest = page.map(|p| p.oldest_checked_at.clone());
            for (name, fp) in mine.iter().filter(|(n, f)| !f.stale && known.replicated.contains(**n)) {
                let at = oldest.as_ref().filter(|o| **o < fp.checked_at).unwrap_or(&fp.checked_at);
                tally.equal(name, at);
            }
            return Ok(());
        }
        let entries = match page {
            Some(p) => {
                tally.record.requests += 1;
                node.fingerprints_in(&p.first, &p.last)
                    .map_err(|message| Error::Transport { url: node.url().to_string(), message })?
            }
            None => Vec::new(),
        };
        let theirs: BTreeMap<&str, _> = entries.iter().map(|e| (e.repository.as_str(), e)).collect();
        let names: BTreeSet<&str> = theirs.keys().copied().chain(mine.keys().copied()).collect();
        for name in names {
            if known.busy.contains(name) || !self.selection.includes(name) || known.excluded.contains(name) {
                continue;
            }
            let here = mine.get(name).filter(|f| !f.fingerprint.is_empty());
            if here.is_some_and(|f| f.stale) {
                continue; // a sync or an event changed it: read again first
            }
            match (theirs.get(name), here) {
                (Some(p), Some(s)) if s.tags > 0 && p.fingerprint == s.fingerprint => {
                    tally.equal(name, p.checked_at.as_str().min(s.checked_at.as_str()))
                }
                (Some(_), None) if !known.replicated.contains(name) => self.new_repository(tally, name)?,
                (Some(_), None) => {} // not read here yet
                (Some(_), Some(s)) if s.tags == 0 => self.differs(tally, name, "missing on the secondary")?,
                (Some(_), Some(_)) => self.differs(tally, name, "tags differ")?,
                (None, Some(s)) if s.tags == 0 => {
                    if known.replicated.contains(name) {
                        tally.equal(name, &s.checked_at);
                    }
                }
                (None, Some(_)) if complete => self.differs(tally, name, "gone from the primary")?,
                (None, _) => {}
            }
        }
        Ok(())
    }
}
