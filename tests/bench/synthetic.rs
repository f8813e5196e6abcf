//! A synthetic registry for the scale and reconcile scenarios: a test
//! double that serves, from memory and deterministically, what georeg
//! reads from a primary (distribution's API) for any number of
//! repositories, fast enough not to be what is measured. Pushing 100,000
//! repositories into a real registry would take hours on the benchmark's
//! machine.
//!
//! - `GET /v2/` 200; any `Authorization: Bearer` token is accepted (georeg
//!   signs its own), none gets 401 as distribution does;
//! - `GET /v2/_catalog?n=N&last=X`, sorted, with distribution's `Link:
//!   </v2/_catalog?last=X&n=N>; rel="next"` pagination (the generated
//!   repositories);
//! - `GET /v2/NAME/tags/list`;
//! - `HEAD`/`GET /v2/NAME/manifests/REF` by tag or digest: OCI image
//!   manifests whose bytes hash to the digest the answer names;
//! - `HEAD`/`GET /v2/NAME/blobs/DIGEST`: a config blob per tag and a layer
//!   shared by the repository's tags;
//! - the referrers API answers 404, as distribution 2.8 does;
//! - a tag can be re-pointed without a notification
//!   ([`Synthetic::repoint`]), as a registry whose notifications were lost;
//! - started as a secondary ([`Synthetic::mirror`]: the same content, as
//!   a full secondary holds it), it accepts what georeg pushes: upload
//!   sessions (`POST`, `PATCH`, `PUT ?digest=`, with `?mount=&from=`),
//!   and manifests by tag or digest (overlay.rs keeps them). A primary
//!   answers 405 to writes.
//!
//! It is plain std: a thread per connection, keep-alive, each answer sent
//! in one write with TCP_NODELAY (tiny_http writes a head and a large body
//! apart, and each catalog page then waited 40 ms for a delayed ACK).
//!
//! Repositories are `ns{k}/repo{i}` (100 per namespace) with the same tags
//! `v0`, `v1`... each, plus one large repository of tags `t00000`... into
//! which tags can be pushed ([`Synthetic::push_large`]). Requests are
//! counted by kind at each door ([`Synthetic::door`]: another port onto
//! the same registry, with counts of its own), and apart for georeg's
//! reconciliation (its User-Agent ends in `(reconcile)`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::overlay::{Overlay, Refused, MAX_UPLOAD_BYTES};
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
/// What georeg's reconciliation appends to its User-Agent.
const RECONCILE_AGENT: &str = "(reconcile)";

/// Kinds of requests counted.
pub const KINDS: [&str; 12] = [
    "ping",
    "catalog",
    "tags",
    "manifest HEAD",
    "manifest GET",
    "blob HEAD",
    "blob GET",
    "upload POST",
    "upload PATCH/PUT",
    "manifest PUT",
    "DELETE",
    "other",
];
const PING: usize = 0;
const CATALOG: usize = 1;
const TAGS: usize = 2;
const MANIFEST_HEAD: usize = 3;
const BLOB_HEAD: usize = 5;
const UPLOAD_POST: usize = 7;
const UPLOAD_DATA: usize = 8;
const MANIFEST_PUT: usize = 9;
const DELETE: usize = 10;
const OTHER: usize = 11;

/// Requests by kind (the order of [`KINDS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; 12]);

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

    /// Tag listings: one per repository read.
    pub fn tag_lists(&self) -> u64 {
        self.0[TAGS]
    }

    /// `POST .../blobs/uploads/`, mounts included.
    pub fn upload_posts(&self) -> u64 {
        self.0[UPLOAD_POST]
    }

    pub fn manifest_puts(&self) -> u64 {
        self.0[MANIFEST_PUT]
    }

    /// What a node asks whatever it replicates: `GET /v2/` (its health
    /// checks) and the catalog (its scans).
    pub fn background(&self) -> u64 {
        self.0[PING] + self.0[CATALOG]
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
    rebuilt(repo, tag, 0)
}

