//! The benchmark's laboratory: a scratch directory, real registries on
//! loopback, georeg nodes, processes measured with GNU time, and the
//! registry requests each tool made, read from the registries' access logs.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::daemon::spawn_serve;
use crate::support::registry::{free_port, Notify, Registry};
use crate::support::{georeg_bin, keys, Api, SECRET};

/// The harness's own User-Agent: its requests are never counted as a tool's.
pub const HARNESS_AGENT: &str = "bench-harness/1";
/// georeg's User-Agent starts with this.
pub const GEOREG_AGENT: &str = "georeg/";
/// skopeo identifies itself with this.
pub const SKOPEO_AGENT: &str = "skopeo/";

/// A scratch directory, removed at the end of a run that did not panic.
pub struct Lab {
    pub dir: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = match std::env::var_os("GEOREG_BENCH_DIR") {
            Some(d) => PathBuf::from(d),
            None => std::env::temp_dir().join(format!("georeg-bench-{}", std::process::id())),
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Lab { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A fresh registry with token auth, storage and access log under the lab.
    pub fn registry(&self, name: &str, notify: Option<&Notify>) -> Registry {
        Registry::start(&self.dir, name, &keys().cert, notify)
    }

    /// The same registry's storage, served again with other notifications.
    pub fn restart_registry(&self, reg: Registry, notify: Option<&Notify>) -> Registry {
        let (name, port) = (reg.name.clone(), reg.port);
        drop(reg);
        Registry::start_on(&self.dir, &name, &keys().cert, notify, port)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Kept for a look at the logs after a failure, or when asked for by name.
        if std::thread::panicking() || std::env::var_os("GEOREG_BENCH_DIR").is_some() {
            eprintln!("benchmark files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// CPU time spent, in seconds, since a [`CpuMark`]: by the tool (this
/// process and the children it waited for: the tool's processes) and by
/// each registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub tool: f64,
    pub primary: f64,
    pub secondary: f64,
}

pub struct CpuMark {
    tool: u64,
    children_only: bool,
    registries: [(Option<u32>, u64); 2],
}

impl CpuMark {
    pub fn new(primary: &Registry, secondary: &Registry) -> CpuMark {
        CpuMark::with(primary, secondary, false)
    }

    /// The tool's share counts only the child processes this process waited
    /// for: threads of its own (the WAN proxy) are not the tool's.
    pub fn children(primary: &Registry, secondary: &Registry) -> CpuMark {
        CpuMark::with(primary, secondary, true)
    }

    fn with(primary: &Registry, secondary: &Registry, children_only: bool) -> CpuMark {
        let pid = |r: &Registry| registry_pid(r);
        let (p, s) = (pid(primary), pid(secondary));
        let registries = [(p, p.map(ticks).unwrap_or(0)), (s, s.map(ticks).unwrap_or(0))];
        CpuMark { tool: tool_ticks(children_only), children_only, registries }
    }

    pub fn elapsed(&self) -> Cpu {
        let tick = clock_tick();
        let since =
            |(pid, t0): (Option<u32>, u64)| pid.map(|p| ticks(p).saturating_sub(t0) as f64 / tick).unwrap_or(0.0);
        Cpu {
            tool: tool_ticks(self.children_only).saturating_sub(self.tool) as f64 / tick,
            primary: since(self.registries[0]),
            secondary: since(self.registries[1]),
        }
    }
}

/// Runs `f`, returning what it returned and the CPU time it cost.
pub fn measured<T>(primary: &Registry, secondary: &Registry, f: impl FnOnce() -> T) -> (T, Cpu) {
    let mark = CpuMark::new(primary, secondary);
    let out = f();
    (out, mark.elapsed())
}

/// utime + stime of a process, in clock ticks.
fn ticks(pid: u32) -> u64 {
    stat_fields(&format!("/proc/{pid}/stat")).iter().skip(11).take(2).sum()
}

/// This process's CPU time plus that of the children it waited for, or
/// only the children's.
fn tool_ticks(children_only: bool) -> u64 {
    let skip = if children_only { 13 } else { 11 };
    stat_fields("/proc/self/stat").iter().skip(skip).take(15 - skip).sum()
}

/// The numeric fields of a /proc stat line after the command name.
fn stat_fields(path: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let after = text.rfind(')').map(|i| &text[i + 1..]).unwrap_or("");
    after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect()
}

fn clock_tick() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// The process serving a registry, found by its configuration file.
fn registry_pid(reg: &Registry) -> Option<u32> {
    let config = format!("{}-registry.yml", reg.name);
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("serve")
            && cmdline.contains(&config)
            && cmdline.contains(&reg.root.parent()?.display().to_string()))
        .then_some(pid)
    })
}

/// Stops a registry and deletes its storage (its log stays for the record).
pub fn discard(mut reg: Registry) {
    reg.stop();
    let _ = std::fs::remove_dir_all(&reg.root);
}

/// Where a registry's access log stood, to read the requests made after.
pub struct Mark {
    log: PathBuf,
    offset: u64,
}

/// One access-log entry.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub agent: String,
    pub status: u16,
    /// The answer's body bytes, as the registry logged them.
    pub bytes: u64,
}

pub fn mark(reg: &Registry) -> Mark {
    Mark { log: reg.log.clone(), offset: std::fs::metadata(&reg.log).map(|m| m.len()).unwrap_or(0) }
}

impl Mark {
    /// Access-log entries written since the mark by clients whose agent
    /// starts with `agent`.
    pub fn requests(&self, agent: &str) -> Vec<Request> {
        let mut file = std::fs::File::open(&self.log).unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        file.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text.lines().filter_map(parse_access).filter(|r| r.agent.starts_with(agent)).collect()
    }
}

/// Requests by `agent` on all the marked registries: what one tool cost.
pub fn count(marks: &[&Mark], agent: &str) -> u64 {
    // The registry logs a request after answering it: let the last lines land.
    std::thread::sleep(Duration::from_millis(300));
    marks.iter().map(|m| m.requests(agent).len() as u64).sum()
}

/// `127.0.0.1 - - [23/Nov/2026:04:46:50 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "georeg/0.1.0"`:
/// method, path, status, body bytes and User-Agent.
fn parse_access(line: &str) -> Option<Request> {
    if !line.contains(" - - [") || line.starts_with("time=") {
        return None;
    }
    let first = line.find('"')?;
    let rest = &line[first + 1..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let (method, path) = (request.next()?.to_string(), request.next()?.to_string());
    // The status code follows the request: its absence means a foreign
    // line. Then the body's size ("-" for none).
    let mut after = rest[end + 1..].split_whitespace();
    let status = after.next()?.parse::<u16>().ok()?;
    let bytes = after.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    let trimmed = line.trim_end().strip_suffix('"')?;
    let agent = trimmed[trimmed.rfind('"')? + 1..].to_string();
    Some(Request { method, path, agent, status, bytes })
}

/// A process run under GNU time.
pub struct Measured {
    pub wall: Duration,
    pub code: i32,
    /// Peak resident set size in KiB, as the kernel accounted it.
    pub rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

pub fn measure(lab: &Lab, label: &str, program: &Path, args: &[String], env: &[(&str, &str)]) -> Measured {
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time is needed to measure peak memory: apt-get install -y time");
    let rss = lab.path(&format!("{label}.rss"));
    let (out, err) = (lab.path(&format!("{label}.out")), lab.path(&format!("{label}.err")));
    let started = Instant::now();
    let status = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let wall = started.elapsed();
    let text = std::fs::read_to_string(&rss).unwrap_or_default();
    let rss_kib = text.lines().filter_map(|l| l.trim().parse().ok()).next_back().unwrap_or(0);
    Measured {
        wall,
        code: status.code().unwrap_or(-1),
        rss_kib,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// A georeg node's configuration in the lab.
pub struct Georeg {
    pub name: String,
    pub config: PathBuf,
    pub port: u16,
    pub state: PathBuf,
}

impl Georeg {
    /// A secondary filling `secondary` from `primary`; with `follow`, it
    /// reads the event log of the primary georeg listening on that port.
    pub fn secondary(
        lab: &Lab,
        name: &str,
        secondary: &Registry,
        primary: &Registry,
        workers: usize,
        follow: Option<u16>,
    ) -> Georeg {
        Georeg::secondary_via(lab, name, secondary, &primary.url, workers, follow)
    }

    /// The same, reading the primary registry at `primary_url` (a WAN proxy in front of it, say).
    pub fn secondary_via(
        lab: &Lab,
        name: &str,
        secondary: &Registry,
        primary_url: &str,
        workers: usize,
        follow: Option<u16>,
    ) -> Georeg {
        let follow = follow.map(|p| format!("primary_node_url = \"http://127.0.0.1:{p}\"\n")).unwrap_or_default();
        let extra = format!("[replication]\nprimary_api_url = \"{primary_url}/\"\nworkers = {workers}\n{follow}");
        Georeg::write(lab, name, "secondary", &secondary.url, &extra)
    }

    /// The same, with this node's own registry at `registry_url` (a
    /// synthetic secondary, say).
    pub fn secondary_at(
        lab: &Lab,
        name: &str,
        registry_url: &str,
        primary_url: &str,
        workers: usize,
        follow: Option<u16>,
    ) -> Georeg {
        let follow = follow.map(|p| format!("primary_node_url = \"http://127.0.0.1:{p}\"\n")).unwrap_or_default();
        let extra = format!("[replication]\nprimary_api_url = \"{primary_url}/\"\nworkers = {workers}\n{follow}");
        Georeg::write(lab, name, "secondary", registry_url, &extra)
    }

    /// A primary node: stores the primary registry's notifications and serves its log.
    pub fn primary(lab: &Lab, name: &str, registry_url: &str) -> Georeg {
        Georeg::write(lab, name, "primary", registry_url, "")
    }

    fn write(lab: &Lab, name: &str, role: &str, registry_url: &str, extra: &str) -> Georeg {
        let port = free_port();
        let config = lab.path(&format!("{name}.toml"));
        let state = lab.path(&format!("{name}-state.sqlite3"));
        let text = format!(
            "node_name = \"{name}\"\nrole = \"{role}\"\nlisten = \"127.0.0.1:{port}\"\nstate_file = \"{state}\"\n\n\
             [registry]\nurl = \"{url}\"\nkey_file = \"{key}\"\n\n[notifications]\nsecret = \"{SECRET}\"\n\n{extra}",
            state = state.display(),
            url = registry_url,
            key = keys().pkcs1.display(),
        );
        std::fs::write(&config, text).unwrap();
        Georeg { name: name.into(), config, port, state }
    }

    /// Where a registry must send its notifications to reach this node.
    pub fn notify(&self) -> Notify {
        Notify {
            url: format!("http://127.0.0.1:{}/api/v4/container_registry_event/events", self.port),
            secret: SECRET.into(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a foreground command under GNU time, logging as an operator would see it.
    pub fn run(&self, lab: &Lab, label: &str, args: &[String]) -> Measured {
        let mut all = vec!["--config".to_string(), self.config.display().to_string()];
        all.extend(args.iter().cloned());
        measure(lab, label, Path::new(georeg_bin()), &all, &[("RUST_LOG", "info")])
    }

    pub fn serve(&self, lab: &Lab) -> Serve {
        // GEOREG_BENCH_LOG=debug: every registry request in the serve logs.
        let level = std::env::var("GEOREG_BENCH_LOG").unwrap_or_else(|_| "info".into());
        self.serve_logging(lab, &level)
    }

    /// `georeg serve` logging at `level` (a RUST_LOG filter).
    pub fn serve_logging(&self, lab: &Lab, level: &str) -> Serve {
        let log = lab.path(&format!("{}-serve.log", self.name));
        let child = spawn_serve(&self.name, &self.config, &log, level, &self.url(), &ureq::agent());
        Serve { child: Some(child) }
    }

    /// Appends `line` to the `[replication]` section of the configuration.
    pub fn add_replication(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = match text.contains("[replication]\n") {
            true => text.replacen("[replication]\n", &format!("[replication]\n{line}\n"), 1),
            false => format!("{text}\n[replication]\n{line}\n"),
        };
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.state).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    pub fn query(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
    }
}

/// A running `georeg serve`, logging to NAME-serve.log in the lab, killed
/// when dropped.
pub struct Serve {
    child: Option<Child>,
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// CPU seconds it has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        ticks(self.pid()) as f64 / clock_tick()
    }

    /// CPU seconds used so far by its threads whose name starts with
    /// `prefix` (georeg names them: `reconcile-0`, `fingerprints-0`...).
    pub fn thread_cpu_seconds(&self, prefix: &str) -> f64 {
        let tasks = format!("/proc/{}/task", self.pid());
        let ticks: u64 = std::fs::read_dir(tasks)
            .map(|dir| {
                dir.flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim().starts_with(prefix))
                    })
                    .map(|t| {
                        stat_fields(&t.path().join("stat").display().to_string()).iter().skip(11).take(2).sum::<u64>()
                    })
                    .sum()
            })
            .unwrap_or(0);
        ticks as f64 / clock_tick()
    }

    /// Its peak resident set size so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then a bounded wait.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The harness's registry client: its own User-Agent, so its requests are
/// never counted as a tool's, a long timeout for large blobs, and a pooled
/// connection per thread.
pub fn harness_api(reg: &Registry) -> Api {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).max_idle_connections_per_host(64).build();
    Api::new(&reg.url, keys().signer.clone()).with_agent(agent).user_agent(HARNESS_AGENT)
}

/// Runs `each` over `items` on up to `threads` named threads.
pub fn pool<T: Sync>(items: &[T], threads: usize, each: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..threads.min(items.len()).max(1) {
            let (next, each) = (&next, &each);
            std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn_scoped(s, move || {
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) {
                        each(item);
                    }
                })
                .expect("start a thread");
        }
    });
}

/// The share (0 to 1) of the machine's CPU time spent busy over `window`.
/// Sampled while the benchmark itself is idle, it shows other work on the
/// machine that adds noise to the figures.
pub fn busy_share(window: Duration) -> f64 {
    fn sample() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        (total, idle)
    }
    let (t0, i0) = sample();
    std::thread::sleep(window);
    let (t1, i1) = sample();
    let total = t1.saturating_sub(t0).max(1);
    1.0 - i1.saturating_sub(i0) as f64 / total as f64
}
