//! [`Deleter`]: how the engine decides a deletion, whoever asked for it (a
//! sync comparing with the primary, or the import of a transfer bundle that
//! no longer lists a tag). A secondary is there for the day the primary is
//! lost or wrecked; a primary (or a bundle exported from one) that deletes
//! everything would otherwise take the copy with it. So every deletion
//! comes through here: with `replication.delete_delay_hours` it is recorded
//! in the state file and left undone until the delay ends; an operator's
//! cancellation keeps the tag for good; with no delay it is applied at
//! once, and recorded for the burst alarm. The removal itself is the
//! engine's (`deletion.rs`).
//!
//! A held deletion is applied once due by the next job on its repository
//! (a sync, or an import), after whoever asked is asked once more (the
//! primary, or the bundle being imported): what it has again is dropped,
//! not removed.

use super::engine::Engine;
use super::report::Report;
use crate::error::Result;
use crate::registry::Digest;
use crate::store::{is_backup_tag, Action, Cause, Deletion, DeletionKind, DeletionPolicy, NewDeletion, Open};

/// The engine, the policy, and who asks.
pub(super) struct Deleter<'a, 'e> {
    pub engine: &'a Engine<'e>,
    pub policy: &'a DeletionPolicy,
    /// The transfer bundle whose import asks (None: the primary).
    pub bundle: Option<&'a str>,
}

impl Deleter<'_, '_> {
    /// `tag` (at `digest` on the secondary) is gone from the primary (or
    /// the bundle): removes it from the secondary now, holds the deletion
    /// until the delay ends, or keeps the tag when an operator cancelled
    /// its deletion.
    pub fn remove_or_hold_tag(
        &self,
        repo: &str,
        tag: &str,
        digest: Option<&Digest>,
        cause: Cause,
        report: &mut Report,
    ) -> Result<()> {
        let deletion =
            NewDeletion { kind: DeletionKind::Tag, tag: Some(tag), digest, cause, tags: 1, bundle: self.bundle };
        if self.held_or_kept(repo, Some(tag), digest, report)? {
            return Ok(());
        }
        let store = self.engine.store;
        if self.policy.delay_hours == 0 {
            self.engine.remove_tag(repo, tag)?;
            store.record_applied_deletion(repo, &deletion)?;
            report.tags_removed += 1;
        } else {
            let applies_at = store.hold_deletion(repo, &deletion, self.policy)?;
            log::debug!("{repo}:{tag} is gone ({}): deletion held until {applies_at}", cause.as_str());
            report.deletions_held += 1;
        }
        Ok(())
    }

