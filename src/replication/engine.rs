//! [`Engine`]: the copy engine. It makes manifests and blobs present in a
//! repository of the secondary registry, reading what the secondary lacks
//! from a [`Source`] (the primary registry when replicating, a transfer
//! bundle when importing): a manifest's children first, by digest, then
//! every blob (`blobs.rs`, in recorded chunks when large: `chunks.rs`),
//! then the manifest itself, with the source's exact bytes so that its
//! digest comes out identical. It also removes a tag from the secondary
//! without touching its siblings (`deletion.rs`) and runs a claimed job to
//! its recorded outcome (`job.rs`).
//!
//! The engine decides nothing about what the secondary should hold, and
//! has no way to ask the primary: it holds the `Source` it reads, never a
//! registry client for the primary. Deciding what to copy and remove by
//! comparing with the primary is the `Replicator`'s, on top of it; the
//! import of a bundle uses the engine alone.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::prefetch::Prefetch;
use super::report::Report;
use super::source::Source;
use crate::error::{Error, Result};
use crate::health::Stats;
use crate::registry::manifest::{self, BlobRef, Manifest};
use crate::registry::{Digest, Target};
use crate::shutdown::Shutdown;
use crate::store::{Action, DeletionPolicy, Queue};

/// Index nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 4;

/// What copying needs: where it reads, the secondary registry it writes,
/// the state file, the live counters and the stop request.
pub struct Engine<'a> {
    /// Where the manifests and blobs the secondary lacks are read: the
    /// primary itself when replicating, a transfer bundle when importing.
    pub source: &'a dyn Source,
    pub secondary: &'a Target,
    pub store: &'a Queue,
    pub stats: &'a Stats,
    /// Checked between tags, between blobs and inside every blob stream.
    pub shutdown: &'a Shutdown,
    /// Blobs larger than this are copied in chunks that survive a restart
    /// (`replication.chunk_size`; 0: never).
    pub chunk_size: u64,
    /// Streams one such blob is read over at once, in ranges, when the
    /// source serves them (`replication.blob_streams`; 1: one stream).
    pub streams: usize,
    /// How deletions, and a tag's move (`overwrites.rs`), are held back
    /// (`replication.delete_delay_hours`) and when they raise the burst
    /// alarm.
    pub deletions: DeletionPolicy,
    /// The blobs landed ahead of their manifest (`prefetch.rs`): a sync
    /// waits for the one landing in its repository and counts those
    /// landed present; `None` where nothing lands ahead.
    pub prefetch: Option<&'a Prefetch>,
}

/// What the secondary repository is known to hold during one sync.
#[derive(Default)]
pub(super) struct Seen {
    pub manifests: HashSet<Digest>,
    pub blobs: HashSet<Digest>,
    /// Bytes copied by this sync so far (shown on the dashboard).
    pub progress: Arc<AtomicU64>,
}

