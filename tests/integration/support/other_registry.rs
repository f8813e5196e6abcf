//! An OCI registry that is not distribution: `container-registry` 0.3.1
//! from crates.io (`cargo install --locked container-registry --version
//! 0.3.1 --features bin`, which `.ci/run` does). It implements what the
//! OCI distribution spec requires and little more: Basic auth with one
//! password, uploads by PATCH then PUT only, no tag listing, no catalog,
//! no DELETE, no `Docker-Content-Digest` on a manifest's HEAD.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VERSION: &str = "0.3.1";
/// Its one password (any user name goes with it).
pub const PASSWORD: &str = "other-registry-password-4";

/// The binary: `GEOREG_TEST_OCI_REGISTRY`, else on PATH, else where cargo
/// installs it. A missing binary fails the test, saying how to install it.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GEOREG_TEST_OCI_REGISTRY") {
        return PathBuf::from(path);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("container-registry")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| {
            let mut h = PathBuf::from(h);
            h.push(".cargo");
            h.into_os_string()
        })
    }) {
        candidates.push(PathBuf::from(home).join("bin/container-registry"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the OCI registry these tests replicate into is not installed: run .ci/run, or \
             cargo install --locked container-registry --version {VERSION} --features bin \
             (or point GEOREG_TEST_OCI_REGISTRY at its binary)"
        )
    })
}

pub struct OtherRegistry {
    pub url: String,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl OtherRegistry {
    pub fn start(dir: &Path, name: &str) -> OtherRegistry {
        let port = super::registry::free_port();
        let storage = dir.join(format!("{name}-storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let args = vec![
            "--bind".to_string(),
            format!("127.0.0.1:{port}"),
            "--password".into(),
            PASSWORD.into(),
            "--storage".into(),
            storage.display().to_string(),
        ];
        let mut registry = OtherRegistry {
            url: format!("http://127.0.0.1:{port}"),
            log: dir.join(format!("{name}-registry.log")),
            args,
            child: None,
        };
        registry.run();
        registry
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(binary())
            .args(&self.args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start container-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent = super::agent(None);
        loop {
            match agent.get(&format!("{}/v2/", self.url)).timeout(Duration::from_secs(2)).call() {
                Ok(_) | Err(ureq::Error::Status(_, _)) => return,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!(
                    "container-registry did not come up on {}: {e}; log: {}",
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
}

impl Drop for OtherRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
