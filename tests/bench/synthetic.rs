//! A synthetic primary registry for the scale scenario: a test double that
//! serves, from memory and deterministically, what georeg reads from a
//! primary (distribution's API, read only) for any number of repositories,
//! fast enough not to be what is measured. Pushing 100,000 repositories
//! into a real registry would take hours on the benchmark's machine.
//!
//! - `GET /v2/` 200; any `Authorization: Bearer` token is accepted (georeg
//!   signs its own), none gets 401 as distribution does;
//! - `GET /v2/_catalog?n=N&last=X`, sorted, with distribution's `Link:
//!   </v2/_catalog?last=X&n=N>; rel="next"` pagination;
//! - `GET /v2/NAME/tags/list`;
//! - `HEAD`/`GET /v2/NAME/manifests/REF` by tag or digest: OCI image
//!   manifests whose bytes hash to the digest the answer names;
//! - `HEAD`/`GET /v2/NAME/blobs/DIGEST`: a config blob per tag and a layer
//!   shared by the repository's tags;
//! - the referrers API answers 404, as distribution 2.8 does.
//!
//! It is plain std: a thread per connection, keep-alive, each answer sent
//! in one write with TCP_NODELAY (tiny_http writes a head and a large body
//! apart, and each catalog page then waited 40 ms for a delayed ACK).
//!
//! Repositories are `ns{k}/repo{i}` (100 per namespace) with the same tags
//! `v0`, `v1`... each, plus one large repository of tags `t00000`... into
//! which tags can be pushed ([`Synthetic::push_large`]). Requests are counted by kind.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::oci::sha256;

pub const LARGE: &str = "big/app";
pub const REPOS_PER_NAMESPACE: usize = 100;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Connections served at once; more are dropped.
const MAX_CONNECTIONS: usize = 256;
/// A kept-alive connection waits this long for its next request.
const IDLE: Duration = Duration::from_secs(60);

/// Kinds of requests counted.
pub const KINDS: [&str; 8] =
    ["ping", "catalog", "tags", "manifest HEAD", "manifest GET", "blob HEAD", "blob GET", "other"];

/// Requests by kind (the order of [`KINDS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; 8]);

impl Counts {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut out = *self;
        for (o, e) in out.0.iter_mut().zip(earlier.0) {
            *o = o.saturating_sub(e);
        }
        out
    }

    /// `101 (1 ping, 100 catalog)`: the total and each kind seen.
    pub fn describe(&self) -> String {
        let parts: Vec<String> =
            KINDS.iter().zip(self.0).filter(|(_, n)| *n > 0).map(|(k, n)| format!("{n} {k}")).collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

/// The repository names of a synthetic registry of `n` small repositories
/// plus the large one, sorted as a registry's catalog is.
pub fn names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..n).map(name).collect();
    names.push(LARGE.into());
    names.sort();
    names
}

/// The name of small repository `i`.
pub fn name(i: usize) -> String {
    format!("ns{:03}/repo{i:06}", i / REPOS_PER_NAMESPACE)
}

/// Tag `i` of a small repository, and of the large one.
pub fn small_tag(i: usize) -> String {
    format!("v{i}")
}
pub fn large_tag(i: usize) -> String {
    format!("t{i:05}")
}

/// One image: the layer it shares with its repository's other tags, its
/// own config, and its manifest, with their digests.
pub struct Image {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub digest: String,
}

