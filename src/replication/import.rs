//! Importing one repository of a transfer bundle: the secondary's
//! repository is made to hold exactly the bundle's tags, with the copy
//! engine a full sync uses, reading what the secondary lacks from the
//! bundle (the replicator's `source`) instead of the primary. So the same
//! rules hold: each blob streams in with its digest checked and is never
//! completed when wrong, children go before indexes, a manifest before its
//! tag, large blobs in recorded chunks that a rerun continues, tags gone
//! from the primary are removed without touching siblings, and the
//! outcome is recorded like a sync's (tags, blobs, `synced` or `failed`).
//! What the secondary holds already costs one request, so an import cut
//! short and run again copies nothing twice.

use std::collections::BTreeMap;

use super::copy::{Report, Seen, TagFailures};
use super::Replicator;
use crate::error::{Error, Result};
use crate::registry::{Digest, Mount};

/// A blob the bundle leaves out because another repository of the
/// secondary held it when the inventory was taken.
pub struct Mountable {
    pub digest: Digest,
    pub size: u64,
    pub from: String,
}

impl Replicator<'_> {
    /// Makes the secondary's `repo` hold exactly `tags`, and records it
    /// as synced (or failed, with the reason) in the state file.
    pub fn import(&self, repo: &str, tags: &BTreeMap<String, Digest>, mounts: &[Mountable]) -> Result<Report> {
        let job = self.store.claim_for_full_sync(repo)?;
        let progress = self.stats.begin(repo);
        let mut report = Report::default();
        let mut seen = Seen { progress, ..Seen::default() };
        let result = self.import_tags(repo, tags, mounts, &mut seen, &mut report);
        self.stats.end(repo, result.is_ok());
        match result {
            Ok(()) => {
                self.record(repo, "synced", || self.store.finish_job(&job, &report.to_string()))?;
                Ok(report)
            }
            Err(Error::Interrupted) => {
                self.record(repo, "handed back", || self.store.release_job(&job))?;
                Err(Error::Interrupted)
            }
            Err(e) => {
                // A bad blob is the bundle's fault, not the primary's.
                let e = match e {
                    Error::BlobMismatch { repository, digest, message } => Error::Bundle {
                        file: self.source.describe(),
                        message: format!(
                            "blob {digest} (for {repository}) {message}: the bundle is damaged; nothing referencing \
                             it was pushed. Carry it again and check it with sha256sum -c"
                        ),
                        refused: false,
                    },
                    e => e,
                };
                self.record(repo, "failed", || self.store.fail_job(&job, &e.reason()))?;
                Err(e.in_repository(repo))
            }
        }
    }

    fn import_tags(
        &self,
        repo: &str,
        tags: &BTreeMap<String, Digest>,
        mounts: &[Mountable],
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        for m in mounts {
            self.shutdown.check()?;
            self.mount_from(repo, m, seen, report)?;
        }
        let present = self.secondary.tag_digests(repo)?;
        seen.manifests.extend(present.values().cloned());
        let mut failures = TagFailures::default();
        for (tag, digest) in tags {
            self.shutdown.check()?;
            if present.get(tag) == Some(digest) {
                self.store.set_tag(repo, tag, digest)?;
                report.tags_unchanged += 1;
                continue;
            }
            let copied =
                self.primary_manifest(repo, digest).and_then(|m| self.copy_manifest(repo, tag, m, seen, report));
            failures.record(repo, tag, copied)?;
        }
        for tag in present.keys().filter(|t| !tags.contains_key(*t)) {
            self.shutdown.check()?;
            self.remove_tag(repo, tag)?;
            report.tags_removed += 1;
        }
        failures.into_result(repo)
    }

    /// Mounts a blob the bundle leaves out from the repository that held
    /// it. One that is no longer there is left for the copy, which names
    /// it when the bundle does not carry it either.
    fn mount_from(&self, repo: &str, m: &Mountable, seen: &mut Seen, report: &mut Report) -> Result<()> {
        match self.secondary.mount_blob(repo, &m.digest, &m.from)? {
            Mount::Mounted => {
                self.store.record_blob(repo, &m.digest, m.size)?;
                seen.blobs.insert(m.digest.clone());
                report.blobs_mounted += 1;
            }
            Mount::Upload(location) => {
                log::debug!("{repo}: {} is no longer in {} on the secondary", m.digest, m.from);
                self.secondary.cancel_upload(repo, &location);
            }
        }
        Ok(())
    }
}