    /// Every tag the secondary has that the primary (or the bundle) no
    /// longer lists: each removed or held. A backup tag is georeg's own
    /// (`overwrites.rs`): kept while a held overwrite needs it, removed
    /// otherwise.
    pub fn remove_or_hold_gone<'t>(
        &self,
        repo: &str,
        gone: impl Iterator<Item = (&'t String, &'t Digest)>,
        cause: Cause,
        report: &mut Report,
    ) -> Result<()> {
        for (tag, digest) in gone {
            self.engine.shutdown.check()?;
            if is_backup_tag(tag) {
                self.engine.tidy_backup(repo, tag, digest)?;
            } else {
                self.remove_or_hold_tag(repo, tag, Some(digest), cause, report)?;
            }
        }
        Ok(())
    }

    /// The manifest `digest` was deleted on the primary and the secondary
    /// still has it: deletes it (and the tags pointing at it) now, or holds
    /// that, or keeps it when an operator cancelled its deletion.
    pub fn delete_or_hold_manifest(&self, repo: &str, digest: &Digest, report: &mut Report) -> Result<()> {
        if self.held_or_kept(repo, None, Some(digest), report)? {
            return Ok(());
        }
        let store = self.engine.store;
        let tags = store.tags_at(repo, digest)?;
        let deletion = NewDeletion {
            kind: DeletionKind::Manifest,
            tag: None,
            digest: Some(digest),
            cause: Cause::ManifestDeleted,
            tags,
            bundle: self.bundle,
        };
        if self.policy.delay_hours == 0 {
            self.delete_manifest_now(repo, digest, report)?;
            store.record_applied_deletion(repo, &deletion)?;
        } else {
            let applies_at = store.hold_deletion(repo, &deletion, self.policy)?;
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

    /// Applies the repository's held deletions that are due: their delay
    /// ran out, or an operator asked. `has_again` asks whoever asked for
    /// each whether it has the tag or manifest again: such a deletion is
    /// dropped, not applied. A failure puts the rest back, with the
    /// reason, and fails the job (retried later).
    pub fn apply_due(
        &self,
        repo: &str,
        report: &mut Report,
        has_again: &dyn Fn(&Deletion) -> Result<bool>,
    ) -> Result<()> {
        let store = self.engine.store;
        let due = store.claim_due_deletions(repo)?;
        let (mut done, mut dropped) = (0, 0);
        let result = due.iter().try_for_each(|deletion| -> Result<()> {
            self.engine.shutdown.check()?;
            // An overwrite's tag has moved already: what is due is only to
            // stop keeping the digest it left, whatever the primary has.
            let applied = match deletion.kind {
                DeletionKind::Overwrite => self.apply(repo, deletion, report)?,
                _ => !has_again(deletion)? && self.apply(repo, deletion, report)?,
            };
            store.finish_deletion(deletion.id, applied)?;
            done += 1;
            match applied {
                true => log::debug!("{repo}: {} removed (held since {})", deletion.what(), deletion.seen_at),
                false => {
                    dropped += 1;
                    log::debug!("{repo}: {}: not removed, it is listed again", deletion.what())
                }
            }
            Ok(())
        });
        if done > 0 {
            log::info!(
                "{repo}: {} held deletions applied to the secondary, {dropped} dropped ({} has them again)",
                done - dropped,
                self.bundle.map(|b| format!("bundle {b}")).unwrap_or_else(|| "the primary".into())
            );
        }
        if let Err(e) = result {
            // Whatever failed, nothing is left `applying` behind: the rest
            // wait for the repository's next job, with the reason.
            let rest: Vec<i64> = due[done..].iter().map(|r| r.id).collect();
            if let Err(again) = store.release_deletions(&rest, Some(&e.to_string())) {
                log::error!("{repo}: cannot put its deletions back to held: {again}; the next start does");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes one held deletion's tag or manifest from the secondary.
    fn apply(&self, repo: &str, deletion: &Deletion, report: &mut Report) -> Result<bool> {
        let secondary = self.engine.secondary;
        match (deletion.kind, &deletion.tag, deletion.digest()) {
            (DeletionKind::Tag, Some(tag), _) => {
                if secondary.manifest_digest(repo, tag)?.is_some() {
                    self.engine.remove_tag(repo, tag)?;
                    report.tags_removed += 1;
                } else {
                    self.engine.store.remove_tag(repo, tag)?;
                }
                Ok(true)
            }
            (DeletionKind::Overwrite, _, Some(digest)) => {
                self.engine.release_backup(repo, &digest, deletion.id)?;
                Ok(true)
            }
            (DeletionKind::Manifest, _, Some(digest)) => {
                if secondary.manifest_digest(repo, digest.as_str())?.is_some() {
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
    pub fn check_burst(&self, repo: &str, report: &Report) {
        if report.deletions_held + report.tags_removed + report.manifests_deleted + report.tags_overwritten == 0 {
            return;
        }
        match self.engine.store.flag_burst(repo, self.policy) {
            Ok(Some(alarm)) => log::error!(
                "{alarm}; {}: review them with `georeg deletions`, then --apply or --cancel",
                if self.policy.delay_hours > 0 { "they are held" } else { "they were applied (no delay)" }
            ),
            Ok(None) => {}
            Err(e) => log::warn!("{repo}: cannot check for a burst of deletions: {e}"),
        }
    }
}
