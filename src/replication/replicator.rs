//! [`Replicator`]: the copy engine plus the primary registry it compares
//! with. Here is the full sync of one repository: every tag of the
//! primary compared with the secondary's (by digest, one HEAD each), what
//! differs copied with the engine, what the primary no longer has removed
//! (or its deletion held back, `held.rs`), referrers followed
//! (`referrers.rs`) and what a drill found damaged copied again first
//! (`repair.rs`). The event path (`events.rs`) compares only what events
//! name; verification (`verify.rs`) proves a repository matches.
//!
//! Everything that asks the primary is the replicator's; the `Engine` it
//! holds reads only from its `Source`, so an import, which has no primary,
//! uses the engine without a replicator.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::engine::{Engine, Seen};
use super::report::{Report, TagFailures};
use crate::error::{Error, Result};
use crate::registry::{self, Client, Digest};
use crate::shutdown::Shutdown;
use crate::store::{Cause, Event, Job};

/// What replicating needs: the copy engine (reading from the primary,
/// writing to the secondary), the primary registry (read-only) to compare
/// with, and how deletions are decided.
pub struct Replicator<'a> {
    pub engine: Engine<'a>,
    /// The primary registry, read-only.
    pub primary: &'a Client,
    /// How long one repository's sync may take
    /// (`replication.sync_budget_seconds`).
    pub budget_seconds: u64,
    /// Repositories to replicate whatever the catalog says
    /// (`replication.repositories`).
    pub repositories: &'a [String],
}

