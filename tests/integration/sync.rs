//! `georeg sync`: the copy engine against two real registries.

use crate::support::oci::{self, artifact, docker_image, docker_list, oci_image, oci_index};
use crate::support::{keys, Env};

#[test]
fn every_image_kind_replicates_with_identical_digests() {
    let env = Env::new("kinds");
    env.p.push_image("kinds/oci", "v1", &oci_image(1, &[1000, 2000]));
    env.p.push_image("kinds/docker", "v1", &docker_image(2, &[1500]));
    env.p.push_image("kinds/oci-index", "multi", &oci_index(3));
    env.p.push_image("kinds/docker-list", "multi", &docker_list(5));
    env.p.push_image("kinds/artifact", "sig", &artifact(7));
    let repos = ["kinds/oci", "kinds/docker", "kinds/oci-index", "kinds/docker-list", "kinds/artifact"];
    let mut args = vec!["sync"];
    args.extend(repos);
    let run = env.georeg(&args);
    run.assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
        assert!(run.stdout.contains(&format!("{repo}: synced")), "{}", run.stdout);
        assert_eq!(env.sync_state(repo), ("synced".to_string(), None));
    }
    // The children of an index are there by digest, with their blobs.
    let index = oci_index(3);
    for child in &index.children {
        assert_eq!(env.s.digest("kinds/oci-index", &child.digest).as_deref(), Some(child.digest.as_str()));
        for blob in &child.blobs {
            assert!(env.s.blob_exists("kinds/oci-index", &oci::sha256(blob)));
        }
    }
    // A second pass finds nothing to do.
    let again = env.georeg(&["sync", "kinds/oci-index"]);
    again.assert_ok();
    assert!(again.stdout.contains("0 tags copied, 1 unchanged"), "{}", again.stdout);
}

#[test]
fn repointed_tag_follows_the_primary() {
    let env = Env::new("repoint");
    env.p.push_image("app", "v1", &oci_image(10, &[500]));
    env.p.push_image("app", "stable", &oci_image(10, &[500]));
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");
    env.p.push_image("app", "v1", &docker_image(11, &[700]));
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    env.assert_in_sync("app");
    assert!(run.stdout.contains("1 tags copied, 1 unchanged"), "{}", run.stdout);
    assert_eq!(env.s.digest("app", "v1"), Some(docker_image(11, &[700]).digest));
}

#[test]
fn deleted_tag_is_removed_and_its_sibling_survives() {
    let env = Env::new("delete-tag");
    let shared = oci_image(20, &[800]);
    env.p.push_image("app", "v1", &shared);
    env.p.push_image("app", "latest", &shared);
    env.p.push_image("app", "old", &oci_image(21, &[800]));
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");

    env.p.delete_tag("app", "v1");
    env.p.delete_manifest("app", &oci_image(21, &[800]).digest); // removes "old" entirely
    assert_eq!(env.p.tags("app"), vec!["latest"]);
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(run.stdout.contains("2 removed"), "{}", run.stdout);
    env.assert_in_sync("app");
    assert_eq!(env.s.digest("app", "latest"), Some(shared.digest.clone()));
    let tags: Vec<(String, String)> = env
        .state()
        .prepare(
            "SELECT t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = 'app'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tags, vec![("latest".to_string(), shared.digest)]);
}

#[test]
fn blob_shared_with_another_repository_is_mounted() {
    let env = Env::new("mount");
    let layer = oci::random_bytes(30, 50_000);
    let a = oci::oci_image_with_layers(31, "amd64", vec![layer.clone()]);
    let b = oci::oci_image_with_layers(32, "amd64", vec![layer.clone()]);
    env.p.push_image("team/a", "v1", &a);
    env.p.push_image("team/b", "v1", &b);
    env.georeg(&["sync", "team/a"]).assert_ok();
    let run = env.georeg(&["sync", "team/b"]);
    run.assert_ok();
    // The config is copied, the shared layer mounted from team/a.
    assert!(run.stdout.contains("1 blobs copied") && run.stdout.contains("1 mounted"), "{}", run.stdout);
    env.assert_in_sync("team/b");
    assert!(env.s.blob_exists("team/b", &oci::sha256(&layer)));
    // The registry log shows the mount into team/b from team/a.
    let log = std::fs::read_to_string(&env.secondary.log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("POST /v2/team/b/blobs/uploads/?mount=sha256")
            && (l.contains("from=team%2Fa") || l.contains("from=team/a"))),
        "no mount from team/a in the secondary's log"
    );
}

