//! [`Importer`]: one repository of a transfer bundle applied to the
//! secondary. Its repository is made to hold exactly the bundle's tags
//! with the copy engine a full sync uses, reading what the secondary lacks
//! from the bundle (the engine's `Source`), and run through the same job
//! loop. So the same rules hold: each blob streams in with its digest
//! checked and is never completed when wrong, children go before indexes,
//! a manifest before its tag, large blobs in recorded chunks that a rerun
//! continues, tags gone from the primary are removed without touching
//! siblings, and the outcome is recorded like a sync's (tags, blobs,
//! `synced` or `failed`). What the secondary holds already costs one
//! request, so an import cut short and run again copies nothing twice.
//! Referrers the bundle lists (signatures, SBOMs: manifests no tag
//! reaches) are put by digest once every tag is in place, each after its
//! subject, as a sync copies those the primary's referrers API lists.
//!
//! An importer has no primary registry to ask: an air-gapped secondary
//! may not reach one. What the bundle says is the whole truth, and a tag
//! it no longer lists is a deletion like one the primary asks for: held
//! back by `replication.delete_delay_hours` (`held.rs`), counted by the
//! burst alarm, and applied once due by the next import that still lists
//! it as gone (or by an operator).

use std::collections::BTreeMap;

use super::engine::{Engine, Seen};
use super::held::Deleter;
use super::report::{Report, TagFailures};
use crate::error::{Error, Result};
use crate::registry::{Digest, Mount};
use crate::store::Cause;

/// A blob the bundle leaves out because another repository of the
/// secondary held it when the inventory was taken.
pub struct Mountable {
    pub digest: Digest,
    pub size: u64,
    pub from: String,
}

/// Applies a bundle's repositories: the copy engine, reading from the bundle.
pub struct Importer<'a> {
    pub engine: Engine<'a>,
    /// The bundle's ID, named on the deletions its import asks for.
    pub bundle: String,
}

impl Importer<'_> {
    /// Makes the secondary's `repo` hold exactly `tags` and every one of
    /// `referrers` ((subject, referrer), subjects first), and records it as
    /// synced (or failed, with the reason) in the state file.
    pub fn import(
        &self,
        repo: &str,
        tags: &BTreeMap<String, Digest>,
        mounts: &[Mountable],
        referrers: &[(Digest, Digest)],
    ) -> Result<Report> {
        let job = self.engine.store.claim_for_full_sync(repo)?;
        let deleter = Deleter { engine: &self.engine, policy: &self.engine.deletions, bundle: Some(&self.bundle) };
        self.engine.run_job(&job, |progress, report| {
            let mut seen = Seen { progress: progress.clone(), ..Seen::default() };
            let imported = self
                .import_tags(repo, tags, mounts, &deleter, &mut seen, report)
                .and_then(|()| self.import_referrers(repo, referrers, &mut seen, report));
            // A held deletion the bundle still asks for is applied once
            // due; one whose tag (or manifest) it lists again is dropped.
            let applied = imported.and_then(|()| {
                deleter.apply_due(repo, report, &|d| {
                    Ok(match (&d.tag, d.digest()) {
                        (Some(tag), _) => tags.contains_key(tag),
                        (None, Some(digest)) => {
                            tags.values().any(|t| *t == digest) || referrers.iter().any(|(_, r)| *r == digest)
                        }
                        (None, None) => false,
                    })
                })
            });
            deleter.check_burst(repo, report);
            applied.map_err(|e| self.bundle_fault(e))
        })
    }

    /// Puts by digest each referrer the secondary lacks, in the bundle's
    /// order (a referrer after its subject). Only once every tag is in:
    /// a tag that failed fails the repository, and the rerun puts them.
    fn import_referrers(
        &self,
        repo: &str,
        referrers: &[(Digest, Digest)],
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        for (subject, referrer) in referrers {
            self.engine.shutdown.check()?;
            if seen.manifests.contains(referrer)
                || self.engine.secondary.manifest_digest(repo, referrer.as_str())?.is_some()
            {
                seen.manifests.insert(referrer.clone());
                continue;
            }
            let m = self.engine.source_manifest(repo, referrer)?;
            self.engine.copy_by_digest(repo, referrer, &m, seen, report, 0)?;
            report.referrers_copied += 1;
            log::debug!("{repo}@{referrer} imported (a referrer of {subject})");
        }
        Ok(())
    }

    /// A bad blob is the bundle's fault, not the primary's.
    fn bundle_fault(&self, e: Error) -> Error {
        match e {
            Error::BlobMismatch { repository, digest, message } => Error::Bundle {
                file: self.engine.source.describe(),
                message: format!(
                    "blob {digest} (for {repository}) {message}: the bundle is damaged; nothing referencing \
                     it was pushed. Carry it again and check it with sha256sum -c"
                ),
                refused: false,
            },
            e => e,
        }
    }

    fn import_tags(
        &self,
        repo: &str,
        tags: &BTreeMap<String, Digest>,
        mounts: &[Mountable],
        deleter: &Deleter,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        for m in mounts {
            self.engine.shutdown.check()?;
            self.mount_from(repo, m, seen, report)?;
        }
        // Tags an operator put back go back first, as in a sync.
        self.engine.restore_pins(repo, report)?;
        let present = self.engine.secondary.tag_digests(repo)?;
        seen.manifests.extend(present.values().cloned());
        let mut failures = TagFailures::default();
        for (tag, digest) in tags {
            self.engine.shutdown.check()?;
            if present.get(tag) == Some(digest) {
                self.engine.store.set_tag(repo, tag, digest)?;
                report.tags_unchanged += 1;
                continue;
            }
            let copied = self
                .engine
                .source_manifest(repo, digest)
                .and_then(|m| self.engine.copy_manifest(repo, tag, m, seen, report));
            failures.record(repo, tag, copied)?;
        }
        let cause = if tags.is_empty() { Cause::RepositoryEmptied } else { Cause::TagRemoved };
        deleter.remove_or_hold_gone(repo, present.iter().filter(|(t, _)| !tags.contains_key(*t)), cause, report)?;
        failures.into_result(repo)
    }

    /// Mounts a blob the bundle leaves out from the repository that held
    /// it. One that is no longer there is left for the copy, which names
    /// it when the bundle does not carry it either.
    fn mount_from(&self, repo: &str, m: &Mountable, seen: &mut Seen, report: &mut Report) -> Result<()> {
        match self.engine.secondary.mount_blob(repo, &m.digest, &m.from)? {
            Mount::Mounted => {
                self.engine.store.record_blob(repo, &m.digest, m.size)?;
                seen.blobs.insert(m.digest.clone());
                report.blobs_mounted += 1;
            }
            Mount::Upload(location) => {
                log::debug!("{repo}: {} is no longer in {} on the secondary", m.digest, m.from);
                self.engine.secondary.cancel_upload(repo, &location);
            }
        }
        Ok(())
    }
}
