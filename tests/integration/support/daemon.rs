//! A running `georeg serve`, logging to a file, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub name: String,
    pub url: String,
    pub log: PathBuf,
    /// An HTTP agent that trusts the daemon's certificate when it serves https.
    pub agent: ureq::Agent,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(dir: &Path, name: &str, config: &Path, port: u16) -> Daemon {
        Daemon::start_at(dir, name, config, &format!("http://127.0.0.1:{port}"), super::agent(None))
    }

    /// Starts `georeg serve` whose server answers at `url`.
    pub fn start_at(dir: &Path, name: &str, config: &Path, url: &str, agent: ureq::Agent) -> Daemon {
        let log = dir.join(format!("georeg-{name}.log"));
        let child = spawn_serve(name, config, &log, "debug", url, &agent);
        Daemon { name: name.into(), url: url.into(), log, agent, child: Some(child) }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded); returns how long the exit took.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        let ok = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success();
        assert!(ok, "kill -TERM");
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (started.elapsed(), status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("georeg {} ignored SIGTERM for 30 s; log:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process, to wait for it to exit by itself.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.child.as_mut().expect("running")
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Spawns `georeg --config CONFIG serve`, logging to `log` at `rust_log`,
/// and waits (bounded) until it answers /-/health at `url`.
pub fn spawn_serve(name: &str, config: &Path, log: &Path, rust_log: &str, url: &str, agent: &ureq::Agent) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = Command::new(super::georeg_bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start georeg serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.get(&format!("{url}/-/health")).timeout(Duration::from_secs(1)).call().is_err() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("georeg {name} did not come up; log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
