//! Every exit code `georeg help COMMAND` documents, produced for real.
//!
//! `WALKED` lists, per command, the codes the tests below produce; the
//! first test holds it equal to what each help page says, so a code the
//! help names and nothing produces (or a code produced and not named) fails
//! here. Each command's test then produces every code of its line, against
//! the real registries, with the double of `support/hostile_registry.rs`
//! standing in for a registry that never answers (for 130).

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::hostile_registry::{Answer, HostileRegistry};
use crate::support::oci::{oci_image, sha256, Image};
use crate::support::registry::free_port;
use crate::support::{georeg_bin, wait_until, Env, Run};

/// The codes each command's test produces.
const WALKED: &[(&str, &[i32])] = &[
    ("backfill", &[0, 1, 2, 130]),
    ("check", &[0, 1, 2]),
    ("deletions", &[0, 1, 2, 130]),
    ("demo", &[0, 1, 2]),
    ("drill", &[0, 1, 2, 130]),
    ("export", &[0, 1, 2, 130]),
    ("failover-check", &[0, 1, 2]),
    ("import", &[0, 1, 2, 130]),
    ("inventory", &[0, 1, 2, 130]),
    ("serve", &[0, 2]),
    ("status", &[0, 2]),
    ("sync", &[0, 1, 2, 130]),
    ("token", &[0, 2]),
    ("verify", &[0, 1, 2, 130]),
    ("version", &[0, 2]),
];

fn walked(command: &str) -> BTreeSet<i32> {
    WALKED.iter().find(|w| w.0 == command).map(|w| w.1.iter().copied().collect()).unwrap_or_default()
}

/// The codes `georeg help COMMAND` names: one line each under
/// `exit codes:`, each a code first.
fn documented(command: &str) -> BTreeSet<i32> {
    let out = Command::new(georeg_bin()).args(["help", command]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let codes: BTreeSet<i32> = text
        .lines()
        .skip_while(|l| *l != "exit codes:")
        .skip(1)
        .map_while(|l| l.strip_prefix("  ")?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!codes.is_empty(), "georeg help {command} lists no exit codes:\n{text}");
    codes
}

#[test]
fn every_documented_exit_code_is_walked_and_every_walked_one_documented() {
    let out = Command::new(georeg_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    for (command, _) in WALKED {
        assert!(help.contains(command), "georeg --help does not list {command}:\n{help}");
        assert_eq!(documented(command), walked(command), "georeg help {command} against what the tests produce");
    }
}

/// Runs georeg and records its exit code in `seen`, checking it is `code`.
fn expect(seen: &mut BTreeSet<i32>, run: Run, code: i32) {
    run.assert_code(code);
    seen.insert(code);
}

fn georeg_with(config: &std::path::Path, args: &[&str]) -> Run {
    let mut command = Command::new(georeg_bin());
    command.arg("--config").arg(config).args(args).env("RUST_LOG", "info").stdin(std::process::Stdio::null());
    let out = command.output().unwrap();
    Run::of(out).ran(&command, Some(config))
}

/// Exit code 2 for an invalid configuration and for an unknown option.
fn invalid(env: &Env, seen: &mut BTreeSet<i32>, args: &[&str]) {
    let bad = env.path("invalid.toml");
    std::fs::write(&bad, "role = \"tertiary\"\n").unwrap();
    let run = georeg_with(&bad, args);
    assert!(format!("{}{}", run.stdout, run.stderr).contains("role"), "the error names the key: {run}");
    expect(seen, run, 2);
    let mut with_option = args.to_vec();
    with_option.push("--no-such-option");
    expect(seen, env.georeg(&with_option), 2);
}

/// Sends the config's reads of `url` (a registry) to `to` instead, for as
/// long as the guard lives.
struct Routed<'a> {
    env: &'a Env,
    saved: String,
}

fn route<'a>(env: &'a Env, url: &str, to: &str) -> Routed<'a> {
    let saved = std::fs::read_to_string(&env.config).unwrap();
    let routed = saved
        .replace(&format!("\"{url}/\""), &format!("\"{to}/\""))
        .replace(&format!("\"{url}\""), &format!("\"{to}\""));
    assert_ne!(saved, routed, "the config names {url}");
    std::fs::write(&env.config, routed).unwrap();
    Routed { env, saved }
}

impl Drop for Routed<'_> {
    fn drop(&mut self) {
        std::fs::write(&self.env.config, &self.saved).unwrap();
    }
}

