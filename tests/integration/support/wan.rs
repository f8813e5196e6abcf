//! A WAN between georeg and a registry, emulated in userspace: a TCP proxy on
//! a free loopback port that delays, paces, cuts and stalls what it forwards.
//! The test machines' kernel has no netem (`tc qdisc add ... netem` says
//! "Specified qdisc kind is unknown"), so threads do it, two per connection
//! and direction: a reader paces each chunk through the direction's shared
//! bandwidth and stamps it with the instant it reaches the far side, a writer
//! sleeps until then and writes it. The delay is thus pipelined, as on a real
//! link, not a cap on throughput; a new connection also pays the round trip
//! of its handshake before its first request arrives.
//!
//! Tests use the cut and stall points to prove that a large blob download
//! resumes with HTTP Range after its connection dies or hangs mid-body; the
//! benchmark measures georeg across 40 ms RTT at 200 Mbit/s.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes read at once: small enough that pacing is smooth at 200 Mbit/s.
const CHUNK: usize = 16 << 10;
/// Chunks in flight per connection and direction: 4 MiB, a TCP window's worth.
const IN_FLIGHT: usize = 256;
/// Downstream bytes after which a copy's bulk is timed ([`WanProxy::bulk`]).
const BULK_FROM: u64 = 1 << 20;
/// How far ahead of its average rate an idle link may send.
const BURST: Duration = Duration::from_millis(2);

/// The emulated link's properties, the same in each direction.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Added to every byte's trip: the round trip takes twice this.
    pub one_way_delay: Duration,
    /// The capacity of each direction, shared by all connections; `None` is unlimited.
    pub bytes_per_second: Option<u64>,
}

impl Link {
    /// Loopback as it is: no delay, no limit (cuts and stalls still work).
    pub fn lan() -> Link {
        Link { one_way_delay: Duration::ZERO, bytes_per_second: None }
    }

    /// A link with round trip `rtt` carrying `bits_per_second` each way.
    pub fn wan(rtt: Duration, bits_per_second: u64) -> Link {
        Link { one_way_delay: rtt / 2, bytes_per_second: Some(bits_per_second / 8) }
    }
}

/// The proxy; dropping it closes every connection through it.
pub struct WanProxy {
    /// `http://127.0.0.1:PORT`, to use in place of the upstream registry's URL.
    pub url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Fault {
    Cut,
    Stall,
}

/// Client to upstream (`Up`, index 0) or upstream to client (`Down`, index 1).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Up,
    Down,
}

/// What the proxy's threads share.
struct Shared {
    link: Link,
    upstream: SocketAddr,
    stop: AtomicBool,
    /// Bytes forwarded, per direction, counted as they enter the link.
    bytes: [AtomicU64; 2],
    /// Per direction, the instant the link has sent all it was given: a
    /// token bucket kept as a time, shared by every connection.
    free_at: [Mutex<Instant>; 2],
    /// Pending cut and stall points; downstream bytes are counted under this lock.
    points: Mutex<Vec<(u64, Fault)>>,
    cuts: AtomicUsize,
    stalls: AtomicUsize,
    conns: Mutex<Vec<Weak<Conn>>>,
    /// When the link finished sending the downstream megabyte that
    /// followed the first, and the last downstream byte: the bulk of a
    /// copy, after its first requests.
    bulk: Mutex<(Option<Instant>, Option<Instant>)>,
}

/// One proxied connection; its sockets close when its four threads are done.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    opened: Instant,
    stalled: AtomicBool,
}

/// A chunk and when it reaches the far side, or a fault to apply there.
enum Msg {
    Data(Instant, Vec<u8>, usize),
    Fault(Fault),
}

