//! Shapes the primary holds that other tools lose: each replicates byte
//! for byte against the real registry (or, where the real registry cannot
//! serve it, against a test double beside it).

use crate::support::oci;
use crate::support::shapes::{self, buildkit_cache};
use crate::support::Env;

#[test]
fn a_buildkit_registry_cache_replicates_with_its_blob_entries() {
    let env = Env::new("buildkit-cache");
    let cache = buildkit_cache(1);
    env.p.push_image("app/cache", "buildcache", &cache);
    let run = env.georeg(&["sync", "app/cache"]);
    run.assert_ok();
    env.assert_in_sync("app/cache");
    for blob in &cache.blobs {
        assert!(env.s.blob_exists("app/cache", &oci::sha256(blob)), "an index entry's blob is on the secondary");
    }
    // Verification reads every blob back, entries included.
    env.georeg(&["verify", "--blobs", "app/cache"]).assert_ok();
}

#[test]
fn schema_1_replicates_where_the_secondary_accepts_it_and_is_reported_where_it_does_not() {
    let mut env = Env::new("schema1");
    env.primary.set_schema1(true);
    let old = shapes::schema1_image(1, "legacy/app", "old");
    env.p.push_image("legacy/app", "old", &old);
    assert_eq!(env.p.digest("legacy/app", "old").as_deref(), Some(old.digest.as_str()), "the primary holds it");
    env.p.push_image("legacy/app", "new", &crate::support::oci::oci_image(2, &[1000]));

    // A secondary that does not accept schema 1: the tag is reported, not
    // mistaken for corruption, and the other tag replicates.
    let run = env.georeg(&["sync", "legacy/app"]);
    run.assert_ok();
    assert!(run.stdout.contains("1 tags unsupported by the secondary (schema 1)"), "{}", run.stdout);
    assert_eq!(env.s.digest("legacy/app", "new"), env.p.digest("legacy/app", "new"));
    assert_eq!(env.s.digest("legacy/app", "old"), None);
    let reason: String =
        env.state().query_row("SELECT reason FROM unsupported_tags WHERE tag = 'old'", [], |r| r.get(0)).unwrap();
    assert!(reason.contains("compatibility.schema1.enabled"), "{reason}");
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("unsupported: 1 tags"), "{}", status.stdout);
    let verify = env.georeg(&["verify", "legacy/app"]);
    verify.assert_ok();
    assert!(verify.stdout.contains("1 tags the secondary refuses left out"), "{}", verify.stdout);

    // Once the secondary accepts schema 1, the next full sync copies it,
    // with the digest the registry defines for schema 1.
    env.secondary.set_schema1(true);
    env.georeg(&["sync", "legacy/app"]).assert_ok();
    env.assert_in_sync("legacy/app");
    let left: i64 = env.state().query_row("SELECT COUNT(*) FROM unsupported_tags", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    env.georeg(&["verify", "--blobs", "legacy/app"]).assert_ok();
}

