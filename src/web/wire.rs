//! HTTP/1.1 framing for the front (`web::front`): reading one request's
//! head and body from a client within size limits and deadlines, passing it
//! on to the server as a complete, plainly framed request, and relaying the
//! answer back. Nothing here allocates by a client's word: a head is read
//! up to `MAX_HEAD` bytes, a body up to the endpoint's limit, both in
//! bounded chunks and against a deadline.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header lines one request may carry.
pub const MAX_HEADERS: usize = 100;
/// The header through which the front tells the server who the client is
/// (a client sending it has it removed).
pub const CLIENT_HEADER: &str = "X-Georeg-Client";
const CHUNK: usize = 16 * 1024;

/// A client stream whose reads can be bounded in time.
pub trait Timed: Read + Write {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()>;
    /// Ends the connection politely (TLS: close_notify), then lingers.
    fn close(&mut self) {}
}

/// How long, and how many bytes, a closing connection still discards of
/// what the client sends: closing a socket with unread bytes makes the
/// kernel send a reset, which can destroy the answer (a 413, a 431) before
/// the client reads it. Bounded by these, not by anything the client said.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Half-closes `sock` and discards what still arrives, within the linger
/// bounds, so that the answer already sent is read rather than reset.
fn linger(sock: &mut std::net::TcpStream) {
    let _ = sock.flush();
    if sock.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut scratch = [0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match sock.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

impl Timed for std::net::TcpStream {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left.max(Duration::from_millis(1))))
    }

    fn close(&mut self) {
        linger(self);
    }
}

impl Timed for rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream> {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
        linger(&mut self.sock);
    }
}

/// Why a request is not passed on: answered with this status (the
/// connection is then closed), or the client went away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Answer { status: u16, message: String },
    Gone,
}

fn answer(status: u16, message: impl Into<String>) -> Refusal {
    Refusal::Answer { status, message: message.into() }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// HTTP/1.0 (closes after the answer unless it asks for keep-alive).
    pub http10: bool,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Whether the client wants the connection kept after the answer.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").map(str::to_ascii_lowercase).unwrap_or_default();
        if self.http10 {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// Reads from `s` into `buf` once, with what is left until `deadline`.
fn fill(s: &mut impl Timed, buf: &mut Vec<u8>, deadline: Instant, what: &str) -> Result<(), Refusal> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(answer(408, format!("the {what} did not arrive in time")));
    }
    s.set_read_deadline(left).map_err(|_| Refusal::Gone)?;
    let mut chunk = [0u8; CHUNK];
    match s.read(&mut chunk) {
        Ok(0) => Err(Refusal::Gone),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Err(answer(408, format!("the {what} did not arrive in time")))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(_) => Err(Refusal::Gone),
    }
}

/// Reads one request head. The first byte may take until `idle` (a kept
/// connection waiting for its next request); the whole head must then
/// arrive within `head_time`. `buf` holds bytes read past the previous
/// request and keeps those read past this head.
pub fn read_head(s: &mut impl Timed, buf: &mut Vec<u8>, idle: Instant, head_time: Duration) -> Result<Head, Refusal> {
    if buf.is_empty() {
        match fill(s, buf, idle, "request") {
            Err(Refusal::Answer { .. }) => return Err(Refusal::Gone), // an idle connection just ends
            other => other?,
        }
    }
    let deadline = Instant::now() + head_time;
    loop {
        if let Some(end) = head_end(buf) {
            let head = parse_head(&buf[..end])?;
            buf.drain(..end);
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            return Err(answer(431, format!("the request head is larger than {MAX_HEAD} bytes")));
        }
        fill(s, buf, deadline, "request head")?;
    }
}

