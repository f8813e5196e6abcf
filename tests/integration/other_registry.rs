//! Replication into an OCI registry that is not distribution
//! (`support::other_registry`): the fidelity corpus arrives with every
//! digest equal, verifies, and a sync cut short resumes.

use crate::support::oci::{docker_image, docker_list, oci_image, oci_index, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::support::shapes::{self, buildkit_cache, oci_shaped};
use crate::support::Env;

/// The shapes of `fidelity.rs`, pushed to the primary: repository names.
fn push_fidelity_corpus(env: &Env) -> Vec<&'static str> {
    let image = oci_image(10, &[1000, 20_000]);
    let signature = shapes::referrer(11, &image, "application/vnd.dev.cosign.artifact.sig.v1+json");
    env.p.push_image("signed/app", "v1", &image);
    let fallback = format!("sha256-{}", image.digest.trim_start_matches("sha256:"));
    env.p.push_image("signed/app", &fallback, &signature);
    env.p.push_image("app/cache", "buildcache", &buildkit_cache(1));
    env.p.push_image(
        "shapes/zstd",
        "v1",
        &oci_shaped(
            30,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            serde_json::Value::Null,
        ),
    );
    env.p.push_image(
        "charts/app",
        "1.2.3",
        &oci_shaped(
            32,
            "application/vnd.cncf.helm.config.v1+json",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            serde_json::Value::Null,
        ),
    );
    env.p.push_image("shapes/foreign", "v1", &shapes::with_foreign_layer(33));
    env.p.push_image("multi/oci", "latest", &oci_index(40));
    env.p.push_image("multi/docker", "latest", &docker_list(41));
    env.p.push_image("docker/app", "v2", &docker_image(42, &[3000, 4000]));
    vec![
        "signed/app",
        "app/cache",
        "shapes/zstd",
        "charts/app",
        "shapes/foreign",
        "multi/oci",
        "multi/docker",
        "docker/app",
    ]
}

#[test]
fn the_fidelity_corpus_replicates_into_another_oci_registry_with_every_digest_equal() {
    let env = Env::with_other_secondary("other-fidelity");
    let repos = push_fidelity_corpus(&env);
    let check = env.georeg(&["check"]);
    check.assert_ok();
    let local = check.stdout.lines().find(|l| l.contains("this node's registry")).unwrap();
    assert!(local.contains("authentication: Basic"), "{local}");
    assert!(local.contains("push allowed") && local.contains("deletes refused by the registry (405)"), "{local}");
    // container-registry 0.3 takes no image index nor manifest list, nor
    // a manifest by digest (what an index's platforms need): those
    // repositories fail naming the type, the others arrive.
    let refused = [
        ("multi/oci", format!("{OCI_MANIFEST} pushed by digest")),
        ("app/cache", OCI_INDEX.to_string()),
        ("multi/docker", format!("{DOCKER_MANIFEST} pushed by digest")),
    ];
    let backfill = env.georeg(&["backfill"]);
    backfill.assert_code(1);
    for (repo, media_type) in &refused {
        let line = backfill.stdout.lines().find(|l| l.starts_with(&format!("{repo}: FAILED"))).unwrap();
        assert!(line.contains(&format!("refused a manifest of media type {media_type}")), "{line}");
    }
    let copied: Vec<&str> = repos.into_iter().filter(|r| !refused.iter().any(|(x, _)| x == r)).collect();
    for repo in &copied {
        env.assert_tags_read_the_same(repo);
    }
    for repo in &copied {
        // Every blob read back from it, by the tags georeg left there.
        let verify = env.georeg(&["verify", "--blobs", repo]);
        verify.assert_ok();
        assert!(verify.stdout.contains("the secondary lists no tags"), "{verify}");
        assert!(
            verify.stderr.contains("read back from the secondary") && !verify.stderr.contains(": 0 blobs"),
            "{verify}"
        );
    }
    // Again: nothing left to copy, still equal.
    let again = env.georeg(&["sync", "docker/app"]);
    again.assert_ok();
    env.assert_tags_read_the_same("docker/app");
}

