//! The engine's blobs larger than `replication.chunk_size`, copied in
//! chunks that survive a crash: each chunk is read from the source (the
//! primary, or a bundle) into memory, its
//! bytes hashed on the way, then sent to the secondary's upload in one
//! `PATCH`, and where the upload stands (its location, the bytes it holds
//! and the SHA-256 state after them) is recorded in the state file. After
//! a restart, the copy asks the secondary how much its upload holds and
//! continues from there with a `Range` read of the source, the digest
//! check still covering every byte; an upload the secondary no longer has
//! starts the blob again, logged.
//!
//! Chunks are whole in memory before they are sent because distribution
//! cancels an upload whose size differs from what its location says: a
//! `PATCH` cut midway by a crash would lose the whole upload. A chunk sent
//! from memory to the secondary takes milliseconds; the download from the
//! source, the long part, never has a `PATCH` open.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use super::blobs::Counted;
use super::engine::Engine;
use super::ranges::{Ranges, AHEAD};
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry::digest::{Hasher, VerifyingReader};
use crate::registry::manifest::BlobRef;
use crate::shutdown::Shutdown;
use crate::store::Upload;

impl Engine<'_> {
    /// Whether the blob is copied in chunks: a large one, or any when
    /// the secondary takes blobs by PATCH only.
    pub(super) fn chunked(&self, blob: &BlobRef) -> bool {
        let large = self.chunk_size > 0 && blob.size > self.chunk_size;
        (large || self.secondary.patch_only()) && blob.digest.as_str().starts_with("sha256:")
    }

    /// The chunk size: `replication.chunk_size` (8 MiB when off but the
    /// secondary wants PATCH), at least what the secondary asks
    /// (`OCI-Chunk-Min-Length`), on a multiple of 64 bytes, where the
    /// hash state saves.
    fn chunk_bytes(&self) -> u64 {
        chunk_bytes(self.chunk_size, self.secondary.chunk_min())
    }

    /// A chunked copy of the blob that an earlier run left, when the
    /// secondary's upload still holds what the state file says.
    pub(super) fn resumable(&self, repo: &str, blob: &BlobRef) -> Result<Option<(Upload, Hasher)>> {
        let Some(mut upload) = self.store.upload(repo, &blob.digest)? else { return Ok(None) };
        let done = human_bytes(upload.bytes_done);
        let holds = self.secondary.upload_offset(repo, &upload.location);
        let hasher = match upload.hash_state.as_str() {
            "" => Ok(None),
            saved => Hasher::restore(&blob.digest, saved).map(Some),
        };
        let why = match (holds, hasher) {
            (Ok(Some(at)), Ok(hasher)) if at == upload.bytes_done && hasher.is_some() == (at < blob.size) => {
                log::info!(
                    "{repo}: resuming the copy of {} at {done} of {}: the secondary's upload holds that much",
                    blob.digest,
                    human_bytes(blob.size)
                );
                upload.resumed_from = Some(at);
                self.stats.blob_resumes.fetch_add(1, Ordering::Relaxed);
                return Ok(Some((upload, hasher.unwrap_or_else(|| Hasher::for_digest(&blob.digest)))));
            }
            (Ok(None), _) => "the secondary no longer has that upload (purged or cancelled)".to_string(),
            (Ok(Some(at)), Ok(_)) => format!("the secondary's upload holds {} instead", human_bytes(at)),
            (Ok(Some(_)), Err(e)) => format!("the recorded hash state is unusable: {e}"),
            (Err(e), _) => format!("asking the secondary about the upload failed: {e}"),
        };
        log::warn!("{repo}: the copy of {} stood at {done}, but {why}: starting that blob again", blob.digest);
        self.secondary.cancel_upload(repo, &upload.location);
        self.store.forget_upload(repo, &blob.digest)?;
        Ok(None)
    }

    /// Copies the blob from `upload.bytes_done` on, chunk by chunk, then
    /// completes the upload. `hasher` holds the hash of the bytes before.
    pub(super) fn copy_chunks(
        &self,
        repo: &str,
        blob: &BlobRef,
        mut upload: Upload,
        hasher: Hasher,
        progress: &AtomicU64,
    ) -> Result<()> {
        let chunk = self.chunk_bytes();
        let mut hasher = hasher;
        if self.streams > 1 && self.source.serves_ranges() && blob.size - upload.bytes_done > chunk {
            hasher = self.copy_ranges(repo, blob, &mut upload, hasher, progress)?;
        }
        if upload.bytes_done < blob.size {
            let body = self.source.blob(
                repo,
                &blob.digest,
                blob.size,
                upload.bytes_done,
                self.shutdown,
                &self.stats.download_resumes,
            )?;
            let counted = Counted { inner: body, stats: self.stats, progress, shutdown: self.shutdown, broke: None };
            let mut reader =
                VerifyingReader::resume(counted, blob.digest.clone(), blob.size, upload.bytes_done, hasher);
            let mut buf = Vec::with_capacity(chunk.min(blob.size) as usize);
            while upload.bytes_done < blob.size {
                // Chunks end on multiples of the chunk size, where the hash state saves.
                let end = ((upload.bytes_done / chunk + 1) * chunk).min(blob.size);
                buf.clear();
                if let Err(e) = (&mut reader).take(end - upload.bytes_done).read_to_end(&mut buf) {
                    if let Some(message) = reader.failure.take() {
                        self.secondary.cancel_upload(repo, &upload.location);
                        self.store.forget_upload(repo, &blob.digest)?;
                        return Err(Error::BlobMismatch {
                            repository: repo.into(),
                            digest: blob.digest.to_string(),
                            message,
                        });
                    }
                    self.shutdown.check()?;
                    return Err(Error::Transport {
                        url: self.source.blob_location(repo, &blob.digest),
                        message: format!(
                            "{e} (the copy stands at {} of {}; the next attempt continues from there)",
                            human_bytes(upload.bytes_done),
                            human_bytes(blob.size)
                        ),
                    });
                }
                upload.location = self.secondary.patch_upload(repo, &upload.location, upload.bytes_done, &buf)?;
                upload.bytes_done = end;
                upload.hash_state = reader.checkpoint().unwrap_or_default();
                self.store.record_upload(repo, &blob.digest, blob.size, &upload)?;
            }
        }
        let finished = self.secondary.finish_upload(repo, &upload.location, &blob.digest, 0, &mut std::io::empty());
        // Failed or not, this upload is done with: a retry starts the blob again.
        if finished.is_err() {
            self.secondary.cancel_upload(repo, &upload.location);
        }
        self.store.forget_upload(repo, &blob.digest)?;
        finished?;
        log::debug!("{repo}: copied blob {} ({}) in chunks", blob.digest, human_bytes(blob.size));
        Ok(())
    }

    /// Copies the blob from `upload.bytes_done` on as `copy_chunks` does,
    /// its chunks read over `Engine::streams` streams at once
    /// (`ranges.rs`): each is hashed in order before it is sent, so the
    /// digest check covers every byte and a wrong blob is refused before
    /// its last chunk. Returns the hash so far: when the source turns out
    /// to ignore ranges, the rest is read over one stream.
    fn copy_ranges(
        &self,
        repo: &str,
        blob: &BlobRef,
        upload: &mut Upload,
        mut hasher: Hasher,
        progress: &AtomicU64,
    ) -> Result<Hasher> {
        let streams = self.streams;
        let resumes = &self.stats.download_resumes;
        let read = |start, end, buf: &mut Vec<u8>| {
            self.source.blob_range(repo, &blob.digest, blob.size, (start, end), buf, self.shutdown, resumes)
        };
        let ranges = Ranges::new(blob.size, self.chunk_bytes(), upload.bytes_done, streams, &read, &AHEAD);
        std::thread::scope(|s| {
            // Helpers read within the sync's budget, as the copy does.
            let (budget, ranges) = (Shutdown::current_budget(), &ranges);
            for _ in 1..streams {
                s.spawn(move || {
                    let _budget = budget.map(|(end, seconds)| Shutdown::budget_until(end, seconds));
                    ranges.help(|| self.source.serves_ranges())
                });
            }
            let copied = (|| -> Result<()> {
                while upload.bytes_done < blob.size && self.source.serves_ranges() {
                    self.shutdown.check()?;
                    let chunk = ranges.take().map_err(|e| match e {
                        Error::Transport { url, message } => Error::Transport {
                            url,
                            message: format!(
                                "{message} (the copy stands at {} of {}; the next attempt continues from there)",
                                human_bytes(upload.bytes_done),
                                human_bytes(blob.size)
                            ),
                        },
                        e => e,
                    })?;
                    let buf = &chunk.bytes;
                    let end = upload.bytes_done + buf.len() as u64;
                    hasher.update(buf);
                    self.stats.bytes_copied.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    if end == blob.size {
                        let got = std::mem::replace(&mut hasher, Hasher::for_digest(&blob.digest)).finish();
                        if got != blob.digest {
                            self.secondary.cancel_upload(repo, &upload.location);
                            self.store.forget_upload(repo, &blob.digest)?;
                            return Err(Error::BlobMismatch {
                                repository: repo.into(),
                                digest: blob.digest.to_string(),
                                message: format!("did not match its digest (got {got})"),
                            });
                        }
                    }
                    upload.location = self.secondary.patch_upload(repo, &upload.location, upload.bytes_done, buf)?;
                    ranges.recycle(chunk);
                    upload.bytes_done = end;
                    upload.hash_state = if end < blob.size { hasher.save().unwrap_or_default() } else { String::new() };
                    self.store.record_upload(repo, &blob.digest, blob.size, upload)?;
                }
                Ok(())
            })();
            ranges.stop();
            copied
        })?;
        Ok(hasher)
    }
}

/// See [`Engine::chunk_bytes`]: `configured` (0: off), `min` the
/// secondary's `OCI-Chunk-Min-Length` (0: none).
fn chunk_bytes(configured: u64, min: u64) -> u64 {
    let configured = if configured > 0 { configured } else { 8 << 20 };
    configured.max(min).div_ceil(64) * 64
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_at_least_what_the_secondary_asks_on_64_byte_multiples() {
        use super::chunk_bytes;
        assert_eq!(chunk_bytes(8 << 20, 0), 8 << 20);
        assert_eq!(chunk_bytes(0, 0), 8 << 20, "off, but the secondary wants PATCH");
        assert_eq!(chunk_bytes(1 << 20, 5_000_001), 5_000_064, "OCI-Chunk-Min-Length, rounded up to 64");
        assert_eq!(chunk_bytes(16 << 20, 5_000_001), 16 << 20);
    }
}
