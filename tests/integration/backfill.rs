//! Backfill, selective sync and verification against real registries.

use std::time::Duration;

use crate::support::oci::{self, artifact, docker_image, docker_list, oci_image, oci_index, Image};
use crate::support::{keys, wait_until, Env};

const DEADLINE: Duration = Duration::from_secs(90);

/// Repository `i` of a mixed corpus: every image kind the copy engine knows.
fn mixed(i: u64) -> (String, Image) {
    let image = match i % 5 {
        0 => oci_image(1000 + i, &[3000, 1000]),
        1 => docker_image(1000 + i, &[2000]),
        2 => oci_index(1000 + i * 3),
        3 => docker_list(1000 + i * 3),
        _ => artifact(1000 + i),
    };
    (format!("fleet/repo-{i:02}"), image)
}

fn count(env: &Env, sql: &str) -> i64 {
    env.state().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

#[test]
fn fresh_secondary_converges_to_all_synced_and_verified_without_events() {
    let env = Env::new("converge");
    for i in 0..30 {
        let (repo, image) = mixed(i);
        env.p.push_image(&repo, "v1", &image);
        if i % 3 == 0 {
            env.p.push_image(&repo, "latest", &image);
        }
    }
    env.start_daemons();
    wait_until("30 repositories synced and verified", DEADLINE, || {
        count(
            &env,
            "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced' AND verification_state = 'succeeded'",
        ) == 30
    });
    for i in 0..30 {
        env.assert_in_sync(&mixed(i).0);
    }
    assert_eq!(count(&env, "SELECT COUNT(*) FROM events"), 0, "no event was involved");
    // The stored checksum is the secondary's, computed the documented way.
    let tags = env.s.tag_digests("fleet/repo-00");
    let text: String = tags.iter().map(|(t, d)| format!("{t} {d}\n")).collect();
    let stored: String = env
        .state()
        .query_row("SELECT verification_checksum FROM repositories WHERE name = 'fleet/repo-00'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, oci::sha256(text.as_bytes()));
}

#[test]
fn tampering_is_reported_by_tag_and_repaired_by_the_next_sync() {
    let env = Env::new("tamper");
    for (repo, seed) in [("t/deleted", 1), ("t/repointed", 2), ("t/replaced", 3), ("t/intact", 4)] {
        env.p.push_image(repo, "v1", &oci_image(2000 + seed, &[1000]));
        env.p.push_image(repo, "v2", &oci_image(2100 + seed, &[1000]));
    }
    env.georeg(&["backfill"]).assert_ok();
    env.georeg(&["verify"]).assert_ok();

    // Behind georeg's back, on the secondary:
    env.s.delete_tag("t/deleted", "v1");
    let v2 = oci_image(2102, &[1000]);
    env.s.put_manifest("t/repointed", "v1", &v2.media_type, &v2.manifest);
    env.s.push_image("t/replaced", "v1", &docker_image(2999, &[500]));

    let run = env.georeg(&["verify"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    for repo in ["t/deleted", "t/repointed", "t/replaced"] {
        let line = run.stdout.lines().find(|l| l.starts_with(&format!("{repo}:"))).unwrap();
        assert!(line.contains("FAILED") && line.contains("checksum mismatch") && line.contains("tag v1:"), "{line}");
    }
    assert!(
        run.stdout.contains("tag v1: primary sha256:") && run.stdout.contains("secondary missing"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.lines().any(|l| l.starts_with("t/intact: verified")), "{}", run.stdout);
    let failure: String = env
        .state()
        .query_row("SELECT verification_failure FROM repositories WHERE name = 't/replaced'", [], |r| r.get(0))
        .unwrap();
    assert!(
        failure.contains("tag v1") && failure.contains("primary sha256:") && failure.contains("secondary sha256:"),
        "{failure}"
    );

    // The failed verifications queued full syncs; the next pass repairs.
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    env.georeg(&["verify"]).assert_ok();
    for repo in ["t/deleted", "t/repointed", "t/replaced", "t/intact"] {
        env.assert_in_sync(repo);
    }
}

#[test]
fn primary_outage_mid_backfill_fails_with_its_url_retries_and_converges() {
    let mut env = Env::new("outage");
    // One worker, so the backfill is still under way when the primary stops.
    let text = std::fs::read_to_string(&env.config).unwrap().replace("workers = 2", "workers = 1");
    std::fs::write(&env.config, text).unwrap();
    for i in 0..20 {
        env.p.push_image(&format!("o/r{i:02}"), "v1", &oci_image(3000 + i, &[4_000_000]));
    }
    env.start_daemons();
    wait_until("the backfill to be under way", DEADLINE, || {
        count(&env, "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced'") >= 1
    });
    env.primary.stop();
    let primary_addr = env.primary.url.trim_start_matches("http://").to_string();
    wait_until("repositories to fail naming the primary", DEADLINE, || {
        count(&env, &format!("SELECT COUNT(*) FROM repositories WHERE sync_state = 'failed' AND last_sync_failure LIKE '%{primary_addr}%'")) >= 1
    });
    wait_until("a repository to be retried and fail again", DEADLINE, || {
        count(&env, "SELECT MAX(retry_count) FROM repositories") >= 2
    });
    let synced_before = count(&env, "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced'");
    assert!(synced_before < 20, "the outage hit the backfill in the middle");
    env.primary.restart();
    wait_until("all 20 repositories synced after the primary returned", DEADLINE, || {
        count(&env, "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced'") == 20
    });
    assert_eq!(count(&env, "SELECT COUNT(*) FROM repositories WHERE sync_state = 'started'"), 0);
    for i in 0..20 {
        env.assert_in_sync(&format!("o/r{i:02}"));
    }
}

#[test]
fn selective_sync_and_repositories_deleted_on_the_primary() {
    let env = Env::new("selective");
    env.write_config(&keys().pkcs1, "include = [\"team/**\"]\nexclude = [\"team/secret/*\"]\n");
    for (i, repo) in ["team/a", "team/b/c", "team/secret/x", "other/y"].iter().enumerate() {
        env.p.push_image(repo, "v1", &oci_image(4000 + i as u64, &[800]));
    }
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    assert!(run.stderr.contains("backfill: 2/2 repositories"), "progress line: {}", run.stderr);
    assert!(run.stderr.contains("2 repositories to replicate (2 new), 0 excluded"), "{}", run.stderr);
    env.assert_in_sync("team/a");
    env.assert_in_sync("team/b/c");
    assert!(
        env.s.tags("team/secret/x").is_empty() && env.s.tags("other/y").is_empty(),
        "excluded repositories are not copied"
    );
    assert_eq!(count(&env, "SELECT COUNT(*) FROM repositories"), 2, "excluded repositories are not counted");

    // team/a vanishes from the primary (its storage removed): it is emptied on the secondary.
    std::fs::remove_dir_all(env.primary.root.join("docker/registry/v2/repositories/team/a")).unwrap();
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    assert!(run.stderr.contains("1 gone from the primary"), "{}", run.stderr);
    assert!(env.s.tags("team/a").is_empty(), "tags of a deleted repository are removed from the secondary");
    env.assert_in_sync("team/b/c");

    // Narrowing the selection marks the repository excluded and stops verifying it.
    env.write_config(&keys().pkcs1, "include = [\"team/b/**\"]\n");
    env.georeg(&["backfill"]).assert_ok();
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM repositories WHERE excluded = 1 AND verification_state = 'disabled'"),
        1
    );
}

#[test]
fn backfill_exits_non_zero_and_names_the_failures() {
    let env = Env::new("backfill-fail");
    let bad = oci_image(5000, &[100_000]);
    env.p.push_image("bad/one", "v1", &bad);
    env.p.push_image("good/one", "v1", &oci_image(5001, &[100_000]));
    let layer = oci::sha256(&bad.blobs[1]);
    let path = env.primary.blob_data_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    data[10] ^= 1;
    std::fs::write(&path, data).unwrap();
    let run = env.georeg(&["backfill"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("1 repository failed:"), "{}", run.stdout);
    let line =
        run.stdout.lines().find(|l| l.starts_with("bad/one: FAILED")).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains(&layer), "{line}");
    env.assert_in_sync("good/one");
}
