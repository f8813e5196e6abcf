//! The replicator's event path: applying a repository's new events by
//! comparing only the tags and digests they name with the primary's
//! current state, copying with the engine what differs, then reading what
//! was touched again on both registries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::engine::Seen;
use super::replicator::Replicator;
use super::report::Report;
use crate::error::{Error, Result};
use crate::registry::Digest;
use crate::store::{Action, Event};

impl Replicator<'_> {
    /// Applies events: only the tags and digests they name are compared
    /// with the primary's current state, so one push into a repository of
    /// thousands of tags costs a handful of requests. The registry delivers
    /// events out of order and more than once; looking at the primary's
    /// state now, not at what the event claims, makes that harmless.
    ///
    /// `listed`: the tags a full comparison just listed on the primary, or
    /// `None` on the event path. A tag an event names that does not resolve
    /// is gone when a listing did not show it either; on the event path it
    /// may just not be written yet, so the repository is tried again, with
    /// a full comparison, rather than the tag taken for deleted. On the
    /// event path, every tag and digest touched is read again on both
    /// registries before the repository counts as synced.
    pub(super) fn apply_events(
        &self,
        repo: &str,
        events: &[Event],
        listed: Option<&BTreeSet<String>>,
        progress: &Arc<AtomicU64>,
        report: &mut Report,
    ) -> Result<()> {
        // For each tag: whether the newest event says it should exist, and
        // the digest that event named.
        let mut tags: BTreeMap<String, (bool, Option<Digest>)> = BTreeMap::new();
        let mut digests = BTreeSet::new();
        let mut whole_repository = false;
        for e in events {
            let digest = e.digest.as_deref().map(Digest::parse).transpose().unwrap_or_else(|why| {
                log::warn!("{repo}: ignoring the digest of event {}: {why}", e.event_id);
                None
            });
            match (&e.tag, digest) {
                (Some(tag), digest) => {
                    tags.insert(tag.clone(), (e.action == Action::Push, digest));
                }
                (None, Some(d)) => {
                    if e.action == Action::Delete {
                        // Tags pushed at a deleted manifest went with it.
                        let pushed_here: Vec<String> = events
                            .iter()
                            .filter(|p| {
                                p.id < e.id && p.action == Action::Push && p.digest.as_deref() == Some(d.as_str())
                            })
                            .filter_map(|p| p.tag.clone())
                            .collect();
                        for tag in pushed_here {
                            tags.insert(tag, (false, None));
                        }
                    }
                    digests.insert(d);
                }
                // The whole repository was deleted: compare everything, and
                // still apply the batch's other events.
                (None, None) if e.action == Action::Delete => whole_repository = true,
                (None, None) => log::warn!("{repo}: ignoring event {}: names no tag or digest", e.event_id),
            }
        }
        let full_listing;
        let listed = match listed {
            Some(listed) => Some(listed),
            None if whole_repository => {
                full_listing = self.sync_tags(repo, progress, report)?;
                Some(&full_listing)
            }
            None => None,
        };
        if let Some(listed) = listed {
            // The comparison covered every tag it listed.
            tags.retain(|tag, _| !listed.contains(tag));
        }
        let mut seen = Seen { progress: progress.clone(), ..Seen::default() };
        // Pushes by digest first: an index's children arrive that way.
        for digest in &digests {
            self.engine.shutdown.check()?;
            self.sync_digest(repo, digest, &mut seen, report)?;
        }
        for (tag, (pushed, digest)) in &tags {
            self.engine.shutdown.check()?;
            self.sync_tag(repo, tag, *pushed, digest.as_ref(), listed.is_some(), &mut seen, report)?;
        }
        if listed.is_none() {
            self.check_touched(repo, tags.keys(), &digests)?;
        }
        Ok(())
    }

    /// Reads every tag and digest an event sync touched again, on both
    /// registries: the repository counts as synced only when they agree.
    fn check_touched<'t>(
        &self,
        repo: &str,
        tags: impl Iterator<Item = &'t String>,
        digests: &BTreeSet<Digest>,
    ) -> Result<()> {
        let mut differences = Vec::new();
        for tag in tags {
            let (p, s) = (self.primary.manifest_digest(repo, tag)?, self.engine.secondary.manifest_digest(repo, tag)?);
            if p != s {
                let text = format!("tag {tag}: primary {}, secondary {}", show(p.as_ref()), show(s.as_ref()));
                let only_here = match (s, &p) {
                    (Some(s), None) => Some(OnlyHere::Tag(tag.clone(), s)),
                    (Some(s), Some(p)) => Some(OnlyHere::Pinned(tag.clone(), s, p.clone())),
                    (None, _) => None,
                };
                differences.push(Difference { text, only_here });
            }
        }
        for d in digests {
            let p = self.primary.manifest_digest(repo, d.as_str())?.is_some();
            let s = self.engine.secondary.manifest_digest(repo, d.as_str())?.is_some();
            if p != s {
                let text = format!("manifest {d}: on the primary {p}, on the secondary {s}");
                differences.push(Difference { text, only_here: (s && !p).then(|| OnlyHere::Manifest(d.clone())) });
            }
        }
        if !differences.is_empty() {
            // What is only on the secondary because its deletion is held
            // back (or cancelled) differs on purpose.
            let kept = self.engine.store.kept_deletions(repo)?;
            differences.retain(|d| !d.expected_by(&kept));
        }
        if differences.is_empty() {
            return Ok(());
        }
        let differences: Vec<String> = differences.into_iter().map(|d| d.text).collect();
        self.engine.store.request_full_sync(repo)?;
        Err(Error::Repository {
            repository: repo.into(),
            message: format!(
                "read again after the sync, the registries differ ({}); retried with a full comparison",
                differences.join("; ")
            ),
        })
    }

    /// Makes one tag on the secondary what it is on the primary now.
    /// `pushed`: the newest event says the tag was pushed, at `expected`
    /// when it named a digest. Distribution sends a push notification
    /// before it writes the tag link, so a tag just announced may not
    /// resolve yet; it gets a few seconds to appear. If it still does not,
    /// it is gone when `listed` (a full comparison did not list it), and
    /// otherwise the sync fails and is retried with a full comparison.
    ///
    /// The primary's manifest is fetched by tag in one GET, its bytes
    /// checked against the digest the registry names for them, and the
    /// secondary is asked about the tag only when georeg's records say it
    /// already holds this digest: otherwise a copy is due anyway, and
    /// putting a tag again is harmless. So a new tag costs one request to
    /// read it, one per blob (plus the copy of the missing ones) and one to
    /// write it.
    #[allow(clippy::too_many_arguments)]
    fn sync_tag(
        &self,
        repo: &str,
        tag: &str,
        pushed: bool,
        expected: Option<&Digest>,
        listed: bool,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        let mut wanted = self.pushed_manifest(repo, tag, pushed)?;
        if pushed {
            if let (None, Some(digest)) = (&wanted, expected) {
                self.copy_ahead_of_tag(repo, digest, seen, report)?;
            }
            for wait_ms in [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000] {
                if wanted.is_some() {
                    break;
                }
                self.engine.shutdown.check()?;
                std::thread::sleep(std::time::Duration::from_millis(wait_ms));
                wanted = self.pushed_manifest(repo, tag, pushed)?;
            }
            match (&wanted, listed) {
                (Some(_), _) => {}
                (None, true) => log::debug!("{repo}:{tag} was pushed but is gone from the primary; removing it"),
                (None, false) => {
                    self.engine.store.request_full_sync(repo)?;
                    return Err(Error::Manifest {
                        repository: repo.into(),
                        reference: tag.into(),
                        message: format!(
                            "was pushed but does not resolve on the primary {} yet; retried with a full comparison",
                            self.primary.url()
                        ),
                    });
                }
            }
        }
        if let (Some(m), Some(expected)) = (&wanted, expected.filter(|_| pushed)) {
            // The tag moved since the event (a newer push), or the bytes
            // are not what the registry stores: ask it which.
            if &m.digest != expected && self.primary.manifest_digest(repo, tag)?.as_ref() != Some(&m.digest) {
                self.engine.store.request_full_sync(repo)?;
                return Err(Error::Manifest {
                    repository: repo.into(),
                    reference: tag.into(),
                    message: format!(
                        "from the primary {} did not match its digest: the event named {expected}, the manifest \
                         read hashes to {}; nothing was pushed",
                        self.primary.url(),
                        m.digest
                    ),
                });
            }
        }
        match wanted {
            Some(m) => {
                let recorded = self.engine.store.tag_digest(repo, tag)?.as_deref() == Some(m.digest.as_str());
                if recorded && self.engine.secondary.manifest_digest(repo, tag)?.as_ref() == Some(&m.digest) {
                    report.tags_unchanged += 1;
                } else {
                    self.engine.copy_manifest(repo, tag, m, seen, report)?;
                }
            }
            None => match self.engine.secondary.manifest_digest(repo, tag)? {
                Some(there) => {
                    self.remove_or_hold_tag(repo, tag, Some(&there), crate::store::Cause::TagRemoved, report)?
                }
                None => self.engine.store.remove_tag(repo, tag)?,
            },
        }
        Ok(())
    }
}