impl Engine<'_> {
    /// Copies what the source's manifest `m` references, then puts it under `tag`.
    pub(super) fn copy_manifest(
        &self,
        repo: &str,
        tag: &str,
        m: Manifest,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        if self.pinned(repo, tag, &m.digest, report)? {
            return Ok(());
        }
        self.copy_contents(repo, &m, seen, report, 0)?;
        self.before_tag_moves(repo, tag, &m.digest, report)?;
        match self.secondary.put_manifest(repo, tag, &m) {
            Ok(()) => {}
            // A secondary without compatibility.schema1.enabled refuses
            // schema 1 (distribution 2.8: 500 UNKNOWN, "manifest schema v1
            // unsupported" in its log only): the tag is recorded as
            // unsupported there, counted and shown, and the repository's
            // other tags go on. Every full sync tries it again, so a
            // passing error clears by itself.
            Err(e @ Error::Registry { status: 400 | 415 | 500, .. })
                if manifest::is_schema1(&m.media_type, &m.bytes) =>
            {
                let reason = format!(
                    "the secondary registry refuses Docker schema 1 manifests ({e}): set \
                     compatibility.schema1.enabled: true in its config.yml to replicate this tag"
                );
                log::warn!("{repo}:{tag}: {reason}");
                self.store.set_unsupported(repo, tag, &m.digest, &reason)?;
                report.tags_unsupported += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.store.set_tag(repo, tag, &m.digest)?;
        self.store.log_applied(repo, Action::Push, Some(tag), Some(&m.digest), Some(&m.media_type))?;
        report.tags_copied += 1;
        log::debug!("{repo}:{tag} -> {} copied", m.digest);
        seen.manifests.insert(m.digest);
        Ok(())
    }

    /// Copies what the source's manifest `m` references, then puts it by
    /// `digest` (no tag): an index's child, a referrer, an image pushed by
    /// digest. The caller counts it.
    pub(super) fn copy_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
        m: &Manifest,
        seen: &mut Seen,
        report: &mut Report,
        depth: usize,
    ) -> Result<()> {
        self.put_by_digest(repo, digest, m, seen, report, depth)?;
        if depth == 0 {
            // Pushed by digest in its own right (a referrer, an image
            // pushed by digest), not as an index's child.
            self.store.log_applied(repo, Action::Push, None, Some(digest), Some(&m.media_type))?;
        }
        seen.manifests.insert(digest.clone());
        Ok(())
    }

    /// Copies what `m` references and puts it by `digest`, logging
    /// nothing: an image copied ahead of its tag, which the tag's copy
    /// logs a moment later (followers then compare it once).
    pub(super) fn put_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
        m: &Manifest,
        seen: &mut Seen,
        report: &mut Report,
        depth: usize,
    ) -> Result<()> {
        self.copy_contents(repo, m, seen, report, depth)?;
        self.secondary.put_manifest(repo, digest.as_str(), m)
    }

    /// The source's manifest `digest`, which it named a moment ago: gone
    /// now is an error, retried by the next sync.
    pub(super) fn source_manifest(&self, repo: &str, digest: &Digest) -> Result<Manifest> {
        self.source.manifest(repo, digest)?.ok_or_else(|| Error::Manifest {
            repository: repo.into(),
            reference: digest.to_string(),
            message: format!("disappeared from {} during the sync; the next sync retries", self.source.describe()),
        })
    }

    /// Makes sure everything `m` references exists in the secondary
    /// repository: child manifests first (read from the source, by
    /// digest, at most `MAX_DEPTH` deep), then every blob.
    pub(super) fn copy_contents(
        &self,
        repo: &str,
        m: &Manifest,
        seen: &mut Seen,
        report: &mut Report,
        depth: usize,
    ) -> Result<()> {
        if seen.manifests.contains(&m.digest) {
            return Ok(()); // the registry only accepted it with everything it references
        }
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: repo.into(),
            reference: m.digest.to_string(),
            message,
        })?;
        for child in &refs.manifests {
            if seen.manifests.contains(child) {
                continue;
            }
            if self.secondary.manifest_digest(repo, child.as_str())?.is_none() {
                if depth >= MAX_DEPTH {
                    return Err(Error::Manifest {
                        repository: repo.into(),
                        reference: m.digest.to_string(),
                        message: format!("indexes nest more than {MAX_DEPTH} deep"),
                    });
                }
                let child_manifest = self.source_manifest(repo, child)?;
                self.copy_by_digest(repo, child, &child_manifest, seen, report, depth + 1)?;
                report.manifests_copied += 1;
            } else {
                seen.manifests.insert(child.clone());
            }
        }
        self.land_blobs(repo, &refs.blobs, seen, report)
    }

    /// Makes every blob present, landing them one after another in the
    /// manifest's order. The next blob's plan (its mount, its upload
    /// opened, its download begun) is found while the one before it
    /// streams, so that the secondary's answer to one request is not
    /// waited for before the next is asked; the manifest, put by the
    /// caller, still comes after every blob has landed.
    fn land_blobs(&self, repo: &str, all: &[BlobRef], seen: &mut Seen, report: &mut Report) -> Result<()> {
        let _held = self.prefetch.map(|p| p.hold(repo, self.shutdown)).transpose()?;
        let mut blobs: Vec<&BlobRef> = Vec::with_capacity(all.len());
        for b in all {
            if seen.blobs.contains(&b.digest) || blobs.iter().any(|x| x.digest == b.digest) {
                continue;
            }
            if self.prefetch.is_some_and(|p| p.take_landed(repo, &b.digest)) {
                // Landed moments ago, confirmed then.
                self.store.record_blob(repo, &b.digest, b.size)?;
                report.blobs_present += 1;
                seen.blobs.insert(b.digest.clone());
                continue;
            }
            blobs.push(b);
        }
        let mut planned = None;
        for (i, blob) in blobs.iter().enumerate() {
            if let Err(e) = self.shutdown.check() {
                if let Some(plan) = planned {
                    self.abandon(repo, plan);
                }
                return Err(e);
            }
            let plan = match planned.take() {
                Some(plan) => plan,
                None => self.plan_blob(repo, blob)?,
            };
            let (landed, next) = std::thread::scope(|s| {
                // Not beside a blob copied in chunks: the next download
                // would wait, opened, for minutes.
                let next = blobs.get(i + 1).filter(|_| !self.chunked(blob));
                let next = next.map(|next| s.spawn(move || self.plan_blob(repo, next)));
                let landed = self.land_blob(repo, blob, plan, seen, report);
                (landed, next.map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))))
            });
            match (landed, next) {
                (Ok(()), Some(next)) => planned = Some(next?),
                (Ok(()), None) => {}
                (Err(e), next) => {
                    if let Some(Ok(plan)) = next {
                        self.abandon(repo, plan);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
