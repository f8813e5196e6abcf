//! [`Target`]: the secondary registry, the read API plus the writes.

use std::io::Read;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::auth::Auth;
use super::client::Client;
use super::digest::Digest;
use super::http::{encode_digest, expect, redact_query, registry_error, Body, DELETE, PULL, PUSH_PULL};
use super::manifest::Manifest;
use super::token::Scope;
use crate::error::{Error, Result};

/// Outcome of a cross-repository mount attempt.
pub enum Mount {
    Mounted,
    /// The registry did not have the blob to mount and opened an ordinary
    /// upload at this location instead.
    Upload(String),
}

/// The secondary registry: the read API plus the writes, with `push,pull` tokens.
pub struct Target(Client, Quirks);

/// What this registry turned out not to do, learned as it answers.
#[derive(Default)]
struct Quirks {
    /// It refuses a blob's bytes in the PUT that closes an upload (the
    /// OCI spec makes that "monolithic" upload optional): blobs go by
    /// PATCH, then an empty PUT.
    patch_only: AtomicBool,
    /// The smallest chunk it takes (`OCI-Chunk-Min-Length`).
    chunk_min: AtomicU64,
}

impl Deref for Target {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
    }
}

impl Target {
    /// The same target, its reads bounded (see [`Client::bounded`]).
    pub fn bounded(self, limits: super::bounded::Limits, stop: &crate::shutdown::Shutdown) -> Target {
        Target(self.0.bounded(limits, stop), self.1)
    }

    pub fn new(base: &str, agent: ureq::Agent, auth: impl Into<Auth>) -> Target {
        Target(Client::new(base, agent, auth.into(), PUSH_PULL), Quirks::default())
    }

    /// Whether blobs must go by PATCH (the registry refused one in a PUT).
    pub fn patch_only(&self) -> bool {
        self.1.patch_only.load(Ordering::Relaxed)
    }

    /// Blobs go by PATCH from now on: one in a PUT broke with `why`, and
    /// the same by PATCH went through.
    pub fn prefer_patch(&self, why: &Error) {
        if !self.1.patch_only.swap(true, Ordering::Relaxed) {
            log::info!(
                "{} cut a blob sent in the PUT that closes an upload ({why}), and took it by PATCH: sending blobs by \
                 PATCH, then PUT",
                self.base
            );
        }
    }

    /// The smallest chunk the registry takes, when it said (0: any).
    pub fn chunk_min(&self) -> u64 {
        self.1.chunk_min.load(Ordering::Relaxed)
    }

    /// Notes `OCI-Chunk-Min-Length` of an answer that opened an upload.
    fn note_chunk_min(&self, resp: &ureq::Response) {
        if let Some(min) = resp.header("OCI-Chunk-Min-Length").and_then(|v| v.trim().parse::<u64>().ok()) {
            self.1.chunk_min.store(min, Ordering::Relaxed);
        }
    }

