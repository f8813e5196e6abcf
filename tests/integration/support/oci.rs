//! The test's own registry client and image builders, written independently
//! of georeg's so that a bug in georeg's client cannot hide itself: this is
//! how a user would push images and check what the registries hold.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use georeg::registry::token::{Scope, Signer, Token};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::registry::SERVICE;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub fn sha256(data: &[u8]) -> String {
    hex_digest(Sha256::digest(data).as_slice())
}

fn hex_digest(hash: &[u8]) -> String {
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Deterministic incompressible bytes (xorshift64*).
pub struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    pub fn new(seed: u64, len: u64) -> Noise {
        Noise { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, left: len }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes `len` bytes of noise from `seed` to `out` and returns their
/// digest, in one pass: large blobs are never held in memory.
pub fn write_noise(seed: u64, len: u64, mut out: impl Write) -> String {
    let mut hasher = Sha256::new();
    let mut noise = Noise::new(seed, len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = noise.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).expect("write noise");
    }
    hex_digest(hasher.finalize().as_slice())
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    Noise::new(seed, len as u64).read_to_end(&mut v).unwrap();
    v
}

/// An image (or index) ready to push: its manifest bytes, the blobs it
/// needs and, for an index, its child images.
#[derive(Clone)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    pub blobs: Vec<Vec<u8>>,
    pub children: Vec<Image>,
}

pub(super) fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

pub(super) fn finish(value: serde_json::Value, media_type: &str, blobs: Vec<Vec<u8>>, children: Vec<Image>) -> Image {
    // Pretty-printed on purpose: georeg must push these exact bytes, not a re-serialization.
    let manifest = serde_json::to_vec_pretty(&value).unwrap();
    Image { digest: sha256(&manifest), manifest, media_type: media_type.into(), blobs, children }
}

pub(super) fn config(seed: u64, arch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "georeg_test_seed": seed})).unwrap()
}

/// An OCI image with layers of the given sizes.
pub fn oci_image(seed: u64, layer_sizes: &[usize]) -> Image {
    let layers: Vec<Vec<u8>> =
        layer_sizes.iter().enumerate().map(|(i, &n)| random_bytes(seed * 100 + i as u64, n)).collect();
    oci_image_with_layers(seed, "amd64", layers)
}

pub fn oci_image_with_layers(seed: u64, arch: &str, layers: Vec<Vec<u8>>) -> Image {
    let cfg = config(seed, arch);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &cfg),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    });
    let mut blobs = vec![cfg];
    blobs.extend(layers);
    finish(value, OCI_MANIFEST, blobs, vec![])
}

/// A Docker schema 2 image.
pub fn docker_image(seed: u64, layer_sizes: &[usize]) -> Image {
    docker_image_arch(seed, "amd64", layer_sizes)
}

fn docker_image_arch(seed: u64, arch: &str, layer_sizes: &[usize]) -> Image {
    let cfg = config(seed, arch);
    let layers: Vec<Vec<u8>> =
        layer_sizes.iter().enumerate().map(|(i, &n)| random_bytes(seed * 100 + i as u64, n)).collect();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &cfg),
        "layers": layers.iter().map(|l| descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", l)).collect::<Vec<_>>(),
    });
    let mut blobs = vec![cfg];
    blobs.extend(layers);
    finish(value, DOCKER_MANIFEST, blobs, vec![])
}

fn platform_entry(child: &Image, arch: &str) -> serde_json::Value {
    json!({"mediaType": child.media_type, "digest": child.digest, "size": child.manifest.len(), "platform": {"architecture": arch, "os": "linux"}})
}

/// An OCI index over two platform images.
pub fn oci_index(seed: u64) -> Image {
    let amd = oci_image_with_layers(seed, "amd64", vec![random_bytes(seed * 7 + 1, 3000)]);
    let arm = oci_image_with_layers(seed + 1, "arm64", vec![random_bytes(seed * 7 + 2, 4000)]);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [platform_entry(&amd, "amd64"), platform_entry(&arm, "arm64")],
    });
    finish(value, OCI_INDEX, vec![], vec![amd, arm])
}

/// A Docker manifest list over two platform images.
pub fn docker_list(seed: u64) -> Image {
    let amd = docker_image_arch(seed, "amd64", &[2500]);
    let arm = docker_image_arch(seed + 1, "arm64", &[3500]);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [platform_entry(&amd, "amd64"), platform_entry(&arm, "arm64")],
    });
    finish(value, DOCKER_LIST, vec![], vec![amd, arm])
}

/// An OCI 1.1 artifact: an image manifest with an artifactType, the empty
/// config and no layers at all.
pub fn artifact(seed: u64) -> Image {
    let empty = b"{}".to_vec();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature.v1",
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty),
        "layers": [],
        "annotations": {"org.example.seed": seed.to_string()},
    });
    finish(value, OCI_MANIFEST, vec![empty], vec![])
}

