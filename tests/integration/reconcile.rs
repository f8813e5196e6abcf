//! Reconciliation: no divergence outlives the window
//! (replication.reconcile_interval_seconds, 30 s here), whatever caused it,
//! and a node is not ready for failover until it has compared.

use std::time::Duration;

use crate::support::oci::oci_image;
use crate::support::registry::Notify;
use crate::support::{poll_until, wait_until, Env, Mode, SECRET};

/// The window the tests use.
const WINDOW: u64 = 30;
/// Within the window, plus what copying takes on a loaded machine.
const CONVERGE: Duration = Duration::from_secs(WINDOW + 45);

fn env(name: &str, mode: Mode) -> Env {
    with_window(name, mode, WINDOW)
}

fn with_window(name: &str, mode: Mode, window: u64) -> Env {
    let env = Env::with_mode(name, mode);
    env.add_replication(&format!("reconcile_interval_seconds = {window}"));
    if mode == Mode::Follow {
        // The primary keeps its fingerprints within half its own window.
        let mut text = std::fs::read_to_string(env.primary_config()).unwrap();
        text.push_str(&format!("\n[replication]\nreconcile_interval_seconds = {window}\n"));
        std::fs::write(env.primary_config(), text).unwrap();
    }
    env
}

fn failover(env: &Env) -> serde_json::Value {
    let run = env.georeg(&["failover-check", "--json"]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
}

fn ready(env: &Env) -> bool {
    failover(env)["ready"] == true
}

/// Pushed, re-pointed, new and deleted while the primary registry notified
/// nobody (its queue is in memory: a restart loses it the same way).
fn lose_four_changes(env: &mut Env) {
    env.primary.set_notify(None);
    env.p.push_image("app", "v3", &oci_image(13, &[2000]));
    env.p.push_image("app", "v1", &oci_image(11, &[2100]));
    env.p.push_image("fresh/app", "v1", &oci_image(14, &[2200]));
    let gone = env.p.digest("gone", "v1").unwrap();
    env.p.delete_manifest("gone", &gone);
    let notify = env.notify_target();
    env.primary.set_notify(notify.as_ref());
}

fn lost_notifications_converge(mode: Mode, name: &str) {
    let mut env = env(name, mode);
    env.p.push_image("app", "v1", &oci_image(10, &[1000]));
    env.p.push_image("app", "v2", &oci_image(12, &[1000]));
    env.p.push_image("gone", "v1", &oci_image(15, &[1000]));
    env.start_daemons();
    for repo in ["app", "gone"] {
        env.wait_in_sync(repo, CONVERGE);
    }
    poll_until("the secondary to be ready", CONVERGE, Duration::from_secs(1), || ready(&env));
    lose_four_changes(&mut env);
    wait_until("every lost change to reach the secondary", CONVERGE, || {
        env.in_sync("app") && env.in_sync("fresh/app") && env.s.tags("gone").is_empty()
    });
    env.assert_in_sync("app");
    env.assert_in_sync("fresh/app");
    poll_until("the secondary to be ready again", CONVERGE, Duration::from_secs(1), || ready(&env));
    let status: serde_json::Value = serde_json::from_str(&env.georeg(&["status", "--json"]).stdout).unwrap();
    let found = &status["reconcile"]["last_pass"];
    assert!(found.is_object(), "no pass in the status: {status}");
    // A pass counts what it found when it ends, which may be after the
    // repairs it queued (a pass spreads over half the window).
    let metrics = || ureq::get(&format!("{}/metrics", env.url())).call().unwrap().into_string().unwrap();
    poll_until("the pass to count its differences in /metrics", CONVERGE, Duration::from_secs(1), || {
        metrics().contains("georeg_reconcile_differences_total{")
    });
}

#[test]
fn notifications_lost_across_a_restart_are_repaired_within_the_window_through_the_primary_georeg() {
    lost_notifications_converge(Mode::Follow, "reconcile-lost-follow");
}

#[test]
fn notifications_lost_across_a_restart_are_repaired_within_the_window_reading_the_primary_registry() {
    lost_notifications_converge(Mode::Direct, "reconcile-lost-direct");
}

/// Pushes, re-points and deletes tags straight on the secondary.
fn write_on_the_secondary(env: &Env) {
    env.s.push_image("app", "extra", &oci_image(20, &[500]));
    env.s.push_image("app", "v1", &oci_image(21, &[500]));
    env.s.delete_tag("app", "v2");
}

#[test]
fn writes_made_on_the_secondary_are_repaired_by_the_pass() {
    let env = env("reconcile-writes", Mode::Follow);
    env.p.push_image("app", "v1", &oci_image(10, &[1000]));
    env.p.push_image("app", "v2", &oci_image(12, &[1000]));
    env.start_daemons();
    env.wait_in_sync("app", CONVERGE);
    write_on_the_secondary(&env);
    assert!(!env.in_sync("app"));
    env.wait_in_sync("app", CONVERGE);
}

#[test]
fn writes_made_on_the_secondary_are_repaired_at_once_when_its_registry_notifies_georeg() {
    let mut env = with_window("reconcile-writes-notified", Mode::Direct, 3600);
    env.p.push_image("app", "v1", &oci_image(10, &[1000]));
    env.p.push_image("app", "v2", &oci_image(12, &[1000]));
    let own = Notify { url: format!("{}/api/v1/registry/events", env.url()), secret: SECRET.into() };
    env.secondary.set_notify(Some(&own));
    env.start_daemons();
    env.wait_in_sync("app", CONVERGE);
    write_on_the_secondary(&env);
    // Far within the hour's window: the notification queued it.
    env.wait_in_sync("app", Duration::from_secs(30));
    let metrics = ureq::get(&format!("{}/metrics", env.url())).call().unwrap().into_string().unwrap();
    let writes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("georeg_writes_on_secondary_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(writes >= 1.0, "{metrics}");
    let log = env.daemons.borrow().iter().find(|d| d.name == "secondary").unwrap().log_text();
    assert!(log.contains("write made on the secondary") && log.contains("app:extra"), "{log}");
}

#[test]
fn a_wrong_secret_on_the_primary_georeg_turns_it_unhealthy_naming_the_cause() {
    let env = env("reconcile-wrong-secret", Mode::Follow);
    let config = std::fs::read_to_string(env.primary_config()).unwrap();
    std::fs::write(env.primary_config(), config.replace(SECRET, "NotTheSecret9")).unwrap();
    env.start_primary_daemon();
    env.p.push_image("app", "v1", &oci_image(10, &[1000]));
    let status = || -> serde_json::Value {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        let url = format!("http://127.0.0.1:{}/api/v1/status", env.primary_port);
        let text = agent.get(&url).call().ok().and_then(|r| r.into_string().ok()).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    };
    poll_until("the primary georeg to turn unhealthy", Duration::from_secs(60), Duration::from_millis(500), || {
        status()["healthy"] == false
    });
    let s = status();
    let why = s["health_message"].as_str().unwrap_or_default();
    assert!(why.contains("refused") && why.contains("secret") && why.contains("127.0.0.1"), "{s}");
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", env.primary_port)).call().unwrap();
    let metrics = metrics.into_string().unwrap();
    assert!(metrics.contains("georeg_notifications_refused_total{reason=\"secret\"}"), "{metrics}");
}

#[test]
fn a_follower_whose_primary_georeg_never_answered_is_not_ready() {
    let env = env("reconcile-never-answered", Mode::Follow);
    env.p.push_image("app", "v1", &oci_image(10, &[1000]));
    env.start_secondary_daemon();
    // The catalog scan may sync it, but nothing compared it through the
    // primary georeg that never answered.
    std::thread::sleep(Duration::from_secs(3));
    let run = env.georeg(&["failover-check"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("never compared"), "{run}");
}

#[test]
fn a_state_file_lost_and_started_anew_becomes_ready_without_copying_a_blob_again() {
    let env = env("reconcile-lost-state", Mode::Direct);
    for (i, repo) in ["a", "b/c", "d"].iter().enumerate() {
        env.p.push_image(repo, "v1", &oci_image(30 + i as u64, &[3000, 4000]));
    }
    env.start_daemons();
    for repo in ["a", "b/c", "d"] {
        env.wait_in_sync(repo, CONVERGE);
    }
    drop(env.take_secondary_daemon());
    // Uploads completed: a blob copied. (A mount that finds the blob
    // there, as a late notice of a blob push may ask, copies nothing.)
    let uploads = || env.secondary.requests_matching(&["\"PUT ", "/blobs/uploads/"]);
    let before = uploads();
    assert!(before > 0, "the first copy uploaded blobs");
    // The operator starts afresh: the state file and its lock file, which
    // would otherwise witness a lost state file.
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(env.path(&format!("state.sqlite3{suffix}")));
    }
    env.start_secondary_daemon();
    poll_until("the new state file to be ready", CONVERGE, Duration::from_secs(1), || ready(&env));
    assert_eq!(uploads(), before, "blobs were uploaded to the secondary again");
}

#[test]
fn a_pass_keeps_to_max_requests_per_second() {
    let env = env("reconcile-paced", Mode::Manual);
    for i in 0..12 {
        env.p.push_image(&format!("r{i:02}"), "v1", &oci_image(40 + i, &[100]));
    }
    env.georeg(&["backfill"]).assert_ok();
    env.add_replication("max_requests_per_second = 4");
    let georeg_requests = || env.primary.requests_matching(&["georeg/"]);
    let before = georeg_requests();
    env.start_secondary_daemon();
    std::thread::sleep(Duration::from_secs(10));
    let made = georeg_requests() - before;
    // Four a second: ten seconds, and a second's worth at the start.
    assert!(made <= 4 * 11, "{made} requests to the primary in 10 s under a cap of 4 per second");
    assert!(made >= 8, "the pass read the primary ({made} requests)");
}

#[test]
fn a_primary_that_sends_no_notifications_is_replicated_by_reconciliation_alone() {
    let env = env("reconcile-alone", Mode::Manual);
    // Neither a notification secret nor a primary georeg to follow.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let alone = text.replace("secret_file = \"notification-secret\"\n", "");
    assert_ne!(text, alone);
    std::fs::write(&env.config, alone).unwrap();
    env.start_secondary_daemon();
    let log = || env.daemons.borrow()[0].log_text();
    wait_until("the daemon to say it works by reconciliation alone", Duration::from_secs(30), || {
        log().contains("by reconciliation alone, within replication.reconcile_interval_seconds (30 s)")
    });
    // Pushed after the first pass: only a later pass can find it.
    wait_until("the first reconciliation pass", CONVERGE, || {
        env.state().query_row("SELECT COUNT(*) FROM primary_listing", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    env.p.push_image("quiet/app", "v1", &oci_image(61, &[2000]));
    env.wait_in_sync("quiet/app", CONVERGE);
    env.assert_in_sync("quiet/app");
}
