//! [`Client`]: a registry's read API, with tokens of the given actions.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::auth::{Auth, Via};
use super::bounded::{self, Limits};
use super::digest::Digest;
use super::http::{expect, link_next, redact_query, registry_error, transport_message, Body, CATALOG_PAGE, PULL};
use super::manifest::{self, Manifest};
use super::pace::Pacer;
use super::pages::Pager;
use super::token::Scope;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

/// A registry's read API, with tokens of the given actions.
pub struct Client {
    pub(super) base: String,
    origin: String,
    agent: ureq::Agent,
    auth: Auth,
    actions: &'static [&'static str],
    /// Whether the registry serves the OCI referrers API, and since when
    /// that is known (asked again after an hour: registries get upgraded).
    referrers_api: Mutex<Option<(bool, Instant)>>,
    /// Set once the registry answered a tag list with a bare 404 (no
    /// NAME_UNKNOWN): content discovery is optional in the OCI spec, and
    /// such a registry is compared by reading tags by name.
    pub(super) unlisted: std::sync::atomic::AtomicBool,
    /// Set once the registry answered a `Range` request with the whole
    /// blob: its large blobs are then read over one stream.
    pub(super) ignores_ranges: std::sync::atomic::AtomicBool,
    /// The caps on what this registry is asked (the primary's).
    pub(super) pacer: Arc<Pacer>,
    /// The bounds on every answer read from it.
    pub(super) limits: Limits,
    /// The process's stop request, looked at during every read.
    pub(super) stop: Shutdown,
}

