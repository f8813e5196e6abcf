//! [`Source`]: where the copy engine reads the manifests and blobs the
//! secondary lacks. Replication reads them from the primary registry
//! (`Client`, pull-only); an import reads them from a transfer bundle
//! (`bundle::Bundle`). The source is all the engine reads: it has no
//! other way to the primary. The engine only ever writes to the
//! secondary, so everything it guarantees (digests checked while bytes
//! stream, a bad blob never completed, children before indexes, chunks
//! recorded and resumed) holds whichever source it reads.

use std::io::Read;
use std::sync::atomic::AtomicU64;

use crate::error::{Error, Result};
use crate::registry::{Client, Digest, Manifest};
use crate::shutdown::Shutdown;

/// What the copy engine reads from. `Sync`: workers share one.
pub trait Source: Sync {
    /// For messages: `the primary http://...`, or the bundle's path.
    fn describe(&self) -> String;

    /// The manifest by digest, its bytes checked against the digest;
    /// `None` when the source does not have it.
    fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<Manifest>>;

    /// The blob's size, when the source has it (Docker schema 1 names its
    /// layers without sizes).
    fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;

    /// The blob's bytes from `offset` on (`size` in all; 0: not known).
    /// The caller checks them against the digest. `resumes` counts reads
    /// that had to be continued after a break.
    fn blob<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        shutdown: &'a Shutdown,
        resumes: &'a AtomicU64,
    ) -> Result<Box<dyn Read + Send + 'a>>;

    /// Where the blob is read from, for messages.
    fn blob_location(&self, repo: &str, digest: &Digest) -> String;

    /// Whether several ranges of one blob may be read at once
    /// ([`Source::blob_range`]), each over a stream of its own.
    fn serves_ranges(&self) -> bool {
        false
    }

    /// The blob's bytes from `start` up to `end` (exclusive), whole in
    /// `buf` (what it held is replaced); fewer is an error. The caller
    /// checks the digest over every range, in order.
    #[allow(clippy::too_many_arguments)]
    fn blob_range(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        (start, end): (u64, u64),
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
        resumes: &AtomicU64,
    ) -> Result<()> {
        let body = self.blob(repo, digest, size, start, shutdown, resumes)?;
        read_range(body.take(end - start), end - start, buf, || self.blob_location(repo, digest))
    }
}

/// Reads `len` bytes of a range whole into `buf`, or says where it fell short.
fn read_range(mut body: impl Read, len: u64, buf: &mut Vec<u8>, url: impl Fn() -> String) -> Result<()> {
    buf.clear();
    buf.reserve_exact(len as usize);
    match body.read_to_end(buf) {
        Ok(_) if buf.len() as u64 == len => Ok(()),
        Ok(n) => Err(Error::Transport { url: url(), message: format!("a range of {len} bytes ended after {n}") }),
        Err(e) => Err(Error::Transport { url: url(), message: e.to_string() }),
    }
}

/// The primary registry, read with pull-only tokens; downloads continue
/// with `Range` after a break or a stall.
impl Source for Client {
    fn describe(&self) -> String {
        format!("the primary {}", self.url())
    }

    fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<Manifest>> {
        Client::manifest(self, repo, digest.as_str())
    }

    fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        Client::blob_size(self, repo, digest)
    }

    fn blob<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        shutdown: &'a Shutdown,
        resumes: &'a AtomicU64,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        Ok(Box::new(self.download(repo, digest, size, offset, shutdown)?.counting(resumes)))
    }

    fn blob_location(&self, repo: &str, digest: &Digest) -> String {
        format!("{}/v2/{repo}/blobs/{digest}", self.url())
    }

    fn serves_ranges(&self) -> bool {
        Client::serves_ranges(self)
    }

    fn blob_range(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        (start, end): (u64, u64),
        buf: &mut Vec<u8>,
        shutdown: &Shutdown,
        resumes: &AtomicU64,
    ) -> Result<()> {
        let body = self.download_range(repo, digest, size, start, end, shutdown)?.counting(resumes);
        read_range(body, end - start, buf, || self.blob_location(repo, digest))
    }
}