#[test]
fn referrers_the_primarys_api_lists_are_copied_and_verified() {
    let env = Env::new("referrers-api");
    let image = crate::support::oci::oci_image(10, &[1000]);
    let signature = shapes::referrer(11, &image, "application/vnd.dev.cosign.artifact.sig.v1+json");
    let sbom_signature = shapes::referrer(12, &signature, "application/vnd.dev.cosign.artifact.sig.v1+json");
    env.p.push_image("signed/app", "v1", &image);
    // Pushed by digest: no tag reaches them.
    env.p.push_image("signed/app", &signature.digest, &signature);
    env.p.push_image("signed/app", &sbom_signature.digest, &sbom_signature);
    // distribution 2.8 has no referrers API: a test double in front of it does.
    let upstream = env.primary.url.trim_start_matches("http://").to_string();
    let proxy = crate::support::referrers::ReferrersProxy::start(&upstream);
    proxy.set(&image, &[&signature]);
    proxy.set(&signature, &[&sbom_signature]);
    env.route_primary_through(&proxy.url);

    let run = env.georeg(&["sync", "signed/app"]);
    run.assert_ok();
    assert!(run.stdout.contains("2 referrers copied"), "{}", run.stdout);
    env.assert_in_sync("signed/app");
    for r in [&signature, &sbom_signature] {
        assert_eq!(env.s.digest("signed/app", &r.digest).as_deref(), Some(r.digest.as_str()), "a referrer by digest");
    }
    env.georeg(&["verify", "signed/app"]).assert_ok();

    // A referrer lost on the secondary fails verification, and the resync
    // verification queued brings it back.
    env.s.delete_manifest("signed/app", &sbom_signature.digest);
    let run = env.georeg(&["verify", "signed/app"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains(&format!("referrer {} {}", signature.digest, sbom_signature.digest)), "{}", run.stdout);
    env.georeg(&["sync", "signed/app"]).assert_ok();
    assert!(env.s.digest("signed/app", &sbom_signature.digest).is_some());
}

#[test]
fn referrers_under_fallback_tags_replicate_from_a_primary_without_the_api() {
    let env = Env::new("referrers-fallback");
    let image = crate::support::oci::oci_image(20, &[1000]);
    let signature = shapes::referrer(21, &image, "application/vnd.dev.cosign.artifact.sig.v1+json");
    env.p.push_image("signed/app", "v1", &image);
    let fallback = format!("sha256-{}", image.digest.trim_start_matches("sha256:"));
    env.p.push_image("signed/app", &fallback, &signature);
    env.georeg(&["sync", "signed/app"]).assert_ok();
    env.assert_in_sync("signed/app");
    assert_eq!(env.s.digest("signed/app", &fallback).as_deref(), Some(signature.digest.as_str()));
    env.georeg(&["verify", "signed/app"]).assert_ok();
}

#[test]
fn every_common_shape_replicates_byte_for_byte() {
    use crate::support::oci::oci_image;
    use crate::support::shapes::{oci_shaped, with_foreign_layer};
    let env = Env::new("shapes");
    let zstd = oci_shaped(
        30,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        serde_json::Value::Null,
    );
    let chunked = oci_shaped(
        31,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        serde_json::json!({
            "io.github.containers.zstd-chunked.manifest-checksum": "sha256:0d1ad2c3e8a3f1a50b95b3a4c9ec16e6d9b7bd5a1c8f1ad1f6d8b2fbd3d4a1c2",
            "io.github.containers.zstd-chunked.manifest-position": "1234:567:890:1",
        }),
    );
    let helm = oci_shaped(
        32,
        "application/vnd.cncf.helm.config.v1+json",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        serde_json::Value::Null,
    );
    let foreign = with_foreign_layer(33);
    env.p.push_image("shapes/zstd", "v1", &zstd);
    env.p.push_image("shapes/zstd-chunked", "v1", &chunked);
    env.p.push_image("charts/app", "1.2.3", &helm);
    env.p.push_image("shapes/foreign", "v1", &foreign);
    // 1,200 tags, one of them 128 characters long.
    let many = oci_image(34, &[500]);
    let long = "t".repeat(128);
    env.p.push_image("shapes/many", &long, &many);
    for i in 0..1200 {
        env.p.put_manifest("shapes/many", &format!("t{i:04}"), &many.media_type, &many.manifest);
    }
    let repos = ["shapes/zstd", "shapes/zstd-chunked", "charts/app", "shapes/foreign", "shapes/many"];
    let mut args = vec!["sync"];
    args.extend(repos);
    env.georeg(&args).assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
    }
    assert_eq!(env.s.tags("shapes/many").len(), 1201);
    assert!(
        !env.s.blob_exists("shapes/foreign", &format!("sha256:{}", "ab".repeat(32))),
        "a foreign layer is not copied"
    );
    let mut args = vec!["verify", "--blobs"];
    args.extend(repos);
    env.georeg(&args).assert_ok();
}
