//! A broken or hostile registry in front of a real one: an HTTP proxy on a
//! free loopback port that forwards every request to the real registry
//! unless the test's rule says otherwise for it: a `Link` header pointing
//! back to the page or backwards, an answer trickled a byte at a time, a
//! generated tag list or catalog page of millions of entries, or no answer
//! at all. The real registry keeps doing the authentication and serving
//! the real bytes; the double only bends what the real one cannot.
//!
//! One request per connection (`Connection: close`), which every HTTP/1.1
//! client handles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A request as the double saw it.
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/v2/app/tags/list?n=10`.
    pub target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the double answers.
pub enum Answer {
    /// The real registry's answer.
    Forward,
    /// The real registry's answer with this `Link` header instead of its own.
    WithLink(String),
    /// The real registry's answer, its body sent a byte every so often.
    Trickle(Duration),
    /// A 200 of this content type and length, its body from the reader.
    Generated { content_type: &'static str, length: u64, body: Box<dyn Read + Send> },
    /// Nothing, ever: the connection stays open until the double drops.
    Silent,
    /// This status with an OCI error body of this code, as a registry that
    /// refuses a request outright (`_catalog` to all but administrators).
    Refuse(u16, &'static str),
    /// This status and nothing else: no body, no error code (a route the
    /// registry does not have).
    Bare(u16),
    /// The real registry's answer to the request without its `Range`
    /// header: a registry that ignores ranges and sends the whole blob.
    IgnoringRange,
}

type Rule = dyn Fn(&Request) -> Answer + Send + Sync;

pub struct HostileRegistry {
    /// `http://127.0.0.1:PORT`, to use in place of the real registry's URL.
    pub url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl HostileRegistry {
    /// Starts the double in front of `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str, rule: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.trim_end_matches('/').to_string();
        let (stop2, requests2) = (stop.clone(), requests.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (rule, upstream, stop, requests) =
                    (rule.clone(), upstream.clone(), stop2.clone(), requests2.clone());
                thread::spawn(move || {
                    let _ = serve(conn, &*rule, &upstream, &stop, &requests);
                });
            }
        });
        HostileRegistry { url, stop, requests }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn serve(
    conn: TcpStream,
    rule: &Rule,
    upstream: &str,
    stop: &AtomicBool,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    requests.fetch_add(1, SeqCst);
    let request = Request { method, target, headers };
    let mut out = conn;
    match rule(&request) {
        Answer::Silent => {
            while !stop.load(SeqCst) {
                thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        Answer::Bare(status) => write!(out, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Answer::Refuse(status, code) => {
            let body = format!(r#"{{"errors":[{{"code":"{code}","message":"refused by policy","detail":null}}]}}"#);
            write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Answer::Generated { content_type, length, mut body } => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut body, &mut out).map(|_| ())
        }
        answer => {
            let ranged = !matches!(answer, Answer::IgnoringRange);
            let (status, mut head, body) = forward(&request, upstream, ranged)?;
            if let Answer::WithLink(link) = &answer {
                head.retain(|(k, _)| !k.eq_ignore_ascii_case("Link"));
                head.push(("Link".into(), link.clone()));
            }
            write!(out, "HTTP/1.1 {status} X\r\n")?;
            for (k, v) in &head {
                write!(out, "{k}: {v}\r\n")?;
            }
            write!(out, "Connection: close\r\n\r\n")?;
            match answer {
                Answer::Trickle(every) => {
                    for byte in body {
                        if stop.load(SeqCst) {
                            break;
                        }
                        out.write_all(&[byte])?;
                        out.flush()?;
                        thread::sleep(every);
                    }
                    Ok(())
                }
                _ => out.write_all(&body),
            }
        }
    }
}

/// An answer: status, the headers worth passing on, body.
type Upstream = (u16, Vec<(String, String)>, Vec<u8>);

/// The real registry's answer.
fn forward(request: &Request, upstream: &str, ranged: bool) -> std::io::Result<Upstream> {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(60)).build();
    let mut req = agent.request(&request.method, &format!("{upstream}{}", request.target));
    for name in ["Authorization", "Accept", "Range"] {
        if let (Some(v), true) = (request.header(name), ranged || name != "Range") {
            req = req.set(name, v);
        }
    }
    let resp = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let status = resp.status();
    let mut head = Vec::new();
    for name in resp.headers_names() {
        if ["connection", "transfer-encoding", "keep-alive"].contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        for v in resp.all(&name) {
            head.push((name.clone(), v.to_string()));
        }
    }
    let mut body = Vec::new();
    if request.method != "HEAD" {
        resp.into_reader().read_to_end(&mut body)?;
        head.retain(|(k, _)| !k.eq_ignore_ascii_case("Content-Length"));
        head.push(("Content-Length".into(), body.len().to_string()));
    }
    Ok((status, head, body))
}

/// A JSON body generated as it is read: `{"name":NAME,"tags":["t0",...]}`
/// (or `{"repositories":[...]}` for a catalog), of `count` entries,
/// without holding it.
pub struct Listing {
    prefix: Vec<u8>,
    key_index: u64,
    count: u64,
    entry: &'static str,
    pending: Vec<u8>,
    done: bool,
}

impl Listing {
    pub fn tags(repo: &str, count: u64) -> (u64, Listing) {
        Listing::new(format!("{{\"name\":\"{repo}\",\"tags\":["), count, "t")
    }

    pub fn catalog(count: u64) -> (u64, Listing) {
        Listing::new("{\"repositories\":[".to_string(), count, "r/")
    }

    fn new(prefix: String, count: u64, entry: &'static str) -> (u64, Listing) {
        let entries = count * (entry.len() as u64 + 11);
        let length = prefix.len() as u64 + entries + count.saturating_sub(1) + 2;
        (length, Listing { prefix: prefix.into_bytes(), key_index: 0, count, entry, pending: Vec::new(), done: false })
    }
}

impl Read for Listing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.len() < buf.len() && !self.done {
            if !self.prefix.is_empty() {
                self.pending.append(&mut self.prefix);
            } else if self.key_index < self.count {
                let comma = if self.key_index > 0 { "," } else { "" };
                self.pending.extend_from_slice(format!("{comma}\"{}{:09}\"", self.entry, self.key_index).as_bytes());
                self.key_index += 1;
            } else {
                self.pending.extend_from_slice(b"]}");
                self.done = true;
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}
