//! A test double for the one thing distribution 2.8 cannot do: serve the
//! OCI referrers API. It forwards every request to a real registry, except
//! `GET /v2/NAME/referrers/DIGEST`, which it answers from what the test
//! set, as zot or Harbor would.

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
}

impl ReferrersProxy {
    /// Listens on a free loopback port, in front of `upstream` (host:port).
    pub fn start(upstream: &str) -> ReferrersProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let referrers: Index = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (index, halt, upstream) = (referrers.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (index, upstream) = (index.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &upstream, &index));
            }
        });
        ReferrersProxy { url: format!("http://127.0.0.1:{port}"), referrers, stop, port }
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

fn serve(mut client: TcpStream, upstream: &str, index: &Index) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
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
