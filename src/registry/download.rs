//! [`Download`]: a blob read from a registry that survives a broken or
//! stalled connection. When the stream breaks, or no byte arrives within
//! the agent's read timeout (`replication.stall_seconds` for the primary),
//! it asks again with `Range: bytes=N-` from the first byte not yet
//! delivered, a few times with backoff, so that a cut at 90 % of a large
//! layer costs a round trip, not the layer. A stream that trickles below
//! `replication.min_rate` counts as stalled ([`super::bounded`]); a stop
//! request or a spent budget ends it without a resume. The caller sees
//! one unbroken stream and checks its digest as usual.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bounded::{self, Bounded};
use super::client::Client;
use super::digest::Digest;
use super::http::{expect, registry_error, Body};
use super::pace::Paced;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::shutdown::Shutdown;

/// Resumes in a row without a mebibyte of progress before the copy fails.
const MAX_RESUMES: u32 = 5;
/// Progress after which a resume no longer counts against `MAX_RESUMES`.
const PROGRESS: u64 = 1 << 20;

pub struct Download<'a> {
    client: &'a Client,
    repo: String,
    digest: Digest,
    /// The blob's size (0: not known, the stream's end is the blob's end).
    size: u64,
    /// The next byte to deliver.
    offset: u64,
    /// The byte after the last one asked for: `size` for the rest of the
    /// blob, less for one range of it.
    end: u64,
    body: Option<Paced<Box<dyn Read + Send + Sync>>>,
    /// Resumes since the last `PROGRESS` bytes.
    failures: u32,
    since_resume: u64,
    /// Every resume of this download, for the operator.
    resumes: Option<&'a AtomicU64>,
    shutdown: &'a Shutdown,
}

impl Client {
    /// The blob's bytes from `offset` on, resumed after breaks and stalls.
    /// The first request is sent at once, so that an absent blob or a
    /// refusing registry is an error here, not inside a read.
    pub fn download<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        shutdown: &'a Shutdown,
    ) -> Result<Download<'a>> {
        self.download_range(repo, digest, size, offset, size, shutdown)
    }

    /// The blob's bytes from `offset` up to `end` (exclusive; `size` for
    /// the rest of it), asked with `Range: bytes=OFFSET-LAST` so that the
    /// registry sends no more than that, and resumed as
    /// [`Client::download`] is.
    pub fn download_range<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        end: u64,
        shutdown: &'a Shutdown,
    ) -> Result<Download<'a>> {
        let mut d = Download {
            client: self,
            repo: repo.to_string(),
            digest: digest.clone(),
            size,
            offset,
            end,
            body: None,
            failures: 0,
            since_resume: 0,
            resumes: None,
            shutdown,
        };
        d.body = Some(d.open()?);
        Ok(d)
    }
}

impl<'a> Download<'a> {
    /// Counts every resume in `count` (a metric).
    pub fn counting(mut self, count: &'a AtomicU64) -> Self {
        self.resumes = Some(count);
        self
    }

