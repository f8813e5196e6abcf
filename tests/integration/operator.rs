//! What an operator reads: `georeg status` with and without a daemon, on a
//! fresh install, and numbers that tell the truth while a repository fails.

use std::time::Duration;

use crate::support::oci::{self, oci_image};
use crate::support::{keys, wait_until, Env, Mode};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn status_says_whether_a_daemon_runs_and_needs_no_key() {
    let env = Env::new("status-truth");
    // A fresh install: the key is not copied yet, and nothing made a
    // state file. The commands that only read say so, and create nothing.
    env.write_config(&env.path("not-copied-yet.key"), "");
    let before = listing(&env.dir.0);
    for args in [&["status"][..], &["status", "--json"], &["failover-check"], &["deletions"]] {
        let run = env.georeg(args);
        run.assert_code(2);
        let line = run.stderr.trim();
        assert!(line.contains("no state file exists") && line.contains("georeg serve"), "{run}");
        assert_eq!(line.lines().count(), 1, "one line: {run}");
    }
    assert_eq!(listing(&env.dir.0), before, "a command that only reads created something");

    env.write_config(&keys().pkcs1, "");
    env.georeg(&["backfill"]).assert_ok();
    let run = env.georeg(&["status"]);
    run.assert_ok();
    assert!(run.stdout.contains("daemon: not running"), "{run}");
    env.p.push_image("app", "v1", &oci_image(1, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    let run = env.georeg(&["status"]);
    run.assert_ok();
    assert!(run.stdout.contains("daemon: georeg serve (PID"), "{}", run.stdout);
    assert!(!run.stdout.contains("never synced"), "{}", run.stdout);
    let json = env.georeg(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(value["daemon"].as_str().is_some_and(|d| d.contains("serve")), "{value}");
    assert!(value["last_sync_at"].is_string(), "{value}");
}

#[test]
fn lag_leaves_out_a_failing_repository_which_is_counted_and_alerts() {
    let env = Env::with_mode("lag-truth", Mode::Direct);
    env.add_replication("failing_alert_seconds = 60");
    // A repository whose layer is damaged on the primary fails every sync.
    let bad = oci_image(2, &[300_000]);
    env.p.push_image("bad/app", "v1", &bad);
    let path = env.primary.blob_data_path(&oci::sha256(&bad.blobs[1]));
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    env.start_daemons();
    wait_until("bad/app to fail", DEADLINE, || {
        env.state()
            .query_row("SELECT sync_state = 'failed' FROM repositories WHERE name = 'bad/app'", [], |r| r.get(0))
            .unwrap_or(false)
    });
    env.p.push_image("good/app", "v1", &oci_image(3, &[1000]));
    env.wait_in_sync("good/app", DEADLINE);
    let status = || -> serde_json::Value {
        let run = env.georeg(&["status", "--json"]);
        serde_json::from_str(&run.stdout).unwrap()
    };
    let s = status();
    assert_eq!(s["failing"]["repositories"], 1, "{s}");
    assert_eq!(s["failing"]["oldest"], "bad/app", "{s}");
    assert!(s["events"]["lag_seconds"].as_i64().unwrap() < 30, "a failing repository holds no lag up: {s}");
    assert_eq!(s["healthy"], true, "not failing long enough yet: {s}");
    // An hour later it is still failing: health says so, with the reason.
    env.state()
        .execute("UPDATE repositories SET failing_since = '2000-01-01T00:00:00Z' WHERE name = 'bad/app'", [])
        .unwrap();
    let s = status();
    assert_eq!(s["healthy"], false, "{s}");
    let why = s["health_message"].as_str().unwrap();
    assert!(why.contains("bad/app") && why.contains("did not match its digest"), "{why}");
    let text = env.georeg(&["status"]).stdout;
    assert!(text.contains("failing: 1 repository; bad/app"), "{text}");
}

#[test]
fn under_systemd_log_lines_carry_their_syslog_priority_and_no_timestamp() {
    let env = Env::new("journald");
    env.p.push_image("app", "v1", &oci_image(4, &[1000]));
    let out = std::process::Command::new(crate::support::georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["sync", "app", "missing/../bad"])
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let run = std::process::Command::new(crate::support::georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["backfill"])
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let logged: Vec<&str> = stderr.lines().filter(|l| l.starts_with('<')).collect();
    assert!(!logged.is_empty(), "{stderr}");
    for line in &logged {
        assert!(
            line.starts_with("<3>") || line.starts_with("<4>") || line.starts_with("<6>") || line.starts_with("<7>"),
            "{line}"
        );
        assert!(!line.contains(" INFO ") && !line[3..].starts_with('['), "no timestamp or level of our own: {line}");
    }
    assert!(logged.iter().any(|l| l.starts_with("<7>")), "debug lines at priority 7: {stderr}");
    // Without the journal, the usual format.
    let plain = env.georeg(&["backfill"]);
    assert!(plain.stderr.lines().all(|l| !l.starts_with("<6>")), "{}", plain.stderr);
}

/// The files under `dir`, sorted, for "nothing was created" checks.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn status_reads_a_state_file_on_a_read_only_filesystem() {
    let env = Env::new("status-read-only");
    env.p.push_image("app", "v1", &oci_image(5, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // Stopped cleanly (no WAL left), then after a crash (WAL and shared
    // memory left behind): either way status reads it.
    env.take_secondary_daemon().terminate();
    assert_eq!(read_only_status(&env)["repositories"]["synced"], 1);
    env.start_secondary_daemon();
    env.take_secondary_daemon().kill9();
    assert_eq!(read_only_status(&env)["repositories"]["synced"], 1);
}

/// `georeg status --json` with the test's folder mounted read-only, in a
/// mount namespace of its own: the state file, its lock and its folder
/// cannot be written there.
fn read_only_status(env: &Env) -> serde_json::Value {
    let dir = env.dir.0.display().to_string();
    let script = format!(
        "mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} && touch {dir}/probe 2>/dev/null && exit 3; \
         exec {bin} --config {config} status --json",
        bin = crate::support::georeg_bin(),
        config = env.config.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("RUST_LOG", "info")
        .output()
        .expect("unshare (util-linux) runs the status in a mount namespace: install util-linux and run as root");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(3), "the folder was still writable: {stderr}");
    assert!(out.status.success(), "status on a read-only filesystem failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_unreachable_primary_during_verify_is_no_failed_verification_and_no_loss() {
    let mut env = Env::new("verify-primary-down");
    env.p.push_image("app", "v1", &oci_image(5, &[1000]));
    env.georeg(&["backfill"]).assert_ok();
    env.georeg(&["verify", "app"]).assert_ok();
    env.primary.stop();
    let run = env.georeg(&["verify", "app"]);
    run.assert_code(1);
    assert!(run.stdout.contains("app: FAILED") && run.stdout.contains("cannot reach"), "{run}");
    let (state, failure): (String, Option<String>) = env
        .state()
        .query_row("SELECT verification_state, verification_failure FROM repositories WHERE name = 'app'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(state, "succeeded", "the verification before stands: {failure:?}");
    let check = env.georeg(&["failover-check"]);
    assert!(!check.stdout.contains("verification_failed"), "{check}");
}
