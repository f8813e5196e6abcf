//! The registry HTTP API client (Docker Registry v2 / OCI distribution).
//!
//! [`Client`] holds the read operations and is all the primary ever gets: it
//! signs pull-only tokens (and the catalog scope), so georeg cannot write to
//! the primary even by mistake. [`Target`] wraps a client for the secondary
//! and adds the writes, with `push,pull` tokens. Both share one
//! `ureq::Agent` (keep-alive, explicit timeouts). Error statuses are data:
//! callers look at 404s; everything else becomes an [`Error::Registry`]
//! carrying the registry's own code and message.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::token::{Scope, TokenCache};

const PULL: &[&str] = &["pull"];
const PUSH_PULL: &[&str] = &["push", "pull"];
/// Distribution checks a separate `delete` action for DELETE requests.
const DELETE: &[&str] = &["push", "pull", "delete"];
/// The largest `n` distribution accepts for `_catalog` (above: 400 PAGINATION_NUMBER_INVALID).
const CATALOG_PAGE: usize = 1000;

/// The one HTTP agent of the process. Reads wait up to two minutes for the
/// next bytes: long enough for a slow storage backend, short enough that a
/// dead connection fails the sync instead of hanging it. `tls` decides
/// which https servers are trusted (see `tls::client_config`).
pub fn agent(tls: Arc<rustls::ClientConfig>) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .max_idle_connections_per_host(32)
        .user_agent(concat!("georeg/", env!("CARGO_PKG_VERSION")))
        // Blob GETs may redirect to object storage, which must not see the registry token.
        .redirect_auth_headers(ureq::RedirectAuthHeaders::Never)
        .build()
}

/// A registry's read API, with tokens of the given actions.
pub struct Client {
    base: String,
    origin: String,
    agent: ureq::Agent,
    tokens: TokenCache,
    actions: &'static [&'static str],
}

/// Outcome of a cross-repository mount attempt.
pub enum Mount {
    Mounted,
    /// The registry did not have the blob to mount and opened an ordinary
    /// upload at this location instead.
    Upload(String),
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: serde_json::Value,
}

enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read),
}

impl Client {
    /// A client that only ever asks for `pull` (and the catalog): for the primary.
    pub fn read_only(base: &str, agent: ureq::Agent, tokens: TokenCache) -> Client {
        Client::new(base, agent, tokens, PULL)
    }

