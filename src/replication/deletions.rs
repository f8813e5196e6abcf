//! The replicator's deletions: what the primary no longer has goes
//! through the engine's [`Deleter`] (`held.rs`: held back by
//! `replication.delete_delay_hours`, kept when cancelled, the burst
//! alarm), and a held deletion that is due is applied only after the
//! primary is asked once more: what it has again is not removed. A
//! deletion a transfer bundle asked for is not the primary's to take
//! back: the primary is not asked about it.

use super::held::Deleter;
use super::replicator::Replicator;
use super::report::Report;
use crate::error::Result;
use crate::registry::Digest;
use crate::store::{Cause, Deletion, DeletionKind};

impl Replicator<'_> {
    fn deleter(&self) -> Deleter<'_, '_> {
        Deleter { engine: &self.engine, policy: &self.engine.deletions, bundle: None }
    }

    /// See [`Deleter::remove_or_hold_tag`].
    pub(super) fn remove_or_hold_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: Option<&Digest>,
        cause: Cause,
        report: &mut Report,
    ) -> Result<()> {
        self.deleter().remove_or_hold_tag(repo, tag, digest, cause, report)
    }

    /// See [`Deleter::remove_or_hold_gone`].
    pub(super) fn remove_or_hold_gone<'t>(
        &self,
        repo: &str,
        gone: impl Iterator<Item = (&'t String, &'t Digest)>,
        cause: Cause,
        report: &mut Report,
    ) -> Result<()> {
        self.deleter().remove_or_hold_gone(repo, gone, cause, report)
    }

    /// See [`Deleter::delete_or_hold_manifest`].
    pub(super) fn delete_or_hold_manifest(&self, repo: &str, digest: &Digest, report: &mut Report) -> Result<()> {
        self.deleter().delete_or_hold_manifest(repo, digest, report)
    }

    /// Applies the repository's due deletions now, in the foreground
    /// (`georeg deletions --apply`, holding the state file's lock).
    pub fn apply_deletions(&self, repo: &str) -> Result<Report> {
        let mut report = Report::default();
        self.apply_due_deletions(repo, &mut report)?;
        Ok(report)
    }

    /// Applies the repository's due deletions, each asked of the primary
    /// once more first (unless a bundle asked for it).
    pub(super) fn apply_due_deletions(&self, repo: &str, report: &mut Report) -> Result<()> {
        self.deleter().apply_due(repo, report, &|d| self.primary_has_again(repo, d))
    }

    fn primary_has_again(&self, repo: &str, deletion: &Deletion) -> Result<bool> {
        if deletion.bundle.is_some() {
            return Ok(false);
        }
        Ok(match (deletion.kind, &deletion.tag, deletion.digest()) {
            (DeletionKind::Tag, Some(tag), _) => self.primary.manifest_digest(repo, tag)?.is_some(),
            (DeletionKind::Manifest, _, Some(digest)) => self.primary.manifest_digest(repo, digest.as_str())?.is_some(),
            _ => false,
        })
    }

    /// See [`Deleter::check_burst`].
    pub(super) fn check_burst(&self, repo: &str, report: &Report) {
        self.deleter().check_burst(repo, report)
    }
}
