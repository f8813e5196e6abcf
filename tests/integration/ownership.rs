//! One owner per state file: a second daemon is refused, foreground
//! commands hand their work to a running daemon, every command stops
//! cleanly on a signal, and whatever a killed process held is recovered
//! by the next one.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::oci::oci_image;
use crate::support::{wait_until, Env};

const DEADLINE: Duration = Duration::from_secs(120);
/// Large enough that a copy takes a while (seconds), small enough for CI.
const LARGE: u64 = 300 << 20;

fn claim_of(env: &Env, repo: &str) -> Option<String> {
    env.state().query_row("SELECT claim_id FROM repositories WHERE name = ?1", [repo], |r| r.get(0)).unwrap_or(None)
}

/// Waits (bounded) for the child to exit; its exit code.
fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("georeg did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill").arg(sig).arg(child.id().to_string()).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

#[test]
fn a_second_serve_exits_2_and_leaves_the_first_ones_rows_alone() {
    let env = Env::new("two-serves");
    env.p.push_large_image("big/app", "v1", 1, LARGE);
    env.start_secondary_daemon();
    wait_until("the daemon to claim big/app", DEADLINE, || claim_of(&env, "big/app").is_some());
    let claim = claim_of(&env, "big/app");
    let second = env.georeg(&["serve"]);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(second.stderr.contains("is in use by georeg serve (PID"), "{}", second.stderr);
    let state = env
        .state()
        .query_row("SELECT sync_state FROM repositories WHERE name = 'big/app'", [], |r| r.get::<_, String>(0));
    // The running sync still holds its claim (or has finished with it).
    assert!(claim_of(&env, "big/app") == claim || state.as_deref() == Ok("synced"), "{state:?}");
    env.wait_in_sync("big/app", DEADLINE);
}

