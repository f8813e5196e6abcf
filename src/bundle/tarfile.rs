//! Writing a bundle: one tar file (GNU format, through the `tar` crate)
//! laid out as an OCI image layout, `oci-layout` first, then every
//! manifest and blob under `blobs/ALGORITHM/HEX`, then `index.json`
//! (one entry per tag whose manifest travels, named `REPOSITORY:TAG`), and
//! `georeg-bundle.json` last, so that a tar cut short is recognizably
//! incomplete. Blobs stream from their reader into the tar: nothing is
//! held whole, nothing is copied to a temporary file. The tar is written
//! as `FILE.partial` and renamed once complete and on disk; its SHA-256,
//! computed on the way, goes to `FILE.sha256` in `sha256sum` format.
//!
//! Every byte is a function of what is exported: entries in the order the
//! export adds them, each with the export's time as its mtime, mode 0644,
//! owner 0:0 and no owner names, the description signed with that time
//! too. So an export that stopped (`kill -9`, a lost link, Ctrl-C) leaves
//! `FILE.partial` behind, and run again it keeps the entries there whole
//! (`prefix`) while it adds the same ones again, then writes on from the
//! first that differs or is missing: the finished file is the one an
//! export never interrupted writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::contents::{blob_path, Contents, FileEntry, DESCRIPTION, INDEX, LAYOUT};
use super::prefix::{Kept, LAYOUT_CONTENT};
use super::reader::MAX_DESCRIPTION_BYTES;
use super::signed;
use crate::error::{Error, Result};
use crate::registry::{encoding, Digest, Manifest};

impl signed::Document for Contents {
    const KIND: &'static str = "georeg-bundle";
    const KEY: &'static str = "bundle";
    const AGAIN: &'static str = "export the bundle again with this georeg version";
    fn id(&self) -> &str {
        &self.id
    }
}

/// One tag in `index.json`.
pub struct Tagged {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
}

/// The finished bundle.
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    /// `sha256sum` of the whole file, as written to `FILE.sha256`.
    pub sha256: String,
}

/// A bundle being written. Dropped unfinished (an error, Ctrl-C), it
/// leaves its partial file for the export run again ([`Writer::resume`]).
pub struct Writer<'a> {
    out: Out<'a>,
    written: &'a AtomicU64,
    path: PathBuf,
    partial: PathBuf,
    mtime: u64,
    files: Vec<FileEntry>,
    /// Manifests written: digest -> (size, media type).
    manifests: HashMap<Digest, (u64, String)>,
    /// Bytes of the partial file kept when writing began.
    reused: u64,
}

enum Out<'a> {
    /// Going over what an interrupted export left: each entry the export
    /// writes again the same (same name, so the same digest, and size) is
    /// kept; the first that differs is where writing begins.
    Replay {
        kept: Vec<Kept>,
        next: usize,
    },
    Tar(tar::Builder<Hashing<'a, BufWriter<File>>>),
}

/// Counts and hashes what passes to the file.
struct Hashing<'a, W> {
    inner: W,
    hash: Sha256,
    written: &'a AtomicU64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `path.partial`, where a bundle is written until it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

