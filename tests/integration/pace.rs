//! Never flood the link: a primary that asks georeg to slow down is waited
//! out, and the bytes read from the primary keep to max_bandwidth.

use std::time::Instant;

use crate::support::oci::oci_image;
use crate::support::referrers::ReferrersProxy;
use crate::support::Env;

#[test]
fn a_primary_answering_429_is_waited_out_and_the_sync_succeeds() {
    let env = Env::new("pace-429");
    env.p.push_image("app", "v1", &oci_image(1, &[5000]));
    let upstream = env.primary.url.trim_start_matches("http://").to_string();
    let proxy = ReferrersProxy::start(&upstream);
    env.route_primary_through(&proxy.url);
    proxy.throttle(3);
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert_eq!(proxy.throttled_left(), 0, "the throttled requests were made");
    env.assert_in_sync("app");
    let waits = run.stderr.lines().filter(|l| l.contains("answered 429")).count();
    assert!((1..=3).contains(&waits), "logged once per request that was throttled, not per retry: {}", run.stderr);
    assert!(run.stderr.contains("as it asks (Retry-After)"), "{}", run.stderr);
    let retries: i64 =
        env.state().query_row("SELECT retry_count FROM repositories WHERE name = 'app'", [], |r| r.get(0)).unwrap();
    assert_eq!(retries, 0, "waiting is not failing");
}

#[test]
fn the_bytes_read_from_the_primary_keep_to_max_bandwidth_over_30_seconds() {
    let env = Env::new("pace-bandwidth");
    let size: u64 = 60_000_000;
    env.p.push_large_image("big", "v1", 2, size);
    env.add_replication("max_bandwidth = \"2MB/s\"");
    let started = Instant::now();
    env.georeg(&["sync", "big"]).assert_ok();
    let took = started.elapsed().as_secs_f64();
    env.assert_in_sync("big");
    let rate = size as f64 / took;
    eprintln!("60 MB under a 2 MB/s cap took {took:.2} s: {:.3} MB/s", rate / 1e6);
    // Within 10 % of the cap: never above it, and not far below it either.
    assert!((1_800_000.0..=2_200_000.0).contains(&rate), "{:.3} MB/s under a 2 MB/s cap", rate / 1e6);
}
