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
        env.georeg(&["verify", repo]).assert_ok();
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