impl WanProxy {
    /// Listens on 127.0.0.1:0, forwarding every accepted connection to `upstream` ("host:port").
    pub fn start(upstream: &str, link: Link) -> WanProxy {
        assert_ne!(link.bytes_per_second, Some(0), "a link needs some capacity");
        let upstream = upstream.to_socket_addrs().ok().and_then(|mut a| a.next());
        let upstream = upstream.unwrap_or_else(|| panic!("cannot resolve the upstream address"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the WAN proxy");
        let addr = listener.local_addr().expect("the WAN proxy's address");
        let now = Instant::now();
        let shared = Arc::new(Shared {
            link,
            upstream,
            stop: AtomicBool::new(false),
            bytes: Default::default(),
            free_at: [Mutex::new(now), Mutex::new(now)],
            points: Mutex::default(),
            cuts: AtomicUsize::new(0),
            stalls: AtomicUsize::new(0),
            conns: Mutex::default(),
            bulk: Mutex::default(),
        });
        let sh = shared.clone();
        let accept = spawn("wan-accept", move || {
            for client in listener.incoming() {
                if sh.stop.load(SeqCst) {
                    return;
                }
                match client {
                    Ok(client) => {
                        let (sh, opened) = (sh.clone(), Instant::now());
                        spawn("wan-connect", move || serve(&sh, client, opened));
                    }
                    // Out of file descriptors, say: wait rather than spin.
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        WanProxy { url: format!("http://{addr}"), addr, shared, accept: Some(accept) }
    }

    /// host:port of the proxy (for replacing a registry's address in a config file).
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Adds a cut point: when the total bytes forwarded upstream->client
    /// (all connections together, counted since start) reaches `n`, the
    /// connection carrying that byte is shut down right there, both sockets,
    /// so the client sees its body end early. Fires once; a point already
    /// passed fires on the next downstream chunk.
    pub fn cut_at(&self, n: u64) {
        lock(&self.shared.points).push((n, Fault::Cut));
    }

    /// Adds a stall point, counted as for [`cut_at`](Self::cut_at): the
    /// connection carrying byte `n` forwards nothing more either way but stays
    /// open until its client closes it (or the proxy is dropped). Fires once;
    /// other connections are unaffected.
    pub fn stall_at(&self, n: u64) {
        lock(&self.shared.points).push((n, Fault::Stall));
    }

    /// Bytes forwarded upstream->client so far, all connections together.
    pub fn downstream_bytes(&self) -> u64 {
        self.shared.bytes[Dir::Down as usize].load(SeqCst)
    }

    /// Bytes forwarded client->upstream so far, all connections together.
    pub fn upstream_bytes(&self) -> u64 {
        self.shared.bytes[Dir::Up as usize].load(SeqCst)
    }

    /// The downstream bytes past the first megabyte, and how long the link
    /// took to send them: the bulk of a copy, its first requests' round
    /// trips left out. (The benchmark's; no test times the link.)
    #[allow(dead_code)]
    pub fn bulk(&self) -> Option<(u64, Duration)> {
        let (first, last) = *lock(&self.shared.bulk);
        Some((self.downstream_bytes().checked_sub(BULK_FROM)?, last?.checked_duration_since(first?)?))
    }

    /// Cut points fired so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(SeqCst)
    }

    /// Stall points fired so far.
    pub fn stalls(&self) -> usize {
        self.shared.stalls.load(SeqCst)
    }
}

impl Drop for WanProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        // Wake the accept loop; join it only if the wake-up got through.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        for conn in lock(&self.shared.conns).drain(..).filter_map(|c| c.upgrade()) {
            conn.close();
        }
        if let Some(accept) = self.accept.take().filter(|_| woke) {
            let _ = accept.join();
        }
    }
}

/// Connects one client upstream and starts its four threads: a reader and a
/// writer per direction. None of them is joined: closing the sockets ends them.
fn serve(sh: &Arc<Shared>, client: TcpStream, opened: Instant) {
    let Ok(upstream) = TcpStream::connect_timeout(&sh.upstream, Duration::from_secs(5)) else { return };
    // Chunks must leave when the link says, not when Nagle does.
    let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
    let conn = Arc::new(Conn { client, upstream, opened, stalled: AtomicBool::new(false) });
    {
        let mut conns = lock(&sh.conns);
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&conn));
        if sh.stop.load(SeqCst) {
            conn.close(); // dropped while connecting: the threads below end at once
        }
    }
    for (d, name) in [(Dir::Up, "wan-up"), (Dir::Down, "wan-down")] {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (spare_tx, spare_rx) = channel();
        let (sh2, conn2) = (sh.clone(), conn.clone());
        spawn(name, move || write_loop(&sh2, &conn2, d, rx, spare_tx));
        let (sh2, conn2) = (sh.clone(), conn.clone());
        spawn(name, move || read_loop(&sh2, &conn2, d, tx, spare_rx));
    }
}