/// The image `repo:tag` holds: the same bytes every time.
pub fn image(repo: &str, tag: &str) -> Image {
    let layer = format!("synthetic layer of {repo}\n").repeat(24).into_bytes();
    let layer_digest = sha256(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"repository": repo, "tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let digest = sha256(&manifest);
    Image { layer, layer_digest, config, config_digest, manifest, digest }
}

struct Shared {
    names: Vec<String>,
    tags: usize,
    /// The large repository's tags, in the order they were pushed.
    large_tags: Mutex<Vec<String>>,
    /// The large repository's manifest and config digests -> tag.
    large_index: Mutex<HashMap<String, String>>,
    counts: [AtomicU64; 8],
}

impl Shared {
    fn tag_names(&self, repo: &str) -> Option<Vec<String>> {
        if repo == LARGE {
            let mut tags = self.large_tags.lock().unwrap().clone();
            tags.sort();
            return Some(tags);
        }
        self.names.binary_search_by(|n| n.as_str().cmp(repo)).ok()?;
        Some((0..self.tags).map(small_tag).collect())
    }

    /// The image a tag or a digest (of a manifest or a blob) names.
    fn find(&self, repo: &str, reference: &str) -> Option<Image> {
        if !reference.starts_with("sha256:") {
            return self.tag_names(repo)?.iter().any(|t| t == reference).then(|| image(repo, reference));
        }
        if repo == LARGE {
            let index = self.large_index.lock().unwrap();
            if let Some(tag) = index.get(reference) {
                return Some(image(repo, tag));
            }
            let any = image(repo, &large_tag(0));
            return (any.layer_digest == reference).then_some(any);
        }
        self.tag_names(repo)?
            .into_iter()
            .map(|t| image(repo, &t))
            .find(|i| i.digest == reference || i.config_digest == reference || i.layer_digest == reference)
    }
}

/// A running synthetic primary on a free loopback port.
pub struct Synthetic {
    pub url: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl Synthetic {
    /// `repos` small repositories of `tags` tags each, and the large
    /// repository with `large_tags` tags.
    pub fn start(repos: usize, tags: usize, large_tags: usize) -> Synthetic {
        let mut index = HashMap::new();
        for tag in (0..large_tags).map(large_tag) {
            let img = image(LARGE, &tag);
            index.insert(img.digest, tag.clone());
            index.insert(img.config_digest, tag);
        }
        let shared = Arc::new(Shared {
            names: names(repos),
            tags,
            large_tags: Mutex::new((0..large_tags).map(large_tag).collect()),
            large_index: Mutex::new(index),
            counts: Default::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the synthetic registry");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let (halt, state) = (stop.clone(), shared.clone());
        let accept = std::thread::Builder::new()
            .name("synthetic".into())
            .spawn(move || {
                let open = Arc::new(AtomicUsize::new(0));
                for conn in listener.incoming() {
                    if halt.load(Ordering::SeqCst) {
                        return;
                    }
                    // A thread per connection, as many as georeg keeps open (a few).
                    let Ok(conn) = conn else { continue };
                    if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                        continue;
                    }
                    let (state, halt, open) = (state.clone(), halt.clone(), open.clone());
                    open.fetch_add(1, Ordering::SeqCst);
                    let _ = std::thread::Builder::new().name("synthetic-conn".into()).spawn(move || {
                        let _ = serve(conn, &state, &halt);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
            .expect("start the synthetic registry");
        Synthetic { url: format!("http://127.0.0.1:{port}"), shared, stop, port, accept: Some(accept) }
    }

    pub fn counts(&self) -> Counts {
        Counts(std::array::from_fn(|i| self.shared.counts[i].load(Ordering::SeqCst)))
    }

    /// Pushes a new tag into the large repository; returns its image.
    pub fn push_large(&self, tag: &str) -> Image {
        let img = image(LARGE, tag);
        let mut index = self.shared.large_index.lock().unwrap();
        index.insert(img.digest.clone(), tag.to_string());
        index.insert(img.config_digest.clone(), tag.to_string());
        self.shared.large_tags.lock().unwrap().push(tag.to_string());
        img
    }
}

impl Drop for Synthetic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread; connection threads end with their
        // client, or at their next idle timeout.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

type Reply = (u16, Vec<u8>, Vec<(&'static str, String)>);

/// One connection: HTTP/1.1 requests without bodies (georeg only reads
/// from a primary), kept alive, each answer head and body in one write
/// with TCP_NODELAY, as Go's server sends them: a head and a body written
/// apart would wait for the client's delayed ACK (40 ms) under Nagle.
fn serve(conn: TcpStream, shared: &Shared, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    while !stop.load(Ordering::SeqCst) {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let (mut authorized, mut close) = (false, false);
        for _ in 0..100 {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((&header, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("authorization") {
                authorized = value.starts_with("Bearer ") && value.len() > 7;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let head = method == "HEAD";
        let (kind, (status, body, headers)) = route(shared, head, &target, authorized);
        shared.counts[kind].fetch_add(1, Ordering::SeqCst);
        let mut out = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head {
            bytes.extend_from_slice(&body);
        }
        writer.write_all(&bytes)?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    }
}

fn error(status: u16, code: &str) -> Reply {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{code}","detail":null}}]}}"#);
    (status, body.into_bytes(), vec![("Content-Type", "application/json; charset=utf-8".into())])
}

fn content(bytes: Vec<u8>, media_type: &str, digest: &str) -> Reply {
    (200, bytes, vec![("Content-Type", media_type.into()), ("Docker-Content-Digest", digest.into())])
}

/// The kind of request (an index into [`KINDS`]) and its answer.
fn route(shared: &Shared, head: bool, target: &str, authorized: bool) -> (usize, Reply) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !authorized {
        let mut reply = error(401, "UNAUTHORIZED");
        reply.2.push(("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:1/jwt/auth\"".into()));
        return (7, reply);
    }
    if path == "/v2/" || path == "/v2" {
        return (0, (200, b"{}".to_vec(), vec![("Content-Type", "application/json".into())]));
    }
    if path == "/v2/_catalog" {
        return (1, catalog(shared, query));
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return (7, error(404, "NOT_FOUND")) };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return (
            2,
            match shared.tag_names(repo) {
                Some(tags) => {
                    let body = serde_json::json!({"name": repo, "tags": tags}).to_string().into_bytes();
                    (200, body, vec![("Content-Type", "application/json; charset=utf-8".into())])
                }
                None => error(404, "NAME_UNKNOWN"),
            },
        );
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let reply = match shared.find(repo, reference) {
            Some(img) if !reference.starts_with("sha256:") || img.digest == reference => {
                content(img.manifest, OCI_MANIFEST, &img.digest)
            }
            _ => error(404, "MANIFEST_UNKNOWN"),
        };
        return (if head { 3 } else { 4 }, reply);
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        let reply = match shared.find(repo, digest) {
            Some(img) if img.config_digest == digest => content(img.config, "application/octet-stream", digest),
            Some(img) if img.layer_digest == digest => content(img.layer, "application/octet-stream", digest),
            _ => error(404, "BLOB_UNKNOWN"),
        };
        return (if head { 5 } else { 6 }, reply);
    }
    // The referrers API, and anything else, is not there (distribution 2.8).
    (7, error(404, "NOT_FOUND"))
}

/// One catalog page, and the link to the next as distribution writes it.
fn catalog(shared: &Shared, query: &str) -> Reply {
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| decode(v)))
    };
    let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(100).max(1);
    let start = match param("last") {
        Some(last) => shared.names.partition_point(|name| name.as_str() <= last.as_str()),
        None => 0,
    };
    let page = &shared.names[start.min(shared.names.len())..(start + n).min(shared.names.len())];
    let body = serde_json::json!({ "repositories": page }).to_string().into_bytes();
    let mut headers = vec![("Content-Type", "application/json; charset=utf-8".to_string())];
    if start + n < shared.names.len() {
        if let Some(last) = page.last() {
            headers.push(("Link", format!("</v2/_catalog?last={}&n={n}>; rel=\"next\"", encode(last))));
        }
    }
    (200, body, headers)
}

/// Query escaping as Go's url.Values.Encode does it for these names.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
