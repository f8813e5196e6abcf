//! Binding georeg's own server: plain http on `listen`, or https when
//! `tls.cert_file` and `tls.key_file` are set.
//!
//! tiny_http 0.12 can serve TLS itself (feature `ssl-rustls`), but only with
//! rustls 0.20: a second TLS stack and a second crypto provider (ring 0.16)
//! in the binary, from a rustls line that no longer gets fixes
//! (RUSTSEC-2024-0336: a peer can make `complete_io` loop forever, pinning a
//! thread per connection; tiny_http reads through it). So georeg terminates
//! TLS itself with the rustls 0.23 it already uses for its client, and
//! relays the plain bytes to tiny_http listening on a Unix socket beside the
//! state file (mode 0600). Routing, handlers and shutdown stay exactly as
//! over http.
//!
//! Each connection gets two named threads: `https-in` reads TLS records
//! from the client, decrypts them and writes the plaintext to tiny_http;
//! `https-out` reads tiny_http's answers and encrypts them back. They share
//! the rustls connection under a mutex that is never held across a blocking
//! read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};

use crate::config::Config;
use crate::error::Result;
use crate::shutdown::Shutdown as Stop;

/// Connections relayed at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection silent this long is closed. Secondaries long-poll for
/// seconds, and their HTTP client reconnects when a pooled connection went.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const BUFFER: usize = 16 * 1024;

/// What the HTTP threads serve, and the TLS front when there is one.
pub struct Listener {
    pub server: tiny_http::Server,
    pub front: Option<Front>,
}

impl Listener {
    pub fn scheme(&self) -> &'static str {
        if self.front.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Binds `listen`: https when `[tls]` names a certificate, else http.
pub fn bind(config: &Config) -> Result<Listener> {
    let listen = &config.listen;
    let cannot = |e: &dyn std::fmt::Display| config.bad("listen", format!("cannot listen on {listen}: {e}"));
    let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) else {
        let server = tiny_http::Server::http(listen).map_err(|e| cannot(&e))?;
        return Ok(Listener { server, front: None });
    };
    let tls = crate::tls::server_config(cert, key).map_err(|(key, why)| config.bad(key, why))?;
    let tcp = TcpListener::bind(listen).map_err(|e| cannot(&e))?;
    let socket = socket_path(&config.state_file);
    let server = bind_unix(&socket).map_err(|why| config.bad("state_file", why))?;
    Ok(Listener { server, front: Some(Front { tcp, tls, socket }) })
}

/// The Unix socket tiny_http listens on behind the TLS front.
pub fn socket_path(state_file: &Path) -> PathBuf {
    let mut path = state_file.as_os_str().to_owned();
    path.push(".https.sock");
    PathBuf::from(path)
}

fn bind_unix(path: &Path) -> std::result::Result<tiny_http::Server, String> {
    // A socket left behind by a crash makes bind fail; it is georeg's own.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot replace {}: {e}", path.display())),
    }
    let server =
        tiny_http::Server::http_unix(path).map_err(|e| format!("cannot create socket {}: {e}", path.display()))?;
    // Only georeg's own user may bypass TLS. (The state directory is not
    // open to others either: the packaged service makes it 0750.)
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict socket {}: {e}", path.display()))?;
    Ok(server)
}

/// The TLS front: accepts on `listen`, relays each connection to tiny_http.
pub struct Front {
    tcp: TcpListener,
    tls: Arc<ServerConfig>,
    socket: PathBuf,
}

