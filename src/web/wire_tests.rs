//! Tests of the framing.
#![cfg(test)]

use super::*;
use std::io::Cursor;

/// An in-memory client: what it sends, and what it was answered.
struct Fake {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Fake {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}
impl Write for Fake {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Timed for Fake {
    fn set_read_deadline(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

fn fake(bytes: &[u8]) -> Fake {
    Fake { input: Cursor::new(bytes.to_vec()), output: Vec::new() }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn read(bytes: &[u8], limit: u64) -> Result<(Head, Vec<u8>), Refusal> {
    let mut s = fake(bytes);
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf, later(), Duration::from_secs(5))?;
    let body = read_body(&mut s, &mut buf, framing(&head)?, limit, later())?;
    Ok((head, body))
}

fn status(r: Result<(Head, Vec<u8>), Refusal>) -> u16 {
    match r {
        Err(Refusal::Answer { status, .. }) => status,
        Err(Refusal::Gone) => 0,
        Ok(_) => 200,
    }
}

#[test]
fn heads_and_bodies_are_read_by_their_framing() {
    let (head, body) = read(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 100).unwrap();
    assert_eq!((head.method.as_str(), head.path(), body.as_slice()), ("POST", "/a", &b"hello"[..]));
    assert!(head.keep_alive());
    let chunked =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n";
    assert_eq!(read(chunked, 100).unwrap().1, b"hello world");
    let (head, body) = read(b"GET / HTTP/1.0\n\n", 100).unwrap();
    assert!(!head.keep_alive() && body.is_empty());
}

#[test]
fn a_claimed_length_over_the_limit_is_refused_unread() {
    let huge = b"POST / HTTP/1.1\r\nContent-Length: 1000000000000000\r\n\r\nabc";
    assert_eq!(status(read(huge, 1 << 20)), 413);
    assert_eq!(status(read(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 10)), 400);
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    assert_eq!(status(read(chunked, 8)), 413);
    assert_eq!(status(read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 8)), 400);
}

#[test]
fn malformed_and_ambiguous_heads_are_refused() {
    for (bytes, expected) in [
        (&b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"G\xffT / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
    ] {
        assert_eq!(status(read(bytes, 10)), expected, "{}", String::from_utf8_lossy(bytes));
    }
    let flood: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(status(read(format!("GET / HTTP/1.1\r\n{flood}\r\n").as_bytes(), 10)), 431);
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEAD + 10));
    assert_eq!(status(read(long.as_bytes(), 10)), 431);
    // A body that ends early: the client is gone.
    assert_eq!(status(read(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 1000)), 0);
}

#[test]
fn requests_are_passed_on_plainly_framed_and_answers_relayed() {
    let head = parse_head(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Georeg-Client: forged\r\nA: b\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    write_request(&mut out, &head, b"body", "10.1.2.3:4").unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "POST /x HTTP/1.1\r\nA: b\r\nX-Georeg-Client: 10.1.2.3:4\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbody"
    );
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK";
    let mut to = Vec::new();
    assert!(relay_response(&mut Cursor::new(answer.to_vec()), &mut to, false).unwrap());
    assert_eq!(to, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut to = Vec::new();
    relay_response(&mut Cursor::new(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n".to_vec()), &mut to, true)
        .unwrap();
    assert!(to.ends_with(b"\r\n\r\n"));
    // The server closes its connection; the client's stays its own choice.
    let mut to = Vec::new();
    let closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Length: 2\r\n\r\nok";
    assert!(!relay_response(&mut Cursor::new(closing.to_vec()), &mut to, false).unwrap());
    assert_eq!(to, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}
