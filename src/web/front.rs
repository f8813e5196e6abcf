//! The front: georeg's own listening socket, plain http or, with
//! `tls.cert_file` and `tls.key_file`, https. It reads each request within
//! limits and deadlines (`web::wire`) and passes only complete, bounded
//! requests to the HTTP server threads, which listen on a Unix socket
//! beside the state file (mode 0600). So a slow or hostile client holds a
//! connection thread of its own, never one of the server's threads, and no
//! client's claim sizes an allocation.
//!
//! Connections are capped per client address and in all, so that one
//! address cannot starve the others. TLS is ended here with rustls (the
//! same rustls 0.23 as the client side; tiny_http's own TLS would bring an
//! older one).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::server::body_limit;
use super::wire::{self, Refusal, Timed};
use crate::config::Config;
use crate::error::Result;
use crate::shutdown::Shutdown;

/// Connections open at once from one client address; more are refused.
pub const MAX_PER_ADDRESS: usize = 32;
/// Connections open at once in all.
pub const MAX_CONNECTIONS: usize = 512;
/// A request head must arrive within this, once its first byte has.
pub const HEAD_TIME: Duration = Duration::from_secs(10);
/// A request body must arrive within this, once its head has.
pub const BODY_TIME: Duration = Duration::from_secs(30);
/// A kept-alive connection waits this long for its next request.
pub const IDLE_TIME: Duration = Duration::from_secs(60);
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIME: Duration = Duration::from_secs(10);
/// Writing an answer to a client that does not read gives up after this.
const WRITE_TIME: Duration = Duration::from_secs(30);
/// The server's answer to one request (the event log long-polls up to 60 s).
const ANSWER_TIME: Duration = Duration::from_secs(120);

/// What the HTTP threads serve, and the front that feeds them.
pub struct Listener {
    pub server: tiny_http::Server,
    pub front: Front,
}

impl Listener {
    pub fn scheme(&self) -> &'static str {
        if self.front.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Binds `listen`: https when `[tls]` names a certificate, else http.
pub fn bind(config: &Config) -> Result<Listener> {
    let listen = &config.listen;
    let tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::server_config(cert, key).map_err(|(key, why)| config.bad(key, why))?)
        }
        _ => None,
    };
    let tcp = TcpListener::bind(listen).map_err(|e| config.bad("listen", format!("cannot listen on {listen}: {e}")))?;
    let socket = socket_path(&config.state_file);
    let server = bind_unix(&socket).map_err(|why| config.bad("state_file", why))?;
    Ok(Listener { server, front: Front { tcp, tls, socket } })
}

/// The Unix socket the HTTP threads listen on, behind the front.
pub fn socket_path(state_file: &Path) -> PathBuf {
    let mut path = state_file.as_os_str().to_owned();
    path.push(".http.sock");
    PathBuf::from(path)
}

fn bind_unix(path: &Path) -> std::result::Result<tiny_http::Server, String> {
    // A socket left behind by a crash makes bind fail; it is georeg's own
    // (the state file's lock is held, so no other georeg uses it).
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot replace {}: {e}", path.display())),
    }
    let server =
        tiny_http::Server::http_unix(path).map_err(|e| format!("cannot create socket {}: {e}", path.display()))?;
    // Only georeg's own user may reach the server around the front.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict socket {}: {e}", path.display()))?;
    Ok(server)
}

/// Open connections, by client address and in all.
#[derive(Default)]
struct Counts {
    by_address: Mutex<HashMap<IpAddr, usize>>,
    all: AtomicUsize,
}

impl Counts {
    /// Counts a new connection in, unless a cap is reached.
    fn admit(&self, ip: IpAddr) -> std::result::Result<(), String> {
        let mut by = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by.entry(ip).or_insert(0);
        if *mine >= MAX_PER_ADDRESS {
            return Err(format!("{MAX_PER_ADDRESS} connections from {ip} are open already"));
        }
        if self.all.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            return Err(format!("{MAX_CONNECTIONS} connections are open already"));
        }
        *mine += 1;
        self.all.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn leave(&self, ip: IpAddr) {
        let mut by = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                by.remove(&ip);
            }
        }
        self.all.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The listening socket, and what each connection is relayed to.
pub struct Front {
    tcp: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    socket: PathBuf,
}