impl Front {
    /// Accepts connections until shutdown; each is relayed on threads
    /// of its own, which end with their connection.
    pub fn run(&self, shutdown: &Stop) {
        // Non-blocking so that the quit flag is seen within 50 ms.
        if let Err(e) = self.tcp.set_nonblocking(true) {
            log::error!("https: cannot poll the listening socket: {e}");
            return;
        }
        let active = Arc::new(AtomicUsize::new(0));
        while !shutdown.requested() {
            match self.tcp.accept() {
                Ok((client, peer)) => self.start(client, peer, &active),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    log::warn!("https: accepting a connection: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    fn start(&self, client: TcpStream, peer: SocketAddr, active: &Arc<AtomicUsize>) {
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("https: closing a connection from {peer}: {MAX_CONNECTIONS} are open already");
            return;
        }
        let (tls, socket, done) = (self.tls.clone(), self.socket.clone(), active.clone());
        let spawned = thread::Builder::new().name("https-in".into()).spawn(move || {
            log::debug!("https: connection from {peer}");
            if let Err(e) = relay(client, tls, &socket) {
                log::debug!("https: connection from {peer} ended: {e}");
            }
            done.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            log::error!("https: cannot start a thread for {peer}: {e}");
        }
    }
}

fn lock(conn: &Mutex<ServerConnection>) -> MutexGuard<'_, ServerConnection> {
    // A panic under the lock leaves at worst one broken connection.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection, from handshake to close.
fn relay(client: TcpStream, tls: Arc<ServerConfig>, socket: &Path) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    client.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut conn = ServerConnection::new(tls).map_err(io::Error::other)?;
    let mut io = &client;
    while conn.is_handshaking() {
        conn.complete_io(&mut io)?;
    }
    client.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let backend = UnixStream::connect(socket)?;
    let conn = Mutex::new(conn);
    thread::scope(|s| {
        let out =
            thread::Builder::new().name("https-out".into()).spawn_scoped(s, || answers(&conn, &client, &backend))?;
        let result = requests(&conn, &client, &backend);
        match &result {
            // The client is done: tiny_http finishes any answer, then closes.
            Ok(()) => {
                let _ = backend.shutdown(Shutdown::Write);
            }
            Err(_) => {
                let _ = backend.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
            }
        }
        let out = out.join().unwrap_or_else(|_| Err(io::Error::other("https-out panicked")));
        let _ = client.shutdown(Shutdown::Both);
        result.and(out)
    })
}

/// Client -> tiny_http: decrypts what the client sends and passes it on,
/// until the client closes (Ok) or fails.
fn requests(conn: &Mutex<ServerConnection>, mut client: &TcpStream, mut backend: &UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    let mut plain = Vec::new();
    // Records read during the handshake may already hold a request.
    let mut n = 0;
    loop {
        plain.clear();
        let closed = {
            let mut c = lock(conn);
            let mut records = &buf[..n];
            let closed = loop {
                if !records.is_empty() {
                    c.read_tls(&mut records)?;
                }
                let state = match c.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        // Send the alert rustls queued, so the client learns why.
                        let _ = c.write_tls(&mut client);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                };
                let ready = state.plaintext_bytes_to_read();
                if ready > 0 {
                    let start = plain.len();
                    plain.resize(start + ready, 0);
                    c.reader().read_exact(&mut plain[start..])?;
                }
                if records.is_empty() {
                    break state.peer_has_closed();
                }
            };
            // Alerts and key updates rustls wants to answer.
            while c.wants_write() {
                c.write_tls(&mut client)?;
            }
            closed
        };
        if !plain.is_empty() {
            backend.write_all(&plain)?;
        }
        if closed {
            return Ok(());
        }
        n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// tiny_http -> client: encrypts tiny_http's answers, and closes the TLS
/// session when tiny_http closes the connection.
fn answers(conn: &Mutex<ServerConnection>, mut client: &TcpStream, mut backend: &UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = backend.read(&mut buf)?;
        let mut c = lock(conn);
        if n == 0 {
            c.send_close_notify();
            while c.wants_write() {
                c.write_tls(&mut client)?;
            }
            drop(c);
            // Nothing more can be answered: let the reading side end too.
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let written = c.writer().write(rest)?;
            if written == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "TLS send buffer full"));
            }
            rest = &rest[written..];
            while c.wants_write() {
                c.write_tls(&mut client)?;
            }
        }
    }
}