/// A registry as a user sees it, through its HTTP API with tokens signed
/// by the shared test key.
pub struct Api {
    pub url: String,
    signer: Arc<Signer>,
    agent: ureq::Agent,
    user_agent: Option<String>,
    /// `Basic ...` for a registry that takes user and password instead of tokens.
    basic: Option<String>,
    /// Per repository: building a corpus of thousands of blobs costs one
    /// signature per repository.
    tokens: Mutex<HashMap<String, Token>>,
}

/// How long the client's tokens are signed for.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

impl Api {
    pub fn new(url: &str, signer: Arc<Signer>) -> Api {
        Api {
            url: url.into(),
            signer,
            agent: super::agent(None),
            user_agent: None,
            basic: None,
            tokens: Mutex::default(),
        }
    }

    /// The same API for a registry that takes HTTP Basic credentials.
    pub fn basic(mut self, user: &str, password: &str) -> Api {
        let encoded = georeg::registry::encoding::base64(format!("{user}:{password}").as_bytes());
        self.basic = Some(format!("Basic {encoded}"));
        self
    }

    /// The same API for a registry whose https certificate `ca` signed.
    pub fn trusting(mut self, ca: &std::path::Path) -> Api {
        self.agent = super::agent(Some(ca));
        self
    }

    /// The same API over another HTTP agent (the benchmark's timeouts and
    /// connection pool).
    #[allow(dead_code)]
    pub fn with_agent(mut self, agent: ureq::Agent) -> Api {
        self.agent = agent;
        self
    }

    /// The same API sending its own User-Agent, so that the registries'
    /// access logs tell its requests from a tool's.
    #[allow(dead_code)]
    pub fn user_agent(mut self, user_agent: &str) -> Api {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// `Bearer ...` with push, pull and delete on `repo`, from a token
    /// signed for an hour and reused while a fifth of its life is left.
    pub fn auth(&self, repo: &str) -> String {
        if let Some(basic) = &self.basic {
            return basic.clone();
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut tokens = self.tokens.lock().unwrap();
        if tokens.get(repo).is_none_or(|t| t.expires_at <= now + TOKEN_TTL.as_secs() / 5) {
            let scopes = [Scope::repository(repo, &["push", "pull", "delete"])];
            tokens.insert(repo.to_string(), self.signer.sign(SERVICE, "test", TOKEN_TTL, &scopes));
        }
        format!("Bearer {}", tokens[repo].text)
    }

    fn call(&self, method: &str, url: &str, repo: &str) -> ureq::Request {
        let request = self.agent.request(method, url).set("Authorization", &self.auth(repo));
        match &self.user_agent {
            Some(user_agent) => request.set("User-Agent", user_agent),
            None => request,
        }
    }

    /// Opens an upload session; returns its absolute location.
    pub fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .call("POST", &format!("{}/v2/{repo}/blobs/uploads/", self.url), repo)
            .call()
            .unwrap_or_else(|e| panic!("POST upload {repo} on {}: {}", self.url, describe(e)));
        let loc = resp.header("Location").expect("Location").to_string();
        if loc.starts_with('/') {
            format!("{}{loc}", self.url)
        } else {
            loc
        }
    }

    /// PUTs a whole blob, streamed from `body`, into a new upload.
    pub fn push_blob_from(&self, repo: &str, digest: &str, size: u64, body: impl Read) {
        let loc = self.start_upload(repo);
        let sep = if loc.contains('?') { '&' } else { '?' };
        self.call("PUT", &format!("{loc}{sep}digest={digest}"), repo)
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &size.to_string())
            .send(body)
            .unwrap_or_else(|e| panic!("PUT blob {digest} to {}/{repo}: {}", self.url, describe(e)));
    }

