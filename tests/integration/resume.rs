//! Large blobs across a WAN: a download that breaks or stalls continues
//! with a Range request instead of starting again, and a chunked copy cut
//! by kill -9 continues after the restart where the secondary's upload
//! stands. The WAN emulator sits between georeg and the real primary
//! registry and counts every byte it carries, so "read twice" is measured,
//! not inferred.

use std::time::{Duration, Instant};

use crate::support::wan::{Link, WanProxy};
use crate::support::{poll_until, Env};

const MB: u64 = 1_000_000;

/// A primary with one image of a `size`-byte layer, reached through a proxy.
fn through_proxy(name: &str, size: u64, link: Link) -> (Env, WanProxy) {
    let env = Env::new(name);
    env.p.push_large_image("big", "v1", 7, size);
    let proxy = WanProxy::start(env.primary.url.trim_start_matches("http://"), link);
    env.route_primary_through(&proxy.url);
    (env, proxy)
}

fn reread_share(proxy: &WanProxy, size: u64) -> f64 {
    proxy.downstream_bytes().saturating_sub(size) as f64 / size as f64
}

#[test]
fn a_300_mb_layer_cut_at_30_and_80_percent_arrives_reading_under_5_percent_twice() {
    let size = 300 * MB;
    let (env, proxy) = through_proxy("resume-cut", size, Link::lan());
    proxy.cut_at(size * 3 / 10);
    proxy.cut_at(size * 8 / 10);
    let run = env.georeg(&["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert_eq!(proxy.cuts(), 2, "both cuts happened during the copy");
    let share = reread_share(&proxy, size);
    eprintln!(
        "cut twice: {} bytes through the proxy for a {size}-byte layer, {:.3} % read twice",
        proxy.downstream_bytes(),
        share * 100.0
    );
    assert!(share < 0.05, "{:.1} % of the layer was read twice", share * 100.0);
    assert_eq!(run.stderr.matches("resuming from that byte").count(), 2, "{}", run.stderr);
    let retries: i64 =
        env.state().query_row("SELECT retry_count FROM repositories WHERE name = 'big'", [], |r| r.get(0)).unwrap();
    assert_eq!(retries, 0, "a resumed download is not a failed sync");
}

#[test]
fn a_cut_in_a_single_request_copy_continues_in_the_same_upload() {
    let size = 40 * MB;
    let (env, proxy) = through_proxy("resume-cut-whole", size, Link::lan());
    env.add_replication("chunk_size = \"0\"");
    proxy.cut_at(size / 2);
    env.georeg(&["sync", "big"]).assert_ok();
    env.assert_in_sync("big");
    assert_eq!(proxy.cuts(), 1);
    assert!(reread_share(&proxy, size) < 0.05, "{} bytes read for {size}", proxy.downstream_bytes());
}

#[test]
fn a_stalled_download_is_resumed_after_stall_seconds() {
    let size = 40 * MB;
    let (env, proxy) = through_proxy("resume-stall", size, Link::lan());
    env.add_replication("stall_seconds = 2");
    proxy.stall_at(size * 4 / 10);
    let started = Instant::now();
    let run = env.georeg(&["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert_eq!(proxy.stalls(), 1);
    assert!(run.stderr.contains("resuming from that byte"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(60), "the stall was noticed after stall_seconds, not 120 s");
    assert!(reread_share(&proxy, size) < 0.05);
}

#[test]
fn kill_9_halfway_through_a_300_mb_layer_then_the_copy_continues_where_it_stood() {
    let size = 300 * MB;
    // 100 MB/s: about three seconds for the layer, so "halfway" can be hit.
    let link = Link { one_way_delay: Duration::ZERO, bytes_per_second: Some(100 * MB) };
    let (env, proxy) = through_proxy("resume-kill", size, link);
    let mut child = env.spawn("first", &["sync", "big"]);
    let done = || -> u64 {
        env.state().query_row("SELECT coalesce(max(bytes_done), 0) FROM uploads", [], |r| r.get(0)).unwrap_or(0)
    };
    poll_until("half of the layer recorded", Duration::from_secs(120), Duration::from_millis(5), || done() >= size / 2);
    let _ = child.kill();
    let _ = child.wait();
    let stood = done();
    let first = proxy.downstream_bytes();
    eprintln!("killed with {stood} bytes recorded, {first} read");

    // What an operator sees meanwhile: the copy and how far it got.
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("big") && status.stdout.contains(" of 300.0 MB"), "{}", status.stdout);

    let run = env.georeg(&["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert!(run.stderr.contains("resuming the copy of"), "{}", run.stderr);
    let share = reread_share(&proxy, size);
    eprintln!(
        "after the restart: {} bytes read in all for {size}, {:.2} % twice",
        proxy.downstream_bytes(),
        share * 100.0
    );
    // What the crash cost: the chunks read ahead over the other streams
    // (at most 16 MiB in the whole process) and the ones being read and
    // sent, never the copy from the start.
    let reread = proxy.downstream_bytes().saturating_sub(size);
    assert!(reread < (32 << 20) + 2 * (8 << 20), "{reread} bytes ({:.1} %) read twice", share * 100.0);
    let left: i64 = env.state().query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "a finished copy leaves no upload row");
}

#[test]
fn an_upload_the_secondary_dropped_starts_the_blob_again_and_says_so() {
    let size = 30 * MB;
    let link = Link { one_way_delay: Duration::ZERO, bytes_per_second: Some(20 * MB) };
    let (env, proxy) = through_proxy("resume-dropped", size, link);
    let mut child = env.spawn("first", &["sync", "big"]);
    let rows = || -> i64 { env.state().query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)).unwrap_or(0) };
    poll_until("a chunk recorded", Duration::from_secs(60), Duration::from_millis(5), || rows() > 0);
    let _ = child.kill();
    let _ = child.wait();
    // As if the registry had purged it: an upload id it never issued.
    env.state().execute("UPDATE uploads SET location = replace(location, '/uploads/', '/uploads/0000')", []).unwrap();
    let run = env.georeg(&["sync", "big"]);
    run.assert_ok();
    env.assert_in_sync("big");
    assert!(run.stderr.contains("starting that blob again"), "{}", run.stderr);
    drop(proxy);
}