#[test]
fn a_new_tag_reusing_the_repositorys_layers_reads_none_of_them_again() {
    let env = Env::new("reuse");
    let layer = oci::random_bytes(33, 400_000);
    let v1 = oci::oci_image_with_layers(34, "amd64", vec![layer.clone()]);
    let v2 = oci::oci_image_with_layers(35, "amd64", vec![layer.clone(), oci::random_bytes(36, 1000)]);
    env.p.push_image("team/app", "v1", &v1);
    env.georeg(&["sync", "team/app"]).assert_ok();
    env.p.push_image("team/app", "v2", &v2);
    env.georeg(&["sync", "team/app"]).assert_ok();
    env.assert_in_sync("team/app");
    let digest = oci::sha256(&layer);
    let reads = env.primary.requests_matching(&["\"GET /v2/team/app/blobs/", &digest]);
    assert_eq!(reads, 1, "the shared layer {digest} was read from the primary {reads} times, not once");
}

#[test]
fn corrupted_blob_on_the_primary_fails_the_sync_and_pushes_nothing() {
    let env = Env::new("corrupt");
    let image = oci_image(40, &[300_000]);
    let layer_digest = oci::sha256(&image.blobs[1]);
    env.p.push_image("app", "v1", &image);
    // Flip one byte of the layer in the primary's storage, keeping its size.
    let path = env.primary.blob_data_path(&layer_digest);
    let mut data = std::fs::read(&path).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("app: FAILED"), "{}", run.stdout);
    assert!(run.stdout.contains(&layer_digest), "the failure names the digest: {}", run.stdout);
    assert!(run.stdout.contains("did not match its digest (got sha256:"), "{}", run.stdout);
    assert!(env.s.tags("app").is_empty(), "the secondary must not get the tag");
    assert!(!env.s.blob_exists("app", &layer_digest), "the bad blob must not land on the secondary");
    let (state, failure) = env.sync_state("app");
    assert_eq!(state, "failed");
    assert!(failure.unwrap().contains(&layer_digest));
}

