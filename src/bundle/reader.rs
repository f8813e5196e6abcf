//! Reading a bundle: [`Bundle::open`] walks the tar's headers once (the
//! `tar` crate seeks past the contents), checks `georeg-bundle.json`'s
//! signature over its bytes before any is parsed, and that every file it
//! lists is there with its size, and keeps where each file's bytes start.
//! An import then reads any blob at any offset straight from the file, so
//! the order of the tar does not matter, nothing is extracted, memory
//! stays flat, and a copy in chunks continues after a crash from where
//! the secondary's upload stands.
//!
//! The description is bounded ([`MAX_DESCRIPTION_BYTES`]) and copied, as
//! its digest is checked, to a file only this process can reach (created
//! and unlinked in the temporary directory): every pass over its
//! repositories ([`Bundle::each`]) parses that copy, which is what was
//! signed whatever happens to the transfer medium meanwhile, and nothing
//! holds every repository in memory at once.
//!
//! A bundle is a [`Source`] for the copy engine: every manifest is
//! checked against its digest as it is read, every blob as it streams to
//! the secondary (by the engine), so a damaged bundle fails naming the
//! file, and nothing that references it is pushed.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use sha2::{Digest as _, Sha256};

use super::contents::{blob_path, Checks, Contents, Header, Item, DESCRIPTION, INDEX, LAYOUT};
use super::description;
use super::signed;
use crate::config::selective::Selection;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry::manifest::{self, MAX_MANIFEST_BYTES};
use crate::registry::token::{random_hex, Signer};
use crate::registry::{Client, Digest, Manifest};
use crate::replication::source::Source;
use crate::shutdown::Shutdown;

/// `georeg-bundle.json` larger than this is refused before a byte of it
/// is read, and an export refuses to write one. It holds names and
/// digests, about 180 bytes a repository of one tag: some 1.4 million
/// such repositories. Memory does not grow with it (see the module
/// comment); the temporary directory holds a copy.
pub const MAX_DESCRIPTION_BYTES: u64 = 256 << 20;

/// Where a file's bytes are in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    offset: u64,
    size: u64,
    /// The description lists it (once).
    listed: bool,
}

/// An opened bundle, its description checked.
pub struct Bundle<'a> {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    /// The description but its lists.
    pub header: Header,
    /// The bytes of the blobs the bundle carries (manifests left out).
    pub blob_bytes: u64,
    /// How many of its repositories (those gone from the primary
    /// included) this node replicates, and how many selective sync
    /// leaves out.
    pub selected: usize,
    pub excluded: usize,
    /// Repositories the primary no longer has (and that are not among the
    /// repositories the description names): an import removes their tags.
    pub gone: BTreeSet<String>,
    /// The description as verified: a private, unnamed copy.
    description: File,
    /// Manifests the bundle carries: digest -> media type.
    media_types: HashMap<String, String>,
    /// Where manifests the bundle leaves out are read: the secondary,
    /// which held them when the inventory was taken.
    secondary: Option<&'a Client>,
}