    fn new(base: &str, agent: ureq::Agent, tokens: TokenCache, actions: &'static [&'static str]) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
        let origin = match base[after_scheme..].find('/') {
            Some(i) => base[..after_scheme + i].to_string(),
            None => base.clone(),
        };
        Client { base, origin, agent, tokens, actions }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn repo_scopes(&self, repo: &str) -> [Scope; 1] {
        [Scope::repository(repo, self.actions)]
    }

    /// Resolves a `Location` or `Link` target against this registry.
    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[Scope],
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<ureq::Response> {
        let token = self.tokens.get(scopes);
        let mut req = self.agent.request(method, url).set("Authorization", &format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Body::Empty => req.call(),
            Body::Bytes(b) => req.send_bytes(b),
            Body::Stream(r) => req.send(r),
        };
        match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(_, resp)) => Ok(resp),
            Err(ureq::Error::Transport(t)) => {
                Err(Error::Transport { url: url.to_string(), message: transport_message(&t) })
            }
        }
    }

    /// `GET /v2/`: is the registry up, and does it accept our tokens?
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.send("GET", &url, &[], &[], Body::Empty)?;
        expect(resp, "GET", &url, &[200])?;
        Ok(())
    }

    /// Every repository in the registry, following `Link` pagination.
    pub fn catalog(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut next = Some(format!("{}/v2/_catalog?n={CATALOG_PAGE}", self.base));
        while let Some(url) = next.take() {
            let resp = self.send("GET", &url, &[Scope::catalog()], &[], Body::Empty)?;
            let resp = expect(resp, "GET", &url, &[200])?;
            next = link_next(resp.header("Link")).map(|l| self.resolve(&l));
            let page: Catalog = read_json(resp, "GET", &url)?;
            names.extend(page.repositories.unwrap_or_default());
        }
        Ok(names)
    }

    /// One catalog page of at most `n` names: proves the catalog token is
    /// accepted without listing a large registry.
    pub fn catalog_page(&self, n: usize) -> Result<Vec<String>> {
        let url = format!("{}/v2/_catalog?n={n}", self.base);
        let resp = self.send("GET", &url, &[Scope::catalog()], &[], Body::Empty)?;
        let resp = expect(resp, "GET", &url, &[200])?;
        let page: Catalog = read_json(resp, "GET", &url)?;
        Ok(page.repositories.unwrap_or_default())
    }

    /// The repository's tags, following `Link` pagination (distribution v3,
    /// GitLab), or `None` when the registry does not know the repository.
    pub fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let mut tags = Vec::new();
        let mut next = Some(format!("{}/v2/{repo}/tags/list", self.base));
        while let Some(url) = next.take() {
            let resp = self.send("GET", &url, &self.repo_scopes(repo), &[], Body::Empty)?;
            if resp.status() == 404 && tags.is_empty() {
                return Ok(None);
            }
            let resp = expect(resp, "GET", &url, &[200])?;
            next = link_next(resp.header("Link")).map(|l| self.resolve(&l));
            let page: TagList = read_json(resp, "GET", &url)?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(Some(tags))
    }

    /// Tag -> digest for the repository (empty when the registry does not
    /// know the repository). One HEAD per tag; a tag deleted between the
    /// listing and its HEAD is simply absent.
    pub fn tag_digests(&self, repo: &str) -> Result<BTreeMap<String, Digest>> {
        let mut map = BTreeMap::new();
        for tag in self.tags(repo)?.unwrap_or_default() {
            if !valid_tag(&tag) {
                log::warn!("{repo}: skipping tag {tag:?} from {}: not a valid tag name", self.base);
                continue;
            }
            if let Some(d) = self.manifest_digest(repo, &tag)? {
                map.insert(tag, d);
            }
        }
        Ok(map)
    }

    /// The digest a tag (or digest) resolves to, by HEAD, or `None` when absent.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send("HEAD", &url, &self.repo_scopes(repo), &[("Accept", manifest::ACCEPT)], Body::Empty)?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect(resp, "HEAD", &url, &[200])?;
        match resp.header("Docker-Content-Digest").map(Digest::parse) {
            Some(Ok(d)) => Ok(Some(d)),
            // A registry that does not say: fetch and hash the manifest.
            _ => Ok(self.manifest(repo, reference)?.map(|m| m.digest)),
        }
    }

    /// The manifest's exact bytes, or `None` when absent. When `reference`
    /// is a digest, the bytes are checked against it.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send("GET", &url, &self.repo_scopes(repo), &[("Accept", manifest::ACCEPT)], Body::Empty)?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect(resp, "GET", &url, &[200])?;
        let content_type = resp.header("Content-Type").map(str::to_string);
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(manifest::MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Transport { url: url.clone(), message: format!("reading the manifest: {e}") })?;
        let bad = |message: String| Error::Manifest { repository: repo.into(), reference: reference.into(), message };
        if bytes.len() as u64 > manifest::MAX_MANIFEST_BYTES {
            return Err(bad(format!("from {} is larger than 4 MiB", self.base)));
        }
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                let got = expected.recompute(&bytes);
                if got != expected {
                    return Err(bad(format!("from {} did not match its digest (got {got})", self.base)));
                }
                expected
            }
            Err(_) => Digest::sha256_of(&bytes),
        };
        Ok(Some(Manifest { media_type: manifest::media_type(content_type.as_deref(), &bytes), bytes, digest }))
    }

    /// The blob's size when the repository has it.
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send("HEAD", &url, &self.repo_scopes(repo), &[], Body::Empty)?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect(resp, "HEAD", &url, &[200])?;
        Ok(Some(resp.header("Content-Length").and_then(|l| l.parse().ok()).unwrap_or(0)))
    }

    /// The blob's bytes as a stream.
    pub fn blob(&self, repo: &str, digest: &Digest) -> Result<Box<dyn Read + Send + Sync>> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send("GET", &url, &self.repo_scopes(repo), &[], Body::Empty)?;
        let resp = expect(resp, "GET", &url, &[200])?;
        Ok(resp.into_reader())
    }
}

/// The secondary registry: the read API plus the writes, with `push,pull` tokens.
pub struct Target(Client);

impl Deref for Target {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
    }
}

impl Target {
    pub fn new(base: &str, agent: ureq::Agent, tokens: TokenCache) -> Target {
        Target(Client::new(base, agent, tokens, PUSH_PULL))
    }

    /// PUTs the manifest's exact bytes under `reference` (tag or digest).
    pub fn put_manifest(&self, repo: &str, reference: &str, m: &Manifest) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp =
            self.send("PUT", &url, &self.repo_scopes(repo), &[("Content-Type", &m.media_type)], Body::Bytes(&m.bytes))?;
        let resp = expect(resp, "PUT", &url, &[200, 201])?;
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
            202 => Ok(Mount::Upload(self.location(resp, "POST", &url)?)),
            _ => Err(registry_error(resp, "POST", &url)),
        }
    }

    /// Opens an upload session and returns its location.
    pub fn start_upload(&self, repo: &str) -> Result<String> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.send("POST", &url, &self.repo_scopes(repo), &[("Content-Length", "0")], Body::Empty)?;
        let resp = expect(resp, "POST", &url, &[202])?;
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
        expect(resp, "PUT", &redact_query(&url), &[201])?;
        Ok(())
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
            Some(l) => Ok(self.resolve(l)),
            None => Err(Error::Registry {
                request: format!("{method} {url}"),
                status: resp.status(),
                code: String::new(),
                message: "no Location header in the answer".into(),
            }),
        }
    }
}