#[test]
fn large_layer_streams_in_flat_memory() {
    let env = Env::new("large");
    let layer = env.p.push_large_image("big", "v1", 50, 200 * 1000 * 1000);
    let (run, peak_rss_kb) = crate::support::run_measured(&env, &["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert!(env.s.blob_exists("big", &layer));
    eprintln!("peak RSS copying a 200 MB layer: {} KiB", peak_rss_kb);
    assert!(peak_rss_kb < 64 * 1024, "peak RSS {peak_rss_kb} KiB, must stay under 64 MiB");
}

#[test]
fn pkcs1_and_pkcs8_keys_both_work() {
    let env = Env::new("keys");
    env.p.push_image("app", "v1", &oci_image(60, &[100]));
    env.write_config(&keys().pkcs8, "");
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");
    env.p.push_image("app", "v2", &oci_image(61, &[100]));
    env.write_config(&keys().pkcs1, "");
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");
}

#[test]
fn token_command_prints_a_token_the_registry_accepts() {
    let env = Env::new("token");
    env.p.push_image("app", "v1", &oci_image(70, &[100]));
    let run = env.georeg(&["token", "--scope", "repository:app:pull"]);
    run.assert_ok();
    let token = run.stdout.trim();
    let resp = ureq::get(&format!("{}/v2/app/tags/list", env.primary.url))
        .set("Authorization", &format!("Bearer {token}"))
        .call();
    assert!(resp.is_ok(), "{resp:?}");
    // The same token grants no push.
    let push = ureq::post(&format!("{}/v2/app/blobs/uploads/", env.primary.url))
        .set("Authorization", &format!("Bearer {token}"))
        .call();
    assert!(matches!(push, Err(ureq::Error::Status(401, _))), "{push:?}");
}

#[test]
fn bad_config_stops_with_one_line_and_exit_code_2() {
    let env = Env::new("badconfig");
    let good = std::fs::read_to_string(&env.config).unwrap();
    let cases = [
        (good.replace("workers = 2", "workers = \"many\""), "replication.workers"),
        (good.replace("workers = 2", "wrokers = 2"), "replication.wrokers"),
        (good.replace("issuer = ", "isuer = "), "registry.isuer"),
        (format!("{good}\nbogus = 1\n"), "bogus"),
    ];
    for (text, key) in cases {
        std::fs::write(&env.config, text).unwrap();
        let run = env.georeg(&["sync", "app"]);
        assert_eq!(run.code, 2, "{key}: {}", run.stderr);
        let line = run.stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        assert!(line.contains(env.config.to_str().unwrap()) && line.contains(key), "{line}");
    }
    std::fs::write(env.path("notification-secret"), "not-alphanumeric!").unwrap();
    std::fs::write(&env.config, &good).unwrap();
    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("notifications.secret_file") && run.stderr.contains("alphanumeric"), "{}", run.stderr);
    std::fs::remove_file(&env.config).unwrap();
    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
}

#[test]
fn primary_is_never_written_to() {
    let env = Env::new("readonly");
    env.p.push_image("app", "v1", &oci_image(80, &[100]));
    env.georeg(&["sync", "app"]).assert_ok();
    // Every request georeg made to the primary was a read.
    let log = std::fs::read_to_string(&env.primary.log).unwrap();
    let georeg_lines: Vec<&str> = log.lines().filter(|l| l.contains("georeg/")).collect();
    assert!(!georeg_lines.is_empty(), "georeg's requests appear in the primary's access log");
    for line in georeg_lines {
        for write in ["PUT", "POST", "PATCH", "DELETE"] {
            assert!(
                !line.contains(&format!("method={write} ")) && !line.contains(&format!("\"{write} ")),
                "write to the primary: {line}"
            );
        }
    }
}

#[test]
fn unreachable_primary_fails_naming_it() {
    let env = Env::new("unreachable");
    let port = crate::support::registry::free_port();
    let text =
        std::fs::read_to_string(&env.config).unwrap().replace(&env.primary.url, &format!("http://127.0.0.1:{port}"));
    std::fs::write(&env.config, text).unwrap();
    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains(&format!("cannot reach http://127.0.0.1:{port}/v2/app/tags/list")), "{}", run.stdout);
    let (state, failure) = env.sync_state("app");
    assert_eq!(state, "failed");
    assert!(failure.unwrap().contains(&format!("127.0.0.1:{port}")));
}

/// The engine plans each blob (its mount, its upload, its download) while
/// the blob before it streams. The blobs still land before the manifest,
/// and a blob that fails leaves nothing behind it: the upload opened ahead
/// for the next one is cancelled, and no tag is put.
#[test]
fn blobs_planned_ahead_land_before_the_manifest_and_a_failure_cancels_the_next_upload() {
    let env = Env::new("pipelined");
    let good = oci_image(80, &[2_000_000, 2_000_000, 2_000_000]);
    env.p.push_image("app", "v1", &good);
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");
    let log = std::fs::read_to_string(&env.secondary.log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" HTTP/1.1\" ")).collect();
    let last_blob = lines.iter().rposition(|l| l.contains("\"PUT /v2/app/blobs/uploads/")).unwrap();
    let manifest = lines.iter().position(|l| l.contains("\"PUT /v2/app/manifests/v1")).unwrap();
    assert!(last_blob < manifest, "the manifest was put before the last blob landed:\n{}", lines.join("\n"));
    let uploads = env.secondary.requests_matching(&["\"PUT /v2/app/blobs/uploads/", "\" 201 "]);
    assert_eq!(uploads, 4, "config and three layers, each uploaded once");

    // The first layer corrupt on the primary: the second's upload, opened
    // while the first streamed, is cancelled, and nothing lands after it.
    let bad = oci_image(81, &[2_000_000, 2_000_000, 2_000_000]);
    env.p.push_image("bad", "v1", &bad);
    let path = env.primary.blob_data_path(&oci::sha256(&bad.blobs[1]));
    let mut data = std::fs::read(&path).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let run = env.georeg(&["sync", "bad"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(env.s.tags("bad").is_empty(), "no tag after a failed blob");
    for layer in &bad.blobs[1..] {
        assert!(!env.s.blob_exists("bad", &oci::sha256(layer)), "a layer landed after the failure");
    }
    let cancelled = env.secondary.requests_matching(&["\"DELETE /v2/bad/blobs/uploads/"]);
    assert!(cancelled >= 2, "the failed upload and the one opened ahead are both cancelled: {cancelled}");
}