impl<'a> Writer<'a> {
    /// Starts `path` (as `path.partial`, emptied); `written` counts the
    /// bytes that reach the file. Entries carry `mtime` (the export time).
    pub fn create(path: &Path, mtime: u64, written: &'a AtomicU64) -> Result<Writer<'a>> {
        let partial = partial_path(path);
        let file = File::create(&partial).map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        let hashing = Hashing { inner: BufWriter::with_capacity(256 << 10, file), hash: Sha256::new(), written };
        Writer::start(path, mtime, written, Out::Tar(tar::Builder::new(hashing)))
    }

    /// Goes on with `path.partial`, which an export of the same bundle
    /// (same arguments, same time) left: its whole entries are kept as
    /// long as the export writes the same ones again.
    pub fn resume(path: &Path, mtime: u64, written: &'a AtomicU64) -> Result<Writer<'a>> {
        let partial = partial_path(path);
        let kept = super::prefix::scan(&partial, mtime).map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        Writer::start(path, mtime, written, Out::Replay { kept, next: 0 })
    }

    fn start(path: &Path, mtime: u64, written: &'a AtomicU64, out: Out<'a>) -> Result<Writer<'a>> {
        let mut w = Writer {
            out,
            written,
            path: path.to_path_buf(),
            partial: partial_path(path),
            mtime,
            files: Vec::new(),
            manifests: HashMap::new(),
            reused: 0,
        };
        w.add(LAYOUT, LAYOUT_CONTENT.len() as u64, LAYOUT_CONTENT)?;
        w.files.push(FileEntry {
            path: LAYOUT.into(),
            digest: Digest::sha256_of(LAYOUT_CONTENT).to_string(),
            size: LAYOUT_CONTENT.len() as u64,
            media_type: None,
        });
        Ok(w)
    }

    /// The bytes of the partial file kept (an interrupted export's).
    pub fn kept(&self) -> u64 {
        match &self.out {
            Out::Replay { kept, next } => kept[..*next].last().map_or(0, |k| k.end),
            Out::Tar(_) => self.reused,
        }
    }

    /// Whether the next entry of the partial file is `path` of `size`
    /// bytes, which is then kept rather than written again.
    fn replays(&mut self, path: &str, size: u64) -> bool {
        let Out::Replay { kept, next } = &mut self.out else { return false };
        match kept.get(*next) {
            Some(k) if k.path == path && k.size == size => {
                self.written.fetch_add(k.end - k.start, Ordering::Relaxed);
                *next += 1;
                true
            }
            _ => false,
        }
    }

    /// The tar, to write to: after a replay, the partial file cut just
    /// after the last entry kept, its checksum going on from there.
    fn tar(&mut self) -> Result<&mut tar::Builder<Hashing<'a, BufWriter<File>>>> {
        if let Out::Replay { kept, next } = &self.out {
            let (cut, hash) = match *next {
                0 => (0, Sha256::new()),
                n => (kept[n - 1].end, kept[n - 1].hash.clone()),
            };
            if let Some(k) = kept.get(*next).filter(|k| k.path != INDEX) {
                log::info!(
                    "{}: entry {} ({}) is not written again the same: writing from there",
                    self.partial.display(),
                    next + 1,
                    k.path
                );
            }
            let io = |e| Error::Io { path: self.partial.clone(), source: e };
            let mut file = std::fs::OpenOptions::new().write(true).open(&self.partial).map_err(io)?;
            file.set_len(cut).map_err(io)?;
            file.seek(SeekFrom::Start(cut)).map_err(io)?;
            self.written.store(cut, Ordering::Relaxed);
            self.reused = cut;
            let hashing = Hashing { inner: BufWriter::with_capacity(256 << 10, file), hash, written: self.written };
            self.out = Out::Tar(tar::Builder::new(hashing));
        }
        let Out::Tar(tar) = &mut self.out else {
            return Err(Error::Io { path: self.partial.clone(), source: io::Error::other("the tar was not opened") });
        };
        Ok(tar)
    }

