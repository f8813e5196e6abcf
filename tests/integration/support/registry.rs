//! Real `docker-registry` (distribution 2.8) processes on free loopback
//! ports, with token auth trusting the test key's certificate: the same
//! setup as production.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVICE: &str = "container_registry";
pub const ISSUER: &str = "gitlab-issuer";

pub fn registry_binary() -> PathBuf {
    let path = std::env::var_os("GEOREG_TEST_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
    if !path.exists() {
        panic!(
            "the real registry is needed for these tests and {} does not exist: \
             install it with `apt-get update && apt-get install -y docker-registry` \
             (or point GEOREG_TEST_REGISTRY at a distribution 2.8 binary)",
            path.display()
        );
    }
    path
}

/// A free loopback port for a server to listen on, picked below the
/// kernel's ephemeral range (32768 and up): a port picked there can be
/// taken by any outgoing connection before the server binds it, which
/// under a parallel test run happens.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + ((seed + n * 6151) % 22_700) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 10000 and 32700 after 1000 tries")
}

/// Where the registry should send notifications.
pub struct Notify {
    pub url: String,
    pub secret: String,
}

/// The registry's `notifications` block for `n`.
fn notifications_block(n: &Notify) -> String {
    format!(
        "notifications:
  endpoints:
    - name: geo_event
      url: {}
      headers:
        Authorization: [{}]
      timeout: 500ms
      threshold: 5
      backoff: 1s
",
        n.url, n.secret
    )
}

/// How a test registry authenticates its clients.
pub enum Auth<'a> {
    /// Token auth trusting the key of `cert`, sending clients to `realm`.
    Token { cert: &'a Path, realm: String },
    /// HTTP Basic against an htpasswd file (bcrypt, as distribution wants).
    Htpasswd(&'a Path),
    /// No auth section: anyone reads and writes.
    Open,
}

impl Auth<'_> {
    fn yaml(&self) -> String {
        match self {
            Auth::Token { cert, realm } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                 rootcertbundle: {}\n",
                cert.display()
            ),
            Auth::Htpasswd(file) => {
                format!("auth:\n  htpasswd:\n    realm: georeg-test\n    path: {}\n", file.display())
            }
            Auth::Open => String::new(),
        }
    }
}

