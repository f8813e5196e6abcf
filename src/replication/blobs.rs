//! The engine's blobs: each is made present in the secondary repository
//! with one request when it is there already or can be mounted, and
//! otherwise streamed from the engine's source (the primary, or a bundle)
//! into an upload, its digest and size checked on the way so that a bad
//! blob is never completed. A blob is first planned (`plan_blob`: the
//! mount asked, the upload opened, the download begun), then landed
//! (`land_blob`), so that the engine can plan the next blob while the one
//! before it streams.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use super::engine::{Engine, Seen};
use super::report::Report;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::health::Stats;
use crate::registry::digest::{Hasher, VerifyingReader};
use crate::registry::manifest::BlobRef;
use crate::registry::Mount;
use crate::shutdown::Shutdown;
use crate::store::Upload;

/// How a blob is made present in the secondary repository, found before
/// its turn to land: while the blob before it streams, when the engine
/// pipelines a manifest's blobs.
pub(super) enum Plan<'s> {
    /// A chunked copy an earlier run left, which the secondary's upload
    /// still holds.
    Resume(Upload, Hasher),
    /// There already, or mounted: from `from` (another repository), or
    /// confirmed in this one.
    Present { from: Option<String> },
    /// To be copied into the upload at `location`, the download maybe
    /// opened already.
    Copy { location: String, body: Option<Result<Box<dyn Read + Send + 's>>> },
}

