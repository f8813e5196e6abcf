//! Shared helpers: a temp dir per test, the shared test key pair, two real
//! registries (primary and secondary) and the real `georeg` binary.

mod credentials;
pub mod daemon;
pub mod hostile_registry;
pub mod oci;
pub mod other_registry;
pub mod referrers;
pub mod registry;
pub mod shapes;
pub mod token_server;
pub mod wan;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::{Duration, Instant};

#[allow(unused_imports)] // the benchmark includes this module too, and uses fewer
pub use credentials::{agent, client_tls, keys, slow_connection, test_ca};
pub use daemon::Daemon;
pub use oci::Api;
pub use registry::{Https, Notify, Registry};

/// The notification secret the test registries send.
pub const SECRET: &str = "GeoSecret1";

/// How the primary registry's notifications reach the secondary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// No notifications: `georeg sync` by hand.
    Manual,
    /// The primary registry notifies the secondary georeg directly.
    Direct,
    /// The primary registry notifies a primary georeg; the secondary follows its log.
    Follow,
}

/// A directory removed when the test passes and kept (and named) when it fails.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("georeg-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The outcome of one `georeg` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line and the configuration it ran with, for failures.
    pub ran: String,
}

impl Run {
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            ran: String::new(),
        }
    }

    /// Names what ran (`command` with its arguments, and the text of the
    /// config it read), so that a failure shows how to run it again.
    pub fn ran(mut self, command: &Command, config: Option<&Path>) -> Run {
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        self.ran = format!("{} {}", command.get_program().to_string_lossy(), args.join(" "));
        if let Some(text) = config.and_then(|c| std::fs::read_to_string(c).ok()) {
            self.ran
                .push_str(&format!("\nwith {}:\n{text}", config.map(|c| c.display().to_string()).unwrap_or_default()));
        }
        self
    }

    pub fn assert_ok(&self) -> &Run {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Asserts the exit code, showing everything about the run otherwise.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "georeg exited {}\nran: {}\nstdout:\n{}\nstderr:\n{}", self.code, self.ran, self.stdout, self.stderr)
    }
}

pub fn georeg_bin() -> &'static str {
    env!("CARGO_BIN_EXE_georeg")
}

/// A primary and a secondary registry, the test's API to each, and a
/// secondary georeg configuration pointing at them.
pub struct Env {
    pub primary: Registry,
    pub secondary: Registry,
    pub p: Api,
    pub s: Api,
    pub config: PathBuf,
    pub mode: Mode,
    /// The secondary georeg's port.
    pub port: u16,
    /// The primary georeg's port (Follow mode).
    pub primary_port: u16,
    /// The test CA and server certificate when the primary side (registry
    /// and, in Follow mode, georeg) serves https.
    pub https: Option<Https>,
    /// Running daemons, stopped (SIGKILL) when the test ends.
    pub daemons: std::cell::RefCell<Vec<Daemon>>,
    /// The token realm of registries that take tokens from one.
    pub realm: Option<token_server::TokenServer>,
    /// The secondary georeg writes to when it is not distribution
    /// (`Env::with_other_secondary`); `secondary` then stands idle.
    pub other: Option<other_registry::OtherRegistry>,
    // Last, so the registries stop before their files go.
    pub dir: TestDir,
}

impl Env {
    pub fn new(name: &str) -> Env {
        Env::with_mode(name, Mode::Manual)
    }

    pub fn with_mode(name: &str, mode: Mode) -> Env {
        Env::build(name, mode, false)
    }

    /// The primary registry (and the primary georeg in Follow mode) serve
    /// https with a certificate of a test CA; the secondary side stays http.
    /// Configurations trust the CA only where a test says so.
    pub fn with_https(name: &str, mode: Mode) -> Env {
        Env::build(name, mode, true)
    }

