//! A tap on an HTTP/1.1 link: a loopback proxy that forwards every byte
//! unchanged, both ways, and notes each request's path and when it
//! arrived. The reconcile scenario puts one in front of the primary georeg
//! to count what a follower asks of it across the WAN (the WAN emulator
//! counts bytes, not requests), and to see when a pass begins: its first
//! request is the list of fingerprint pages.
//!
//! Requests are found by reading their heads (at most 100 lines of 8 KiB)
//! and skipping their bodies by `Content-Length` or chunk sizes; answers
//! are copied as they come. What it notes is bounded: past
//! [`MAX_NOTED`] requests it only counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Requests noted at most; later ones are only counted.
const MAX_NOTED: usize = 1_000_000;
const MAX_HEAD_LINES: usize = 100;
const MAX_LINE: u64 = 8 << 10;

/// One request seen going upstream.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: SystemTime,
    /// The request target, query included.
    pub path: String,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    noted: Mutex<Vec<Seen>>,
    /// Requests past MAX_NOTED.
    unnoted: AtomicU64,
    /// Every connection's client socket, to close them all when dropped.
    conns: Mutex<Vec<TcpStream>>,
}

/// The tap; dropping it closes every connection through it.
pub struct Tap {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Tap {
    /// Listens on 127.0.0.1:0, forwarding every connection to `upstream` ("host:port").
    pub fn start(upstream: &str) -> Tap {
        let upstream = upstream.to_socket_addrs().ok().and_then(|mut a| a.next()).expect("the tap's upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let port = listener.local_addr().expect("the tap's address").port();
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            noted: Mutex::default(),
            unnoted: AtomicU64::new(0),
            conns: Mutex::default(),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("tap-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let sh = sh.clone();
                    let _ = std::thread::Builder::new().name("tap-conn".into()).spawn(move || connect(&sh, client));
                }
            })
            .expect("start the tap");
        Tap { port, shared, accept: Some(accept) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the record stands now, to read what came after.
    pub fn mark(&self) -> usize {
        self.shared.noted.lock().unwrap().len()
    }

    /// The requests noted since `mark`. Panics once requests went
    /// unnoted (past the limit): the figures would be incomplete.
    pub fn since(&self, mark: usize) -> Vec<Seen> {
        let unnoted = self.shared.unnoted.load(Ordering::SeqCst);
        assert_eq!(unnoted, 0, "the tap noted {MAX_NOTED} requests and no more: its counts are incomplete");
        let noted = self.shared.noted.lock().unwrap();
        noted.get(mark..).map(<[Seen]>::to_vec).unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// One client connection: requests go up through the reader, answers come
/// down as they are.
fn connect(shared: &Arc<Shared>, client: TcpStream) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(10)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Ok(c) = client.try_clone() {
        shared.conns.lock().unwrap().push(c);
    }
    let (Ok(mut down_from), Ok(mut down_to)) = (upstream.try_clone(), client.try_clone()) else { return };
    let down = std::thread::Builder::new().name("tap-down".into()).spawn(move || {
        let _ = std::io::copy(&mut down_from, &mut down_to);
        let _ = down_to.shutdown(Shutdown::Write);
    });
    let mut up = upstream;
    let _ = requests(shared, BufReader::new(client), &mut up);
    let _ = up.shutdown(Shutdown::Write);
    if let Ok(d) = down {
        let _ = d.join();
    }
}

/// Forwards requests one after another, noting each.
fn requests(shared: &Shared, mut from: BufReader<TcpStream>, to: &mut TcpStream) -> std::io::Result<()> {
    while !shared.stop.load(Ordering::SeqCst) {
        let mut head = Vec::new();
        let mut first = String::new();
        if (&mut from).take(MAX_LINE).read_line(&mut first)? == 0 {
            return Ok(());
        }
        head.extend_from_slice(first.as_bytes());
        let (mut length, mut chunked) = (0u64, false);
        for _ in 0..MAX_HEAD_LINES {
            let mut line = String::new();
            if (&mut from).take(MAX_LINE).read_line(&mut line)? == 0 {
                return Ok(());
            }
            head.extend_from_slice(line.as_bytes());
            if line.trim().is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        note(shared, &first);
        to.write_all(&head)?;
        if chunked {
            forward_chunks(&mut from, to)?;
        } else {
            let copied = std::io::copy(&mut (&mut from).take(length), to)?;
            if copied < length {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn note(shared: &Shared, request_line: &str) {
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut noted = shared.noted.lock().unwrap();
    if noted.len() < MAX_NOTED {
        noted.push(Seen { at: SystemTime::now(), path });
    } else {
        shared.unnoted.fetch_add(1, Ordering::SeqCst);
    }
}

/// A chunked body, forwarded as it is.
fn forward_chunks(from: &mut BufReader<TcpStream>, to: &mut TcpStream) -> std::io::Result<()> {
    loop {
        let mut size = String::new();
        from.take(MAX_LINE).read_line(&mut size)?;
        to.write_all(size.as_bytes())?;
        let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        std::io::copy(&mut from.take(n), to)?;
        // The CRLF after the data, or the trailers and the last CRLF.
        loop {
            let mut line = String::new();
            from.take(MAX_LINE).read_line(&mut line)?;
            to.write_all(line.as_bytes())?;
            if line.trim().is_empty() || n > 0 {
                break;
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}
