//! Repairs what a drill found damaged: the full sync a drill failure
//! queues first copies each failing blob or manifest again from the
//! primary, then reads it back from the secondary and checks its digest.
//! A full sync alone would not: the tag still points at the right digest,
//! so the comparison finds nothing to copy.
//!
//! A registry keeps the bytes it stored under a digest: distribution 2.8
//! completes an upload of a blob it already holds without writing it
//! again (its storage is content-addressed). So a blob whose stored bytes
//! are damaged stays damaged however often it is copied, and only one
//! whose bytes are gone (a lost object) is restored by the copy. The
//! repository then fails, naming the blob and the file to delete from the
//! secondary's storage; the next resync copies it whole.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::replicator::Replicator;
use super::report::Report;
use super::verify::read_back;
use crate::error::{Error, Result};
use crate::registry::manifest::BlobRef;
use crate::registry::Digest;
use crate::store::Damage;

impl Replicator<'_> {
    /// Copies again, and reads back, every blob and manifest a drill found
    /// damaged or missing in the repository (tags it found missing are the
    /// full comparison's to copy). The state file marks them repaired when
    /// the whole sync succeeds.
    pub(super) fn repair(&self, repo: &str, progress: &Arc<AtomicU64>, report: &mut Report) -> Result<()> {
        for (kind, digest) in self.engine.store.drill_repairs(repo)? {
            self.engine.shutdown.check()?;
            let Ok(digest) = Digest::parse(&digest) else { continue };
            let repaired = match kind {
                Damage::Blob => self.repair_blob(repo, &digest, progress)?,
                Damage::Manifest => self.repair_manifest(repo, &digest)?,
                Damage::Tag | Damage::Unreachable => false,
            };
            if repaired {
                report.repaired += 1;
                log::info!(
                    "{repo}: {kind} {digest}, which a drill found damaged, was copied again and reads back whole"
                );
            }
        }
        Ok(())
    }

    /// True when the blob had to be, and was, copied again.
    fn repair_blob(&self, repo: &str, digest: &Digest, progress: &Arc<AtomicU64>) -> Result<bool> {
        let secondary = &**self.engine.secondary;
        if read_back(secondary, repo, digest, 0, self.engine.shutdown)?.is_ok() {
            return Ok(false); // whole again (repaired by hand, or the drill met a passing fault)
        }
        let Some(size) = self.primary.blob_size(repo, digest)? else {
            log::warn!(
                "{repo}: blob {digest}, which a drill found damaged, is gone from the primary {} too; the full \
                 comparison decides what the repository still needs",
                self.primary.url()
            );
            return Ok(false);
        };
        // Unlink it from the repository, so that the upload below links it
        // again whatever the registry thought it held; a registry that
        // refuses deletes still takes the upload.
        self.engine.secondary.delete_blob(repo, digest)?;
        let location = self.engine.secondary.start_upload(repo)?;
        self.engine.copy_blob(repo, &BlobRef { digest: digest.clone(), size }, &location, None, progress)?;
        match read_back(secondary, repo, digest, size, self.engine.shutdown)? {
            Ok(_) => Ok(true),
            Err(why) => Err(still_damaged(self.engine.secondary.url(), repo, "blob", digest, &why)),
        }
    }

    /// True when the manifest had to be, and was, put again.
    fn repair_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let readable = |r: &Self| match r.engine.secondary.manifest(repo, digest.as_str()) {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Ok(Some("is missing".to_string())),
            Err(e @ (Error::Transport { .. } | Error::Interrupted)) => Err(e),
            Err(e) => Ok(Some(e.to_string())),
        };
        if readable(self)?.is_none() {
            return Ok(false);
        }
        let Some(m) = self.primary.manifest(repo, digest.as_str())? else {
            log::warn!("{repo}: manifest {digest}, which a drill found damaged, is gone from the primary too");
            return Ok(false);
        };
        self.engine.secondary.put_manifest(repo, digest.as_str(), &m)?;
        match readable(self)? {
            None => Ok(true),
            Some(why) => Err(still_damaged(self.engine.secondary.url(), repo, "manifest", digest, &why)),
        }
    }
}

/// The error of a blob or manifest a copy did not mend: what to delete.
fn still_damaged(url: &str, repo: &str, kind: &str, digest: &Digest, why: &str) -> Error {
    let hex = digest.as_str().trim_start_matches("sha256:");
    Error::Manifest {
        repository: repo.into(),
        reference: digest.to_string(),
        message: format!(
            "the {kind} on the secondary {url} still reads back damaged after georeg copied it again from the \
             primary ({why}): the registry keeps the bytes it stored under a digest and does not replace them. \
             Delete the {kind} from the secondary's storage (filesystem driver: \
             docker/registry/v2/blobs/sha256/{}/{hex} under its rootdirectory), then resync (georeg sync {repo})",
            hex.get(..2).unwrap_or("")
        ),
    }
}