    fn build(name: &str, mode: Mode, https: bool) -> Env {
        let dir = TestDir::new(name);
        let https = https.then(|| test_ca(&dir.0));
        let primary_scheme = if https.is_some() && mode == Mode::Follow { "https" } else { "http" };
        let k = keys();
        let port = registry::free_port();
        let primary_port = registry::free_port();
        let notify = match mode {
            Mode::Manual => None,
            Mode::Direct => Some(port),
            Mode::Follow => Some(primary_port),
        }
        .map(|p| Notify {
            url: format!(
                "{}://127.0.0.1:{p}/api/v4/container_registry_event/events",
                if p == primary_port { primary_scheme } else { "http" }
            ),
            secret: SECRET.into(),
        });
        let primary =
            Registry::start_with(&dir.0, "primary", &k.cert, notify.as_ref(), registry::free_port(), https.as_ref());
        let secondary = Registry::start(&dir.0, "secondary", &k.cert, None);
        let mut p = Api::new(&primary.url, k.signer.clone());
        if let Some(h) = &https {
            p = p.trusting(&h.ca);
        }
        let s = Api::new(&secondary.url, k.signer.clone());
        let config = dir.0.join("georeg.toml");
        let env = Env {
            primary,
            secondary,
            p,
            s,
            config,
            mode,
            port,
            primary_port,
            https,
            daemons: Default::default(),
            realm: None,
            other: None,
            dir,
        };
        env.write_config(&k.pkcs1, "");
        if mode == Mode::Follow {
            env.write_primary_config();
        }
        env
    }

    /// Where the primary registry sends its notifications in this mode.
    pub fn notify_target(&self) -> Option<Notify> {
        let port = match self.mode {
            Mode::Manual => return None,
            Mode::Direct => self.port,
            Mode::Follow => self.primary_port,
        };
        Some(Notify {
            url: format!("http://127.0.0.1:{port}/api/v4/container_registry_event/events"),
            secret: SECRET.into(),
        })
    }

    pub fn primary_config(&self) -> PathBuf {
        self.path("georeg-primary.toml")
    }

    fn write_primary_config(&self) {
        let text = format!(
            r#"node_name = "primary-test"
role = "primary"
listen = "127.0.0.1:{port}"
state_file = "primary-state.sqlite3"

[registry]
url = "{url}"
key_file = "{key}"

[notifications]
secret = "{SECRET}"
{tls}"#,
            port = self.primary_port,
            url = self.primary.url,
            key = keys().pkcs1.display(),
            tls = match &self.https {
                Some(h) => format!(
                    "\n[tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    h.ca.display(),
                    h.cert.display(),
                    h.key.display()
                ),
                None => String::new(),
            },
        );
        std::fs::write(self.primary_config(), text).unwrap();
    }

    /// Starts the secondary georeg daemon (and, in Follow mode, the primary one first).
    pub fn start_daemons(&self) {
        if self.mode == Mode::Follow && !self.daemons.borrow().iter().any(|d| d.name == "primary") {
            self.start_primary_daemon();
        }
        self.start_secondary_daemon();
    }

    /// Starts the primary georeg daemon (Follow mode).
    pub fn start_primary_daemon(&self) {
        let (url, agent) = (self.primary_node_url(), agent(self.https.as_ref().map(|h| h.ca.as_path())));
        let d = Daemon::start_at(&self.dir.0, "primary", &self.primary_config(), &url, agent);
        self.daemons.borrow_mut().push(d);
    }

    pub fn start_secondary_daemon(&self) {
        let d = Daemon::start(&self.dir.0, "secondary", &self.config, self.port);
        self.daemons.borrow_mut().push(d);
    }

    /// Takes the secondary daemon out of the list, to stop or kill it.
    pub fn take_secondary_daemon(&self) -> Daemon {
        self.take_daemon("secondary")
    }

    /// Takes a daemon (`primary` or `secondary`) out of the list.
    pub fn take_daemon(&self, name: &str) -> Daemon {
        let mut daemons = self.daemons.borrow_mut();
        let i = daemons.iter().position(|d| d.name == name).unwrap_or_else(|| panic!("no {name} daemon running"));
        daemons.remove(i)
    }