/// Reads one direction, counts and paces it, and hands it to the writer.
fn read_loop(sh: &Shared, conn: &Conn, d: Dir, tx: SyncSender<Msg>, spare: Receiver<Vec<u8>>) {
    let (mut from, _) = conn.ends(d);
    // A real connection's handshake costs a round trip before the client
    // can send its first byte: upstream hears nothing before 1.5 RTT.
    let not_before = conn.opened + if d == Dir::Up { 2 * sh.link.one_way_delay } else { Duration::ZERO };
    loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return conn.close(),
        };
        if conn.stalled.load(SeqCst) {
            continue; // read only to notice the client closing
        }
        let (len, fault) = sh.count(d, n);
        if len > 0 {
            let sent = sh.pace(d, len);
            if d == Dir::Down {
                sh.mark_bulk(sent);
            }
            sleep_until(sent);
            if tx.send(Msg::Data(sent.max(not_before) + sh.link.one_way_delay, buf, len)).is_err() {
                return;
            }
        }
        if let Some(fault) = fault {
            let _ = tx.send(Msg::Fault(fault));
            return;
        }
    }
    // End of stream: the writer passes the half-close on when `tx` drops,
    // but a stalled connection passes nothing on, so it ends here whole.
    if conn.stalled.load(SeqCst) {
        conn.close();
    }
}

/// Delivers one direction's chunks when they are due, and applies faults.
fn write_loop(sh: &Shared, conn: &Conn, d: Dir, rx: Receiver<Msg>, spare: Sender<Vec<u8>>) {
    let (_, mut to) = conn.ends(d);
    for msg in rx {
        match msg {
            Msg::Data(at, buf, len) => {
                sleep_until(at);
                if conn.stalled.load(SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..len]).is_err() {
                    return conn.close();
                }
                let _ = spare.send(buf);
            }
            Msg::Fault(Fault::Cut) => {
                sh.cuts.fetch_add(1, SeqCst);
                return conn.close();
            }
            Msg::Fault(Fault::Stall) => {
                conn.stalled.store(true, SeqCst);
                sh.stalls.fetch_add(1, SeqCst);
                return;
            }
        }
    }
    if !conn.stalled.load(SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}

impl Shared {
    /// Counts `n` bytes read in direction `d`: how many of them to forward,
    /// and the fault that fires right after them, if any.
    fn count(&self, d: Dir, n: usize) -> (usize, Option<Fault>) {
        let bytes = &self.bytes[d as usize];
        if d == Dir::Up {
            bytes.fetch_add(n as u64, SeqCst);
            return (n, None);
        }
        let mut points = lock(&self.points);
        let start = bytes.load(SeqCst);
        let end = start + n as u64;
        let hit = (0..points.len()).filter(|&i| points[i].0 <= end).min_by_key(|&i| points[i].0);
        let (len, fault) = match hit {
            Some(i) => {
                let (at, fault) = points.swap_remove(i);
                (at.saturating_sub(start) as usize, Some(fault))
            }
            None => (n, None),
        };
        bytes.fetch_add(len as u64, SeqCst);
        (len, fault)
    }

    /// Notes when downstream bytes were sent, once past the first megabyte.
    fn mark_bulk(&self, sent: Instant) {
        let mut bulk = lock(&self.bulk);
        if bulk.0.is_none() && self.bytes[Dir::Down as usize].load(SeqCst) >= BULK_FROM {
            bulk.0 = Some(sent);
        }
        bulk.1 = Some(bulk.1.map_or(sent, |last| last.max(sent)));
    }

    /// Reserves the link's capacity for `len` bytes in direction `d`:
    /// returns the instant their last byte is sent.
    fn pace(&self, d: Dir, len: usize) -> Instant {
        let now = Instant::now();
        let Some(rate) = self.link.bytes_per_second else { return now };
        let mut free_at = lock(&self.free_at[d as usize]);
        let start = (*free_at).max(now.checked_sub(BURST).unwrap_or(now));
        *free_at = start + Duration::from_nanos(len as u64 * 1_000_000_000 / rate);
        // Burst credit speeds a chunk up to its turn, never into the past.
        (*free_at).max(now)
    }
}

impl Conn {
    /// The sockets a direction reads from and writes to.
    fn ends(&self, d: Dir) -> (&TcpStream, &TcpStream) {
        match d {
            Dir::Up => (&self.client, &self.upstream),
            Dir::Down => (&self.upstream, &self.client),
        }
    }

    /// Shuts both sockets down, which wakes every thread of the connection.
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new().name(name.into()).spawn(f).expect("start a WAN proxy thread")
}

// The proxy's own tests, against a byte source instead of a registry:
// `cargo test --test integration wan`.
#[cfg(test)]
#[path = "wan_tests.rs"]
mod tests;