impl<'a> Bundle<'a> {
    /// Opens the bundle at `path`: its table of contents read, its
    /// description's signature checked with the shared key, every file it
    /// lists present with its size, the small files' digests checked;
    /// its repositories counted against `selection` (this node's
    /// `replication.include` and `exclude`).
    pub fn open(path: &Path, signer: &Signer, selection: &Selection) -> Result<Bundle<'a>> {
        // Anything wrong with the bundle as a whole refuses it (exit 2):
        // running the import again cannot help, another bundle can.
        let damaged = |message: String| refuse(path, message);
        let cut = |e: std::io::Error| {
            damaged(format!("is not a complete tar file ({e}): it was cut short or damaged while carried"))
        };
        let file = File::open(path).map_err(|e| match e.kind() {
            // A wrong path is the operator's to fix: exit 2, as for a bad argument.
            std::io::ErrorKind::NotFound => Error::Bundle {
                file: path.display().to_string(),
                message: "does not exist: name the bundle file the export wrote".into(),
                refused: true,
            },
            _ => Error::Io { path: path.to_path_buf(), source: e },
        })?;
        let length = file.metadata().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?.len();
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries_with_seek().map_err(cut)? {
            let entry = entry.map_err(cut)?;
            if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
                continue; // directories a re-packing tool added
            }
            let name = entry.path().map_err(cut)?.to_string_lossy().trim_start_matches("./").to_string();
            let at = Entry { offset: entry.raw_file_position(), size: entry.size(), listed: false };
            // The tar crate seeks past contents: one that ends past the
            // end of the file is noticed here, not when it is read.
            if at.offset.saturating_add(at.size) > length {
                return Err(damaged(format!(
                    "is not a complete tar file ({name} ends past the end of the file): it was cut short while \
                     carried; carry it again and compare its sha256sum"
                )));
            }
            if entries.insert(name.clone(), at).is_some() {
                return Err(damaged(format!("holds {name} twice")));
            }
        }
        let Some(at) = entries.get(DESCRIPTION).copied() else {
            return Err(damaged(format!(
                "holds no {DESCRIPTION}: it is not a georeg bundle, or its export did not finish"
            )));
        };
        if at.size > MAX_DESCRIPTION_BYTES {
            return Err(damaged(format!(
                "{DESCRIPTION} is {} bytes ({}), more than the {MAX_DESCRIPTION_BYTES} bytes ({}) a bundle \
                 description may be; no georeg export writes one that large: this is not a bundle of this \
                 deployment. Nothing of it was read; if an export of yours made it, export the repositories in \
                 several bundles (georeg export --output FILE REPO...)",
                at.size,
                human_bytes(at.size),
                human_bytes(MAX_DESCRIPTION_BYTES)
            )));
        }
        let (description, copy_path) = private_copy()?;
        let mut copy = Noting { inner: BufWriter::with_capacity(256 << 10, &description), failed: false };
        let statement = signed::unseal_to::<Contents>(signer, section(path, at, 0)?, at.size, &mut copy)
            .and_then(|verdict| copy.flush().map(|()| verdict))
            .map_err(|e| {
                // Which side failed: the bundle read, or the copy written.
                let path = if copy.failed { copy_path.clone() } else { path.to_path_buf() };
                Error::Io { path, source: e }
            })?
            .map_err(|why| damaged(format!("{DESCRIPTION}: {why}")))?;
        drop(copy);

        // One pass: the checks, what the lists say about the tar's files.
        let (mut checks, mut blob_bytes, mut selected, mut excluded) = (Checks::default(), 0, 0, 0);
        let (mut gone, mut media_types) = (BTreeSet::new(), HashMap::new());
        let header = read_description(path, &description, &mut |item| {
            checks.item(&item).map_err(|why| damaged(format!("{DESCRIPTION} {why}")))?;
            match item {
                Item::Repository(r) if selection.includes(&r.name) => selected += 1,
                Item::Repository(_) => excluded += 1,
                Item::Deletion(d) if d.repository_gone => {
                    gone.insert(d.repository);
                }
                Item::Deletion(_) => {}
                Item::File(f) => {
                    let found = entries.get_mut(&f.path).filter(|e| e.size == f.size);
                    let Some(at) = found else {
                        let holds = entries.get(&f.path).map(|e| format!("holds it with {} bytes", e.size));
                        return Err(damaged(format!(
                            "lists {} ({} bytes) but the tar {}: the bundle is damaged or incomplete; carry it \
                             again and compare its sha256sum",
                            f.path,
                            f.size,
                            holds.unwrap_or_else(|| "does not hold it".into())
                        )));
                    };
                    if std::mem::replace(&mut at.listed, true) {
                        return Err(damaged(format!("{DESCRIPTION} lists {} twice", f.path)));
                    }
                    let at = *at;
                    match f.media_type {
                        Some(media_type) if f.path.starts_with("blobs/") => {
                            media_types.insert(f.digest, media_type);
                        }
                        None if f.path.starts_with("blobs/") => blob_bytes += f.size,
                        // The layout's own files, checked now (blobs are as they stream).
                        _ if (f.path == LAYOUT || f.path == INDEX) && sha256_of(path, at)? != f.digest => {
                            return Err(damaged(format!("{} does not match its digest {}", f.path, f.digest)));
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })?;
        Checks::header(&header).map_err(|why| damaged(format!("{DESCRIPTION} {why}")))?;
        if statement.jti != header.id {
            return Err(damaged(format!("{DESCRIPTION}: its signature is for another bundle than it describes")));
        }
        if !gone.is_empty() {
            // A repository both named and gone is imported, not emptied.
            read_description(path, &description, &mut |item| {
                if let Item::Repository(r) = item {
                    gone.remove(&r.name);
                }
                Ok(())
            })?;
        }
        let gone_selected = gone.iter().filter(|n| selection.includes(n)).count();
        Ok(Bundle {
            selected: selected + gone_selected,
            excluded: excluded + gone.len() - gone_selected,
            path: path.to_path_buf(),
            entries,
            header,
            blob_bytes,
            gone,
            description,
            media_types,
            secondary: None,
        })
    }

    /// Hands `each` every repository, deletion and file of the
    /// description, in order, parsing it again (it was checked whole
    /// when the bundle was opened); the first error stops the pass.
    pub fn each(&self, mut each: impl FnMut(Item) -> Result<()>) -> Result<()> {
        read_description(&self.path, &self.description, &mut each).map(|_| ())
    }

    /// Manifests the bundle leaves out are read from `secondary` instead.
    pub fn reading_missing_from(mut self, secondary: &'a Client) -> Bundle<'a> {
        self.secondary = Some(secondary);
        self
    }

    fn damaged(&self, message: String) -> Error {
        b_damaged(&self.path, message)
    }

    /// A file's bytes from `offset` on.
    fn section(&self, e: Entry, offset: u64) -> Result<std::io::Take<File>> {
        section(&self.path, e, offset)
    }

    /// What the bundle does not carry and the secondary lacks.
    fn absent(&self, what: &str, repo: &str, digest: &Digest) -> Error {
        self.damaged(format!(
            "{what} {digest} for {repo} is not in this bundle, and the secondary does not hold it: the export left it \
             out because its inventory said the secondary held it. Export a full bundle (without --inventory), or \
             take a new inventory and export again"
        ))
    }
}

/// The bundle as a whole cannot be used: exit 2, whatever the cause.
fn refuse(path: &Path, message: String) -> Error {
    Error::Bundle { file: path.display().to_string(), message, refused: true }
}

/// A file inside the bundle is damaged: the repository reading it fails.
fn b_damaged(path: &Path, message: String) -> Error {
    Error::Bundle { file: path.display().to_string(), message, refused: false }
}

/// A file's bytes in the tar at `path` from `offset` on.
fn section(path: &Path, e: Entry, offset: u64) -> Result<std::io::Take<File>> {
    let io = |err| Error::Io { path: path.to_path_buf(), source: err };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(e.offset + offset)).map_err(io)?;
    Ok(file.take(e.size.saturating_sub(offset)))
}

/// The SHA-256 of a file in the tar at `path`, read in chunks.
fn sha256_of(path: &Path, e: Entry) -> Result<String> {
    let mut hash = Sha256::new();
    let copied = std::io::copy(&mut section(path, e, 0)?, &mut hash)
        .map_err(|err| Error::Io { path: path.to_path_buf(), source: err })?;
    if copied != e.size {
        return Err(refuse(path, "ends inside a file: it was cut short while carried".into()));
    }
    Ok(format!("sha256:{}", crate::registry::encoding::hex(&hash.finalize())))
}

/// A file only this process can reach: created, then unlinked at once;
/// and the name it had, for errors.
fn private_copy() -> Result<(File, PathBuf)> {
    let path = std::env::temp_dir().join(format!("georeg-{DESCRIPTION}-{}", random_hex(8)));
    let io = |e| Error::Io { path: path.clone(), source: e };
    let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    std::fs::remove_file(&path).map_err(io)?;
    Ok((file, path))
}

/// Notes whether a write failed (a full temporary directory), which an
/// error from a copy does not say.
struct Noting<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Noting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// One pass over the description's private copy.
fn read_description(path: &Path, copy: &File, each: &mut dyn FnMut(Item) -> Result<()>) -> Result<Header> {
    description::read(At { file: copy, at: 0 }, each)?.map_err(|why| refuse(path, format!("{DESCRIPTION} {why}")))
}

/// Reads a file from the start with positioned reads, so that passes
/// share no file offset.
struct At<'f> {
    file: &'f File,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The bytes of a (small) file in the tar at `path`.
fn read(path: &Path, e: Entry) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    section(path, e, 0)?.read_to_end(&mut bytes).map_err(|err| Error::Io { path: path.to_path_buf(), source: err })?;
    if bytes.len() as u64 != e.size {
        return Err(b_damaged(path, "ends inside a file: it was cut short while carried".into()));
    }
    Ok(bytes)
}

impl Source for Bundle<'_> {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<Manifest>> {
        let Some(media_type) = self.media_types.get(digest.as_str()) else {
            return match self.secondary.map(|s| s.manifest(repo, digest.as_str())).transpose()?.flatten() {
                Some(m) => Ok(Some(m)),
                None => Err(self.absent("manifest", repo, digest)),
            };
        };
        let e = self.entries[&blob_path(digest)];
        if e.size > MAX_MANIFEST_BYTES {
            return Err(self.damaged(format!("manifest {digest} is larger than 4 MiB")));
        }
        let bytes = read(&self.path, e)?;
        let got = digest.recompute(&manifest::digested_bytes(&bytes));
        if &got != digest {
            return Err(self.damaged(format!(
                "manifest {digest} (for {repo}) did not match its digest (got {got}): the bundle is damaged; nothing \
                 referencing it was pushed"
            )));
        }
        Ok(Some(Manifest { bytes, media_type: media_type.clone(), digest: digest.clone() }))
    }

    fn blob_size(&self, _repo: &str, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.entries.get(&blob_path(digest)).map(|e| e.size))
    }

    fn blob<'s>(
        &'s self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        _shutdown: &'s Shutdown,
        _resumes: &'s AtomicU64,
    ) -> Result<Box<dyn Read + Send + 's>> {
        let Some(e) = self.entries.get(&blob_path(digest)).copied() else {
            return Err(self.absent("blob", repo, digest));
        };
        if size > 0 && e.size != size {
            return Err(self.damaged(format!(
                "holds blob {digest} with {} bytes, and {repo}'s manifest says {size}: the bundle is damaged",
                e.size
            )));
        }
        Ok(Box::new(self.section(e, offset.min(e.size))?))
    }

    fn blob_location(&self, _repo: &str, digest: &Digest) -> String {
        format!("{}:{}", self.path.display(), blob_path(digest))
    }
}