/// The image `repo:tag` holds once re-pointed for the `generation`-th
/// time (0: as generated); it shares the repository's layer.
pub fn rebuilt(repo: &str, tag: &str, generation: u32) -> Image {
    let layer = format!("synthetic layer of {repo}\n").repeat(24).into_bytes();
    let layer_digest = sha256(&layer);
    let labels = if generation == 0 {
        serde_json::json!({"repository": repo, "tag": tag})
    } else {
        serde_json::json!({"repository": repo, "tag": tag, "generation": generation})
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": labels},
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

/// The registry's content, shared by its doors.
struct Shared {
    names: Vec<String>,
    tags: usize,
    /// The large repository's tags, in the order they were pushed.
    large_tags: Mutex<Vec<String>>,
    /// The large repository's manifest and config digests -> tag.
    large_index: Mutex<HashMap<String, String>>,
    /// What was written on top of the generated content.
    overlay: Overlay,
    /// Accepts pushes (a secondary); a primary answers 405.
    writable: bool,
}

/// One door's counts: every request, and those of reconciliation.
#[derive(Default)]
struct Door {
    all: [AtomicU64; 12],
    reconcile: [AtomicU64; 12],
}

impl Door {
    fn read(counts: &[AtomicU64; 12]) -> Counts {
        Counts(std::array::from_fn(|i| counts[i].load(Ordering::SeqCst)))
    }
}

impl Shared {
    /// The generated tags of a repository, `None` when none are generated for it.
    fn generated_tags(&self, repo: &str) -> Option<Vec<String>> {
        if repo == LARGE {
            return Some(self.large_tags.lock().unwrap().clone());
        }
        self.names.binary_search_by(|n| n.as_str().cmp(repo)).ok()?;
        Some((0..self.tags).map(small_tag).collect())
    }

    /// Every tag, generated or written, sorted; `None` for a repository
    /// the registry does not know.
    fn tag_names(&self, repo: &str) -> Option<Vec<String>> {
        let generated = self.generated_tags(repo);
        if generated.is_none() && !self.overlay.has_repo(repo) {
            return None;
        }
        let mut tags = generated.unwrap_or_default();
        tags.extend(self.overlay.tags(repo));
        tags.sort();
        tags.dedup();
        Some(tags)
    }

    /// The generated image a tag or a digest (of a manifest or a blob) names.
    fn find(&self, repo: &str, reference: &str) -> Option<Image> {
        if !reference.starts_with("sha256:") {
            return self.generated_tags(repo)?.iter().any(|t| t == reference).then(|| image(repo, reference));
        }
        if repo == LARGE {
            let index = self.large_index.lock().unwrap();
            if let Some(tag) = index.get(reference) {
                return Some(image(repo, tag));
            }
            let any = image(repo, &large_tag(0));
            return (any.layer_digest == reference).then_some(any);
        }
        self.generated_tags(repo)?
            .into_iter()
            .map(|t| image(repo, &t))
            .find(|i| i.digest == reference || i.config_digest == reference || i.layer_digest == reference)
    }

    /// A manifest by tag or digest, written or generated: (media type, bytes, digest).
    fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>, String)> {
        let digest = match reference.starts_with("sha256:") {
            true => Some(reference.to_string()),
            false => self.overlay.tag(repo, reference),
        };
        if let Some(digest) = digest {
            if let Some((media_type, bytes)) = self.overlay.manifest(repo, &digest) {
                return Some((media_type, bytes, digest));
            }
        }
        match self.find(repo, reference) {
            Some(img) if !reference.starts_with("sha256:") || img.digest == reference => {
                Some((OCI_MANIFEST.to_string(), img.manifest, img.digest))
            }
            _ => None,
        }
    }

    /// A blob, written or generated.
    fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        if let Some(bytes) = self.overlay.blob(repo, digest) {
            return Some(bytes);
        }
        match self.find(repo, digest) {
            Some(img) if img.config_digest == digest => Some(img.config),
            Some(img) if img.layer_digest == digest => Some(img.layer),
            _ => None,
        }
    }
}