    /// Pushes `data` unless the repository already has it; returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        if !self.blob_exists(repo, &digest) {
            self.push_blob_from(repo, &digest, data.len() as u64, data);
        }
        digest
    }

    /// Pushes `len` bytes of noise from `seed` without holding them in memory.
    pub fn push_noise_blob(&self, repo: &str, seed: u64, len: u64) -> String {
        let digest = write_noise(seed, len, std::io::sink());
        self.push_blob_from(repo, &digest, len, Noise::new(seed, len));
        digest
    }

    /// Pushes an image whose one layer is `size` bytes of noise, streamed
    /// (never held in memory), under `tag`; returns the layer's digest.
    pub fn push_large_image(&self, repo: &str, tag: &str, seed: u64, size: u64) -> String {
        let layer = self.push_noise_blob(repo, seed, size);
        let cfg = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        self.push_blob(repo, &cfg);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &cfg),
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
        }))
        .unwrap();
        self.put_manifest(repo, tag, OCI_MANIFEST, &manifest);
        layer
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        self.call("PUT", &format!("{}/v2/{repo}/manifests/{reference}", self.url), repo)
            .set("Content-Type", media_type)
            .send_bytes(bytes)
            .unwrap_or_else(|e| panic!("PUT manifest {repo}:{reference} on {}: {}", self.url, describe(e)));
    }

    /// Pushes the image's children and blobs, then its manifest under `tag`.
    pub fn push_image(&self, repo: &str, tag: &str, image: &Image) {
        self.push_contents(repo, image);
        self.put_manifest(repo, tag, &image.media_type, &image.manifest);
    }

    fn push_contents(&self, repo: &str, image: &Image) {
        for child in &image.children {
            self.push_contents(repo, child);
            self.put_manifest(repo, &child.digest, &child.media_type, &child.manifest);
        }
        for blob in &image.blobs {
            self.push_blob(repo, blob);
        }
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        match self.call("GET", &format!("{}/v2/{repo}/tags/list", self.url), repo).call() {
            Ok(resp) => {
                let v: serde_json::Value = serde_json::from_reader(resp.into_reader()).unwrap();
                let mut tags: Vec<String> = v["tags"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                tags.sort();
                tags
            }
            Err(ureq::Error::Status(404, _)) => vec![],
            Err(e) => panic!("tags of {repo} on {}: {}", self.url, describe(e)),
        }
    }

    /// The digest `reference` resolves to, by HEAD with the full Accept
    /// list, or `None`: not there, or not yet.
    pub fn digest(&self, repo: &str, reference: &str) -> Option<String> {
        match self
            .call("HEAD", &format!("{}/v2/{repo}/manifests/{reference}", self.url), repo)
            .set("Accept", ACCEPT)
            .call()
        {
            Ok(resp) => resp.header("Docker-Content-Digest").map(str::to_string),
            Err(ureq::Error::Status(404, _)) => None,
            // The filesystem driver rewrites a tag's link in place: a read
            // racing that write answers 500 "invalid checksum digest format".
            Err(ureq::Error::Status(500, _)) => None,
            Err(e) => panic!("HEAD {repo}:{reference} on {}: {}", self.url, describe(e)),
        }
    }

    pub fn tag_digests(&self, repo: &str) -> BTreeMap<String, String> {
        self.tags(repo).into_iter().filter_map(|t| self.digest(repo, &t).map(|d| (t, d))).collect()
    }

    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(Vec<u8>, String)> {
        match self
            .call("GET", &format!("{}/v2/{repo}/manifests/{reference}", self.url), repo)
            .set("Accept", ACCEPT)
            .call()
        {
            Ok(resp) => {
                let ct = resp.header("Content-Type").unwrap_or("").to_string();
                let mut bytes = Vec::new();
                resp.into_reader().read_to_end(&mut bytes).unwrap();
                Some((bytes, ct))
            }
            Err(ureq::Error::Status(404, _)) => None,
            Err(e) => panic!("GET {repo}:{reference} on {}: {}", self.url, describe(e)),
        }
    }

    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        match self.call("HEAD", &format!("{}/v2/{repo}/blobs/{digest}", self.url), repo).call() {
            Ok(_) => true,
            Err(ureq::Error::Status(404, _)) => false,
            Err(e) => panic!("HEAD blob {digest} in {repo} on {}: {}", self.url, describe(e)),
        }
    }

    /// The blob's bytes as a client pulls them, or `None` when absent.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        match self.call("GET", &format!("{}/v2/{repo}/blobs/{digest}", self.url), repo).call() {
            Ok(resp) => {
                let mut bytes = Vec::new();
                resp.into_reader().read_to_end(&mut bytes).unwrap();
                Some(bytes)
            }
            Err(ureq::Error::Status(404, _)) => None,
            Err(e) => panic!("GET blob {digest} in {repo} on {}: {}", self.url, describe(e)),
        }
    }

    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        self.call("DELETE", &format!("{}/v2/{repo}/manifests/{digest}", self.url), repo)
            .call()
            .unwrap_or_else(|e| panic!("DELETE {repo}@{digest} on {}: {}", self.url, describe(e)));
    }

    /// Removes one tag and keeps its siblings, the only way distribution
    /// 2.8 allows: re-point it at a throwaway manifest and delete that.
    pub fn delete_tag(&self, repo: &str, tag: &str) {
        let throwaway = artifact(0xdead_0000 + tag.len() as u64 + rand_seed());
        self.push_image(repo, tag, &throwaway);
        self.delete_manifest(repo, &throwaway.digest);
    }
}

fn rand_seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// An HTTP error with the registry's answer, which names the cause.
pub fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => format!("{code} {}", resp.into_string().unwrap_or_default()),
        other => other.to_string(),
    }
}
