//! What was written into a synthetic registry (synthetic.rs) on top of the
//! content it generates: a tag re-pointed on the primary without a
//! notification, and what georeg pushes into a synthetic secondary to
//! repair it (blobs through upload sessions or mounts, manifests by tag or
//! digest). Reads look here first, then at the generated content, so a
//! registry of 100,000 generated repositories holds in memory only what
//! was written.
//!
//! Everything is bounded: the open upload sessions, each session's bytes,
//! and the bytes written in all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::support::oci::sha256;

/// Upload sessions open at once; more are refused (distribution has no
/// such limit, but a runaway client should fail the benchmark, not fill
/// its memory).
const MAX_UPLOADS: usize = 10_000;
/// Bytes one session may hold, and bytes written in all.
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;
const MAX_WRITTEN_BYTES: usize = 1 << 30;

/// One repository's writes.
#[derive(Default)]
struct Written {
    /// Tag -> manifest digest.
    tags: BTreeMap<String, String>,
    /// Digest -> (media type, bytes).
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
}

/// An open upload session: its repository and the bytes received so far.
struct Session {
    repo: String,
    bytes: Vec<u8>,
}

#[derive(Default)]
pub struct Overlay {
    repos: RwLock<HashMap<String, Written>>,
    uploads: Mutex<HashMap<String, Session>>,
    next_upload: AtomicU64,
    written_bytes: AtomicU64,
}

/// Why an upload could not be completed, as distribution words it.
pub enum Refused {
    UnknownUpload,
    DigestInvalid,
    TooLarge,
}

impl Overlay {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Written>> {
        self.repos.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Written>> {
        self.repos.write().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The digest a tag was written to point at.
    pub fn tag(&self, repo: &str, tag: &str) -> Option<String> {
        self.read().get(repo)?.tags.get(tag).cloned()
    }

    /// Tags written into the repository.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.read().get(repo).map(|w| w.tags.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn has_repo(&self, repo: &str) -> bool {
        self.read().contains_key(repo)
    }

    /// A manifest written by digest: its media type and bytes.
    pub fn manifest(&self, repo: &str, digest: &str) -> Option<(String, Vec<u8>)> {
        self.read().get(repo)?.manifests.get(digest).cloned()
    }

    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        self.read().get(repo)?.blobs.get(digest).cloned()
    }

    /// Stores a manifest under its digest, and `reference` when it is a tag.
    /// Returns its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: Vec<u8>) -> String {
        let digest = sha256(&bytes);
        self.written_bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        let mut repos = self.write();
        let w = repos.entry(repo.to_string()).or_default();
        if !reference.starts_with("sha256:") {
            w.tags.insert(reference.to_string(), digest.clone());
        }
        w.manifests.insert(digest.clone(), (media_type.to_string(), bytes));
        digest
    }

    pub fn put_blob(&self, repo: &str, digest: &str, bytes: Vec<u8>) {
        self.written_bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        self.write().entry(repo.to_string()).or_default().blobs.insert(digest.to_string(), bytes);
    }

    /// Opens an upload session; `None` when too many are open or too much
    /// was written already.
    pub fn open_upload(&self, repo: &str) -> Option<String> {
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_UPLOADS || self.written_bytes.load(Ordering::SeqCst) as usize > MAX_WRITTEN_BYTES {
            return None;
        }
        let id = format!("upload-{:08}", self.next_upload.fetch_add(1, Ordering::SeqCst));
        sessions.insert(id.clone(), Session { repo: repo.to_string(), bytes: Vec::new() });
        Some(id)
    }

    /// Appends to an open session of `repo`; returns the bytes it holds.
    pub fn append(&self, repo: &str, id: &str, bytes: &[u8]) -> Result<usize, Refused> {
        let mut sessions = self.sessions();
        let s = sessions.get_mut(id).filter(|s| s.repo == repo).ok_or(Refused::UnknownUpload)?;
        if s.bytes.len() + bytes.len() > MAX_UPLOAD_BYTES {
            return Err(Refused::TooLarge);
        }
        s.bytes.extend_from_slice(bytes);
        Ok(s.bytes.len())
    }

    /// The bytes an open session holds.
    pub fn offset(&self, repo: &str, id: &str) -> Option<usize> {
        self.sessions().get(id).filter(|s| s.repo == repo).map(|s| s.bytes.len())
    }

    /// Completes a session with its last bytes: the blob is stored when
    /// its bytes hash to `digest`; the session ends either way.
    pub fn finish(&self, repo: &str, id: &str, last: &[u8], digest: &str) -> Result<(), Refused> {
        let mut sessions = self.sessions();
        if sessions.get(id).is_none_or(|s| s.repo != repo) {
            return Err(Refused::UnknownUpload);
        }
        let Some(mut s) = sessions.remove(id) else { return Err(Refused::UnknownUpload) };
        drop(sessions);
        if s.bytes.len() + last.len() > MAX_UPLOAD_BYTES {
            return Err(Refused::TooLarge);
        }
        s.bytes.extend_from_slice(last);
        if sha256(&s.bytes) != digest {
            return Err(Refused::DigestInvalid);
        }
        self.put_blob(repo, digest, s.bytes);
        Ok(())
    }

    pub fn cancel(&self, repo: &str, id: &str) -> bool {
        let mut sessions = self.sessions();
        match sessions.get(id) {
            Some(s) if s.repo == repo => sessions.remove(id).is_some(),
            _ => false,
        }
    }
}