/// Exit code 130: `args` started against a registry (`url`) that accepts
/// requests and never answers, then SIGTERM once the first request is in.
fn interrupted(env: &Env, seen: &mut BTreeSet<i32>, url: &str, args: &[&str]) {
    let silent = HostileRegistry::start(url, |_| Answer::Silent);
    let _routed = route(env, url, &silent.url);
    let mut child = env.spawn(&format!("interrupted-{}", args[0]), args);
    wait_until(&format!("georeg {} to ask the silent registry", args[0]), Duration::from_secs(30), || {
        silent.requests() > 0 || child.try_wait().unwrap().is_some()
    });
    let kill = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(kill.success(), "kill -TERM");
    let code = exit_code_within(&mut child, Duration::from_secs(30));
    let err = std::fs::read_to_string(env.path(&format!("interrupted-{}.err", args[0]))).unwrap_or_default();
    assert_eq!(code, Some(130), "georeg {args:?} after SIGTERM:\n{err}");
    seen.insert(130);
}

fn exit_code_within(child: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("georeg did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A dead address: nothing listens there.
fn dead() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Flips one byte of a blob in a registry's storage: its digest no longer
/// matches what it holds.
fn corrupt(registry: &crate::support::registry::Registry, image: &Image) {
    let path = registry.blob_data_path(&sha256(&image.blobs[1]));
    let mut data = std::fs::read(&path).unwrap();
    data[0] ^= 1;
    std::fs::write(&path, data).unwrap();
}

#[test]
fn sync_backfill_and_verify() {
    let env = Env::new("exit-sync");
    env.p.push_image("app", "v1", &oci_image(1, &[1000, 2000]));
    let (mut sync, mut backfill, mut verify) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    expect(&mut sync, env.georeg(&["sync", "app"]), 0);
    expect(&mut backfill, env.georeg(&["backfill"]), 0);
    expect(&mut verify, env.georeg(&["verify", "app"]), 0);
    // The primary moves on: the secondary differs until synced.
    env.p.push_image("app", "v2", &oci_image(2, &[1000, 2000]));
    expect(&mut verify, env.georeg(&["verify", "app"]), 1);
    let bundle = env.path("missing.tar");
    expect(&mut verify, env.georeg(&["verify", "--bundle", bundle.to_str().unwrap()]), 2);
    // A blob whose bytes do not match its digest on the primary.
    let bad = oci_image(3, &[1000, 2000]);
    env.p.push_image("bad", "v1", &bad);
    corrupt(&env.primary, &bad);
    expect(&mut sync, env.georeg(&["sync", "bad"]), 1);
    expect(&mut backfill, env.georeg(&["backfill"]), 1);
    for (seen, args) in [(&mut sync, &["sync", "app"][..]), (&mut backfill, &["backfill"]), (&mut verify, &["verify"])]
    {
        interrupted(&env, seen, &env.primary.url, args);
        invalid(&env, seen, args);
    }
    assert_eq!(sync, walked("sync"));
    assert_eq!(backfill, walked("backfill"));
    assert_eq!(verify, walked("verify"));
}

#[test]
fn export_import_and_inventory() {
    let env = Env::new("exit-bundle");
    env.p.push_image("app", "v1", &oci_image(11, &[1000, 2000]));
    let (mut export, mut import, mut inventory) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let tar = env.path("bundle.tar");
    let tar = tar.to_str().unwrap();
    expect(&mut export, env.georeg(&["export", "--output", tar]), 0);
    // A bundle cut short is refused.
    let bytes = std::fs::read(tar).unwrap();
    let short = env.path("short.tar");
    std::fs::write(&short, &bytes[..bytes.len() / 2]).unwrap();
    expect(&mut import, env.georeg(&["import", short.to_str().unwrap()]), 2);
    {
        let _routed = route(&env, &env.secondary.url, &dead());
        expect(&mut import, env.georeg(&["import", tar]), 1);
        expect(&mut inventory, env.georeg(&["inventory", "--output", env.path("inv.json").to_str().unwrap()]), 1);
    }
    interrupted(&env, &mut import, &env.secondary.url, &["import", tar]);
    expect(&mut import, env.georeg(&["import", tar]), 0);
    expect(&mut inventory, env.georeg(&["inventory", "--output", env.path("inv.json").to_str().unwrap()]), 0);
    let inv2 = env.path("inv2.json");
    interrupted(&env, &mut inventory, &env.secondary.url, &["inventory", "--output", inv2.to_str().unwrap()]);
    let bad = oci_image(12, &[1000, 2000]);
    env.p.push_image("bad", "v1", &bad);
    corrupt(&env.primary, &bad);
    expect(&mut export, env.georeg(&["export", "--output", env.path("bad.tar").to_str().unwrap()]), 1);
    let cut = env.path("cut.tar");
    interrupted(&env, &mut export, &env.primary.url, &["export", "--output", cut.to_str().unwrap(), "app"]);
    let x = env.path("x.tar");
    invalid(&env, &mut export, &["export", "--output", x.to_str().unwrap()]);
    invalid(&env, &mut import, &["import", tar]);
    let x = env.path("x.json");
    invalid(&env, &mut inventory, &["inventory", "--output", x.to_str().unwrap()]);
    assert_eq!(export, walked("export"));
    assert_eq!(import, walked("import"));
    assert_eq!(inventory, walked("inventory"));
}

#[test]
fn drill_failover_check_and_deletions() {
    let env = Env::new("exit-drill");
    env.add_replication("delete_delay_hours = 24");
    let (mut drill, mut failover, mut deletions) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    expect(&mut drill, env.georeg(&["drill"]), 0);
    let image = oci_image(21, &[1000, 2000]);
    env.p.push_image("app", "v1", &image);
    env.p.push_image("app", "v2", &oci_image(22, &[1000]));
    // The primary's whole catalog read and replicated, and verified.
    env.georeg(&["backfill"]).assert_ok();
    env.georeg(&["verify"]).assert_ok();
    expect(&mut failover, env.georeg(&["failover-check"]), 0);
    // A repository that cannot be copied: failing, it would be lost.
    let bad = oci_image(23, &[1000, 2000]);
    env.p.push_image("bad", "v1", &bad);
    corrupt(&env.primary, &bad);
    env.georeg(&["sync", "bad"]).assert_code(1);
    expect(&mut failover, env.georeg(&["failover-check"]), 1);
    // A tag the primary lost, held back.
    env.p.delete_tag("app", "v2");
    env.georeg(&["sync", "app"]).assert_ok();
    expect(&mut deletions, env.georeg(&["deletions"]), 0);
    expect(&mut deletions, env.georeg(&["deletions", "--apply", "999"]), 1);
    let id: i64 = env.state().query_row("SELECT MIN(id) FROM deletions", [], |r| r.get(0)).unwrap();
    interrupted(&env, &mut deletions, &env.primary.url, &["deletions", "--apply", &id.to_string()]);
    interrupted(&env, &mut drill, &env.secondary.url, &["drill"]);
    expect(&mut drill, env.georeg(&["drill"]), 0);
    corrupt(&env.secondary, &image);
    expect(&mut drill, env.georeg(&["drill", "--sample", "10"]), 1);
    invalid(&env, &mut drill, &["drill"]);
    invalid(&env, &mut failover, &["failover-check"]);
    invalid(&env, &mut deletions, &["deletions"]);
    assert_eq!(drill, walked("drill"));
    assert_eq!(failover, walked("failover-check"));
    assert_eq!(deletions, walked("deletions"));
}

#[test]
fn check_serve_status_token_version_and_demo() {
    let env = Env::new("exit-serve");
    let mut seen: Vec<(&str, BTreeSet<i32>)> = Vec::new();
    let mut check = BTreeSet::new();
    expect(&mut check, env.georeg(&["check"]), 0);
    {
        let _routed = route(&env, &env.primary.url, &dead());
        expect(&mut check, env.georeg(&["check"]), 1);
    }
    invalid(&env, &mut check, &["check"]);
    seen.push(("check", check));

    let mut serve = BTreeSet::new();
    env.start_secondary_daemon();
    let run = env.georeg(&["serve"]);
    assert!(run.stderr.contains("in use by"), "{run}");
    expect(&mut serve, run, 2);
    let mut daemon = env.take_secondary_daemon();
    let kill = Command::new("kill").arg("-TERM").arg(daemon.child().id().to_string()).status().unwrap();
    assert!(kill.success());
    let code = exit_code_within(daemon.child(), Duration::from_secs(30));
    assert_eq!(code, Some(0), "serve after SIGTERM:\n{}", daemon.log_text());
    serve.insert(0);
    invalid(&env, &mut serve, &["serve"]);
    seen.push(("serve", serve));

    let mut status = BTreeSet::new();
    expect(&mut status, env.georeg(&["status"]), 0);
    invalid(&env, &mut status, &["status"]);
    seen.push(("status", status));

    let mut token = BTreeSet::new();
    expect(&mut token, env.georeg(&["token", "--scope", "repository:app:pull"]), 0);
    expect(&mut token, env.georeg(&["token"]), 2);
    seen.push(("token", token));

    let mut version = BTreeSet::new();
    expect(&mut version, env.georeg(&["version"]), 0);
    expect(&mut version, env.georeg(&["version", "--no-such-option"]), 2);
    seen.push(("version", version));

    let mut demo = BTreeSet::new();
    let run = |path: &str, args: &[&str]| {
        let out = Command::new(georeg_bin()).args(args).env("PATH", path).output().unwrap();
        Run::of(out)
    };
    let path = std::env::var("PATH").unwrap_or_default();
    expect(&mut demo, run(&path, &["demo", "--once"]), 0);
    // No folder for the registries' storage: they cannot start.
    let out = Command::new(georeg_bin()).args(["demo", "--once"]).env("TMPDIR", &env.config).output().unwrap();
    expect(&mut demo, Run::of(out), 1);
    expect(&mut demo, run(&path, &["demo", "--no-such-option"]), 2);
    seen.push(("demo", demo));

    for (command, codes) in seen {
        assert_eq!(codes, walked(command), "{command}");
    }
}
