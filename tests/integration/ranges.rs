//! A large layer read from the real primary registry over several streams
//! at once, a chunk per `Range` request, and landed in order on the real
//! secondary: every byte read once, the digest checked over all of them,
//! and a wrong byte anywhere refused before the blob completes.

use crate::support::hostile_registry::{Answer, HostileRegistry};
use crate::support::wan::{Link, WanProxy};
use crate::support::Env;

const MB: u64 = 1_000_000;

fn blob_gets(env: &Env, digest: &str, status: &str) -> usize {
    env.primary.requests_matching(&["\"GET /v2/big/blobs/", digest, &format!("HTTP/1.1\" {status} ")])
}

#[test]
fn a_large_layer_is_read_in_ranges_over_several_streams_each_byte_once() {
    let env = Env::new("ranges");
    let size = 60 * MB;
    let layer = env.p.push_large_image("big", "v1", 70, size);
    let proxy = WanProxy::start(env.primary.url.trim_start_matches("http://"), Link::lan());
    env.route_primary_through(&proxy.url);
    env.add_replication("blob_streams = 4");

    env.georeg(&["sync", "big"]).assert_ok();
    env.assert_in_sync("big");
    assert!(env.s.blob_exists("big", &layer));
    // 60 MB in chunks of 8 MiB: 8 ranges, each its own request.
    let ranged = blob_gets(&env, &layer, "206");
    assert_eq!(ranged, 8, "the layer was read in {ranged} ranges, not one per chunk");
    assert_eq!(blob_gets(&env, &layer, "200"), 0, "no request read the whole layer");
    let read = proxy.downstream_bytes();
    assert!(read < size + MB, "{read} bytes crossed the link for a layer of {size}: some were read twice");
    let left: i64 = env.state().query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "a finished copy leaves no upload row");
}

#[test]
fn one_stream_reads_the_layer_in_one_request() {
    let env = Env::new("ranges-one");
    let layer = env.p.push_large_image("big", "v1", 71, 30 * MB);
    env.add_replication("blob_streams = 1");
    env.georeg(&["sync", "big"]).assert_ok();
    env.assert_in_sync("big");
    assert_eq!(blob_gets(&env, &layer, "200"), 1);
    assert_eq!(blob_gets(&env, &layer, "206"), 0);
}

#[test]
fn a_wrong_byte_in_a_late_range_completes_nothing_and_pushes_nothing() {
    let env = Env::new("ranges-corrupt");
    let size = 50 * MB;
    let layer = env.p.push_large_image("big", "v1", 72, size);
    // One byte flipped in the second-to-last chunk, the size kept.
    let path = env.primary.blob_data_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    data[45_000_000] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    drop(data);

    let run = env.georeg(&["sync", "big"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("did not match its digest (got sha256:"), "{}", run.stdout);
    assert!(run.stdout.contains(&layer), "the failure names the layer: {}", run.stdout);
    assert!(blob_gets(&env, &layer, "206") >= 2, "the layer was read in ranges");
    assert!(env.s.tags("big").is_empty(), "the secondary must not get the tag");
    assert!(!env.s.blob_exists("big", &layer), "the bad blob must not complete on the secondary");
    let left: i64 = env.state().query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "the refused copy is not resumed from a recorded chunk");
}

#[test]
fn a_primary_that_ignores_ranges_is_read_over_one_stream_and_said_so() {
    let env = Env::new("ranges-ignored");
    let size = 40 * MB;
    let layer = env.p.push_large_image("big", "v1", 73, size);
    let double = HostileRegistry::start(&env.primary.url, |r| match r.target.contains("/blobs/") {
        true => Answer::IgnoringRange,
        false => Answer::Forward,
    });
    env.route_primary_through(&double.url);
    env.add_replication("blob_streams = 4");

    let run = env.georeg(&["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert!(run.stderr.contains("ignores Range requests"), "{}", run.stderr);
    // The copy and the helpers that asked before the first answer came read
    // one chunk each; the rest of the layer comes over one stream.
    let gets = blob_gets(&env, &layer, "200");
    assert!(gets <= 5, "{gets} whole-blob reads of a 40 MB layer in chunks of 8 MiB");
}