impl Replicator<'_> {
    /// Syncs one repository now, in the foreground (`georeg sync`): a full
    /// comparison of every tag, recorded in the state file like any job.
    pub fn sync(&self, repo: &str) -> Result<Report> {
        if !registry::valid_repository(repo) {
            return Err(Error::Usage(format!("{repo:?} is not a valid repository name")));
        }
        let job = self.engine.store.claim_for_full_sync(repo)?;
        self.run(&job)
    }

    /// Does a claimed job (a full sync, or the repository's new events) and
    /// records the outcome: synced, failed with its reason and next retry,
    /// or handed back untouched when interrupted by shutdown.
    pub fn run(&self, job: &Job) -> Result<Report> {
        // Every check between steps and every read ends the sync past it.
        let _budget = Shutdown::budget(self.budget_seconds);
        self.engine.run_job(job, |progress, report| {
            let result = self.engine.store.events_for(job).and_then(|events| {
                if job.full {
                    // What a drill found damaged is copied again first.
                    self.repair(&job.name, progress, report)?;
                    // Distribution notifies before it writes the tag link, so
                    // the listing may miss a tag an event just announced: the
                    // events naming tags the listing did not show still apply.
                    let listed = self.sync_tags(&job.name, progress, report)?;
                    let rest: Vec<Event> = events
                        .iter()
                        .filter(|e| e.tag.as_ref().is_some_and(|t| !listed.contains(t)))
                        .cloned()
                        .collect();
                    self.apply_events(&job.name, &rest, Some(&listed), progress, report)?;
                } else {
                    self.apply_events(&job.name, &events, None, progress, report)?;
                }
                self.apply_due_deletions(&job.name, report)?;
                if job.full {
                    self.engine.store.drill_failures_repaired(&job.name)?;
                }
                report.events_applied = events.len() as u64;
                Ok(())
            });
            // Deletions made before a failure count for the alarm too.
            self.check_burst(&job.name, report);
            result
        })
    }

    /// Makes one manifest, by digest, present on the secondary exactly when
    /// the primary has it. Deleting it on the secondary drops the tags that
    /// pointed at it, as deleting it on the primary did.
    pub(super) fn sync_digest(&self, repo: &str, digest: &Digest, seen: &mut Seen, report: &mut Report) -> Result<()> {
        let on_primary = self.primary.manifest_digest(repo, digest.as_str())?.is_some();
        let on_secondary = self.engine.secondary.manifest_digest(repo, digest.as_str())?.is_some();
        if on_primary && !on_secondary {
            let m = self.engine.source_manifest(repo, digest)?;
            self.engine.copy_by_digest(repo, digest, &m, seen, report, 0)?;
            report.manifests_copied += 1;
        } else if !on_primary && on_secondary {
            self.delete_or_hold_manifest(repo, digest, report)?;
        }
        if on_primary {
            self.engine.store.manifest_back(repo, digest)?;
        }
        Ok(())
    }

    /// Compares every tag; returns the tags the primary listed.
    pub(super) fn sync_tags(
        &self,
        repo: &str,
        progress: &Arc<AtomicU64>,
        report: &mut Report,
    ) -> Result<BTreeSet<String>> {
        let listed = self.primary.valid_tags(repo)?;
        if listed.is_empty() && !self.primary.lists_tags() {
            return Err(self.primary.unlisted(repo));
        }
        // Tags an operator put back go back first, so that the listing
        // below sees them where they are kept.
        self.engine.restore_pins(repo, report)?;
        // A secondary that lists no tags is asked by name: the primary's
        // tags, and those georeg left there (gone from the primary since).
        let mut present = self.engine.secondary.tag_digests_among(repo, &listed)?;
        if !self.engine.secondary.lists_tags() {
            let recorded: Vec<String> = self.engine.store.tags(repo)?.into_iter().map(|(tag, _)| tag).collect();
            let gone = recorded.iter().filter(|tag| !present.contains_key(*tag) && !listed.contains(tag));
            present.extend(self.engine.secondary.digests_of(repo, gone)?);
        }
        // What is held per tag is the two listings: the tags wanted are the
        // primary's listing less the few deleted since, and the referrers'
        // subjects are the distinct digests (a repository of a million tags
        // on a handful of images holds a handful).
        let mut subjects: BTreeSet<Digest> = BTreeSet::new();
        let mut deleted_since: BTreeSet<String> = BTreeSet::new();
        let mut seen =
            Seen { manifests: present.values().cloned().collect(), progress: progress.clone(), ..Seen::default() };
        let mut failures = TagFailures::default();
        // A primary with no tag left lost the repository, not a tag.
        let cause = if listed.is_empty() { Cause::RepositoryEmptied } else { Cause::TagRemoved };
        for tag in &listed {
            self.engine.shutdown.check()?;
            // A tag the secondary holds is compared by digest (HEAD); one it
            // lacks is read at once (GET), its digest checked, and copied.
            let copied = match present.get(tag) {
                Some(there) => match self.primary.manifest_digest(repo, tag)? {
                    None => {
                        deleted_since.insert(tag.clone());
                        continue;
                    }
                    Some(digest) if &digest == there => {
                        self.engine.store.set_tag(repo, tag, &digest)?;
                        report.tags_unchanged += 1;
                        subjects.insert(digest);
                        continue;
                    }
                    Some(digest) => {
                        let copied = self.copy_tag(repo, tag, &digest, &mut seen, report);
                        subjects.insert(digest);
                        copied
                    }
                },
                None => match self.primary.manifest(repo, tag)? {
                    None => {
                        deleted_since.insert(tag.clone());
                        continue;
                    }
                    Some(m) => {
                        subjects.insert(m.digest.clone());
                        self.engine.copy_manifest(repo, tag, m, &mut seen, report)
                    }
                },
            };
            failures.record(repo, tag, copied)?;
        }
        if failures.is_empty() {
            self.copy_referrers(repo, subjects, &mut seen, report)?;
        }
        let mut wanted: BTreeSet<String> = listed.into_iter().collect();
        for tag in &deleted_since {
            wanted.remove(tag);
        }
        let gone = present.iter().filter(|(t, _)| !wanted.contains(*t));
        self.remove_or_hold_gone(repo, gone, cause, report)?;
        failures.into_result(repo).map(|()| wanted)
    }

    fn copy_tag(&self, repo: &str, tag: &str, digest: &Digest, seen: &mut Seen, report: &mut Report) -> Result<()> {
        let m = self.engine.source_manifest(repo, digest)?;
        self.engine.copy_manifest(repo, tag, m, seen, report)
    }
}
