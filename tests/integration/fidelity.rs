//! Shapes the primary holds that other tools lose: each replicates byte
//! for byte against the real registry (or, where the real registry cannot
//! serve it, against a test double beside it).

use crate::support::oci::{self, buildkit_cache};
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
    let old = oci::schema1_image(1, "legacy/app", "old");
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