    fn add(&mut self, path: &str, size: u64, body: impl Read) -> Result<()> {
        // index.json and the description are always written: they come
        // last, and say what the export found this time.
        if path != INDEX && path != DESCRIPTION && self.replays(path, size) {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        let result = self.tar()?.append_data(&mut header, path, body);
        result.map_err(|e| self.io(e))
    }

    fn io(&self, e: io::Error) -> Error {
        Error::Io { path: self.partial.clone(), source: e }
    }

    /// How many manifests the bundle holds.
    pub fn manifests(&self) -> usize {
        self.manifests.len()
    }

    /// Adds a manifest (its exact bytes), once.
    pub fn add_manifest(&mut self, m: &Manifest) -> Result<()> {
        if self.manifests.contains_key(&m.digest) {
            return Ok(());
        }
        let path = blob_path(&m.digest);
        self.add(&path, m.bytes.len() as u64, &m.bytes[..])?;
        self.manifests.insert(m.digest.clone(), (m.bytes.len() as u64, m.media_type.clone()));
        self.files.push(FileEntry {
            path,
            digest: m.digest.to_string(),
            size: m.bytes.len() as u64,
            media_type: Some(m.media_type.clone()),
        });
        Ok(())
    }

    /// Whether the partial file of an interrupted export holds this blob
    /// next, whole and checked: then it is kept (and listed), and the
    /// caller reads nothing.
    pub fn holds_blob(&mut self, digest: &Digest, size: u64) -> bool {
        let path = blob_path(digest);
        if !self.replays(&path, size) {
            return false;
        }
        self.files.push(FileEntry { path, digest: digest.to_string(), size, media_type: None });
        true
    }

    /// Streams a blob of `size` bytes into the bundle. `body` should check
    /// the digest (a `VerifyingReader`): a read error fails the export.
    pub fn add_blob(&mut self, digest: &Digest, size: u64, body: impl Read) -> Result<()> {
        let path = blob_path(digest);
        self.add(&path, size, body)?;
        self.files.push(FileEntry { path, digest: digest.to_string(), size, media_type: None });
        Ok(())
    }

    /// Writes `index.json` and then `georeg-bundle.json` (with `contents`
    /// completed by the list of files, and signed), and puts the file in
    /// place.
    pub fn finish(
        mut self,
        signer: &crate::registry::token::Signer,
        mut contents: Contents,
        tagged: &[Tagged],
    ) -> Result<Written> {
        let index = self.index(tagged);
        self.add(INDEX, index.len() as u64, &index[..])?;
        self.files.push(FileEntry {
            path: INDEX.into(),
            digest: Digest::sha256_of(&index).to_string(),
            size: index.len() as u64,
            media_type: None,
        });
        contents.files = std::mem::take(&mut self.files);
        // In name order, each once (a repository named twice on the
        // command line was walked twice): as an import checks them.
        contents.repositories.sort_by(|a, b| a.name.cmp(&b.name));
        contents.repositories.dedup_by(|a, b| a.name == b.name);
        let invalid = |message: String| Error::Bundle {
            file: self.path.display().to_string(),
            message: format!("would not be read by an import: its {DESCRIPTION} {message}"),
            refused: false,
        };
        contents.check().map_err(invalid)?;
        // Dated the export's time: the same bundle exported again, or
        // resumed, is the same bytes.
        let description = signed::seal_at(signer, &contents, self.mtime).map_err(|message| Error::Bundle {
            file: self.path.display().to_string(),
            message,
            refused: false,
        })?;
        if description.len() as u64 > MAX_DESCRIPTION_BYTES {
            return Err(Error::Bundle {
                file: self.path.display().to_string(),
                message: format!(
                    "its {DESCRIPTION} would be {} bytes, more than the {MAX_DESCRIPTION_BYTES} an import reads: \
                     export the repositories in several bundles (georeg export --output FILE REPO...)",
                    description.len()
                ),
                refused: false,
            });
        }
        self.add(DESCRIPTION, description.len() as u64, &description[..])?;
        let partial = self.partial.clone();
        let tar = self.tar()?;
        tar.finish().map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        let hashing = tar.get_mut();
        hashing.flush().map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        let sha256 = encoding::hex(&std::mem::take(&mut hashing.hash).finalize());
        let bytes = hashing.written.load(Ordering::Relaxed);
        // On disk before it is renamed into place: the file is carried away.
        hashing.inner.get_ref().sync_all().map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| Error::Io { path: self.path.clone(), source: e })?;
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut sums = self.path.as_os_str().to_owned();
        sums.push(".sha256");
        std::fs::write(&sums, format!("{sha256}  {name}\n"))
            .map_err(|e| Error::Io { path: PathBuf::from(&sums), source: e })?;
        Ok(Written { path: self.path.clone(), bytes, sha256 })
    }

    /// `index.json`: an OCI index naming each tag whose manifest travels.
    fn index(&self, tagged: &[Tagged]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = tagged
            .iter()
            .filter_map(|t| {
                let (size, media_type) = self.manifests.get(&t.digest)?;
                Some(serde_json::json!({
                    "mediaType": media_type,
                    "digest": t.digest.as_str(),
                    "size": size,
                    "annotations": {"org.opencontainers.image.ref.name": format!("{}:{}", t.repository, t.tag)},
                }))
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::registry::manifest::OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::to_vec_pretty(&index).unwrap_or_default()
    }
}