impl<'e> Engine<'e> {
    /// Finds how the blob is to be made present: a mount, from another
    /// repository georeg knows holds it or else from the repository itself,
    /// answers 201 when the blob is (now) there, and otherwise 202 with an
    /// ordinary upload, into which the blob is then copied. Nothing lands.
    pub(super) fn plan_blob(&self, repo: &str, blob: &BlobRef) -> Result<Plan<'e>> {
        if let Some((upload, hasher)) = self.resumable(repo, blob)? {
            return Ok(Plan::Resume(upload, hasher));
        }
        // Held here already (a tag reusing the repository's layers): the
        // mount only confirms it, and nothing is read from the source.
        let here = self.store.holds_blob(repo, &blob.digest)?;
        let from = if here { None } else { self.store.blob_source(&blob.digest, repo)? };
        // A blob no repository is known to hold is most likely to be
        // copied: its download from the source opens while the secondary
        // answers the mount, one round trip instead of two.
        let ahead = !here && from.is_none() && blob.size > 0 && !self.chunked(blob);
        let source = self.source;
        let (shutdown, resumes) = (self.shutdown, &self.stats.download_resumes);
        let (mounted, body) = if ahead {
            std::thread::scope(|s| {
                let download = s.spawn(|| source.blob(repo, &blob.digest, blob.size, 0, shutdown, resumes));
                let mounted = self.secondary.mount_blob(repo, &blob.digest, repo);
                (mounted, download.join().ok())
            })
        } else {
            (self.secondary.mount_blob(repo, &blob.digest, from.as_deref().unwrap_or(repo)), None)
        };
        let location = match mounted {
            Ok(Mount::Mounted) => return Ok(Plan::Present { from }),
            Ok(Mount::Upload(location)) => {
                if let Some(from) = &from {
                    self.store.forget_blob(from, &blob.digest)?;
                }
                location
            }
            Err(e) => {
                match &from {
                    Some(from) => {
                        log::warn!("{repo}: mounting {} from {from} failed, copying instead: {e}", blob.digest);
                        self.store.forget_blob(from, &blob.digest)?;
                    }
                    None => log::debug!("{repo}: asking for {} by a mount failed, copying it: {e}", blob.digest),
                }
                self.secondary.start_upload(repo)?
            }
        };
        Ok(Plan::Copy { location, body })
    }

    /// Lands a planned blob: copies it, or records it present.
    pub(super) fn land_blob(
        &self,
        repo: &str,
        blob: &BlobRef,
        plan: Plan<'e>,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        match plan {
            Plan::Resume(upload, hasher) => {
                self.copy_chunks(repo, blob, upload, hasher, &seen.progress)?;
                self.copied(repo, blob, report)?;
            }
            Plan::Copy { location, body } => {
                self.copy_blob(repo, blob, &location, body, &seen.progress)?;
                self.copied(repo, blob, report)?;
            }
            Plan::Present { from } => {
                match from {
                    Some(_) => {
                        report.blobs_mounted += 1;
                        self.stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                    }
                    None => report.blobs_present += 1,
                }
                self.store.record_blob(repo, &blob.digest, blob.size)?;
            }
        }
        seen.blobs.insert(blob.digest.clone());
        Ok(())
    }

    /// Gives up a plan that will not land (the blob before it failed): its
    /// upload is cancelled, its download dropped.
    pub(super) fn abandon(&self, repo: &str, plan: Plan<'e>) {
        if let Plan::Copy { location, .. } = plan {
            self.secondary.cancel_upload(repo, &location);
        }
    }

    fn copied(&self, repo: &str, blob: &BlobRef, report: &mut Report) -> Result<()> {
        report.blobs_copied += 1;
        report.bytes_copied += blob.size;
        self.stats.blobs_copied.fetch_add(1, Ordering::Relaxed);
        self.store.record_blob(repo, &blob.digest, blob.size)
    }

    /// Streams one blob from the source into the open upload at
    /// `location`: in one request, or in chunks when it is larger than
    /// `replication.chunk_size`.
    pub(super) fn copy_blob(
        &self,
        repo: &str,
        blob: &BlobRef,
        location: &str,
        opened: Option<Result<Box<dyn Read + Send + 'e>>>,
        progress: &AtomicU64,
    ) -> Result<()> {
        // Schema 1 manifests name their layers without sizes: ask.
        let sized;
        let blob = if blob.size == 0 {
            let size = match self.source.blob_size(repo, &blob.digest) {
                Ok(size) => size.unwrap_or(0),
                Err(e) => {
                    self.secondary.cancel_upload(repo, location);
                    return Err(e);
                }
            };
            sized = BlobRef { digest: blob.digest.clone(), size };
            &sized
        } else {
            blob
        };
        if self.chunked(blob) {
            let fresh =
                Upload { location: location.into(), bytes_done: 0, hash_state: String::new(), resumed_from: None };
            return self.copy_chunks(repo, blob, fresh, Hasher::for_digest(&blob.digest), progress);
        }
        let opened = opened.unwrap_or_else(|| {
            self.source.blob(repo, &blob.digest, blob.size, 0, self.shutdown, &self.stats.download_resumes)
        });
        let body = match opened {
            Ok(body) => body,
            Err(e) => {
                self.secondary.cancel_upload(repo, location);
                return Err(e);
            }
        };
        let source_broke = std::cell::Cell::new(false);
        let counted =
            Counted { inner: body, stats: self.stats, progress, shutdown: self.shutdown, broke: Some(&source_broke) };
        let mut reader = VerifyingReader::new(counted, blob.digest.clone(), blob.size);
        let patch_only = self.secondary.patch_only();
        let result = self.secondary.finish_upload(repo, location, &blob.digest, blob.size, &mut reader);
        if let Err(e) = result {
            self.secondary.cancel_upload(repo, location);
            self.shutdown.check()?;
            // The secondary just said it takes blobs by PATCH only, or cut
            // the connection while the bytes went out (which is how some
            // refuse them): once more, by PATCH. A PATCH that works where
            // the PUT broke tells which it was.
            let cut = matches!(e, Error::Transport { .. }) && !source_broke.get();
            if !patch_only && reader.failure.is_none() && (self.secondary.patch_only() || cut) {
                log::debug!("{repo}: {} refused in one PUT ({e}), sending it by PATCH", blob.digest);
                let location = self.secondary.start_upload(repo)?;
                let fresh = Upload { location, bytes_done: 0, hash_state: String::new(), resumed_from: None };
                self.copy_chunks(repo, blob, fresh, Hasher::for_digest(&blob.digest), progress)?;
                if cut {
                    self.secondary.prefer_patch(&e);
                }
                return Ok(());
            }
            return Err(match reader.failure.take() {
                Some(message) => {
                    Error::BlobMismatch { repository: repo.into(), digest: blob.digest.to_string(), message }
                }
                None => e,
            });
        }
        log::debug!("{repo}: copied blob {} ({})", blob.digest, human_bytes(blob.size));
        Ok(())
    }
}

/// Counts bytes as they stream and stops the stream on shutdown, so that
/// a large blob does not hold the process past its stop deadline.
pub(super) struct Counted<'a, R> {
    pub(super) inner: R,
    pub(super) stats: &'a Stats,
    pub(super) progress: &'a AtomicU64,
    pub(super) shutdown: &'a Shutdown,
    /// Set when a read from the source failed: the source broke, not the
    /// secondary.
    pub(super) broke: Option<&'a std::cell::Cell<bool>>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.shutdown.requested() {
            // Not ErrorKind::Interrupted: io::copy retries that forever.
            return Err(std::io::Error::other("georeg is shutting down"));
        }
        let n = self.inner.read(buf).inspect_err(|_| {
            if let Some(broke) = self.broke {
                broke.set(true);
            }
        })?;
        self.stats.bytes_copied.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