/// The most bytes of one catalog page (of at most `CATALOG_PAGE` names).
const MAX_CATALOG_PAGE_BYTES: u64 = 4 << 20;
/// The most bytes of a JSON answer other than a tag list or catalog page.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// How long georeg waits out 429 and 503 answers for one request, in all.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// How long an answer about the referrers API stands.
const REFERRERS_API_RECHECK: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Client {
    /// A client that only ever asks for `pull` (and the catalog): for the primary.
    pub fn read_only(base: &str, agent: ureq::Agent, auth: impl Into<Auth>) -> Client {
        Client::new(base, agent, auth.into(), PULL)
    }

    pub(super) fn new(base: &str, agent: ureq::Agent, auth: Auth, actions: &'static [&'static str]) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
        let origin = match base[after_scheme..].find('/') {
            Some(i) => base[..after_scheme + i].to_string(),
            None => base.clone(),
        };
        Client {
            base,
            origin,
            agent,
            auth,
            actions,
            referrers_api: Mutex::new(None),
            unlisted: Default::default(),
            ignores_ranges: Default::default(),
            pacer: Arc::default(),
            limits: Limits::default(),
            stop: Shutdown::default(),
        }
    }

    /// The same client, paced (`replication.max_bandwidth`,
    /// `replication.max_requests_per_second`).
    pub fn paced(mut self, pacer: Arc<Pacer>) -> Client {
        self.pacer = pacer;
        self
    }

    /// The same client, its reads bounded by `limits` and ended by `stop`.
    pub fn bounded(mut self, limits: Limits, stop: &Shutdown) -> Client {
        self.limits = limits;
        self.stop = stop.clone();
        self
    }

    /// Whether a blob can be read in ranges over several streams: false
    /// once the registry answered a range with the whole blob.
    pub fn serves_ranges(&self) -> bool {
        !self.ignores_ranges.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// How georeg authenticates to this registry, in words (what the
    /// registry asked for so far).
    pub fn auth_description(&self) -> String {
        self.auth.describe()
    }

    /// Whether georeg signs its own tokens for this registry (GitLab's model).
    pub fn signs_own_tokens(&self) -> bool {
        matches!(self.auth, Auth::Signed(_))
    }

    /// What to change when this registry refuses georeg.
    pub fn auth_hint(&self) -> String {
        self.auth.hint()
    }

    pub(super) fn repo_scopes(&self, repo: &str) -> [Scope; 1] {
        [Scope::repository(repo, self.actions)]
    }

    /// Resolves a `Location` against the URL of the request it answered
    /// (RFC 3986): absolute, absolute-path, or relative to the request's
    /// directory (`uploads/1` after `POST /v2/a/blobs/uploads/`).
    pub(super) fn resolve_from(&self, request: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") || location.starts_with('/') {
            return self.resolve(location);
        }
        let path = request.split(['?', '#']).next().unwrap_or(request);
        match path.rfind('/') {
            Some(i) if i + 1 > path.find("://").map(|s| s + 3).unwrap_or(0) => format!("{}{location}", &path[..=i]),
            _ => self.resolve(location),
        }
    }

    /// Resolves a `Location` or `Link` target against this registry.
    pub(super) fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    pub(super) fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[Scope],
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<ureq::Response> {
        let retryable = !matches!(body, Body::Stream(_));
        let mut body = body;
        let mut waited = Duration::ZERO;
        let mut backoff = Duration::from_secs(1);
        let mut challenged = false;
        loop {
            self.pacer.request();
            let via = Via { agent: &self.agent, limits: self.limits, stop: &self.stop, registry: &self.base };
            let mut req = self.agent.request(method, url);
            let authorization = self.auth.header(scopes, &via)?;
            if let Some(authorization) = &authorization {
                req = req.set("Authorization", authorization);
            }
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let result = match &mut body {
                Body::Empty => req.call(),
                Body::Bytes(b) => req.send_bytes(b),
                Body::Stream(r) => req.send(&mut **r),
            };
            match result {
                Ok(resp) => return Ok(resp),
                // A registry that authenticates on its own terms says how in
                // its challenge: follow it once (a streamed body cannot be
                // sent again; the next request carries what was learned).
                Err(ureq::Error::Status(401, resp)) => {
                    if !challenged {
                        challenged = true;
                        let sent = authorization.as_deref();
                        let challenge = match resp.header("WWW-Authenticate") {
                            Some(header) => Some(header.to_string()),
                            None => self.probe_challenge(),
                        };
                        if self.auth.refused(challenge.as_deref(), sent, scopes) && retryable {
                            continue;
                        }
                    }
                    return Err(self.refusal(resp, method, url));
                }
                // A registry asking to slow down is waited out, not failed.
                Err(ureq::Error::Status(code @ (429 | 503), resp)) if retryable && waited < MAX_RETRY_WAIT => {
                    let asked = resp.header("Retry-After").and_then(|s| s.trim().parse::<u64>().ok());
                    let delay = asked.map(Duration::from_secs).unwrap_or(backoff).min(Duration::from_secs(60));
                    if waited.is_zero() {
                        log::warn!(
                            "{method} {} answered {code}: waiting {}s {}, then asking again",
                            redact_query(url),
                            delay.as_secs(),
                            if asked.is_some() { "as it asks (Retry-After)" } else { "(backoff)" }
                        );
                    }
                    if !self.stop.sleep(delay) {
                        return Err(Error::Interrupted);
                    }
                    waited += delay.max(Duration::from_millis(1));
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(ureq::Error::Status(_, resp)) => return Ok(resp),
                Err(ureq::Error::Transport(t)) => {
                    return Err(Error::Transport { url: url.to_string(), message: transport_message(&t) })
                }
            }
        }
    }

    /// The challenge of `GET /v2/` without credentials, for a registry that
    /// answers 401 elsewhere without saying how to authenticate
    /// (container-registry 0.3 challenges only there, as docker expects
    /// clients to ask `/v2/` first).
    fn probe_challenge(&self) -> Option<String> {
        if self.signs_own_tokens() {
            return None;
        }
        match self.agent.get(&format!("{}/v2/", self.base)).call() {
            Err(ureq::Error::Status(401, resp)) => resp.header("WWW-Authenticate").map(str::to_string),
            _ => None,
        }
    }

    /// A 401 that following the challenge did not cure, saying how georeg
    /// authenticated and what to change (never with what credentials).
    fn refusal(&self, resp: ureq::Response, method: &str, url: &str) -> Error {
        match registry_error(resp, method, &redact_query(url)) {
            Error::Registry { request, status, code, message } => Error::Registry {
                request,
                status,
                code,
                message: format!(
                    "{message} (georeg authenticated with {}; {})",
                    self.auth.describe(),
                    self.auth.hint()
                ),
            },
            other => other,
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
    /// Loop-proof and bounded (`pages`): a page of more names than asked
    /// for is refused.
    pub fn catalog(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut pager = Pager::new("catalog");
        let mut next = Some(format!("{}/v2/_catalog?n={CATALOG_PAGE}", self.base));
        while let Some(url) = next.take() {
            pager.next(&url)?;
            let resp = self.send("GET", &url, &[Scope::catalog()], &[], Body::Empty)?;
            let resp = expect(resp, "GET", &url, &[200])?;
            next = link_next(resp.header("Link")).map(|l| self.resolve(&l));
            let page: Catalog = self.read_json(resp, &url, MAX_CATALOG_PAGE_BYTES, "reading a catalog page")?;
            let page = page.repositories.unwrap_or_default();
            if page.len() > CATALOG_PAGE {
                return Err(Error::Registry {
                    request: format!("GET {url}"),
                    status: 200,
                    code: String::new(),
                    message: format!("a page of {} names, where at most {CATALOG_PAGE} were asked for", page.len()),
                });
            }
            names.extend(page);
        }
        Ok(names)
    }

    /// One catalog page of at most `n` names: proves the catalog token is
    /// accepted without listing a large registry.
    pub fn catalog_page(&self, n: usize) -> Result<Vec<String>> {
        let url = format!("{}/v2/_catalog?n={n}", self.base);
        let resp = self.send("GET", &url, &[Scope::catalog()], &[], Body::Empty)?;
        let resp = expect(resp, "GET", &url, &[200])?;
        let page: Catalog = self.read_json(resp, &url, MAX_CATALOG_PAGE_BYTES, "reading a catalog page")?;
        Ok(page.repositories.unwrap_or_default())
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
        let named = resp.header("Docker-Content-Digest").and_then(|d| Digest::parse(d).ok());
        let bad = |message: String| Error::Manifest { repository: repo.into(), reference: reference.into(), message };
        let declared: u64 =
            resp.header("Content-Length").and_then(|l| l.trim().parse().ok()).unwrap_or(manifest::MAX_MANIFEST_BYTES);
        if declared > manifest::MAX_MANIFEST_BYTES {
            return Err(bad(format!("from {} is larger than 4 MiB ({declared} bytes)", self.base)));
        }
        let mut bytes = Vec::new();
        bounded::Bounded::whole(resp.into_reader(), self.limits, &self.stop, declared)
            .take(manifest::MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bounded::error(e, &url, "reading the manifest"))?;
        if bytes.len() as u64 > manifest::MAX_MANIFEST_BYTES {
            return Err(bad(format!("from {} is larger than 4 MiB", self.base)));
        }
        let digested = manifest::digested_bytes(&bytes);
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                let got = expected.recompute(&digested);
                if got != expected {
                    return Err(bad(format!("from {} did not match its digest (got {got})", self.base)));
                }
                expected
            }
            // By tag: the registry names the digest of what it stores, and
            // bytes damaged in its storage do not hash to it.
            Err(_) => match named {
                Some(named) => {
                    let got = named.recompute(&digested);
                    if got != named {
                        return Err(bad(format!(
                            "from {} did not match its digest: the registry names {named}, the bytes read hash to \
                             {got}; nothing was pushed (the manifest is damaged in that registry's storage: push \
                             the image there again)",
                            self.base
                        )));
                    }
                    named
                }
                None => Digest::sha256_of(&digested),
            },
        };
        drop(digested);
        Ok(Some(Manifest { media_type: manifest::media_type(content_type.as_deref(), &bytes), bytes, digest }))
    }

    /// The manifests whose `subject` is `digest`, from the OCI referrers
    /// API (`GET /v2/NAME/referrers/DIGEST`), or `None` when the registry
    /// does not serve it (distribution 2.8 answers 404): then referrers
    /// are reached through their fallback tags (`sha256-HEX...`), which
    /// replicate as any tag does.
    pub fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<Digest>>> {
        let known = *self.referrers_api.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((false, since)) = known {
            if since.elapsed() < REFERRERS_API_RECHECK {
                return Ok(None);
            }
        }
        let url = format!("{}/v2/{repo}/referrers/{digest}", self.base);
        let resp = self.send("GET", &url, &self.repo_scopes(repo), &[("Accept", manifest::OCI_INDEX)], Body::Empty)?;
        if resp.status() == 404 {
            *self.referrers_api.lock().unwrap_or_else(|p| p.into_inner()) = Some((false, Instant::now()));
            return Ok(None);
        }
        let resp = expect(resp, "GET", &url, &[200])?;
        *self.referrers_api.lock().unwrap_or_else(|p| p.into_inner()) = Some((true, Instant::now()));
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<manifest::Descriptor>,
        }
        let index: Index = self.read_json(resp, &url, MAX_JSON_BYTES, "reading the referrers")?;
        let mut found = Vec::new();
        for d in index.manifests {
            match Digest::parse(&d.digest) {
                Ok(d) => found.push(d),
                Err(e) => log::warn!("{repo}: ignoring a referrer of {digest} from {}: {e}", self.base),
            }
        }
        Ok(Some(found))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::token::TokenCache;

    #[test]
    fn locations_resolve_against_the_registry() {
        let tokens = TokenCache::new(
            std::sync::Arc::new(crate::registry::token::Signer::new(
                rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../../tests/data/test-key-pkcs1.pem"))
                    .unwrap(),
                "i",
            )),
            "s",
            std::time::Duration::from_secs(60),
        );
        let c = Client::read_only(
            "http://r.example:5000/prefix/",
            super::super::agent(crate::tls::client_config(None).unwrap()),
            tokens,
        );
        assert_eq!(c.url(), "http://r.example:5000/prefix");
        assert_eq!(c.resolve("/v2/a/blobs/uploads/1?_state=x"), "http://r.example:5000/v2/a/blobs/uploads/1?_state=x");
        assert_eq!(c.resolve("https://other/x"), "https://other/x");
        let post = "http://r.example:5000/prefix/v2/a/blobs/uploads/?mount=x";
        assert_eq!(c.resolve_from(post, "1?_state=x"), "http://r.example:5000/prefix/v2/a/blobs/uploads/1?_state=x");
        assert_eq!(c.resolve_from(post, "/v2/a/uploads/1"), "http://r.example:5000/v2/a/uploads/1");
        assert_eq!(c.resolve_from(post, "https://cdn.example/u/1"), "https://cdn.example/u/1");
    }
}
