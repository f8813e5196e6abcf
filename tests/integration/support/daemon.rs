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
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(super::georeg_bin())
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start georeg serve");
        let d = Daemon { name: name.into(), url: url.into(), log, agent, child: Some(child) };
        d.wait_healthy();
        d
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.agent.get(&format!("{}/-/health", self.url)).timeout(Duration::from_secs(1)).call().is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "georeg {} did not come up; log:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
