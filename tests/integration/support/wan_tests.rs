//! The WAN emulator's own tests.

use super::*;

/// A stand-in upstream: each 8-byte big-endian request `n` on a connection
/// is answered with the next `n` bytes of [`pattern`], from offset 0.
fn source() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Left blocked in accept when the test ends: it holds nothing.
    spawn("wan-test-source", move || {
        for mut s in listener.incoming().flatten().take(100) {
            spawn("wan-test-answer", move || {
                let (p, mut req) = (pattern(), [0; 8]);
                while s.read_exact(&mut req).is_ok() {
                    let (n, mut sent) = (u64::from_be_bytes(req), 0);
                    while sent < n {
                        let (o, k) = ((sent % 251) as usize, (n - sent).min(1 << 16) as usize);
                        if s.write_all(&p[o..o + k]).is_err() {
                            return;
                        }
                        sent += k as u64;
                    }
                }
            });
        }
    });
    addr
}

/// Byte `i` of every answer is `i % 251`: a lost, repeated or reordered
/// chunk shows.
fn pattern() -> Vec<u8> {
    (0..251 + (1 << 16)).map(|i| (i % 251) as u8).collect()
}

fn connect(addr: &str, timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Asks for `n` bytes and checks them: how many arrived, and what ended the
/// reading early if something did.
fn get(s: &mut TcpStream, n: u64) -> (u64, Option<std::io::Error>) {
    s.write_all(&n.to_be_bytes()).unwrap();
    let (p, mut buf, mut got) = (pattern(), vec![0; 1 << 16], 0);
    while got < n {
        let want = (n - got).min(buf.len() as u64) as usize;
        let k = match s.read(&mut buf[..want]) {
            Ok(0) => return (got, Some(ErrorKind::UnexpectedEof.into())),
            Ok(k) => k,
            Err(e) => return (got, Some(e)),
        };
        let o = (got % 251) as usize;
        assert!(buf[..k] == p[o..o + k], "wrong bytes after byte {got}");
        got += k as u64;
    }
    (got, None)
}

#[test]
fn lan_passes_every_byte_of_concurrent_keep_alive_connections() {
    let proxy = WanProxy::start(&source(), Link::lan());
    assert_eq!(proxy.url, format!("http://{}", proxy.addr()));
    let t = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(&proxy.addr(), Duration::from_secs(10));
            thread::spawn(move || {
                for _ in 0..2 {
                    let (got, end) = get(&mut s, 2_500_000);
                    assert!(end.is_none(), "after {got} bytes: {end:?}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!("wan lan: 10 MB over 2 connections in {secs:.3} s ({:.0} MB/s)", 10.0 / secs);
    assert_eq!((proxy.downstream_bytes(), proxy.upstream_bytes()), (10_000_000, 4 * 8));
    assert_eq!((proxy.cuts(), proxy.stalls()), (0, 0));
}

#[test]
fn cut_ends_the_connection_on_the_byte_and_only_once() {
    let proxy = WanProxy::start(&source(), Link::lan());
    proxy.cut_at(1_000_000);
    let mut s = connect(&proxy.addr(), Duration::from_secs(10));
    let (got, end) = get(&mut s, 2_000_000);
    assert_eq!(got, 1_000_000);
    let kind = end.expect("the connection was cut").kind();
    assert!(matches!(kind, ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset), "{kind:?}");
    assert_eq!(proxy.cuts(), 1);
    let (got, end) = get(&mut connect(&proxy.addr(), Duration::from_secs(10)), 2_000_000);
    assert!(end.is_none(), "a later connection stopped after {got} bytes: {end:?}");
    assert_eq!((proxy.cuts(), proxy.downstream_bytes()), (1, 3_000_000));
}

#[test]
fn stall_holds_the_connection_open_and_silent() {
    let proxy = WanProxy::start(&source(), Link::lan());
    proxy.stall_at(500_000);
    let mut s = connect(&proxy.addr(), Duration::from_secs(1));
    let t = Instant::now();
    let (got, end) = get(&mut s, 1_000_000);
    assert_eq!(got, 500_000);
    let kind = end.expect("the connection stalled").kind();
    assert!(matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut), "{kind:?}");
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(proxy.stalls(), 1);
    let (got, end) = get(&mut connect(&proxy.addr(), Duration::from_secs(10)), 1000);
    assert!(end.is_none(), "another connection stopped after {got} bytes: {end:?}");
    assert_eq!((proxy.stalls(), proxy.downstream_bytes()), (1, 501_000));
    // Dropping the proxy ends the stalled connection, without waiting on it.
    let t = Instant::now();
    drop(proxy);
    assert!(t.elapsed() < Duration::from_millis(500), "drop took {:?}", t.elapsed());
    assert!(matches!(s.read(&mut [0; 1]), Ok(0) | Err(_)));
    assert!(t.elapsed() < Duration::from_millis(500), "the stalled client waited {:?}", t.elapsed());
}

#[test]
fn wan_delays_each_round_trip_and_shares_its_bandwidth() {
    let proxy = WanProxy::start(&source(), Link::wan(Duration::from_millis(40), 80_000_000));
    let timed = |s: &mut TcpStream, n| {
        let t = Instant::now();
        let (got, end) = get(s, n);
        assert!(end.is_none(), "after {got} bytes: {end:?}");
        t.elapsed()
    };
    let t = Instant::now();
    let mut s = connect(&proxy.addr(), Duration::from_secs(10));
    let first = timed(&mut s, 1).max(t.elapsed());
    let (second, big) = (timed(&mut s, 1), timed(&mut s, 5_000_000));
    eprintln!("wan 40 ms, 80 Mbit/s: first round trip {first:?}, next {second:?}, 5 MB in {big:?}");
    assert!(first >= Duration::from_millis(80), "a new connection's handshake is a round trip too");
    assert!(second >= Duration::from_millis(40) && second < Duration::from_millis(80));
    assert!(big >= Duration::from_millis(400) && big <= Duration::from_millis(800));
    // Two connections at once share the same 10 MB/s.
    let t = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(&proxy.addr(), Duration::from_secs(10));
            thread::spawn(move || timed(&mut s, 2_500_000))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let both = t.elapsed();
    eprintln!("wan 40 ms, 80 Mbit/s: 2 x 2.5 MB at once in {both:?}");
    assert!(both >= Duration::from_millis(400) && both <= Duration::from_millis(800));
}