    fn open(&self) -> Result<Paced<Box<dyn Read + Send + Sync>>> {
        let c = self.client;
        let url = format!("{}/v2/{}/blobs/{}", c.base, self.repo, self.digest);
        let part = self.size > 0 && self.end < self.size;
        let range = match part {
            true => format!("bytes={}-{}", self.offset, self.end - 1),
            false => format!("bytes={}-", self.offset),
        };
        let headers: &[(&str, &str)] = if self.offset > 0 || part { &[("Range", &range)] } else { &[] };
        let resp = c.send("GET", &url, &c.repo_scopes(&self.repo), headers, Body::Empty)?;
        let mut skip = 0;
        let resp = match resp.status() {
            206 => {
                let starts = resp.header("Content-Range").and_then(range_start);
                if starts != Some(self.offset) {
                    return Err(Error::Registry {
                        request: format!("GET {url} ({range})"),
                        status: 206,
                        code: String::new(),
                        message: format!("answered {:?}, not the range asked for", resp.header("Content-Range")),
                    });
                }
                resp
            }
            // A registry that ignores Range sends the whole blob again:
            // it is read from one stream from now on.
            200 if part => {
                if !c.ignores_ranges.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "{}: {} ignores Range requests: its large blobs are read over one stream from now on",
                        self.repo,
                        c.base
                    );
                }
                skip = self.offset;
                resp
            }
            200 if self.offset > 0 => {
                c.ignores_ranges.store(true, Ordering::Relaxed);
                log::warn!(
                    "{}: {} ignores Range requests: reading {} of {} again to resume at that byte",
                    self.repo,
                    c.base,
                    human_bytes(self.offset),
                    self.digest
                );
                skip = self.offset;
                resp
            }
            416 => return Err(registry_error(resp, "GET", &format!("{url} ({range})"))),
            _ => expect(resp, "GET", &url, &[200])?,
        };
        let stream = Bounded::streaming(resp.into_reader(), c.limits, &c.stop);
        let mut body = Paced { inner: Box::new(stream) as Box<dyn Read + Send + Sync>, pacer: c.pacer.clone() };
        if skip > 0 {
            let skipped = io::copy(&mut (&mut body).take(skip), &mut io::sink())
                .map_err(|e| Error::Transport { url: url.clone(), message: format!("skipping to byte {skip}: {e}") })?;
            if skipped < skip {
                return Err(Error::Transport { url, message: format!("the blob ended at byte {skipped}") });
            }
        }
        Ok(body)
    }

    /// Drops the broken stream and opens another from `offset`, after a
    /// backoff; an error once too many resumes made no progress.
    fn resume(&mut self, why: &io::Error) -> io::Result<()> {
        self.body = None;
        if self.since_resume >= PROGRESS {
            self.failures = 0;
        }
        self.since_resume = 0;
        loop {
            self.failures += 1;
            if self.failures > MAX_RESUMES {
                return Err(io::Error::other(format!(
                    "the download from {} broke {MAX_RESUMES} times in a row at byte {} ({why})",
                    self.client.base, self.offset
                )));
            }
            let wait = Duration::from_millis(250 << (self.failures - 1));
            log::warn!(
                "{}: reading {} from {} broke at {} of {} ({why}): resuming from that byte in {} ms ({} of {MAX_RESUMES})",
                self.repo,
                self.digest,
                self.client.base,
                human_bytes(self.offset),
                if self.size > 0 { human_bytes(self.size) } else { "?".into() },
                wait.as_millis(),
                self.failures
            );
            if !self.shutdown.sleep(wait) {
                return Err(io::Error::other("georeg is shutting down"));
            }
            if let Some(count) = self.resumes {
                count.fetch_add(1, Ordering::Relaxed);
            }
            match self.open() {
                Ok(body) => {
                    self.body = Some(body);
                    return Ok(());
                }
                Err(e) => log::warn!("{}: resuming {}: {e}", self.repo, self.digest),
            }
        }
    }
}

impl Read for Download<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.size > 0 && self.end < self.size && self.offset >= self.end {
                return Ok(0); // the range asked for is all here
            }
            if self.size > 0 && self.offset >= self.size || buf.is_empty() {
                // The digest check, not this reader, judges a longer body.
                return match &mut self.body {
                    Some(body) => body.read(buf),
                    None => Ok(0),
                };
            }
            let Some(body) = &mut self.body else {
                return Err(io::Error::other("the download was abandoned"));
            };
            let want = match self.size > 0 && self.end < self.size {
                true => buf.len().min((self.end - self.offset) as usize),
                false => buf.len(),
            };
            let error = match body.read(&mut buf[..want]) {
                Ok(0) if self.size > 0 => io::Error::new(io::ErrorKind::UnexpectedEof, "the connection ended early"),
                Ok(n) => {
                    self.offset += n as u64;
                    self.since_resume += n as u64;
                    return Ok(n);
                }
                Err(e) if bounded::is_final(&e) => return Err(e),
                Err(e) => e,
            };
            self.resume(&error)?;
        }
    }
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` answer.
fn range_start(header: &str) -> Option<u64> {
    header.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn content_range_first_byte() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