/// Checks the status; anything unexpected becomes an [`Error::Registry`].
fn expect(resp: ureq::Response, method: &str, url: &str, ok: &[u16]) -> Result<ureq::Response> {
    if ok.contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(registry_error(resp, method, url))
    }
}

/// An error answer, with the registry's `{"errors":[{code, message, detail}]}`.
fn registry_error(resp: ureq::Response, method: &str, url: &str) -> Error {
    let status = resp.status();
    let status_text = resp.status_text().to_string();
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut body);
    let (code, mut message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { errors }) if !errors.is_empty() => {
            let e = &errors[0];
            let mut message = e.message.clone();
            if !e.detail.is_null() {
                message.push_str(&format!(" ({})", e.detail));
            }
            (e.code.clone(), message)
        }
        _ => {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            (String::new(), if text.is_empty() { status_text } else { text.chars().take(200).collect() })
        }
    };
    if status == 401 {
        message.push_str(" (check that the registry's auth.token issuer, service and rootcertbundle match georeg's registry.issuer, registry.service and key)");
    }
    Error::Registry { request: format!("{method} {url}"), status, code, message }
}

fn read_json<T: serde::de::DeserializeOwned>(resp: ureq::Response, method: &str, url: &str) -> Result<T> {
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .map_err(|e| Error::Transport { url: url.to_string(), message: e.to_string() })?;
    serde_json::from_slice(&body).map_err(|e| Error::Registry {
        request: format!("{method} {url}"),
        status: 200,
        code: String::new(),
        message: format!("unexpected answer: {e}"),
    })
}

/// A transport failure in words; a TLS failure says what to change.
pub fn transport_message(t: &ureq::Transport) -> String {
    if let Some(tls) = std::error::Error::source(t).and_then(crate::tls::explain) {
        return tls;
    }
    let mut message = t.kind().to_string();
    if let Some(m) = t.message() {
        message = format!("{message}: {m}");
    }
    if let Some(source) = std::error::Error::source(t) {
        message = format!("{message}: {source}");
    }
    message
}

fn encode_digest(d: &Digest) -> String {
    d.as_str().replace(':', "%3A")
}

/// Upload locations carry session state in their query; keep messages short.
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?..."),
        None => url.to_string(),
    }
}

/// The target of `rel="next"` in a `Link` header, e.g.
/// `</v2/_catalog?last=b&n=2>; rel="next"`.
pub fn link_next(header: Option<&str>) -> Option<String> {
    for part in header?.split(',') {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        if is_next && target.starts_with('<') && target.ends_with('>') {
            return Some(target[1..target.len() - 1].to_string());
        }
    }
    None
}

/// Repository names as distribution accepts them: lowercase path components
/// of `[a-z0-9]` separated by `.`, `_`, `__` or `-`, joined by `/`.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let b = component.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
        })
}

/// Tags as distribution accepts them: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_parsing() {
        assert_eq!(
            link_next(Some("</v2/_catalog?last=b&n=2>; rel=\"next\"")).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            link_next(Some("<https://r.example/v2/x/tags/list?last=a>; rel=\"prev\", <https://r.example/v2/x/tags/list?last=z>; rel=\"next\"")).as_deref(),
            Some("https://r.example/v2/x/tags/list?last=z")
        );
        assert_eq!(link_next(Some("</x>; rel=\"prev\"")), None);
        assert_eq!(link_next(None), None);
        assert_eq!(link_next(Some("garbage")), None);
    }

    #[test]
    fn locations_resolve_against_the_registry() {
        let tokens = TokenCache::new(
            std::sync::Arc::new(crate::token::Signer::new(
                rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../tests/data/test-key-pkcs1.pem"))
                    .unwrap(),
                "i",
            )),
            "s",
            Duration::from_secs(60),
        );
        let c =
            Client::read_only("http://r.example:5000/prefix/", agent(crate::tls::client_config(None).unwrap()), tokens);
        assert_eq!(c.url(), "http://r.example:5000/prefix");
        assert_eq!(c.resolve("/v2/a/blobs/uploads/1?_state=x"), "http://r.example:5000/v2/a/blobs/uploads/1?_state=x");
        assert_eq!(c.resolve("https://other/x"), "https://other/x");
    }

    #[test]
    fn name_validation() {
        for good in ["app", "group/app", "a.b/c_d/e-f", "a__b", "x9"] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in ["", "App", "group//app", "/app", "app/", "-a", "a b", "a?b", "../x"] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(valid_tag("v1.0-rc_1"));
        assert!(valid_tag("_x"));
        assert!(!valid_tag(".x") && !valid_tag("") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129)));
    }
}