    /// PUTs the manifest's exact bytes under `reference` (tag or digest).
    pub fn put_manifest(&self, repo: &str, reference: &str, m: &Manifest) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp =
            self.send("PUT", &url, &self.repo_scopes(repo), &[("Content-Type", &m.media_type)], Body::Bytes(&m.bytes))?;
        let status = resp.status();
        let by_digest = Digest::parse(reference).is_ok();
        let resp = expect(resp, "PUT", &url, &[200, 201]).map_err(|e| match e {
            // A manifest refused without a complaint about what it names (a
            // missing blob or manifest): the registry does not take its type.
            Error::Registry { code, message, .. }
                if status == 415
                    || (status == 400 && matches!(code.as_str(), "" | "MANIFEST_INVALID" | "UNSUPPORTED")) =>
            {
                Error::Manifest {
                    repository: repo.into(),
                    reference: reference.into(),
                    message: format!(
                        "{} refused a manifest of media type {}{} ({status}{}{}): {}; this repository cannot be \
                         replicated there until it does",
                        self.base,
                        m.media_type,
                        if by_digest { " pushed by digest" } else { "" },
                        if code.is_empty() { String::new() } else { format!(" {code}") },
                        if message.is_empty() { String::new() } else { format!(": {message}") },
                        if by_digest {
                            "it takes either not that media type or no manifest by digest (what an image \
                             index's platforms and referrers need)"
                        } else {
                            "it does not take that media type"
                        }
                    ),
                }
            }
            other => other,
        })?;
        if let Some(Ok(got)) = resp.header("Docker-Content-Digest").map(Digest::parse) {
            if got != m.digest {
                return Err(Error::Manifest {
                    repository: repo.into(),
                    reference: reference.into(),
                    message: format!("{} stored it as {got}, expected {}", self.base, m.digest),
                });
            }
        }
        Ok(())
    }

    /// Tries to mount `digest` from another repository of this registry.
    pub fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount> {
        let url = format!("{}/v2/{repo}/blobs/uploads/?mount={}&from={from}", self.base, encode_digest(digest));
        // A mount needs pull on the source repository in the same token.
        let scopes = [Scope::repository(repo, PUSH_PULL), Scope::repository(from, PULL)];
        let resp = self.send("POST", &url, &scopes, &[("Content-Length", "0")], Body::Empty)?;
        match resp.status() {
            201 => Ok(Mount::Mounted),
            202 => {
                // A registry that does not mount (or not from there) opens
                // an upload instead, as the spec allows.
                self.note_chunk_min(&resp);
                Ok(Mount::Upload(self.location(resp, "POST", &url)?))
            }
            _ => Err(registry_error(resp, "POST", &url)),
        }
    }

    /// Opens an upload session and returns its location.
    pub fn start_upload(&self, repo: &str) -> Result<String> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.send("POST", &url, &self.repo_scopes(repo), &[("Content-Length", "0")], Body::Empty)?;
        let resp = expect(resp, "POST", &url, &[202])?;
        self.note_chunk_min(&resp);
        self.location(resp, "POST", &url)
    }

    /// Completes an upload with the whole blob in one streamed PUT. The
    /// registry checks the digest too; `body` should be a VerifyingReader
    /// so that a bad blob is refused before its last byte is sent.
    pub fn finish_upload(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", encode_digest(digest));
        let len = size.to_string();
        let headers = [("Content-Type", "application/octet-stream"), ("Content-Length", len.as_str())];
        let resp = self.send("PUT", &url, &self.repo_scopes(repo), &headers, Body::Stream(body))?;
        let status = resp.status();
        let refused = expect(resp, "PUT", &redact_query(&url), &[201]);
        // Bytes in the closing PUT refused as such (not for what they
        // are: a digest or size the registry disputes is a 400 with its
        // code): from now on, this registry gets PATCH then PUT.
        if let Err(Error::Registry { code, .. }) = &refused {
            let disputed = matches!(code.as_str(), "DIGEST_INVALID" | "SIZE_INVALID" | "BLOB_UPLOAD_INVALID");
            let unsupported = matches!(status, 400 | 404 | 405 | 413 | 416 | 500 | 501);
            if size > 0 && !disputed && unsupported && !self.1.patch_only.swap(true, Ordering::Relaxed) {
                log::info!(
                    "{} refused a blob in the PUT that closes an upload ({status}): sending blobs by PATCH, then PUT",
                    self.base
                );
            }
        }
        refused?;
        Ok(())
    }

    /// Sends one chunk of an open upload, starting at byte `offset`;
    /// returns the upload's location for the next chunk (distribution
    /// encodes the offset in it).
    pub fn patch_upload(&self, repo: &str, location: &str, offset: u64, chunk: &[u8]) -> Result<String> {
        let range = format!("{offset}-{}", offset + chunk.len() as u64 - 1);
        let len = chunk.len().to_string();
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", range.as_str()),
            ("Content-Length", len.as_str()),
        ];
        let resp = self.send("PATCH", location, &self.repo_scopes(repo), &headers, Body::Bytes(chunk))?;
        let resp = expect(resp, "PATCH", &redact_query(location), &[202])?;
        self.location(resp, "PATCH", &redact_query(location))
    }

    /// How many bytes an open upload holds, or `None` when the registry no
    /// longer has it (purged, cancelled, or its state no longer valid).
    pub fn upload_offset(&self, repo: &str, location: &str) -> Result<Option<u64>> {
        let resp = self.send("GET", location, &self.repo_scopes(repo), &[], Body::Empty)?;
        match resp.status() {
            204 | 200 => {}
            400 | 404 | 416 => return Ok(None),
            _ => return Err(registry_error(resp, "GET", &redact_query(location))),
        }
        // `Range: 0-LAST`, where an empty upload says 0-0 too.
        let last = resp.header("Range").and_then(|r| r.split_once('-')).and_then(|(_, l)| l.trim().parse::<u64>().ok());
        Ok(Some(match last {
            Some(0) | None => 0,
            Some(last) => last + 1,
        }))
    }

    /// Abandons an upload session; best effort, the registry purges stale ones anyway.
    pub fn cancel_upload(&self, repo: &str, location: &str) {
        if let Err(e) = self.abort_upload(repo, location) {
            log::debug!("cancelling upload {location}: {e}");
        }
    }

    /// Abandons an upload session; an error when the registry refuses.
    pub fn abort_upload(&self, repo: &str, location: &str) -> Result<()> {
        let resp = self.send("DELETE", location, &[Scope::repository(repo, DELETE)], &[], Body::Empty)?;
        expect(resp, "DELETE", &redact_query(location), &[200, 202, 204])?;
        Ok(())
    }

    /// Uploads a small blob held in memory.
    pub fn push_blob_bytes(&self, repo: &str, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let location = self.start_upload(repo)?;
        self.finish_upload(repo, &location, digest, bytes.len() as u64, &mut &bytes[..])
    }

    /// Deletes a manifest by digest (and with it every tag pointing at it).
    /// Already gone counts as done.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.base);
        let resp = self.send("DELETE", &url, &[Scope::repository(repo, DELETE)], &[], Body::Empty)?;
        if resp.status() == 404 {
            return Ok(());
        }
        expect(resp, "DELETE", &url, &[200, 202])?;
        Ok(())
    }

    /// Unlinks a blob from the repository (`DELETE /v2/NAME/blobs/DIGEST`);
    /// distribution keeps the bytes in its storage for other repositories
    /// (until garbage collection). Already unlinked, or a registry that
    /// does not delete (405), counts as done.
    pub fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send("DELETE", &url, &[Scope::repository(repo, DELETE)], &[], Body::Empty)?;
        match resp.status() {
            200 | 202 | 404 | 405 => Ok(()),
            _ => Err(registry_error(resp, "DELETE", &url)),
        }
    }

    /// Whether the registry deletes manifests at all (distribution's
    /// `storage.delete.enabled`), asked by deleting one that cannot exist:
    /// 405 when deletes are off, 404 when they are on. Asked before any
    /// change that only a delete can complete.
    pub fn deletes_enabled(&self, repo: &str) -> Result<bool> {
        let url = format!("{}/v2/{repo}/manifests/sha256:{}", self.base, "0".repeat(64));
        let resp = self.send("DELETE", &url, &[Scope::repository(repo, DELETE)], &[], Body::Empty)?;
        match resp.status() {
            405 => Ok(false),
            200 | 202 | 404 => Ok(true),
            _ => Err(registry_error(resp, "DELETE", &url)),
        }
    }

    /// Deletes a tag by name where the registry supports it (distribution
    /// v3, GitLab). Returns false when it does not: distribution 2.8 answers
    /// 400 DIGEST_INVALID because it can only delete by digest.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.base);
        let resp = self.send("DELETE", &url, &[Scope::repository(repo, DELETE)], &[], Body::Empty)?;
        match resp.status() {
            200 | 202 | 404 => Ok(true),
            400 | 405 => Ok(false),
            _ => Err(registry_error(resp, "DELETE", &url)),
        }
    }

    fn location(&self, resp: ureq::Response, method: &str, url: &str) -> Result<String> {
        match resp.header("Location") {
            Some(l) => Ok(self.resolve_from(url, l)),
            None => Err(Error::Registry {
                request: format!("{method} {url}"),
                status: resp.status(),
                code: String::new(),
                message: "no Location header in the answer".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_answer_sets_the_smallest_chunk() {
        let agent = super::super::agent(crate::tls::client_config(None).unwrap());
        let target = Target::new("http://r.example", agent, Auth::challenged(None, "registry"));
        assert_eq!(target.chunk_min(), 0);
        let resp: ureq::Response =
            "HTTP/1.1 202 Accepted\r\nLocation: /v2/a/blobs/uploads/1\r\nOCI-Chunk-Min-Length: 5000000\r\n\r\n"
                .parse()
                .unwrap();
        target.note_chunk_min(&resp);
        assert_eq!(target.chunk_min(), 5_000_000);
        assert_eq!(
            target.location(resp, "POST", "http://r.example/v2/a/blobs/uploads/").unwrap(),
            "http://r.example/v2/a/blobs/uploads/1"
        );
    }
}