#[test]
fn sync_and_verify_beside_a_daemon_hand_their_work_to_it() {
    let env = Env::new("hand-over");
    env.start_secondary_daemon();
    // Once the daemon's first listing of the primary has run, this
    // repository is new to it: only the hand-over can copy it.
    wait_until("the daemon's first listing of the primary", DEADLINE, || {
        env.state().query_row("SELECT COUNT(*) FROM primary_listing", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    env.p.push_image("handed/app", "v1", &oci_image(1, &[4000]));
    let run = env.georeg(&["sync", "handed/app"]);
    run.assert_ok();
    assert!(run.stderr.contains("owns") && run.stderr.contains("this command follows it"), "{}", run.stderr);
    let line = run.stdout.lines().find(|l| l.starts_with("handed/app: synced")).unwrap_or_default();
    assert!(line.contains("by georeg serve (PID") && line.contains("1 tags copied"), "{}", run.stdout);
    env.assert_in_sync("handed/app");
    let daemon_log = env.daemons.borrow()[0].log_text();
    assert!(daemon_log.contains("handed/app: synced (full sync)"), "the daemon did the work:\n{daemon_log}");

    let run = env.georeg(&["verify", "--blobs", "handed/app"]);
    run.assert_ok();
    assert!(run.stdout.contains("handed/app: verified, checksum sha256:"), "{}", run.stdout);
    assert!(env.daemons.borrow()[0].log_text().contains("blobs ("), "the daemon read the blobs back");

    // backfill hands its syncs over too, with its progress line.
    env.p.push_image("handed/second", "v1", &oci_image(2, &[3000]));
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    assert!(run.stderr.contains("this command follows it"), "{}", run.stderr);
    assert!(run.stderr.contains("backfill: 1/1 repositories"), "{}", run.stderr);
    env.assert_in_sync("handed/second");
    assert!(env.started_rows().is_empty());
}

#[test]
fn an_interrupted_backfill_hands_back_its_rows_and_exits_130() {
    let env = Env::new("interrupt");
    env.p.push_large_image("big/one", "v1", 2, LARGE);
    env.p.push_image("small/two", "v1", &oci_image(3, &[1000]));
    let mut backfill = env.spawn("backfill", &["backfill"]);
    wait_until("backfill to claim big/one", DEADLINE, || claim_of(&env, "big/one").is_some());
    signal(&backfill, "-INT");
    let code = wait_exit(&mut backfill, Duration::from_secs(15));
    let stderr = std::fs::read_to_string(env.path("backfill.err")).unwrap();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("georeg: interrupted:"), "{stderr}");
    assert!(env.started_rows().is_empty(), "nothing left started: {:?}", env.started_rows());
    // The next run finishes everything.
    env.georeg(&["backfill"]).assert_ok();
    env.assert_in_sync("big/one");
    env.assert_in_sync("small/two");
}

#[test]
fn after_kill_9_the_next_command_recovers_what_the_dead_one_held() {
    let env = Env::new("kill-9");
    env.p.push_large_image("big/one", "v1", 4, LARGE);
    let mut backfill = env.spawn("backfill", &["backfill"]);
    wait_until("backfill to claim big/one", DEADLINE, || claim_of(&env, "big/one").is_some());
    signal(&backfill, "-KILL");
    wait_exit(&mut backfill, Duration::from_secs(15));
    assert_eq!(env.started_rows(), ["big/one"], "a kill -9 leaves the row claimed");
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    assert!(run.stderr.contains("left mid-sync by a georeg process that stopped"), "{}", run.stderr);
    env.assert_in_sync("big/one");
    assert!(env.started_rows().is_empty());
}

#[test]
fn a_state_file_locked_past_the_busy_timeout_never_leaves_a_row_claimed_by_nobody() {
    let env = Env::new("store-locked");
    env.p.push_large_image("big/one", "v1", 5, LARGE / 2);
    env.start_secondary_daemon();
    wait_until("the daemon to claim big/one", DEADLINE, || claim_of(&env, "big/one").is_some());
    // Another writer holds the state file past georeg's busy timeout (10 s),
    // and keeps holding it until recording the sync's outcome has failed
    // too, which georeg must then retry.
    let conn = env.state();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let log = || env.daemons.borrow()[0].log_text();
    wait_until("recording big/one's outcome to fail", DEADLINE, || log().contains("big/one: cannot record that it"));
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);
    wait_until("big/one synced", DEADLINE, || env.sync_state("big/one").0 == "synced");
    env.assert_in_sync("big/one");
    assert!(env.started_rows().is_empty());
}

#[test]
fn a_sync_handed_to_the_daemon_ends_like_one_done_alone_when_the_primary_is_down() {
    let mut env = Env::new("hand-over-down");
    env.p.push_image("down/app", "v1", &oci_image(2, &[4000]));
    env.start_secondary_daemon();
    wait_until("the daemon's first listing of the primary", DEADLINE, || {
        env.state().query_row("SELECT COUNT(*) FROM primary_listing", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    env.primary.stop();
    let (code, out, _) = run_within(&env, "follow-down", &["sync", "down/app"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("down/app: FAILED") && out.contains("cannot reach"), "{out}");
}

/// Runs georeg, failing the test if it has not ended within DEADLINE:
/// (exit code, stdout, stderr).
fn run_within(env: &Env, name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let started = std::time::Instant::now();
    let mut child = env.spawn(name, args);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!(
                "georeg {args:?} did not end within {DEADLINE:?}:\n{}",
                std::fs::read_to_string(env.path(&format!("{name}.err"))).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let read = |ext: &str| std::fs::read_to_string(env.path(&format!("{name}.{ext}"))).unwrap_or_default();
    (code, read("out"), read("err"))
}

#[test]
fn a_verification_handed_to_the_daemon_fails_when_the_primary_is_down_and_never_says_verified() {
    let mut env = Env::new("verify-over-down");
    env.p.push_image("down/app", "v1", &oci_image(3, &[4000]));
    env.georeg(&["sync", "down/app"]).assert_ok();
    env.georeg(&["verify", "down/app"]).assert_ok();
    env.start_secondary_daemon();
    wait_until("the daemon's first listing of the primary", DEADLINE, || {
        env.state().query_row("SELECT COUNT(*) FROM primary_listing", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    env.primary.stop();
    let (code, out, err) = run_within(&env, "verify-down", &["verify", "down/app"]);
    assert!(err.contains("this command follows it"), "{err}");
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("down/app: FAILED") && !out.contains("verified, checksum"), "{out}");
}
