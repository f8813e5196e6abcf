//! Hostile clients against the real daemon, over plain http and over the
//! https front: absurd declared lengths, truncated and malformed bodies,
//! header floods, and 200 slow connections from one address while 1,000
//! valid notifications come from another. After each, the daemon is alive
//! and every valid event is stored exactly once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{wait_until, Env, Mode, SECRET};

const PATH: &str = "/api/v4/container_registry_event/events";

/// A client connection, plain or TLS.
trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

/// Where to attack: the address, and the CA to trust when it is https.
struct Target {
    addr: SocketAddr,
    ca: Option<std::path::PathBuf>,
}

impl Target {
    fn connect(&self) -> Box<dyn Wire> {
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match &self.ca {
            None => Box::new(tcp),
            Some(ca) => Box::new(tls(tcp, ca)),
        }
    }

    /// Sends `bytes` on a new connection and reads the answer until the
    /// server closes (or 20 s pass).
    fn exchange(&self, bytes: &[u8]) -> String {
        let mut c = self.connect();
        let _ = c.write_all(bytes);
        let _ = c.flush();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A valid notification, on its own connection; its status.
    fn notify(&self, id: &str) -> u16 {
        let body = envelope(id);
        let request = format!(
            "POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Type: application/json\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        status(&self.exchange(request.as_bytes()))
    }

    fn health(&self) -> u16 {
        status(&self.exchange(b"GET /-/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    }
}

fn tls(tcp: TcpStream, ca: &std::path::Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(crate::support::client_tls(ca), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn envelope(id: &str) -> String {
    serde_json::json!({"events": [{
        "id": id,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:66651c6130ab580fd1fb5c873a79bbf4c2cccb7c12e0d139b65781b9e6159a18",
            "repository": "hostile/app",
            "tag": "v1",
        }
    }]})
    .to_string()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The attacks that need no volume, each followed by proof of life.
fn single_attacks(target: &Target, stored: impl Fn(&str) -> i64) {
    let post = |extra_headers: &str, body: &[u8]| {
        let mut request = format!(
            "POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Type: application/json\r\n\
             Connection: close\r\n{extra_headers}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(body);
        target.exchange(&request)
    };
    // A length no allocation may follow: answered 413 at once, unread.
    let answer = post("Content-Length: 1000000000000000\r\n", b"abc");
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(target.health(), 200, "alive after a 10^15 declared length");
    // The same without credentials, and on another path.
    let answer = target.exchange(b"POST /nowhere HTTP/1.1\r\nContent-Length: 1000000000000000\r\n\r\nab");
    assert_eq!(status(&answer), 413, "{answer}");
    assert_eq!(target.health(), 200);
    // A chunked body that grows past the limit.
    let answer = post("Transfer-Encoding: chunked\r\n", format!("{:x}\r\n", 2 << 20).as_bytes());
    assert_eq!(status(&answer), 413, "{answer}");
    // A body that stops short, from a client that goes away.
    let mut gone = target.connect();
    let _ = gone.write_all(
        format!("POST {PATH} HTTP/1.1\r\nAuthorization: {SECRET}\r\nContent-Length: 100\r\n\r\n{{\"events\":")
            .as_bytes(),
    );
    drop(gone);
    // Invalid UTF-8, and JSON nested deeper than any parser should follow.
    let answer = post("Content-Length: 4\r\n", b"\xff\xfe\xfd\xfc");
    assert_eq!(status(&answer), 400, "{answer}");
    let deep = "[".repeat(200_000);
    let answer = post(&format!("Content-Length: {}\r\n", deep.len()), deep.as_bytes());
    assert_eq!(status(&answer), 400, "{answer}");
    // A header flood, and a head that never ends.
    let flood: String = (0..2000).map(|i| format!("X-Flood-{i}: {}\r\n", "y".repeat(20))).collect();
    let answer = target.exchange(format!("GET /-/health HTTP/1.1\r\n{flood}\r\n").as_bytes());
    assert_eq!(status(&answer), 431, "{}", &answer[..answer.len().min(200)]);
    // Garbage instead of HTTP.
    let answer = target.exchange(b"\x16\x03\x01garbage\r\n\r\n");
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(target.health(), 200, "alive after every attack");
    assert_eq!(target.notify("after-attacks"), 200);
    assert_eq!(stored("after-attacks"), 1, "a valid notification is still stored, once");
}

fn event_stored(conn: &rusqlite::Connection, id: &str) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM events WHERE event_id = ?1", [id], |r| r.get(0)).unwrap()
}

#[test]
fn hostile_requests_over_http_leave_the_daemon_alive() {
    let env = Env::new("hostile-http");
    env.start_secondary_daemon();
    let target = Target { addr: format!("127.0.0.1:{}", env.port).parse().unwrap(), ca: None };
    single_attacks(&target, |id| event_stored(&env.state(), id));
}

#[test]
fn hostile_requests_over_https_leave_the_daemon_alive() {
    let env = Env::with_https("hostile-https", Mode::Follow);
    env.start_daemons();
    let ca = env.https.as_ref().unwrap().ca.clone();
    let target = Target { addr: format!("127.0.0.1:{}", env.primary_port).parse().unwrap(), ca: Some(ca) };
    single_attacks(&target, |id| event_stored(&env.primary_state(), id));
    // A client that never finishes its TLS handshake holds nothing.
    let mut idle = TcpStream::connect(target.addr).unwrap();
    idle.write_all(b"\x16\x03\x01").unwrap();
    assert_eq!(target.health(), 200);
}

#[test]
fn two_hundred_slow_connections_from_one_address_do_not_slow_another() {
    let env = Env::new("hostile-slow");
    env.start_secondary_daemon();
    let addr: SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    let target = Target { addr, ca: None };
    let head = format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Length: 500\r\n\r\n");
    let mut slow: Vec<TcpStream> = (0..200).filter_map(|_| crate::support::slow_connection(addr, &head)).collect();
    assert_eq!(slow.len(), 200, "could not open 200 connections from 127.0.0.2");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (latencies, trickled) = std::thread::scope(|s| {
        // The attacker: a byte per connection every 100 ms, bounded in time.
        let trickle = s.spawn(|| {
            let started = Instant::now();
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                for c in slow.iter_mut() {
                    if c.write(b" ").is_ok() {
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        });
        // The honest client, from 127.0.0.1: 1,000 notifications and health checks.
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        for i in 0..1000 {
            assert!(Instant::now() < deadline, "1,000 notifications took over 2 minutes");
            let started = Instant::now();
            assert_eq!(target.notify(&format!("fair-{i}")), 200, "notification {i}");
            latencies.push(started.elapsed());
            if i % 100 == 0 {
                let started = Instant::now();
                assert_eq!(target.health(), 200);
                latencies.push(started.elapsed());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (latencies, trickle.join().unwrap())
    });
    assert!(trickled > 0);
    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted[sorted.len() * 99 / 100];
    eprintln!(
        "with 200 slow connections open: p50 {:?}, p99 {p99:?}, max {:?}",
        sorted[sorted.len() / 2],
        sorted.last()
    );
    // Starvation would show as seconds (or no answer at all); the latency
    // target itself (p99 under 100 ms) is the benchmark's to report.
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    let stored: i64 =
        env.state().query_row("SELECT COUNT(*) FROM events WHERE event_id LIKE 'fair-%'", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 1000, "every valid event stored exactly once");
    wait_until("the daemon to answer after the attack", Duration::from_secs(10), || target.health() == 200);
}

/// Opens `n` connections at the same moment, each sending one kept-alive
/// request; returns how long each waited for its answer (or `None`).
fn burst(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Option<Duration>)> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let mut tcp = TcpStream::connect(addr).unwrap();
                    tcp.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                    let started = Instant::now();
                    tcp.write_all(b"GET /-/health HTTP/1.1\r\nHost: georeg\r\n\r\n").unwrap();
                    let mut answer = [0u8; 512];
                    let answered = matches!(tcp.read(&mut answer), Ok(n) if n > 0).then(|| started.elapsed());
                    (tcp, answered)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn connections_opened_at_the_same_moment_are_all_answered_while_others_stay_open() {
    let env = Env::with_mode("burst", Mode::Direct);
    env.start_daemons();
    let addr: SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    // Connections kept open (idle, as a follower's or a registry's are
    // between requests) while more arrive together, round after round.
    let mut open = Vec::new();
    for round in 0..5 {
        let answers = burst(addr, 6);
        let unanswered = answers.iter().filter(|(_, a)| a.is_none()).count();
        let slowest = answers.iter().filter_map(|(_, a)| *a).max().unwrap_or_default();
        assert_eq!(unanswered, 0, "round {round}: {unanswered} of 6 requests got no answer within 4 s");
        assert!(slowest < Duration::from_secs(2), "round {round}: an answer took {slowest:?}");
        open.extend(answers.into_iter().map(|(tcp, _)| tcp));
    }
}