/// Writes an htpasswd file of `users` (name, password) with bcrypt, as
/// `htpasswd -Bbn` from apache2-utils makes it.
pub fn htpasswd(path: &Path, users: &[(&str, &str)]) {
    let mut text = String::new();
    for (user, password) in users {
        let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().unwrap_or_else(|e| {
            panic!("htpasswd is needed by the Basic auth tests ({e}): apt-get install -y apache2-utils")
        });
        assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
        text.push_str(String::from_utf8_lossy(&out.stdout).trim());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// A registry serving https: its certificate and key, and the CA that
/// signed them (also what the registry trusts for its own notifications).
pub struct Https {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub struct Registry {
    pub name: String,
    pub url: String,
    /// The loopback port (the benchmark restarts registries on it).
    #[allow(dead_code)]
    pub port: u16,
    pub root: PathBuf,
    pub log: PathBuf,
    config: PathBuf,
    /// The CA to trust when the registry serves https.
    ca: Option<PathBuf>,
    child: Option<Child>,
}

impl Registry {
    pub fn start(dir: &Path, name: &str, cert: &Path, notify: Option<&Notify>) -> Registry {
        let port = free_port();
        Registry::start_on(dir, name, cert, notify, port)
    }

    pub fn start_on(dir: &Path, name: &str, cert: &Path, notify: Option<&Notify>, port: u16) -> Registry {
        Registry::start_with(dir, name, cert, notify, port, None)
    }

    pub fn start_with(
        dir: &Path,
        name: &str,
        cert: &Path,
        notify: Option<&Notify>,
        port: u16,
        https: Option<&Https>,
    ) -> Registry {
        let auth = Auth::Token { cert, realm: "http://127.0.0.1:1/jwt/auth".into() };
        Registry::start_auth(dir, name, auth, notify, port, https)
    }

    /// A registry authenticating clients as `auth` says.
    pub fn start_auth(
        dir: &Path,
        name: &str,
        auth: Auth<'_>,
        notify: Option<&Notify>,
        port: u16,
        https: Option<&Https>,
    ) -> Registry {
        let root = dir.join(format!("{name}-storage"));
        std::fs::create_dir_all(&root).unwrap();
        let mut yaml = format!(
            "version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
validation:
  manifests:
    urls:
      allow:
        - ^https?://
http:
  addr: 127.0.0.1:{port}
  secret: georeg-test-{name}
{auth}",
            root = root.display(),
            auth = auth.yaml(),
        );
        if let Some(h) = https {
            yaml = yaml.replace(
                &format!("  addr: 127.0.0.1:{port}\n"),
                &format!(
                    "  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
                    h.cert.display(),
                    h.key.display()
                ),
            );
        }
        if let Some(n) = notify {
            yaml.push_str(&notifications_block(n));
        }
        let config = dir.join(format!("{name}-registry.yml"));
        std::fs::write(&config, yaml).unwrap();
        let mut registry = Registry {
            name: name.into(),
            url: format!("{}://127.0.0.1:{port}", if https.is_some() { "https" } else { "http" }),
            port,
            root,
            log: dir.join(format!("{name}-registry.log")),
            config,
            ca: https.map(|h| h.ca.clone()),
            child: None,
        };
        registry.run();
        registry
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut command = Command::new(registry_binary());
        // Go reads extra trust from SSL_CERT_FILE: notifications to an https georeg.
        if let Some(ca) = &self.ca {
            command.env("SSL_CERT_FILE", ca);
        }
        let child = command
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        // Up when /v2/ answers (401: it wants a token).
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent = super::agent(self.ca.as_deref());
        loop {
            match agent.get(&format!("{}/v2/", self.url)).timeout(Duration::from_secs(2)).call() {
                Ok(_) | Err(ureq::Error::Status(_, _)) => return,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!(
                    "registry {} did not come up on {}: {e}; log: {}",
                    self.name,
                    self.url,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Restarts it with `storage.delete.enabled` set to `enabled`.
    pub fn set_deletes(&mut self, enabled: bool) {
        let yaml = std::fs::read_to_string(&self.config).unwrap();
        let (from, to) = if enabled { ("false", "true") } else { ("true", "false") };
        let yaml =
            yaml.replace(&format!("  delete:\n    enabled: {from}\n"), &format!("  delete:\n    enabled: {to}\n"));
        std::fs::write(&self.config, yaml).unwrap();
        self.restart();
    }

    /// Restarts it with `compatibility.schema1.enabled` set to `enabled`.
    pub fn set_schema1(&mut self, enabled: bool) {
        let yaml = std::fs::read_to_string(&self.config).unwrap();
        let yaml = match yaml.split_once("compatibility:\n") {
            Some((before, _)) => before.to_string(),
            None => yaml,
        };
        std::fs::write(&self.config, format!("{yaml}compatibility:\n  schema1:\n    enabled: {enabled}\n")).unwrap();
        self.restart();
    }

    /// Restarts it notifying `notify` (None: notifying nobody), as an
    /// operator edits the notifications block of its config.yml.
    pub fn set_notify(&mut self, notify: Option<&Notify>) {
        let yaml = std::fs::read_to_string(&self.config).unwrap();
        let mut yaml = match yaml.split_once("notifications:\n") {
            Some((before, _)) => before.to_string(),
            None => yaml,
        };
        if let Some(n) = notify {
            yaml.push_str(&notifications_block(n));
        }
        std::fs::write(&self.config, yaml).unwrap();
        self.restart();
    }

    /// Requests in its access log (one line each: `"GET /v2/... HTTP/1.1"
    /// 200 ... "user agent"`) whose line contains every one of `words`.
    pub fn requests_matching(&self, words: &[&str]) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(" HTTP/1.1\" ")).filter(|l| words.iter().all(|w| l.contains(w))).count()
    }

    /// The file holding a blob in the filesystem storage driver.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