    /// The primary georeg's state file (Follow mode).
    pub fn primary_state(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("primary-state.sqlite3")).unwrap()
    }

    /// The primary georeg's URL (Follow mode).
    pub fn primary_node_url(&self) -> String {
        let scheme = if self.https.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.primary_port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Writes the secondary's georeg.toml; `extra` is appended verbatim.
    pub fn write_config(&self, key: &Path, extra: &str) {
        self.write_config_lines(&format!("key_file = \"{}\"\n", key.display()), extra);
    }

    /// Writes the secondary's georeg.toml with `registry` lines (how it
    /// authenticates) in [registry] and `extra` appended to [replication].
    pub fn write_config_lines(&self, registry: &str, extra: &str) {
        std::fs::write(self.path("notification-secret"), format!("{SECRET}\n")).unwrap();
        let text = format!(
            r#"node_name = "secondary-test"
role = "secondary"
listen = "127.0.0.1:{port}"
state_file = "state.sqlite3"

[registry]
url = "{secondary}"
{registry}issuer = "{issuer}"
service = "{service}"

[notifications]
secret_file = "notification-secret"

[replication]
primary_api_url = "{primary}/"
workers = 2
{follow}{extra}"#,
            follow = if self.mode == Mode::Follow {
                format!("primary_node_url = \"{}\"\n", self.primary_node_url())
            } else {
                String::new()
            },
            port = self.port,
            secondary = self.other.as_ref().map(|o| &o.url).unwrap_or(&self.secondary.url),
            primary = self.primary.url,
            issuer = registry::ISSUER,
            service = registry::SERVICE,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Puts a top-level key at the start of the secondary's config.
    pub fn add_top_level(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, format!("{line}\n{text}")).unwrap();
    }

    /// Appends a key to the [replication] table (the config's last table).
    pub fn add_replication(&self, line: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(&format!("\n{line}\n"));
        std::fs::write(&self.config, text).unwrap();
    }

    /// Sends georeg's requests to the primary registry through `url` (a
    /// proxy in front of it) instead.
    pub fn route_primary_through(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let routed = text.replace(&format!("{}/", self.primary.url), &format!("{url}/"));
        assert_ne!(text, routed, "the config names the primary registry");
        std::fs::write(&self.config, routed).unwrap();
    }

    /// The secondary georeg's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn georeg(&self, args: &[&str]) -> Run {
        let mut command = Command::new(georeg_bin());
        command.arg("--config").arg(&self.config).args(args).env("RUST_LOG", "info").stdin(Stdio::null());
        let out = command.output().expect("run georeg");
        Run::of(out).ran(&command, Some(&self.config))
    }

    /// Starts a georeg command without waiting for it; its output goes to
    /// `NAME.out` and `NAME.err` in the test's directory.
    pub fn spawn(&self, name: &str, args: &[&str]) -> std::process::Child {
        let out = std::fs::File::create(self.path(&format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(self.path(&format!("{name}.err"))).unwrap();
        Command::new(georeg_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start georeg")
    }

    /// Repositories left `started`: claimed by a process.
    pub fn started_rows(&self) -> Vec<String> {
        let conn = self.state();
        let mut stmt = conn.prepare("SELECT name FROM repositories WHERE sync_state = 'started'").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Asserts what the user cares about: every tag of the primary exists on
    /// the secondary with the same digest, the secondary has no extra tag,
    /// and each manifest's bytes are identical (for Docker schema 1, which
    /// each registry signs anew with its own key on every read, the signed
    /// payload is).
    pub fn assert_in_sync(&self, repo: &str) {
        let want = self.p.tag_digests(repo);
        let got = self.s.tag_digests(repo);
        assert_eq!(got, want, "tags of {repo}: secondary (left) differs from primary (right)");
        for digest in want.values() {
            let (pb, pt) = self.p.manifest(repo, digest).unwrap();
            let (sb, st) = self.s.manifest(repo, digest).unwrap();
            let payload = |b: &[u8]| georeg::registry::manifest::digested_bytes(b).into_owned();
            assert_eq!(payload(&sb), payload(&pb), "manifest bytes of {repo}@{digest}");
            assert_eq!(st, pt, "content type of {repo}@{digest}");
        }
    }

    /// True when the secondary holds exactly the primary's tags.
    pub fn in_sync(&self, repo: &str) -> bool {
        let want = self.p.tag_digests(repo);
        !want.is_empty() && self.s.tag_digests(repo) == want
    }

    /// Waits (bounded) until the repository is in sync, then checks it fully.
    pub fn wait_in_sync(&self, repo: &str, timeout: Duration) {
        wait_until(&format!("{repo} to be in sync"), timeout, || self.in_sync(repo));
        self.assert_in_sync(repo);
    }

    /// The secondary's state file; before georeg created it, an empty
    /// database in memory, so that polling never creates an empty file
    /// (which georeg refuses as a failed copy).
    pub fn state(&self) -> rusqlite::Connection {
        let path = self.path("state.sqlite3");
        if !path.exists() {
            return rusqlite::Connection::open_in_memory().unwrap();
        }
        rusqlite::Connection::open(path).unwrap()
    }

    pub fn sync_state(&self, repo: &str) -> (String, Option<String>) {
        self.state()
            .query_row("SELECT sync_state, last_sync_failure FROM repositories WHERE name = ?1", [repo], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }
}

/// How one registry of an [`Env::with_auth`] authenticates its clients.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// Token auth trusting the shared key: GitLab's model, georeg signs.
    Gitlab,
    /// htpasswd (HTTP Basic), user `georeg`.
    Basic,
    /// Token auth by a token realm of its own (`token_server`), which
    /// takes Basic credentials: `writer` for the secondary, `reader` for
    /// the primary.
    Token,
    /// The same realm, asked anonymously (no credentials configured): a
    /// public registry, pull only.
    AnonymousToken,
    /// No authentication at all: anyone reads (and writes).
    Open,
}

/// The Basic user of htpasswd registries.
pub const BASIC_USER: (&str, &str) = ("georeg", "basic-password-3");

impl Env {
    /// A primary and a secondary registry, each authenticating as its
    /// side says, and a secondary configuration with what georeg needs
    /// for each: the shared key only where a side is `Gitlab`.
    pub fn with_auth(name: &str, primary: Side, secondary: Side) -> Env {
        Env::with_auth_notifying(name, primary, secondary, Mode::Manual)
    }

    /// [`Env::with_auth`], the primary registry notifying the secondary
    /// georeg directly in `Mode::Direct`.
    pub fn with_auth_notifying(name: &str, primary: Side, secondary: Side, mode: Mode) -> Env {
        use registry::Auth;
        assert!(mode != Mode::Follow, "no primary georeg here");
        let dir = TestDir::new(name);
        let port = registry::free_port();
        let notify = (mode == Mode::Direct).then(|| Notify {
            url: format!("http://127.0.0.1:{port}/api/v4/container_registry_event/events"),
            secret: SECRET.into(),
        });
        let k = keys();
        let tokens = |side: &Side| matches!(side, Side::Token | Side::AnonymousToken);
        let realm = [primary, secondary].iter().any(tokens).then(|| token_server::TokenServer::start(&dir.0));
        let htpasswd = dir.0.join("htpasswd");
        if [primary, secondary].contains(&Side::Basic) {
            registry::htpasswd(&htpasswd, &[BASIC_USER]);
        }
        let start = |side: Side, name: &str| {
            let auth = match side {
                Side::Gitlab => Auth::Token { cert: &k.cert, realm: "http://127.0.0.1:1/jwt/auth".into() },
                Side::Basic => Auth::Htpasswd(&htpasswd),
                Side::Token | Side::AnonymousToken => {
                    let r = realm.as_ref().unwrap();
                    Auth::Token { cert: &r.cert, realm: r.realm.clone() }
                }
                Side::Open => Auth::Open,
            };
            let notify = if name == "primary" { notify.as_ref() } else { None };
            Registry::start_auth(&dir.0, name, auth, notify, registry::free_port(), None)
        };
        let (p_reg, s_reg) = (start(primary, "primary"), start(secondary, "secondary"));
        let api = |side: Side, url: &str| match side {
            Side::Basic => Api::new(url, k.signer.clone()).basic(BASIC_USER.0, BASIC_USER.1),
            Side::Token | Side::AnonymousToken => Api::new(url, realm.as_ref().unwrap().signer.clone()),
            Side::Gitlab | Side::Open => Api::new(url, k.signer.clone()),
        };
        let (p, s) = (api(primary, &p_reg.url), api(secondary, &s_reg.url));
        let env = Env {
            primary: p_reg,
            secondary: s_reg,
            p,
            s,
            config: dir.0.join("georeg.toml"),
            mode,
            port,
            primary_port: registry::free_port(),
            https: None,
            daemons: Default::default(),
            realm,
            other: None,
            dir,
        };
        let password = |file: &str, password: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(env.path(file), format!("{password}\n")).unwrap();
            std::fs::set_permissions(env.path(file), std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        let mut local = String::new();
        if [primary, secondary].contains(&Side::Gitlab) {
            local.push_str(&format!("key_file = \"{}\"\n", k.pkcs1.display()));
        }
        match secondary {
            Side::Basic => {
                password("registry-password", BASIC_USER.1);
                local.push_str(&format!("username = \"{}\"\npassword_file = \"registry-password\"\n", BASIC_USER.0));
            }
            Side::Token => {
                password("registry-password", token_server::WRITER.1);
                local.push_str(&format!(
                    "username = \"{}\"\npassword_file = \"registry-password\"\n",
                    token_server::WRITER.0
                ));
            }
            Side::Gitlab | Side::Open | Side::AnonymousToken => {}
        }
        let remote = match primary {
            Side::Basic => {
                password("primary-password", BASIC_USER.1);
                format!("primary_username = \"{}\"\nprimary_password_file = \"primary-password\"\n", BASIC_USER.0)
            }
            Side::Token => {
                password("primary-password", token_server::READER.1);
                format!(
                    "primary_username = \"{}\"\nprimary_password_file = \"primary-password\"\n",
                    token_server::READER.0
                )
            }
            Side::Gitlab | Side::Open | Side::AnonymousToken => String::new(),
        };
        env.write_config_lines(&local, &remote);
        env
    }
}

impl Env {
    /// A primary distribution (GitLab's token auth) and, as the
    /// secondary, an OCI registry that is not distribution
    /// (`other_registry`), with Basic credentials.
    pub fn with_other_secondary(name: &str) -> Env {
        Env::with_auth(name, Side::Gitlab, Side::Open).into_other_secondary()
    }

    /// [`Env::with_other_secondary`] in `mode`: in Follow mode a primary
    /// georeg keeps the event log and this secondary follows it.
    pub fn with_other_secondary_in(name: &str, mode: Mode) -> Env {
        Env::with_mode(name, mode).into_other_secondary()
    }

    fn into_other_secondary(mut self) -> Env {
        let other = other_registry::OtherRegistry::start(&self.dir.0, "other");
        self.s = Api::new(&other.url, keys().signer.clone()).basic("georeg", other_registry::PASSWORD);
        self.other = Some(other);
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(self.path("registry-password"), format!("{}\n", other_registry::PASSWORD)).unwrap();
            std::fs::set_permissions(self.path("registry-password"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let registry = format!(
            "key_file = \"{}\"\nusername = \"georeg\"\npassword_file = \"registry-password\"\n",
            keys().pkcs1.display()
        );
        self.write_config_lines(&registry, "");
        self
    }

    /// For a secondary that lists no tags: every tag of the primary reads
    /// the same on the secondary, digest and bytes, the digest computed
    /// from the bytes the secondary serves.
    pub fn assert_tags_read_the_same(&self, repo: &str) {
        let want = self.p.tag_digests(repo);
        assert!(!want.is_empty(), "the primary has tags in {repo}");
        for (tag, digest) in &want {
            let (sb, st) = self.s.manifest(repo, tag).unwrap_or_else(|| panic!("{repo}:{tag} is not on the secondary"));
            assert_eq!(&oci::sha256(&sb), digest, "digest of {repo}:{tag} on the secondary");
            let (pb, pt) = self.p.manifest(repo, digest).unwrap();
            assert_eq!(sb, pb, "manifest bytes of {repo}:{tag}");
            assert_eq!(st, pt, "content type of {repo}:{tag}");
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes; panics naming `what`.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    poll_until(what, timeout, Duration::from_millis(50), cond)
}

/// [`wait_until`], polling every `poll`: a wait that is measured is only
/// as fine as its poll.
pub fn poll_until(what: &str, timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(poll);
    }
}

/// Runs georeg and returns its outcome and its peak resident set size in
/// KiB as the kernel accounted it, read by GNU time. (wait4 on a child of
/// this test process would not do: the kernel carries the parent's RSS at
/// fork into the child's high-water mark.)
pub fn run_measured(env: &Env, args: &[&str]) -> (Run, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time is needed to measure peak memory: apt-get install -y time");
    let report = env.path("peak-rss.txt");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run georeg under GNU time");
    let text = std::fs::read_to_string(&report).unwrap();
    let kb =
        text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("GNU time wrote {text:?}"));
    (Run::of(out), kb)
}
