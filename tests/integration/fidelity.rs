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
