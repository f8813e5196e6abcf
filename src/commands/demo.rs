//! `georeg demo`: the whole system on loopback in one command. A throwaway
//! primary registry notifies a primary georeg; a secondary georeg follows
//! the primary's event log into a secondary registry. The demo pushes an
//! image to the primary and shows it arriving on the secondary, then keeps
//! running for the operator to push more; Ctrl-C stops everything and
//! removes the throwaway files.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::registry::manifest::{self, Manifest};
use crate::registry::token::{Signer, TokenCache};
use crate::registry::{self, Digest, Target};
use crate::shutdown::Shutdown;

const SECRET: &str = "DemoSecret1";
const REPO: &str = "demo/hello";
/// Where the skopeo command the demo prints copies demo/hello:v1.
const COPIED: &str = "demo/app";

/// Throwaway processes and files, removed however the demo ends.
struct Lab {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn spawn(&mut self, name: &str, program: &Path, args: &[&str]) -> Result<()> {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| Error::Io { path: log_path.clone(), source: e })?;
        let log2 = log.try_clone().map_err(|e| Error::Io { path: log_path.clone(), source: e })?;
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::Io { path: program.to_path_buf(), source: e })?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        Ok(path)
    }

    /// Waits until `url` answers at all, or fails naming the log to read.
    fn wait_up(&mut self, name: &str, url: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ureq::get(url).timeout(Duration::from_secs(1)).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => return Ok(()),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(Error::Transport {
                        url: url.into(),
                        message: format!("{name} did not start ({e}); last log lines: {}", tail.join(" | ")),
                    });
                }
            }
        }
    }
}

fn find_program(name: &str, hint: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        // Not a usage error: a part of the demo cannot start (exit 1).
        .ok_or_else(|| Error::Io {
            path: PathBuf::from(name),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("georeg demo needs it: {hint}")),
        })
}

fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Io { path: "127.0.0.1:0".into(), source: e })?;
    l.local_addr().map(|a| a.port()).map_err(|e| Error::Io { path: "127.0.0.1:0".into(), source: e })
}

fn registry_yaml(root: &Path, port: u16, cert: &Path, notify_port: Option<u16>) -> String {
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: georeg-demo\n\
         auth:\n  token:\n    realm: http://127.0.0.1:1/jwt/auth\n    service: container_registry\n    issuer: gitlab-issuer\n    rootcertbundle: {}\n",
        root.display(),
        cert.display()
    );
    if let Some(p) = notify_port {
        yaml.push_str(&format!(
            "notifications:\n  endpoints:\n    - name: geo_event\n      url: http://127.0.0.1:{p}/api/v4/container_registry_event/events\n      \
             headers:\n        Authorization: [{SECRET}]\n      timeout: 500ms\n      threshold: 5\n      backoff: 1s\n"
        ));
    }
    yaml
}

