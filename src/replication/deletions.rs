//! Deletions held back (`replication.delete_delay_hours`). A secondary is
//! there for the day the primary is lost or wrecked; a primary that
//! deletes everything would otherwise take the copy with it within
//! seconds. So every deletion the replicator decides on (a tag the primary
//! no longer has, a manifest deleted there, a repository emptied) comes
//! through here: with a delay it is recorded in the state file and left
//! undone until the delay ends; an operator's cancellation keeps the tag
//! for good; with no delay it is applied at once, and recorded for the
//! burst alarm. Pushes and re-pointed tags never wait. The deletion itself
//! is the engine's (`deletion.rs`).
//!
//! A held deletion is applied by the worker that next holds its repository
//! once it is due (the claim query picks such repositories up), after the
//! primary is asked once more: what it has again is not removed.

use super::replicator::Replicator;
use super::report::Report;
use crate::error::Result;
use crate::registry::Digest;
use crate::store::{Action, Cause, Deletion, DeletionKind, NewDeletion, Open};

impl Replicator<'_> {
    /// `tag` (at `digest` on the secondary) is gone from the primary:
    /// removes it from the secondary now, holds the deletion until the
    /// delay ends, or keeps the tag when an operator cancelled its deletion.
    pub(super) fn remove_or_hold_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: Option<&Digest>,
        cause: Cause,
        report: &mut Report,
    ) -> Result<()> {
        let deletion = NewDeletion { kind: DeletionKind::Tag, tag: Some(tag), digest, cause, tags: 1 };
        if self.held_or_kept(repo, Some(tag), digest, report)? {
            return Ok(());
        }
        if self.deletions.delay_hours == 0 {
            self.engine.remove_tag(repo, tag)?;
            self.engine.store.record_applied_deletion(repo, &deletion)?;
            report.tags_removed += 1;
        } else {
            let applies_at = self.engine.store.hold_deletion(repo, &deletion, &self.deletions)?;
            log::debug!("{repo}:{tag} is gone from the primary ({}): deletion held until {applies_at}", cause.as_str());
            report.deletions_held += 1;
        }
        Ok(())
    }

    /// The manifest `digest` was deleted on the primary and the secondary
    /// still has it: deletes it (and the tags pointing at it) now, or holds
    /// that, or keeps it when an operator cancelled its deletion.
    pub(super) fn delete_or_hold_manifest(&self, repo: &str, digest: &Digest, report: &mut Report) -> Result<()> {
        if self.held_or_kept(repo, None, Some(digest), report)? {
            return Ok(());
        }
        let tags = self.engine.store.tags_at(repo, digest)?;
        let deletion = NewDeletion {
            kind: DeletionKind::Manifest,
            tag: None,
            digest: Some(digest),
            cause: Cause::ManifestDeleted,
            tags,
        };
        if self.deletions.delay_hours == 0 {
            self.delete_manifest_now(repo, digest, report)?;
            self.engine.store.record_applied_deletion(repo, &deletion)?;
        } else {
            let applies_at = self.engine.store.hold_deletion(repo, &deletion, &self.deletions)?;
            log::debug!("{repo}@{digest} was deleted on the primary: deletion held until {applies_at}");
            report.deletions_held += 1;
        }
        Ok(())
    }

    /// Whether a deletion is decided already: held (counted as such), or
    /// cancelled by an operator (kept).
    fn held_or_kept(
        &self,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
        report: &mut Report,
    ) -> Result<bool> {
        match self.engine.store.open_deletion(repo, tag, digest)? {
            Open::None => Ok(false),
            Open::Held { .. } => {
                report.deletions_held += 1;
                Ok(true)
            }
            Open::Cancelled => {
                report.deletions_kept += 1;
                Ok(true)
            }
        }
    }

    fn delete_manifest_now(&self, repo: &str, digest: &Digest, report: &mut Report) -> Result<()> {
        self.engine.secondary.delete_manifest(repo, digest)?;
        self.engine.store.remove_tags_at(repo, digest)?;
        self.engine.store.log_applied(repo, Action::Delete, None, Some(digest), None)?;
        report.manifests_deleted += 1;
        log::debug!("{repo}@{digest} deleted (gone from the primary)");
        Ok(())
    }

    /// Applies the repository's due deletions now, in the foreground
    /// (`georeg deletions --apply`, holding the state file's lock).
    pub fn apply_deletions(&self, repo: &str) -> Result<Report> {
        let mut report = Report::default();
        self.apply_due_deletions(repo, &mut report)?;
        Ok(report)
    }

    /// Applies the repository's held deletions that are due: their delay
    /// ran out, or an operator asked. Each is checked against the primary
    /// first; what it has again is dropped, not removed. A failure puts
    /// the rest back, with the reason, and fails the job (retried later).
    pub(super) fn apply_due_deletions(&self, repo: &str, report: &mut Report) -> Result<()> {
        let due = self.engine.store.claim_due_deletions(repo)?;
        let (mut done, mut dropped) = (0, 0);
        let result = due.iter().try_for_each(|deletion| -> Result<()> {
            self.engine.shutdown.check()?;
            let applied = self.apply_deletion(repo, deletion, report)?;
            self.engine.store.finish_deletion(deletion.id, applied)?;
            done += 1;
            match applied {
                true => log::debug!("{repo}: {} removed (held since {})", deletion.what(), deletion.seen_at),
                false => {
                    dropped += 1;
                    log::debug!("{repo}: {}: not removed, the primary has it again", deletion.what())
                }
            }
            Ok(())
        });
        if done > 0 {
            log::info!(
                "{repo}: {} held deletions applied to the secondary, {dropped} dropped (the primary has them again)",
                done - dropped
            );
        }
        if let Err(e) = result {
            // Whatever failed, nothing is left `applying` behind: the rest
            // wait for the repository's next sync, with the reason.
            let rest: Vec<i64> = due[done..].iter().map(|r| r.id).collect();
            if let Err(again) = self.engine.store.release_deletions(&rest, Some(&e.to_string())) {
                log::error!("{repo}: cannot put its deletions back to held: {again}; the next start does");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Applies one held deletion; false when the primary has it again.
    fn apply_deletion(&self, repo: &str, deletion: &Deletion, report: &mut Report) -> Result<bool> {
        let digest = deletion.digest.as_deref().map(Digest::parse).transpose().ok().flatten();
        match (deletion.kind, &deletion.tag, digest) {
            (DeletionKind::Tag, Some(tag), _) => {
                if self.primary.manifest_digest(repo, tag)?.is_some() {
                    return Ok(false);
                }
                if self.engine.secondary.manifest_digest(repo, tag)?.is_some() {
                    self.engine.remove_tag(repo, tag)?;
                    report.tags_removed += 1;
                } else {
                    self.engine.store.remove_tag(repo, tag)?;
                }
                Ok(true)
            }
            (DeletionKind::Manifest, _, Some(digest)) => {
                if self.primary.manifest_digest(repo, digest.as_str())?.is_some() {
                    return Ok(false);
                }
                if self.engine.secondary.manifest_digest(repo, digest.as_str())?.is_some() {
                    self.delete_manifest_now(repo, &digest, report)?;
                } else {
                    self.engine.store.remove_tags_at(repo, &digest)?;
                }
                Ok(true)
            }
            _ => {
                log::warn!("{repo}: deletion #{} names neither a tag nor a digest; dropped", deletion.id);
                Ok(false)
            }
        }
    }

    /// After a job that removed or held anything: raises the burst alarm
    /// when the last hour's deletions are too many (logged once; health
    /// reports it until an operator decides).
    pub(super) fn check_burst(&self, repo: &str, report: &Report) {
        if report.deletions_held + report.tags_removed + report.manifests_deleted == 0 {
            return;
        }
        match self.engine.store.flag_burst(repo, &self.deletions) {
            Ok(Some(alarm)) => log::error!(
                "{alarm}; {}: review them with `georeg deletions`, then --apply or --cancel",
                if self.deletions.delay_hours > 0 { "they are held" } else { "they were applied (no delay)" }
            ),
            Ok(None) => {}
            Err(e) => log::warn!("{repo}: cannot check for a burst of deletions: {e}"),
        }
    }
}
