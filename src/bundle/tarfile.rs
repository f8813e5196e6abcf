//! Writing a bundle: one tar file (GNU format, through the `tar` crate)
//! laid out as an OCI image layout, `oci-layout` first, then every
//! manifest and blob under `blobs/ALGORITHM/HEX`, then `index.json`
//! (one entry per tag whose manifest travels, named `REPOSITORY:TAG`), and
//! `georeg-bundle.json` last, so that a tar cut short is recognizably
//! incomplete. Blobs stream from their reader into the tar: nothing is
//! held whole, nothing is copied to a temporary file. The tar is written
//! as `FILE.partial` and renamed once complete and on disk; its SHA-256,
//! computed on the way, goes to `FILE.sha256` in `sha256sum` format.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::contents::{blob_path, Contents, FileEntry, DESCRIPTION, INDEX, LAYOUT};
use super::reader::MAX_DESCRIPTION_BYTES;
use super::signed;
use crate::error::{Error, Result};
use crate::registry::{encoding, Digest, Manifest};

const LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

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
/// removes its partial file.
pub struct Writer<'a> {
    tar: tar::Builder<Hashing<'a, BufWriter<File>>>,
    path: PathBuf,
    partial: PathBuf,
    mtime: u64,
    files: Vec<FileEntry>,
    /// Manifests written: digest -> (size, media type).
    manifests: HashMap<Digest, (u64, String)>,
    finished: bool,
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

impl<'a> Writer<'a> {
    /// Starts `path` (as `path.partial`); `written` counts the bytes that
    /// reach the file. Entries carry `mtime` (the export time).
    pub fn create(path: &Path, mtime: u64, written: &'a AtomicU64) -> Result<Writer<'a>> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial).map_err(|e| Error::Io { path: partial.clone(), source: e })?;
        let hashing = Hashing { inner: BufWriter::with_capacity(256 << 10, file), hash: Sha256::new(), written };
        let mut w = Writer {
            tar: tar::Builder::new(hashing),
            path: path.to_path_buf(),
            partial,
            mtime,
            files: Vec::new(),
            manifests: HashMap::new(),
            finished: false,
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

    fn add(&mut self, path: &str, size: u64, body: impl Read) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        self.tar.append_data(&mut header, path, body).map_err(|e| self.io(e))
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
        let description = signed::seal(signer, &contents).map_err(|message| Error::Bundle {
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
        self.tar.finish().map_err(|e| self.io(e))?;
        let hashing = self.tar.get_mut();
        hashing.flush().map_err(|e| Error::Io { path: self.partial.clone(), source: e })?;
        let sha256 = encoding::hex(&std::mem::take(&mut hashing.hash).finalize());
        let bytes = hashing.written.load(Ordering::Relaxed);
        // On disk before it is renamed into place: the file is carried away.
        hashing.inner.get_ref().sync_all().map_err(|e| Error::Io { path: self.partial.clone(), source: e })?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| Error::Io { path: self.path.clone(), source: e })?;
        self.finished = true;
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

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
