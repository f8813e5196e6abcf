//! kill -9 at random moments, twenty times, alternating `georeg backfill`
//! and `georeg serve` on one state file during a corpus with large layers:
//! after every kill the secondary holds no tag whose blobs are missing, and
//! in the end every tag is identical on both registries, every repository
//! synced and no row left claimed.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::oci::{oci_image, Api};
use crate::support::{wait_until, Env};

const KILLS: usize = 20;
/// The whole test, kills and the final pass, stays under this.
const BUDGET: Duration = Duration::from_secs(300);

/// Every blob each tag of the repository references, present on `api`.
fn missing_blobs(api: &Api, repo: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for tag in api.tags(repo) {
        let Some((bytes, _)) = api.manifest(repo, &tag) else { continue };
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let config = m["config"]["digest"].as_str().map(String::from);
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        let digests = config.into_iter().chain(layers.iter().filter_map(|l| l["digest"].as_str().map(String::from)));
        for d in digests {
            if !api.blob_exists(repo, &d) {
                missing.push(format!("{repo}:{tag} needs {d}"));
            }
        }
    }
    missing
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kill_9_at_random_moments_never_leaves_a_wrong_or_incomplete_secondary() {
    let started = Instant::now();
    let env = Env::new("kill-9-loop");
    let repos: Vec<String> = (0..6).map(|i| format!("crash/r{i}")).collect();
    for (i, repo) in repos.iter().enumerate() {
        if i % 2 == 0 {
            env.p.push_large_image(repo, "big", 100 + i as u64, 40 << 20);
        }
        env.p.push_image(repo, "v1", &oci_image(200 + i as u64, &[50_000, 20_000]));
        env.p.push_image(repo, "v2", &oci_image(300 + i as u64, &[30_000]));
    }
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill -9 loop: seed {seed}");
    let mut random_ms = |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    for i in 0..KILLS {
        assert!(started.elapsed() < BUDGET, "the kill loop ran out of time at kill {i}");
        let command = if i % 2 == 0 { "backfill" } else { "serve" };
        let mut child = env.spawn(&format!("run-{i}-{command}"), &[command]);
        std::thread::sleep(Duration::from_millis(100 + random_ms(1500)));
        kill9(&mut child);
        for repo in &repos {
            let missing = missing_blobs(&env.s, repo);
            assert!(missing.is_empty(), "after kill {i} ({command}): tags without their blobs: {missing:?}");
        }
    }
    // Whichever command comes next recovers what the dead ones held.
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    for repo in &repos {
        env.assert_in_sync(repo);
        assert_eq!(env.sync_state(repo).0, "synced", "{repo}");
    }
    assert!(env.started_rows().is_empty(), "rows left claimed: {:?}", env.started_rows());
    wait_until("nothing pending", Duration::from_secs(5), || {
        env.state()
            .query_row("SELECT COUNT(*) FROM repositories WHERE sync_state <> 'synced'", [], |r| r.get::<_, i64>(0))
            .unwrap()
            == 0
    });
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
