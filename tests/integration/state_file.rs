//! The state file is what it claims to be: one owner however it is named,
//! an empty or lost file never taken for a fresh install, and a `serve` whose file
//! is deleted or replaced under it stops instead of acknowledging
//! notifications into a file nobody will read.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::registry::free_port;
use crate::support::{georeg_bin, wait_until, Env, Run};

/// Waits (bounded) for the daemon's process to exit by itself.
fn exit_code_within(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < within, "georeg serve did not stop within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve_once(env: &Env, config: &std::path::Path) -> Run {
    let mut command = Command::new(georeg_bin());
    command.arg("--config").arg(config).arg("serve").stdin(std::process::Stdio::null());
    let out = command.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ran: format!("georeg serve with {}", env.path("other.toml").display()),
    }
}

#[test]
fn a_second_serve_naming_the_state_file_through_a_symbolic_link_is_refused() {
    let env = Env::new("state-symlink");
    env.start_secondary_daemon();
    std::os::unix::fs::symlink(env.path("state.sqlite3"), env.path("link.sqlite3")).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let other = text
        .replace("state_file = \"state.sqlite3\"", "state_file = \"link.sqlite3\"")
        .replace(&format!("127.0.0.1:{}", env.port), &format!("127.0.0.1:{}", free_port()));
    assert_ne!(other, text);
    std::fs::write(env.path("other.toml"), other).unwrap();
    let run = serve_once(&env, &env.path("other.toml"));
    run.assert_code(2);
    assert!(run.stderr.contains("in use by"), "{run}");
}

#[test]
fn an_empty_state_file_is_refused_and_left_as_it_is() {
    let env = Env::new("state-empty");
    std::fs::write(env.path("state.sqlite3"), b"").unwrap();
    let run = env.georeg(&["sync", "app"]);
    run.assert_code(2);
    assert!(run.stderr.contains("is empty (0 bytes)"), "{run}");
    assert_eq!(std::fs::metadata(env.path("state.sqlite3")).unwrap().len(), 0, "nothing was written");
}

#[test]
fn serve_stops_when_its_state_file_is_deleted_or_replaced() {
    for replace in [false, true] {
        let env = Env::new(if replace { "state-replaced" } else { "state-deleted" });
        env.start_secondary_daemon();
        let mut daemon = env.take_secondary_daemon();
        let path = env.path("state.sqlite3");
        if replace {
            std::fs::copy(&path, env.path("copy.sqlite3")).unwrap();
            std::fs::rename(env.path("copy.sqlite3"), &path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        let code = exit_code_within(daemon.child(), Duration::from_secs(20));
        assert_eq!(code, Some(2), "log:\n{}", daemon.log_text());
        let why = if replace { "was replaced by another file" } else { "was deleted" };
        assert!(daemon.log_text().contains(why), "log:\n{}", daemon.log_text());
        if !replace {
            // The next start is not a silent fresh install either.
            let run = serve_once(&env, &env.config);
            run.assert_code(2);
            assert!(run.stderr.contains("does not exist, but") && run.stderr.contains("state.sqlite3.lock"), "{run}");
            assert!(!path.exists(), "no state file was created: {run}");
        }
    }
}

#[test]
fn a_lost_state_file_is_refused_until_the_operator_says_it_is_a_first_start() {
    let env = Env::new("state-lost");
    env.georeg(&["sync", "app"]).assert_ok();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(env.path(&format!("state.sqlite3{suffix}")));
    }
    let run = env.georeg(&["sync", "app"]);
    run.assert_code(2);
    assert!(run.stderr.contains("does not exist, but"), "{run}");
    assert!(!env.path("state.sqlite3").exists(), "no state file was created: {run}");
    std::fs::remove_file(env.path("state.sqlite3.lock")).unwrap();
    env.georeg(&["sync", "app"]).assert_ok();
    assert!(env.path("state.sqlite3").exists());
}

/// GET on the daemon: (status, body).
fn get(url: &str) -> (u16, String) {
    match ureq::get(url).timeout(Duration::from_secs(30)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn a_state_file_that_cannot_be_written_turns_readiness_and_health_red() {
    let env = Env::new("state-unwritable");
    env.start_secondary_daemon();
    let ready = format!("{}/-/readiness", env.url());
    wait_until("the node to be ready", Duration::from_secs(60), || get(&ready).0 == 200);
    // Another process holds the state file's write lock (an operator's
    // sqlite3 left in a transaction): georeg cannot write to it.
    let holder = rusqlite::Connection::open(env.path("state.sqlite3")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut seen = (0, String::new());
    wait_until("readiness to turn red", Duration::from_secs(90), || {
        seen = get(&ready);
        seen.0 == 503
    });
    assert!(seen.1.contains("state file cannot be written"), "readiness said: {}", seen.1);
    let (code, status) = get(&format!("{}/api/v1/status", env.url()));
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["healthy"], false, "{status}");
    let message = status["health_message"].as_str().unwrap_or_default();
    assert!(message.contains("state file cannot be written"), "{status}");
    holder.execute_batch("ROLLBACK").unwrap();
    wait_until("readiness to turn green again", Duration::from_secs(90), || get(&ready).0 == 200);
}
