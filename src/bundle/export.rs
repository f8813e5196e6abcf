//! Exporting a bundle from the primary registry, with pull-only tokens as
//! always. Two passes: the first walks every tag of every repository
//! (one request per tag, as a full sync does; with an inventory, a HEAD
//! for each tag the secondary holds, and nothing more when its digest is
//! unchanged), writing each manifest the secondary lacks into the tar and
//! noting the blobs it lacks; the second streams those blobs from the
//! primary into the tar, each checked against its digest on the way,
//! with a known total for the progress line. Deletions come from
//! comparing the primary with the inventory. Referrers the primary lists
//! through its referrers API travel with the manifests they refer to
//! (`referrers`).
//!
//! The export is deterministic: the same primary, arguments and time give
//! the same bytes. So an export cut short goes on when run again
//! (`resume`): it walks the primary again, each repository compared with
//! what the first run recorded, and keeps what `FILE.partial` holds whole
//! instead of streaming it again.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use super::contents::{Basis, Contents, Deletion, MountHint, RepositoryEntry, FORMAT};
use super::inventory::{HeldSets, Index, Inventory};
use super::resume::{Journal, Start, Walked};
use super::tarfile::{Tagged, Writer, Written};
use crate::error::{Error, Result};
use crate::registry::digest::VerifyingReader;
use crate::registry::token::Signer;
use crate::registry::{manifest, valid_tag, Client, Digest, Manifest};
use crate::shutdown::Shutdown;

/// Index nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 4;

/// How far an export got, for a progress line.
#[derive(Default)]
pub struct Progress {
    pub repositories: AtomicUsize,
    pub walked: AtomicUsize,
    /// Blob bytes to stream, once the walk is done, and streamed so far.
    pub blob_bytes: AtomicU64,
    pub blob_bytes_done: AtomicU64,
    /// Bytes written to the file.
    pub written: AtomicU64,
}

/// What went into the bundle.
pub struct Summary {
    pub id: String,
    pub written: Written,
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub mounts: usize,
    pub deleted_tags: usize,
    pub gone: usize,
    pub referrers: usize,
    /// Bytes of `FILE.partial` an interrupted export left, kept.
    pub kept: u64,
}

/// How an export ended.
pub enum Exported {
    Done(Summary),
    /// Resuming, the primary was found changed since the first run (how):
    /// the export must start over.
    Changed(String),
}

/// Everything an export reads and signs with.
pub struct Exporter<'a> {
    pub primary: &'a Client,
    /// `replication.primary_api_url`, as the bundle names its primary.
    pub primary_url: &'a str,
    pub signer: &'a Signer,
    pub shutdown: &'a Shutdown,
    pub progress: &'a Progress,
}

/// A blob to stream in the second pass, from a repository that has it.
pub(super) struct Planned {
    digest: Digest,
    size: u64,
    repository: String,
}

/// The first pass's findings.
#[derive(Default)]
pub(super) struct Walk {
    repositories: Vec<RepositoryEntry>,
    deletions: Vec<Deletion>,
    tagged: Vec<Tagged>,
    blobs: Vec<Planned>,
    planned: HashSet<Digest>,
}

/// What one repository's walk carries along: the inventory's view of it,
/// its entry in the description, and the manifests carried so far.
pub(super) struct Repo<'r> {
    pub name: &'r str,
    pub held: Option<&'r HeldSets>,
    pub index: Option<&'r Index>,
    pub entry: RepositoryEntry,
    pub walked: HashSet<Digest>,
}