impl Front {
    /// Accepts connections until shutdown; each is served on a thread of
    /// its own, which ends with its connection. Accepting blocks (a
    /// connection is taken the moment it arrives: the registry opens one
    /// per notification); [`Front::wake`] unblocks it at shutdown.
    pub fn run(&self, shutdown: &Shutdown) {
        let counts = Arc::new(Counts::default());
        while !shutdown.requested() {
            match self.tcp.accept() {
                Ok(_) if shutdown.requested() => break,
                Ok((client, peer)) => self.start(client, peer, &counts),
                Err(e) => {
                    log::warn!("accepting a connection: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Unblocks [`Front::run`] after a stop request, by connecting to it.
    pub fn wake(&self) {
        if let Ok(mut addr) = self.tcp.local_addr() {
            if addr.ip().is_unspecified() {
                let loopback: IpAddr =
                    if addr.is_ipv4() { [127, 0, 0, 1].into() } else { [0u16, 0, 0, 0, 0, 0, 0, 1].into() };
                addr.set_ip(loopback);
            }
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }

    fn start(&self, client: TcpStream, peer: SocketAddr, counts: &Arc<Counts>) {
        if let Err(why) = counts.admit(peer.ip()) {
            log::warn!("refusing a connection from {peer}: {why}");
            let _ = client.set_nonblocking(false).and_then(|()| client.set_write_timeout(Some(Duration::from_secs(1))));
            let _ = wire::refuse(&mut &client, 503, &format!("too many connections: {why}"));
            return;
        }
        let (tls, socket, mine) = (self.tls.clone(), self.socket.clone(), counts.clone());
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            log::debug!("connection from {peer}");
            if let Err(e) = serve_connection(client, peer, tls, &socket) {
                log::debug!("connection from {peer} ended: {e}");
            }
            mine.leave(peer.ip());
        });
        if let Err(e) = spawned {
            counts.leave(peer.ip());
            log::error!("cannot start a thread for the connection from {peer}: {e}");
        }
    }
}

/// One client connection, plain or TLS, from accept to close.
fn serve_connection(
    client: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    socket: &Path,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    client.set_write_timeout(Some(WRITE_TIME))?;
    match tls {
        None => requests(client, peer, socket),
        Some(config) => {
            let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
            let mut sock = client;
            let deadline = Instant::now() + HANDSHAKE_TIME;
            while conn.is_handshaking() {
                sock.set_read_deadline(deadline.saturating_duration_since(Instant::now()))?;
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake too slow"));
                }
                conn.complete_io(&mut sock)?;
            }
            requests(StreamOwned::new(conn, sock), peer, socket)
        }
    }
}

/// Reads requests from the client one after another and relays each to
/// the server, until either side closes or a request is refused.
fn requests<S: Timed>(mut client: S, peer: SocketAddr, socket: &Path) -> io::Result<()> {
    let result = each_request(&mut client, peer, socket);
    client.close();
    result
}

fn each_request<S: Timed>(client: &mut S, peer: SocketAddr, socket: &Path) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let refused = |client: &mut S, refusal: Refusal| match refusal {
            Refusal::Gone => Ok(()),
            Refusal::Answer { status, message } => {
                log::debug!("refusing a request from {peer}: {status} {message}");
                wire::refuse(client, status, &message)
            }
        };
        let head = match wire::read_head(client, &mut buf, Instant::now() + IDLE_TIME, HEAD_TIME) {
            Ok(head) => head,
            Err(refusal) => return refused(client, refusal),
        };
        let framing = match wire::framing(&head) {
            Ok(f) => f,
            Err(refusal) => return refused(client, refusal),
        };
        let limit = body_limit(&head.method, head.path());
        if matches!(framing, Some(wire::Framing::Length(n)) if n > limit) {
            // Answered without reading (or draining) a byte of the body.
            let message = format!("the body is larger than this endpoint's limit of {limit} bytes");
            return refused(client, Refusal::Answer { status: 413, message });
        }
        if framing.is_some() && head.header("Expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = match wire::read_body(client, &mut buf, framing, limit, Instant::now() + BODY_TIME) {
            Ok(body) => body,
            Err(refusal) => return refused(client, refusal),
        };
        let keep = head.keep_alive();
        if let Err(e) = relay(socket, &head, &body, peer, client) {
            log::warn!("cannot pass a request from {peer} to the server: {e}");
            let _ = wire::refuse(client, 503, "the server could not answer; try again");
            return Err(e);
        }
        if !keep {
            return Ok(());
        }
    }
}

/// Passes one request to the server and its answer back, over a
/// connection to the server's socket of its own, closed after the answer.
///
/// Never kept for the client's next request: tiny_http serves each of its
/// connections on a task of its pool for as long as the connection lasts,
/// and a connection accepted while the pool's idle thread is being woken
/// for another is queued until some task ends. With connections kept open
/// by idle clients, such a request waited as long as they idled (seen: 8 s
/// and more, when several clients connected at the same moment).
fn relay<S: Timed>(socket: &Path, head: &wire::Head, body: &[u8], peer: SocketAddr, client: &mut S) -> io::Result<()> {
    let mut conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(ANSWER_TIME))?;
    conn.set_write_timeout(Some(WRITE_TIME))?;
    wire::write_request(&mut conn, head, body, &peer.to_string())?;
    wire::relay_response(&mut conn, client, head.method == "HEAD")?;
    Ok(())
}