impl Replicator<'_> {
    /// The primary's manifest for `tag`. Just after a push, distribution's
    /// filesystem driver may be rewriting the tag's link in place, and a
    /// read racing that write answers 500: for a pushed tag that counts as
    /// not resolved yet (polled again), not as a failed sync.
    fn pushed_manifest(&self, repo: &str, tag: &str, pushed: bool) -> Result<Option<crate::registry::Manifest>> {
        match self.primary.manifest(repo, tag) {
            Err(Error::Registry { status: 500, ref message, .. }) if pushed => {
                log::debug!("{repo}:{tag} answered 500 right after its push ({message}): asking again");
                Ok(None)
            }
            other => other,
        }
    }

    /// Distribution notifies a push before it writes the tag link, but
    /// the manifest is readable by the digest the event names already:
    /// copy the image by digest (blobs, children, then the manifest) while
    /// the tag is not there yet, so that only the tag is left to put once
    /// the primary resolves it. Schema 1 waits for its tag (its digest is
    /// per registry).
    fn copy_ahead_of_tag(&self, repo: &str, digest: &Digest, seen: &mut Seen, report: &mut Report) -> Result<()> {
        let Some(m) = self.primary.manifest(repo, digest.as_str())? else { return Ok(()) };
        if crate::registry::manifest::is_schema1(&m.media_type, &m.bytes) || seen.manifests.contains(&m.digest) {
            return Ok(());
        }
        self.engine.put_by_digest(repo, digest, &m, seen, report, 0)?;
        seen.manifests.insert(digest.clone());
        report.manifests_copied += 1;
        Ok(())
    }
}

/// A tag or manifest that reads differently on the two registries.
struct Difference {
    text: String,
    /// What only the secondary has, if that is the difference.
    only_here: Option<OnlyHere>,
}

/// A tag (at a digest) or a manifest (by digest) only the secondary has,
/// or a tag it has elsewhere than the primary (secondary's, primary's).
enum OnlyHere {
    Tag(String, Digest),
    Manifest(Digest),
    Pinned(String, Digest, Digest),
}

impl Difference {
    /// Whether the difference is a deletion held back or cancelled, or a
    /// tag an operator put back.
    fn expected_by(&self, kept: &crate::store::Kept) -> bool {
        match &self.only_here {
            None => false,
            Some(OnlyHere::Tag(tag, digest)) => kept.covers(tag, digest.as_str()),
            Some(OnlyHere::Manifest(digest)) => kept.manifests.contains(digest.as_str()),
            Some(OnlyHere::Pinned(tag, here, there)) => kept.pinned_at(tag, here.as_str(), Some(there.as_str())),
        }
    }
}

/// A digest, or `missing`, for messages.
fn show(d: Option<&Digest>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "missing".into())
}
