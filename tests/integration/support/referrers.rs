//! A test double for what distribution 2.8 cannot do: serve the OCI
//! referrers API, and ask a client to slow down. It forwards every request
//! to a real registry, except `GET /v2/NAME/referrers/DIGEST`, which it
//! answers from what the test set, as zot or Harbor would, and, while
//! throttling, any request, which it answers 429 with `Retry-After: 1`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::oci::Image;

type Index = Arc<Mutex<HashMap<String, Vec<serde_json::Value>>>>;

pub struct ReferrersProxy {
    pub url: String,
    referrers: Index,
    stop: Arc<AtomicBool>,
    port: u16,
    throttle: Arc<std::sync::atomic::AtomicUsize>,
    racing: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReferrersProxy {
    /// Listens on a free loopback port, in front of `upstream` (host:port).
    pub fn start(upstream: &str) -> ReferrersProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let referrers: Index = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let throttle = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let racing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (index, halt, upstream, slow) = (referrers.clone(), stop.clone(), upstream.to_string(), throttle.clone());
        let race = racing.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (index, upstream, slow, race) = (index.clone(), upstream.clone(), slow.clone(), race.clone());
                std::thread::spawn(move || serve(conn, &upstream, &index, &slow, &race));
            }
        });
        ReferrersProxy { url: format!("http://127.0.0.1:{port}"), referrers, stop, port, throttle, racing }
    }

    /// Answers the next `n` requests 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: usize) {
        self.throttle.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` reads of a manifest by tag 500, as
    /// distribution's filesystem driver does when a read races the write
    /// of the tag's link just after a push.
    pub fn race_tag_writes(&self, n: usize) {
        self.racing.store(n, Ordering::SeqCst);
    }

    /// Tag reads still to be answered 500.
    pub fn races_left(&self) -> usize {
        self.racing.load(Ordering::SeqCst)
    }

    /// Requests still to be answered 429.
    pub fn throttled_left(&self) -> usize {
        self.throttle.load(Ordering::SeqCst)
    }

    /// The referrers the API lists for `subject`.
    pub fn set(&self, subject: &Image, referrers: &[&Image]) {
        let descriptors = referrers
            .iter()
            .map(|r| {
                let artifact_type = serde_json::from_slice::<serde_json::Value>(&r.manifest).unwrap()["artifactType"].clone();
                serde_json::json!({"mediaType": r.media_type, "digest": r.digest, "size": r.manifest.len(), "artifactType": artifact_type})
            })
            .collect();
        self.referrers.lock().unwrap().insert(subject.digest.clone(), descriptors);
    }
}

impl Drop for ReferrersProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    index: &Index,
    throttle: &std::sync::atomic::AtomicUsize,
    racing: &std::sync::atomic::AtomicUsize,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if throttle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
        let _ = write!(
            client,
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let by_tag = path.split_once("/manifests/").is_some_and(|(_, r)| !r.starts_with("sha256:"));
    if method == "GET"
        && by_tag
        && racing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        let body = r#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":{}}]}"#;
        let _ = write!(
            client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if let (true, Some((_, digest))) = (method == "GET", path.split_once("/referrers/")) {
        let digest = digest.split('?').next().unwrap_or("");
        let manifests = index.lock().unwrap().get(digest).cloned().unwrap_or_default();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
            .to_string();
        let _ = write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    // Anything else goes to the real registry, one request per connection.
    let length: usize = lines
        .clone()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream) else { return };
    let mut forwarded = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:")) {
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    if up.write_all(forwarded.as_bytes()).and_then(|()| up.write_all(&body)).is_err() {
        return;
    }
    let _ = std::io::copy(&mut up, &mut client);
}