/// Runs the demo. With `once`, stops after the first image arrived (for tests).
pub fn run(once: bool) -> Result<()> {
    let registry_bin = find_program("docker-registry", "install it with `sudo apt-get install -y docker-registry`")?;
    let openssl = find_program("openssl", "install it with `sudo apt-get install -y openssl`")?;
    let georeg = std::env::current_exe().map_err(|e| Error::Io { path: "georeg".into(), source: e })?;
    let quit = Shutdown::default();
    quit.on_signals()?;
    let dir = std::env::temp_dir().join(format!("georeg-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io { path: dir.clone(), source: e })?;
    let mut lab = Lab { dir: dir.clone(), children: Vec::new() };

    println!("georeg demo: setting up in {}", dir.display());
    let key = dir.join("gitlab-registry.key");
    let cert = dir.join("gitlab-registry.crt");
    for args in [
        vec!["genrsa", "-traditional", "-out", key.to_str().unwrap_or_default(), "2048"],
        vec![
            "req",
            "-new",
            "-x509",
            "-key",
            key.to_str().unwrap_or_default(),
            "-subj",
            "/CN=georeg-demo",
            "-days",
            "2",
            "-out",
            cert.to_str().unwrap_or_default(),
        ],
    ] {
        let out =
            Command::new(&openssl).args(&args).output().map_err(|e| Error::Io { path: openssl.clone(), source: e })?;
        if !out.status.success() {
            return Err(Error::Key {
                path: key.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    let (p_reg, s_reg, p_geo, s_geo) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let p_yaml =
        lab.write("primary-registry.yml", &registry_yaml(&dir.join("primary-storage"), p_reg, &cert, Some(p_geo)))?;
    let s_yaml =
        lab.write("secondary-registry.yml", &registry_yaml(&dir.join("secondary-storage"), s_reg, &cert, None))?;
    let p_conf = lab.write(
        "georeg-primary.toml",
        &format!(
            "node_name = \"demo-primary\"\nrole = \"primary\"\nlisten = \"127.0.0.1:{p_geo}\"\nstate_file = \"primary.sqlite3\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:{p_reg}\"\nkey_file = \"gitlab-registry.key\"\n\n\
             [notifications]\nsecret = \"{SECRET}\"\n"
        ),
    )?;
    let s_conf = lab.write(
        "georeg-secondary.toml",
        &format!(
            "node_name = \"demo-secondary\"\nrole = \"secondary\"\nlisten = \"127.0.0.1:{s_geo}\"\nstate_file = \"secondary.sqlite3\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:{s_reg}\"\nkey_file = \"gitlab-registry.key\"\n\n\
             [replication]\nprimary_api_url = \"http://127.0.0.1:{p_reg}\"\nprimary_node_url = \"http://127.0.0.1:{p_geo}\"\n\
             report_interval_seconds = 5\n"
        ),
    )?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    lab.spawn("georeg-primary", &georeg, &["--config", &path(&p_conf), "serve"])?;
    lab.spawn("primary-registry", &registry_bin, &["serve", &path(&p_yaml)])?;
    lab.spawn("secondary-registry", &registry_bin, &["serve", &path(&s_yaml)])?;
    lab.wait_up("georeg-primary", &format!("http://127.0.0.1:{p_geo}/-/health"))?;
    lab.wait_up("primary-registry", &format!("http://127.0.0.1:{p_reg}/v2/"))?;
    lab.wait_up("secondary-registry", &format!("http://127.0.0.1:{s_reg}/v2/"))?;
    lab.spawn("georeg-secondary", &georeg, &["--config", &path(&s_conf), "serve"])?;
    lab.wait_up("georeg-secondary", &format!("http://127.0.0.1:{s_geo}/-/health"))?;

    // The demo plays the user pushing to the primary, so it signs push tokens.
    let signer = Arc::new(Signer::load(&key, None, "gitlab-issuer")?);
    let tokens = |_| TokenCache::new(signer.clone(), "container_registry", Duration::from_secs(300));
    let tls = crate::tls::client_config(None)
        .map_err(|message| Error::Transport { url: "the system trust store".into(), message })?;
    let agent = registry::agent(tls);
    let primary = Target::new(&format!("http://127.0.0.1:{p_reg}"), agent.clone(), tokens(()));
    let secondary = Target::new(&format!("http://127.0.0.1:{s_reg}"), agent, tokens(()));

    println!(
        "\n  primary registry    http://127.0.0.1:{p_reg}   -> notifies georeg primary   http://127.0.0.1:{p_geo}\n  \
         secondary registry  http://127.0.0.1:{s_reg}   <- filled by georeg secondary http://127.0.0.1:{s_geo}\n\n  \
         dashboards: http://127.0.0.1:{s_geo}/admin/geo/nodes (secondary), http://127.0.0.1:{p_geo}/admin/geo/nodes (primary)\n"
    );
    push_and_watch(&primary, &secondary, 1, &quit)?;
    if once {
        return Ok(());
    }
    println!(
        "\nPress Enter to push another image, Ctrl-C to stop and clean up. To copy an image yourself (needs skopeo):\n  \
         TOKEN=$({} --config {} token --scope repository:demo/hello:pull --scope repository:demo/app:push,pull)\n  \
         skopeo copy --src-tls-verify=false --dest-tls-verify=false --src-registry-token \"$TOKEN\" \\\n    \
         --dest-registry-token \"$TOKEN\" docker://127.0.0.1:{p_reg}/demo/hello:v1 docker://127.0.0.1:{p_reg}/demo/app:v1\n\
         State files: sqlite3 {}   Logs: {}/*.log",
        georeg.display(),
        p_conf.display(),
        dir.join("secondary.sqlite3").display(),
        dir.display()
    );
    let enter = Arc::new(AtomicBool::new(false));
    let pressed = enter.clone();
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
            pressed.store(true, Ordering::SeqCst);
        }
    });
    let mut n = 1;
    // The image the skopeo command above copies: announced once it is on
    // the secondary too.
    let mut copied: Option<Digest> = None;
    let mut looked = Instant::now();
    while !quit.requested() {
        if enter.swap(false, Ordering::SeqCst) {
            n += 1;
            if let Err(e) = push_and_watch(&primary, &secondary, n, &quit) {
                println!("  {e}");
            }
        }
        if copied.is_none() && looked.elapsed() >= Duration::from_secs(1) {
            looked = Instant::now();
            if let Some(digest) = primary.manifest_digest(COPIED, "v1").ok().flatten() {
                if secondary.manifest_digest(COPIED, "v1").ok().flatten().as_ref() == Some(&digest) {
                    println!("replicated {COPIED}:v1 (copied with skopeo) to the secondary, digest identical");
                    copied = Some(digest);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nstopping; removing {}", dir.display());
    Ok(())
}

/// Pushes image number `n` to the primary and times its arrival on the secondary.
fn push_and_watch(primary: &Target, secondary: &Target, n: u64, quit: &Shutdown) -> Result<()> {
    let tag = format!("v{n}");
    let layer: Vec<u8> =
        (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n as u32 * 97) >> 13) as u8).collect();
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"demo":"{n}"}}}}}}"#).into_bytes();
    let (layer_digest, config_digest) = (Digest::sha256_of(&layer), Digest::sha256_of(&config));
    primary.push_blob_bytes(REPO, &layer_digest, &layer)?;
    primary.push_blob_bytes(REPO, &config_digest, &config)?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.as_str(), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let m = Manifest { digest: Digest::sha256_of(&body), media_type: manifest::OCI_MANIFEST.into(), bytes: body };
    let pushed = Instant::now();
    primary.put_manifest(REPO, &tag, &m)?;
    println!("pushed {REPO}:{tag} ({}, 1 MB layer) to the primary", m.digest.short());
    let deadline = pushed + Duration::from_secs(60);
    while Instant::now() < deadline && !quit.requested() {
        // The registry may answer 500 while it writes the tag: keep asking.
        if secondary.manifest_digest(REPO, &tag).ok().flatten().as_ref() == Some(&m.digest) {
            println!(
                "replicated {REPO}:{tag} to the secondary in {} ms, digest identical",
                pushed.elapsed().as_millis()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::Manifest {
        repository: REPO.into(),
        reference: tag,
        message: "did not reach the secondary within 60 s; see the logs in the demo directory".into(),
    })
}
