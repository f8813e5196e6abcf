//! Overwrites held back: the engine's side of `store/overwrites.rs`. When
//! a tag is about to move on the secondary, the digest it leaves is
//! recorded, and with `replication.delete_delay_hours` set it is kept
//! reachable under a backup tag (`georeg-kept-sha256-<hex>`) until the
//! delay ends, so that a primary whose tags are all overwritten (by
//! mistake, a broken pipeline, an intruder) leaves the secondary able to
//! give every one of them back. An operator's `georeg deletions --cancel`
//! puts the tag back ([`Engine::restore_pins`]), and the tag stays there
//! while the primary has it where it moved it.

use super::engine::Engine;
use super::report::Report;
use crate::error::Result;
use crate::registry::Digest;
use crate::store::{backup_tag, Action};

impl Engine<'_> {
    /// Whether `tag` stays where an operator put it back rather than move
    /// to `next`: while the primary has it at the digest it moved it to
    /// when the overwrite was cancelled. Moved anywhere else, the pin ends.
    pub(super) fn pinned(&self, repo: &str, tag: &str, next: &Digest, report: &mut Report) -> Result<bool> {
        if let Some(pin) = self.store.pin(repo, tag)? {
            if pin.replaced_by == *next {
                report.deletions_kept += 1;
                return Ok(true);
            }
            self.store.unpin(pin.id)?;
            log::info!(
                "{repo}:{tag}: the primary moved it to {next}: the tag an operator put back at {} (overwrite #{}) \
                 follows the primary again",
                pin.kept,
                pin.id
            );
        }
        Ok(false)
    }

    /// Just before `tag` is put at `next` on the secondary: a tag that
    /// moves has the digest it leaves recorded (for the burst alarm) and,
    /// with a delay, kept under its backup tag first.
    pub(super) fn before_tag_moves(&self, repo: &str, tag: &str, next: &Digest, report: &mut Report) -> Result<()> {
        let previous = self.store.tag_digest(repo, tag)?.and_then(|d| Digest::parse(&d).ok());
        let Some(previous) = previous.filter(|p| p != next) else { return Ok(()) };
        report.tags_overwritten += 1;
        if self.store.record_overwrite(repo, tag, &previous, next, &self.deletions)? {
            self.keep_under_backup(repo, tag, &previous)?;
            report.deletions_held += 1;
        }
        Ok(())
    }

    /// Tags `previous` with its backup tag on the secondary, if it is still
    /// there.
    fn keep_under_backup(&self, repo: &str, tag: &str, previous: &Digest) -> Result<()> {
        let backup = backup_tag(previous);
        if self.secondary.manifest_digest(repo, &backup)?.as_ref() == Some(previous) {
            return Ok(());
        }
        match self.secondary.manifest(repo, previous.as_str())? {
            Some(m) => {
                self.secondary.put_manifest(repo, &backup, &m)?;
                log::debug!("{repo}:{tag} moves: {previous} kept as {repo}:{backup} for the delay");
            }
            None => {
                log::warn!("{repo}:{tag} moves from {previous}, which the secondary no longer has: nothing to keep")
            }
        }
        Ok(())
    }

    /// Takes the backup tag of `digest` off the secondary unless a held
    /// overwrite other than `except` still needs it. A registry that
    /// refuses (deletes disabled) leaves it there, logged: harmless, and
    /// the next sync tries again.
    pub(super) fn release_backup(&self, repo: &str, digest: &Digest, except: i64) -> Result<()> {
        if self.store.backup_needed(repo, digest, except)? {
            return Ok(());
        }
        let backup = backup_tag(digest);
        if self.secondary.manifest_digest(repo, &backup)?.is_none() {
            return Ok(());
        }
        match self.untag(repo, &backup) {
            Ok(()) => log::debug!("{repo}:{backup} removed: no held overwrite keeps {digest} any more"),
            Err(e @ crate::error::Error::Interrupted) => return Err(e),
            Err(e) => log::warn!("{repo}: cannot remove the backup tag {backup} ({e}); the next sync tries again"),
        }
        Ok(())
    }

    /// A backup tag found on the secondary: removed when no held overwrite
    /// keeps its digest (one left behind by a state file restored from an
    /// older copy, or by hand).
    pub(super) fn tidy_backup(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        if backup_tag(digest) == tag {
            return self.release_backup(repo, digest, 0);
        }
        match self.untag(repo, tag) {
            Ok(()) => Ok(()),
            Err(e @ crate::error::Error::Interrupted) => Err(e),
            Err(e) => {
                log::warn!("{repo}: cannot remove the stray backup tag {tag} ({e}); the next sync tries again");
                Ok(())
            }
        }
    }

    /// Puts each tag an operator pinned (`georeg deletions --cancel` of its
    /// overwrite) back at the digest it left, from the secondary's own copy
    /// (kept by its backup tag). A digest the secondary lost meanwhile
    /// cannot be put back: said, and the tag follows the primary again.
    pub(super) fn restore_pins(&self, repo: &str, report: &mut Report) -> Result<()> {
        for pin in self.store.pins(repo)? {
            self.shutdown.check()?;
            if self.secondary.manifest_digest(repo, &pin.tag)?.as_ref() == Some(&pin.kept) {
                self.release_backup(repo, &pin.kept, pin.id)?;
                continue;
            }
            let Some(m) = self.secondary.manifest(repo, pin.kept.as_str())? else {
                log::error!(
                    "{repo}:{tag}: cannot put it back to {kept} (overwrite #{id} cancelled): the secondary no longer \
                     has that manifest; the tag follows the primary again. Push {kept} to the secondary by hand if \
                     it is still needed",
                    tag = pin.tag,
                    kept = pin.kept,
                    id = pin.id
                );
                self.store.unpin(pin.id)?;
                continue;
            };
            self.secondary.put_manifest(repo, &pin.tag, &m)?;
            self.store.set_tag(repo, &pin.tag, &pin.kept)?;
            self.store.log_applied(repo, Action::Push, Some(&pin.tag), Some(&pin.kept), Some(&m.media_type))?;
            report.tags_restored += 1;
            log::info!("{repo}:{}: put back to {} (overwrite #{} cancelled by an operator)", pin.tag, pin.kept, pin.id);
            self.release_backup(repo, &pin.kept, pin.id)?;
        }
        Ok(())
    }
}