/// A running synthetic registry: one door (a free loopback port) onto it.
pub struct Synthetic {
    pub url: String,
    shared: Arc<Shared>,
    door: Arc<Door>,
    stop: Arc<AtomicBool>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl Synthetic {
    /// A primary of `repos` small repositories of `tags` tags each, and
    /// the large repository with `large_tags` tags; read only.
    pub fn start(repos: usize, tags: usize, large_tags: usize) -> Synthetic {
        Synthetic::with(repos, tags, large_tags, false)
    }

    /// A secondary holding what [`Synthetic::start`] generates, as a full
    /// secondary registry would, and accepting pushes.
    pub fn mirror(repos: usize, tags: usize, large_tags: usize) -> Synthetic {
        Synthetic::with(repos, tags, large_tags, true)
    }

    fn with(repos: usize, tags: usize, large_tags: usize, writable: bool) -> Synthetic {
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
            overlay: Overlay::default(),
            writable,
        });
        Synthetic::open(shared)
    }

    /// Listens on a free loopback port for `shared`.
    fn open(shared: Arc<Shared>) -> Synthetic {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the synthetic registry");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let door = Arc::new(Door::default());
        let (halt, state, counts) = (stop.clone(), shared.clone(), door.clone());
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
                    let (state, counts, halt, open) = (state.clone(), counts.clone(), halt.clone(), open.clone());
                    open.fetch_add(1, Ordering::SeqCst);
                    let _ = std::thread::Builder::new().name("synthetic-conn".into()).spawn(move || {
                        let _ = serve(conn, &state, &counts, &halt);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
            .expect("start the synthetic registry");
        Synthetic { url: format!("http://127.0.0.1:{port}"), shared, door, stop, port, accept: Some(accept) }
    }

    /// Another door onto the same registry (what one client sees of it),
    /// counting its own requests; it closes when dropped.
    pub fn door(&self) -> Synthetic {
        Synthetic::open(self.shared.clone())
    }

    /// host:port of this door.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests at this door.
    pub fn counts(&self) -> Counts {
        Door::read(&self.door.all)
    }

    /// Requests at this door from georeg's reconciliation.
    pub fn reconcile_counts(&self) -> Counts {
        Door::read(&self.door.reconcile)
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

    /// Re-points `repo:tag` at a new image (its `generation`-th), telling
    /// nobody: a push whose notification was lost.
    pub fn repoint(&self, repo: &str, tag: &str, generation: u32) -> Image {
        let img = rebuilt(repo, tag, generation);
        self.shared.overlay.put_blob(repo, &img.config_digest, img.config.clone());
        self.shared.overlay.put_manifest(repo, tag, OCI_MANIFEST, img.manifest.clone());
        img
    }

    /// The digest `repo:tag` names now.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        self.shared.manifest(repo, tag).map(|(_, _, digest)| digest)
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

/// One request as read off the connection.
struct Request {
    method: String,
    target: String,
    authorized: bool,
    body: Vec<u8>,
    content_type: String,
}

/// One connection: HTTP/1.1 requests, kept alive, each answer head and
/// body in one write with TCP_NODELAY, as Go's server sends them: a head
/// and a body written apart would wait for the client's delayed ACK (40
/// ms) under Nagle. Bodies (of pushes) are read whole, up to a limit.
fn serve(conn: TcpStream, shared: &Shared, door: &Door, stop: &AtomicBool) -> std::io::Result<()> {
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
        let (mut authorized, mut close, mut reconcile) = (false, false, false);
        let (mut length, mut chunked, mut content_type) = (0usize, false, String::new());
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
            } else if name.eq_ignore_ascii_case("user-agent") {
                reconcile = value.ends_with(RECONCILE_AGENT);
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = value.to_string();
            }
        }
        let body = match chunked {
            true => read_chunked(&mut reader)?,
            false if length > MAX_UPLOAD_BYTES => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request body over the limit"))
            }
            false => {
                let mut body = vec![0; length];
                reader.read_exact(&mut body)?;
                body
            }
        };
        let head = method == "HEAD";
        let request = Request { method, target, authorized, body, content_type };
        let (kind, (status, body, headers)) = route(shared, &request);
        door.all[kind].fetch_add(1, Ordering::SeqCst);
        if reconcile {
            door.reconcile[kind].fetch_add(1, Ordering::SeqCst);
        }
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

/// A chunked request body, whole, up to the upload limit.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if body.len() + size > MAX_UPLOAD_BYTES {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request body over the limit"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = String::new();
        reader.read_line(&mut end)?;
        if size == 0 {
            return Ok(body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
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
fn route(shared: &Shared, r: &Request) -> (usize, Reply) {
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    if !r.authorized {
        let mut reply = error(401, "UNAUTHORIZED");
        reply.2.push(("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:1/jwt/auth\"".into()));
        return (OTHER, reply);
    }
    if path == "/v2/" || path == "/v2" {
        return (PING, (200, b"{}".to_vec(), vec![("Content-Type", "application/json".into())]));
    }
    if path == "/v2/_catalog" {
        return (CATALOG, catalog(shared, query));
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return (OTHER, error(404, "NOT_FOUND")) };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return (
            TAGS,
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
        return match r.method.as_str() {
            "PUT" => (MANIFEST_PUT, put_manifest(shared, repo, reference, r)),
            "DELETE" => (DELETE, error(405, "UNSUPPORTED")),
            method => {
                let reply = match shared.manifest(repo, reference) {
                    Some((media_type, bytes, digest)) => content(bytes, &media_type, &digest),
                    None => error(404, "MANIFEST_UNKNOWN"),
                };
                (if method == "HEAD" { MANIFEST_HEAD } else { MANIFEST_HEAD + 1 }, reply)
            }
        };
    }
    if let Some((repo, session)) = rest.split_once("/blobs/uploads") {
        let kind = match r.method.as_str() {
            "POST" => UPLOAD_POST,
            "DELETE" => DELETE,
            "GET" => OTHER,
            _ => UPLOAD_DATA,
        };
        return (kind, upload(shared, repo, session.trim_start_matches('/'), query, r));
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        if r.method == "DELETE" {
            return (DELETE, error(405, "UNSUPPORTED"));
        }
        let reply = match shared.blob(repo, digest) {
            Some(bytes) => content(bytes, "application/octet-stream", digest),
            None => error(404, "BLOB_UNKNOWN"),
        };
        return (if r.method == "HEAD" { BLOB_HEAD } else { BLOB_HEAD + 1 }, reply);
    }
    // The referrers API, and anything else, is not there (distribution 2.8).
    (OTHER, error(404, "NOT_FOUND"))
}

/// `PUT /v2/NAME/manifests/REF` on a secondary: stored by digest, and by tag.
fn put_manifest(shared: &Shared, repo: &str, reference: &str, r: &Request) -> Reply {
    if !shared.writable {
        return error(405, "UNSUPPORTED");
    }
    if reference.starts_with("sha256:") && sha256(&r.body) != reference {
        return error(400, "DIGEST_INVALID");
    }
    let media_type = if r.content_type.is_empty() { OCI_MANIFEST } else { r.content_type.as_str() };
    let digest = shared.overlay.put_manifest(repo, reference, media_type, r.body.clone());
    (201, Vec::new(), vec![("Location", format!("/v2/{repo}/manifests/{digest}")), ("Docker-Content-Digest", digest)])
}

/// An upload session's requests: open (or mount), append, complete, ask, cancel.
fn upload(shared: &Shared, repo: &str, session: &str, query: &str, r: &Request) -> Reply {
    if !shared.writable {
        return error(405, "UNSUPPORTED");
    }
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| decode(v)))
    };
    let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
    let accepted = |id: &str, held: usize| -> Reply {
        let range = format!("0-{}", held.saturating_sub(1));
        (202, Vec::new(), vec![("Location", location(id)), ("Range", range), ("Docker-Upload-UUID", id.to_string())])
    };
    let refused = |why: Refused| match why {
        Refused::UnknownUpload => error(404, "BLOB_UPLOAD_UNKNOWN"),
        Refused::DigestInvalid => error(400, "DIGEST_INVALID"),
        Refused::TooLarge => error(400, "SIZE_INVALID"),
    };
    match (r.method.as_str(), session.is_empty()) {
        ("POST", true) => {
            if let (Some(digest), Some(from)) = (param("mount"), param("from")) {
                if let Some(bytes) = shared.blob(&from, &digest) {
                    shared.overlay.put_blob(repo, &digest, bytes);
                    let at = format!("/v2/{repo}/blobs/{digest}");
                    return (201, Vec::new(), vec![("Location", at), ("Docker-Content-Digest", digest)]);
                }
            }
            match shared.overlay.open_upload(repo) {
                Some(id) => accepted(&id, 0),
                None => error(429, "TOOMANYREQUESTS"),
            }
        }
        ("PATCH", false) => match shared.overlay.append(repo, session, &r.body) {
            Ok(held) => accepted(session, held),
            Err(why) => refused(why),
        },
        ("PUT", false) => {
            let Some(digest) = param("digest") else { return error(400, "DIGEST_INVALID") };
            match shared.overlay.finish(repo, session, &r.body, &digest) {
                Ok(()) => {
                    let at = format!("/v2/{repo}/blobs/{digest}");
                    (201, Vec::new(), vec![("Location", at), ("Docker-Content-Digest", digest)])
                }
                Err(why) => refused(why),
            }
        }
        ("GET", false) => match shared.overlay.offset(repo, session) {
            Some(held) => {
                let range = format!("0-{}", held.saturating_sub(1));
                (204, Vec::new(), vec![("Location", location(session)), ("Range", range)])
            }
            None => error(404, "BLOB_UPLOAD_UNKNOWN"),
        },
        ("DELETE", false) if shared.overlay.cancel(repo, session) => (204, Vec::new(), Vec::new()),
        ("DELETE", false) => error(404, "BLOB_UPLOAD_UNKNOWN"),
        _ => error(405, "UNSUPPORTED"),
    }
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