#[test]
fn a_copy_into_another_oci_registry_cut_by_kill_9_resumes() {
    use crate::support::poll_until;
    use crate::support::wan::{Link, WanProxy};
    use std::time::Duration;
    let env = Env::with_other_secondary("other-resume");
    let size = 40_000_000;
    env.p.push_large_image("big/app", "v1", 8, size);
    let link = Link { one_way_delay: Duration::ZERO, bytes_per_second: Some(20_000_000) };
    let proxy = WanProxy::start(env.primary.url.trim_start_matches("http://"), link);
    env.route_primary_through(&proxy.url);
    let mut child = env.spawn("first", &["sync", "big/app"]);
    let done = || -> i64 {
        env.state().query_row("SELECT coalesce(max(bytes_done), 0) FROM uploads", [], |r| r.get(0)).unwrap_or(0)
    };
    poll_until("a chunk of the layer recorded", Duration::from_secs(60), Duration::from_millis(5), || {
        done() >= 8 << 20
    });
    let _ = child.kill();
    let _ = child.wait();
    let run = env.georeg(&["sync", "big/app"]);
    run.assert_ok();
    // This registry does not say how much an upload holds (GET answers
    // 405): the blob starts again, and says so.
    assert!(run.stderr.contains("starting that blob again"), "{}", run.stderr);
    env.assert_tags_read_the_same("big/app");
    env.georeg(&["verify", "big/app"]).assert_ok();
    drop(proxy);
}

#[test]
fn a_deletion_on_the_primary_meets_a_secondary_that_refuses_deletes() {
    let env = Env::with_other_secondary("other-delete");
    env.p.push_image("docker/app", "v1", &docker_image(70, &[1000]));
    env.p.push_image("docker/app", "v2", &oci_image(71, &[2000]));
    env.georeg(&["sync", "docker/app"]).assert_ok();
    env.assert_tags_read_the_same("docker/app");
    let v2 = env.p.digest("docker/app", "v2").unwrap();
    env.p.delete_manifest("docker/app", &v2);
    // The tag georeg put there is asked for by name (the registry lists
    // none), found, and its deletion refused: the repository fails saying so.
    let run = env.georeg(&["sync", "docker/app"]);
    run.assert_code(1);
    assert!(run.stderr.contains("lists no tags") && run.stderr.contains("cannot be seen"), "{run}");
    let line = run.stdout.lines().find(|l| l.starts_with("docker/app: FAILED")).unwrap();
    assert!(line.contains("405") && line.contains("does not delete") && line.contains("docker/app:v2"), "{line}");
    env.assert_tags_read_the_same("docker/app");
}

#[test]
fn without_notifications_reconciliation_alone_keeps_another_oci_registry_in_step() {
    use crate::support::wait_until;
    use std::time::Duration;
    let env = Env::with_other_secondary("other-reconcile");
    env.add_replication("reconcile_interval_seconds = 10");
    env.p.push_image("docker/app", "v1", &docker_image(80, &[1000]));
    let arrived = |tag: &str| {
        let want = env.p.digest("docker/app", tag);
        let got = env.s.manifest("docker/app", tag).map(|(bytes, _)| crate::support::oci::sha256(&bytes));
        want.is_some() && got == want
    };
    env.start_daemons();
    wait_until("v1 on the secondary (backfill)", Duration::from_secs(60), || arrived("v1"));
    // No notification will say so: only a reconciliation pass can find it.
    env.p.push_image("docker/app", "v2", &oci_image(81, &[2000]));
    wait_until("v2 on the secondary (reconciliation)", Duration::from_secs(60), || arrived("v2"));
    env.assert_tags_read_the_same("docker/app");
}

#[test]
fn following_a_primary_georeg_another_oci_registry_gets_the_primarys_fingerprint() {
    use crate::support::{wait_until, Mode};
    use std::time::Duration;
    let env = Env::with_other_secondary_in("other-follow", Mode::Follow);
    env.add_replication("reconcile_interval_seconds = 10");
    let mut text = std::fs::read_to_string(env.primary_config()).unwrap();
    text.push_str("\n[replication]\nreconcile_interval_seconds = 10\n");
    std::fs::write(env.primary_config(), text).unwrap();
    env.start_daemons();
    env.p.push_image("docker/app", "v1", &docker_image(90, &[1000]));
    env.p.push_image("docker/app", "v2", &oci_image(91, &[2000]));
    let arrived = |tag: &str| {
        let want = env.p.digest("docker/app", tag);
        let got = env.s.manifest("docker/app", tag).map(|(bytes, _)| crate::support::oci::sha256(&bytes));
        want.is_some() && got == want
    };
    wait_until("both tags on the secondary (events)", Duration::from_secs(60), || arrived("v1") && arrived("v2"));
    env.assert_tags_read_the_same("docker/app");
    // Its fingerprint, read by the tags georeg left there (it lists none),
    // is the primary's: reconciliation finds nothing to do.
    let fingerprint = |state: rusqlite::Connection| -> Option<(String, i64)> {
        state
            .query_row(
                "SELECT fingerprint, tags FROM fingerprints WHERE repository = 'docker/app' AND stale = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok()
    };
    wait_until("the same fingerprint on both nodes", Duration::from_secs(90), || {
        let (mine, theirs) = (fingerprint(env.state()), fingerprint(env.primary_state()));
        mine.is_some() && mine == theirs && mine.as_ref().is_some_and(|(_, tags)| *tags == 2)
    });
}
