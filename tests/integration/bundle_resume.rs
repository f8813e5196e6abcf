//! An export interrupted with `kill -9`, over a slow link, run again: it
//! goes on from `FILE.partial` and writes the very bundle an export never
//! interrupted writes; other arguments, or a primary that changed, start
//! over and say so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::support::oci::oci_image;
use crate::support::wan::{Link, WanProxy};
use crate::support::{georeg_bin, poll_until, Env};

const MB: u64 = 1_000_000;
/// The export time of every run here but the reruns, which take theirs
/// from the journal.
const EPOCH: &str = "1700000000";

fn sha256_of(path: &Path) -> String {
    let mut hash = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hash).unwrap();
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `georeg export --output PATH ARGS...`, started with SOURCE_DATE_EPOCH.
fn spawn_export(env: &Env, path: &Path, args: &[&str]) -> Child {
    let err = std::fs::File::create(env.path("killed.err")).unwrap();
    Command::new(georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["export", "--output", path.to_str().unwrap()])
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Starts the export and kills it (SIGKILL) once `FILE.partial` holds
/// `at` bytes.
fn export_killed_at(env: &Env, path: &Path, args: &[&str], at: u64) -> u64 {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let mut child = spawn_export(env, path, args);
    let mut size = 0;
    poll_until("the export to write part of the bundle", Duration::from_secs(120), Duration::from_millis(5), || {
        assert!(child.try_wait().unwrap().is_none(), "the export ended before it could be killed mid-way");
        size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        size >= at
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!path.exists() && partial.exists());
    size
}

#[test]
fn an_export_killed_midway_goes_on_when_run_again_and_writes_the_same_bytes() {
    let env = Env::new("bundle-resume");
    for i in 0..4u64 {
        let repo = format!("res/r{i}");
        env.p.push_large_image(&repo, "big", 50 + i, 30 * MB);
        for j in 0..10u64 {
            env.p.push_image(&repo, &format!("small{j}"), &oci_image(100 + i * 10 + j, &[20_000, 30_000]));
        }
    }
    // 25 MB/s: the export takes some 5 s, time to kill it half way.
    let proxy = WanProxy::start(env.primary.url.trim_start_matches("http://"), Link::wan(Duration::ZERO, 200_000_000));
    env.route_primary_through(&proxy.url);

    let clean = env.path("clean.tar");
    let run = Command::new(georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["export", "--output", clean.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let whole = proxy.downstream_bytes();
    let size = std::fs::metadata(&clean).unwrap().len();

    // Killed with half of it written; run again, without SOURCE_DATE_EPOCH:
    // the time, and so the id and every byte, come from the journal.
    let path = env.path("b.tar");
    let killed_at = export_killed_at(&env, &path, &[], size / 2);
    let before = proxy.downstream_bytes();
    let run = env.georeg(&["export", "--output", path.to_str().unwrap()]);
    run.assert_ok();
    let reread = proxy.downstream_bytes() - before;
    eprintln!(
        "bundle {size} bytes, the clean export read {whole} bytes from the primary; killed at {killed_at} bytes, \
         the rerun read {reread} ({:.1} %)\n{}",
        reread as f64 * 100.0 / whole as f64,
        run.stderr
    );
    assert!(run.stderr.contains("going on with the export begun at 2023-11-14T22:13:20.000Z"), "{}", run.stderr);
    assert!(run.stdout.contains("that the interrupted export had written"), "{}", run.stdout);
    assert_eq!(sha256_of(&path), sha256_of(&clean), "the bundle an export never interrupted writes");
    assert!(reread < whole * 7 / 10, "the rerun read {reread} of {whole} bytes from the primary");
    assert!(!env.path("b.tar.partial").exists() && !env.path("b.tar.resume").exists());

    // Killed again; run with other arguments: starts over, saying so.
    let path = env.path("c.tar");
    export_killed_at(&env, &path, &[], size / 2);
    let run = env.georeg(&["export", "--output", path.to_str().unwrap(), "res/r0", "res/r1"]);
    run.assert_ok();
    assert!(
        run.stderr
            .contains("is left from an export with other arguments (it exported the whole catalog): starting over"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("interrupted export had written"), "{}", run.stdout);

    // Killed once the walk is done; a tag moves on the primary: over again.
    let path = env.path("d.tar");
    export_killed_at(&env, &path, &[], size / 2);
    env.p.push_image("res/r1", "small3", &oci_image(999, &[10_000]));
    let run = env.georeg(&["export", "--output", path.to_str().unwrap()]);
    run.assert_ok();
    assert!(run.stderr.contains("res/r1:small3 was sha256:") && run.stderr.contains("starting over"), "{}", run.stderr);
}