impl Exporter<'_> {
    /// Writes the bundle of `repositories` to `out`; with `inventory`,
    /// only what that secondary lacks. `gone`: repositories the inventory
    /// holds that the primary no longer has (its catalog did not list them).
    /// `start`: the export's time and id, and what an interrupted run of
    /// the same export left.
    pub fn export(
        &self,
        out: &Path,
        start: &Start,
        repositories: &[String],
        inventory: Option<&Inventory>,
        gone: &[String],
    ) -> Result<Exported> {
        let (created_at, mtime) = (start.created_at.clone(), start.mtime);
        // The id: the export's time and arguments, and what it found, so
        // that the same bundle written again has the same id, and two
        // bundles of one time (SOURCE_DATE_EPOCH) but other contents do not.
        let mut identity = Sha256::new();
        identity.update(start.id.as_bytes());
        let index = inventory.map(Index::new);
        // The journal first: a partial file is never newer than its journal.
        let mut journal = Journal::open(out, start)?;
        let mut writer = match start.resumed {
            Some(_) => Writer::resume(out, mtime, &self.progress.written)?,
            None => Writer::create(out, mtime, &self.progress.written)?,
        };
        self.progress.repositories.store(repositories.len(), Ordering::Relaxed);
        self.progress.walked.store(0, Ordering::Relaxed);
        self.progress.blob_bytes_done.store(0, Ordering::Relaxed);
        let mut walk = Walk::default();
        for repo in repositories {
            self.shutdown.check()?;
            let walked = self.walk(repo, index.as_ref(), &mut writer, &mut walk).map_err(|e| e.in_repository(repo))?;
            identity.update(serde_json::to_vec(&walked).unwrap_or_default());
            if let Some(change) = journal.walked(walked)? {
                return Ok(Exported::Changed(change));
            }
            self.progress.walked.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(index) = &index {
            for name in gone {
                let tags: Vec<String> =
                    index.repository(name).map(|h| h.tags.keys().cloned().collect()).unwrap_or_default();
                walk.deletions.push(Deletion { repository: name.clone(), tags, repository_gone: true });
            }
        }
        let id: String = crate::registry::encoding::hex(&identity.finalize()).chars().take(32).collect();
        let blob_bytes: u64 = walk.blobs.iter().map(|b| b.size).sum();
        self.progress.blob_bytes.store(blob_bytes, Ordering::Relaxed);
        for blob in &walk.blobs {
            self.shutdown.check()?;
            self.stream(blob, &mut writer).map_err(|e| e.in_repository(&blob.repository))?;
        }
        let summary_counts = (
            walk.repositories.iter().map(|r| r.tags.len()).sum(),
            walk.repositories.iter().map(|r| r.mounts.len()).sum(),
            walk.deletions.iter().filter(|d| !d.repository_gone).map(|d| d.tags.len()).sum(),
            walk.deletions.iter().filter(|d| d.repository_gone).count(),
        );
        let contents = Contents {
            format: FORMAT.into(),
            id: id.clone(),
            primary: self.primary_url.to_string(),
            created_at,
            georeg_version: env!("CARGO_PKG_VERSION").into(),
            inventory: inventory.map(|i| Basis {
                id: i.id.clone(),
                node: i.node.clone(),
                created_at: i.created_at.clone(),
            }),
            repositories: walk.repositories,
            deletions: walk.deletions,
            files: Vec::new(),
        };
        let manifests = writer.manifests();
        let referrers = contents.repositories.iter().map(|r| r.referrers.len()).sum();
        let kept = writer.kept();
        let written = writer.finish(self.signer, contents, &walk.tagged)?;
        journal.finish()?;
        Ok(Exported::Done(Summary {
            id,
            written,
            repositories: repositories.len(),
            tags: summary_counts.0,
            manifests,
            blobs: walk.blobs.len(),
            blob_bytes,
            mounts: summary_counts.1,
            deleted_tags: summary_counts.2,
            gone: summary_counts.3,
            referrers,
            kept,
        }))
    }

    /// Walks one repository: its tags and referrers, and what the
    /// secondary lacks. Returns what it found, for the journal.
    fn walk(&self, repo: &str, index: Option<&Index>, writer: &mut Writer, walk: &mut Walk) -> Result<Walked> {
        let held = index.and_then(|i| i.repository(repo));
        let mut found = Walked { repository: repo.to_string(), tags: Vec::new(), referrers: Vec::new() };
        let Some(listed) = self.primary.tags(repo)? else {
            // Named on the command line but unknown to the primary.
            if let Some(h) = held {
                let tags = h.tags.keys().cloned().collect();
                walk.deletions.push(Deletion { repository: repo.to_string(), tags, repository_gone: true });
            }
            return Ok(found);
        };
        let entry = RepositoryEntry {
            name: repo.to_string(),
            tags: BTreeMap::new(),
            mounts: Vec::new(),
            referrers: Vec::new(),
        };
        let mut r = Repo { name: repo, held, index, entry, walked: HashSet::new() };
        let mut subjects = Vec::new();
        for tag in listed {
            self.shutdown.check()?;
            if !valid_tag(&tag) {
                log::warn!("{repo}: skipping tag {tag:?} from {}: not a valid tag name", self.primary.url());
                continue;
            }
            let (digest, m) = match held {
                // The secondary holds the repository: a HEAD says whether
                // it holds this tag's manifest already.
                Some(h) => match self.primary.manifest_digest(repo, &tag)? {
                    None => continue, // deleted since the listing
                    Some(d) if h.manifests.contains(d.as_str()) || r.walked.contains(&d) => (d, None),
                    Some(d) => (d.clone(), Some(self.manifest(repo, &d)?)),
                },
                None => match self.primary.manifest(repo, &tag)? {
                    None => continue,
                    Some(m) if r.walked.contains(&m.digest) => (m.digest, None),
                    Some(m) => (m.digest.clone(), Some(m)),
                },
            };
            r.entry.tags.insert(tag.clone(), digest.to_string());
            found.tags.push((tag.clone(), digest.to_string()));
            subjects.push(digest.clone());
            // index.json names the tags whose manifest travels.
            walk.tagged.push(Tagged { repository: repo.to_string(), tag, digest });
            if let Some(m) = m {
                self.carry(&mut r, m, writer, walk, 0)?;
            }
        }
        self.carry_referrers(&mut r, subjects, writer, walk)?;
        found.referrers = r.entry.referrers.iter().map(|x| (x.subject.clone(), x.digest.clone())).collect();
        if let Some(h) = held {
            let deleted: Vec<String> = h.tags.keys().filter(|t| !r.entry.tags.contains_key(*t)).cloned().collect();
            if !deleted.is_empty() {
                walk.deletions.push(Deletion { repository: repo.to_string(), tags: deleted, repository_gone: false });
            }
        }
        walk.repositories.push(r.entry);
        Ok(found)
    }

    pub(super) fn manifest(&self, repo: &str, digest: &Digest) -> Result<Manifest> {
        self.primary.manifest(repo, digest.as_str())?.ok_or_else(|| Error::Manifest {
            repository: repo.into(),
            reference: digest.to_string(),
            message: format!("disappeared from the primary {} during the export; export again", self.primary.url()),
        })
    }

    /// Puts `m` in the bundle, and what it references that the secondary
    /// lacks: child manifests now, blobs in the plan (or as mounts from
    /// another repository of the secondary).
    pub(super) fn carry(
        &self,
        r: &mut Repo,
        m: Manifest,
        writer: &mut Writer,
        walk: &mut Walk,
        depth: usize,
    ) -> Result<()> {
        let repo = r.name;
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: repo.into(),
            reference: m.digest.to_string(),
            message,
        })?;
        writer.add_manifest(&m)?;
        r.walked.insert(m.digest.clone());
        for child in refs.manifests {
            if r.walked.contains(&child) || r.held.is_some_and(|h| h.manifests.contains(child.as_str())) {
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(Error::Manifest {
                    repository: repo.into(),
                    reference: m.digest.to_string(),
                    message: format!("indexes nest more than {MAX_DEPTH} deep"),
                });
            }
            let child = self.manifest(repo, &child)?;
            self.carry(r, child, writer, walk, depth + 1)?;
        }
        for blob in refs.blobs {
            if r.held.is_some_and(|h| h.blobs.contains(blob.digest.as_str())) || walk.planned.contains(&blob.digest) {
                continue;
            }
            if let Some(from) = r.index.and_then(|i| i.holder(&blob.digest, repo)) {
                if !r.entry.mounts.iter().any(|m| m.digest == blob.digest.as_str()) {
                    r.entry.mounts.push(MountHint {
                        digest: blob.digest.to_string(),
                        size: blob.size,
                        from: from.into(),
                    });
                }
                continue;
            }
            walk.planned.insert(blob.digest.clone());
            walk.blobs.push(Planned { digest: blob.digest, size: blob.size, repository: repo.to_string() });
        }
        Ok(())
    }

    /// Streams one blob from the primary into the bundle, its digest and
    /// size checked on the way: a mismatch fails the export.
    fn stream(&self, blob: &Planned, writer: &mut Writer) -> Result<()> {
        let repo = &blob.repository;
        // Schema 1 names its layers without sizes; the tar header needs one.
        let size = match blob.size {
            0 => self.primary.blob_size(repo, &blob.digest)?.unwrap_or(0),
            size => size,
        };
        if writer.holds_blob(&blob.digest, size) {
            // Streamed whole by an export that was interrupted later.
            self.progress.blob_bytes_done.fetch_add(size, Ordering::Relaxed);
            return Ok(());
        }
        let body = self.primary.download(repo, &blob.digest, size, 0, self.shutdown)?;
        let metered = Metered { inner: body, done: &self.progress.blob_bytes_done, shutdown: self.shutdown };
        let mut reader = VerifyingReader::new(metered, blob.digest.clone(), size);
        match writer.add_blob(&blob.digest, size, &mut reader) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shutdown.check()?;
                Err(match reader.failure.take() {
                    Some(message) => {
                        Error::BlobMismatch { repository: repo.clone(), digest: blob.digest.to_string(), message }
                    }
                    None => e,
                })
            }
        }
    }
}

/// Counts the bytes read and stops at a stop request.
struct Metered<'a, R> {
    inner: R,
    done: &'a AtomicU64,
    shutdown: &'a Shutdown,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.shutdown.requested() {
            return Err(std::io::Error::other("georeg is shutting down"));
        }
        let n = self.inner.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