/// Where the head ends (after its blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let window = &buf[..buf.len().min(MAX_HEAD + 4)];
    let crlf = window.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = window.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|_| answer(400, "the request head is not ASCII text"))?;
    if !text.is_ascii() {
        return Err(answer(400, "the request head is not ASCII text"));
    }
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(answer(400, "malformed request line")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(answer(400, "malformed request method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(answer(400, "the request target must be a path"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(answer(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")),
    };
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(answer(431, format!("more than {MAX_HEADERS} header lines")));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| answer(400, "malformed header line"))?;
        if name.is_empty() || name.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))) {
            return Err(answer(400, "malformed header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(answer(400, "malformed header value"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head { method: method.to_string(), target: target.to_string(), http10, headers })
}

/// How the body is framed; refuses what would make two parsers disagree.
pub fn framing(head: &Head) -> Result<Option<Framing>, Refusal> {
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.as_str())
        .collect();
    let chunked = match head.header("Transfer-Encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(answer(501, "only the chunked transfer encoding is supported")),
    };
    match (lengths.as_slice(), chunked) {
        ([], false) => Ok(None),
        ([], true) => Ok(Some(Framing::Chunked)),
        (_, true) => Err(answer(400, "both Content-Length and Transfer-Encoding")),
        ([one], false) => {
            if one.is_empty() || one.len() > 19 || !one.bytes().all(|b| b.is_ascii_digit()) {
                return Err(answer(400, "malformed Content-Length"));
            }
            one.parse().map(|n| Some(Framing::Length(n))).map_err(|_| answer(400, "malformed Content-Length"))
        }
        (_, false) => Err(answer(400, "more than one Content-Length")),
    }
}

/// Reads the body, at most `limit` bytes, by `deadline`. A declared
/// length over the limit is refused before a byte of the body is read.
pub fn read_body(
    s: &mut impl Timed,
    buf: &mut Vec<u8>,
    framing: Option<Framing>,
    limit: u64,
    deadline: Instant,
) -> Result<Vec<u8>, Refusal> {
    let too_large = || answer(413, format!("the body is larger than this endpoint's limit of {limit} bytes"));
    match framing {
        None => Ok(Vec::new()),
        Some(Framing::Length(n)) if n > limit => Err(too_large()),
        Some(Framing::Length(n)) => {
            let n = n as usize;
            while buf.len() < n {
                fill(s, buf, deadline, "request body")?;
            }
            Ok(buf.drain(..n).collect())
        }
        Some(Framing::Chunked) => {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        break i;
                    }
                    if buf.len() > 1024 {
                        return Err(answer(400, "malformed chunk size line"));
                    }
                    fill(s, buf, deadline, "request body")?;
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).trim().to_string();
                buf.drain(..=line_end);
                let size_text = line.split(';').next().unwrap_or("").trim();
                if size_text.is_empty() || size_text.len() > 16 {
                    return Err(answer(400, "malformed chunk size"));
                }
                let size = u64::from_str_radix(size_text, 16).map_err(|_| answer(400, "malformed chunk size"))?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    loop {
                        let end = loop {
                            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                                break i;
                            }
                            if buf.len() > MAX_HEAD {
                                return Err(answer(431, "chunked trailers too large"));
                            }
                            fill(s, buf, deadline, "request body")?;
                        };
                        let blank = buf[..end].iter().all(|b| *b == b'\r');
                        buf.drain(..=end);
                        if blank {
                            return Ok(body);
                        }
                    }
                }
                if body.len() as u64 + size > limit {
                    return Err(too_large());
                }
                let need = size as usize + 2; // the chunk and its CRLF
                while buf.len() < need {
                    fill(s, buf, deadline, "request body")?;
                }
                body.extend_from_slice(&buf[..size as usize]);
                buf.drain(..need);
            }
        }
    }
}

/// Writes the request to the server, framed by Content-Length, with the
/// client's address in [`CLIENT_HEADER`], on a connection used for it alone
/// (`Connection: close`).
pub fn write_request(w: &mut impl Write, head: &Head, body: &[u8], client: &str) -> io::Result<()> {
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        let hop = ["content-length", "transfer-encoding", "connection", "keep-alive", "expect", "te", "upgrade"];
        if hop.iter().any(|h| k.eq_ignore_ascii_case(h)) || k.eq_ignore_ascii_case(CLIENT_HEADER) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("{CLIENT_HEADER}: {client}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()));
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Relays one answer from the server (`from`) to the client (`to`), less
/// its `Connection` header; returns whether the server keeps its
/// connection open. `head_only`: the
/// request was HEAD, so the answer has no body whatever it declares.
pub fn relay_response(from: &mut impl Read, to: &mut impl Write, head_only: bool) -> io::Result<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; CHUNK];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD * 4 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "answer head too large"));
        }
        let n = from.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed before answering"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    let keep = !header("Connection").is_some_and(|c| c.contains("close"));
    // The server's connection is this request's alone; whether the
    // client's stays open is the client's choice, not the server's.
    let relayed: String = head
        .split_inclusive('\n')
        .filter(|line| !line.split_once(':').is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("Connection")))
        .collect();
    to.write_all(relayed.as_bytes())?;
    let mut rest = buf[end..].to_vec();
    if head_only || status < 200 || status == 204 || status == 304 {
        to.flush()?;
        return Ok(keep && rest.is_empty());
    }
    if let Some(len) = header("Content-Length").and_then(|l| l.parse::<u64>().ok()) {
        let mut left = len;
        let first = rest.len().min(left as usize);
        to.write_all(&rest[..first])?;
        left -= first as u64;
        while left > 0 {
            let n = from.read(&mut chunk[..CHUNK.min(left as usize)])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server's answer ended early"));
            }
            to.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        to.flush()?;
        return Ok(keep);
    }
    // Chunked or until close: pass everything on and end the connection.
    to.write_all(&rest)?;
    rest.clear();
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        to.write_all(&chunk[..n])?;
    }
    to.flush()?;
    Ok(false)
}

/// Answers a refused request and asks the client to close.
pub fn refuse(w: &mut impl Write, status: u16, message: &str) -> io::Result<()> {
    let body = serde_json::json!({ "error": message }).to_string();
    let reason = match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let retry = if status == 503 { "Retry-After: 1\r\n" } else { "" };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
