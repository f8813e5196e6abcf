//! A broken or hostile primary registry: the double in
//! `support/hostile_registry.rs` bends what the real registry behind it
//! answers (looping and backwards `Link` headers, answers trickled a byte
//! at a time, tag lists and catalog pages of millions, silence). Each case
//! ends, bounded, with a reason that names what failed; good repositories
//! keep replicating beside hostile ones; a stop request ends every hang.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::hostile_registry::{Answer, HostileRegistry, Listing};
use crate::support::oci::oci_image;
use crate::support::{run_measured, wait_until, Env, Mode};

/// Starts the double in front of the env's primary registry and routes
/// georeg's reads of the primary through it.
fn behind(
    env: &Env,
    rule: impl Fn(&crate::support::hostile_registry::Request) -> Answer + Send + Sync + 'static,
) -> HostileRegistry {
    let double = HostileRegistry::start(&env.primary.url, rule);
    env.route_primary_through(&double.url);
    double
}

/// Waits (bounded) for the child to exit; its exit code and how long it took.
fn exits_within(child: &mut Child, within: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), start.elapsed());
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("georeg did not exit within {within:?} of the stop request");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a run printed, both streams: per-repository lines go to stdout.
fn output(run: &crate::support::Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success();
    assert!(ok, "kill -TERM");
}

#[test]
fn looping_and_backwards_tag_lists_fail_their_repository_only() {
    let env = Env::new("hostile-tag-links");
    for repo in ["loop/self", "loop/back", "good/app"] {
        env.p.push_image(repo, "v1", &oci_image(3, &[1000]));
    }
    let double = behind(&env, |r| match r.target.as_str() {
        "/v2/loop/self/tags/list" => Answer::WithLink("</v2/loop/self/tags/list>; rel=\"next\"".into()),
        "/v2/loop/back/tags/list" => Answer::WithLink("</v2/loop/back/tags/list?last=m>; rel=\"next\"".into()),
        "/v2/loop/back/tags/list?last=m" => Answer::WithLink("</v2/loop/back/tags/list?last=c>; rel=\"next\"".into()),
        _ => Answer::Forward,
    });
    let start = Instant::now();
    let run = env.georeg(&["sync", "loop/self", "loop/back", "good/app"]);
    run.assert_code(1);
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert!(
        output(&run).contains("points to a page already read") && output(&run).contains("/v2/loop/self/tags/list"),
        "{run}"
    );
    assert!(output(&run).contains("goes backwards") && output(&run).contains("last=c"), "{run}");
    assert!(double.requests() < 40, "{} requests to the hostile registry", double.requests());
    env.assert_in_sync("good/app");
    assert_eq!(env.sync_state("loop/self").0, "failed");
}

#[test]
fn a_looping_catalog_fails_the_backfill_scan_at_once() {
    let env = Env::new("hostile-catalog-link");
    env.p.push_image("app", "v1", &oci_image(4, &[1000]));
    let double = behind(&env, |r| {
        if r.target.starts_with("/v2/_catalog") {
            Answer::WithLink("</v2/_catalog?n=1000>; rel=\"next\"".into())
        } else {
            Answer::Forward
        }
    });
    let run = env.georeg(&["backfill"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(output(&run).contains("points to a page already read") && output(&run).contains("_catalog"), "{run}");
    assert!(double.requests() < 10, "{} requests", double.requests());
}

#[test]
fn a_trickled_manifest_fails_below_the_minimum_rate_and_a_stop_ends_it_at_once() {
    let env = Env::new("hostile-trickle-manifest");
    env.p.push_image("slow/app", "v1", &oci_image(5, &[1000]));
    env.add_replication("stall_seconds = 2\nmin_rate = \"1KiB/s\"");
    let _double = behind(&env, |r| {
        if r.method == "GET" && r.target.starts_with("/v2/slow/app/manifests/") {
            Answer::Trickle(Duration::from_millis(200))
        } else {
            Answer::Forward
        }
    });
    let start = Instant::now();
    let run = env.georeg(&["sync", "slow/app"]);
    run.assert_code(1);
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    assert!(output(&run).contains("below the minimum rate") && output(&run).contains("replication.min_rate"), "{run}");
    assert!(env.s.tag_digests("slow/app").is_empty(), "nothing pushed");

    // The same hang, ended by SIGTERM: within seconds, the row handed back.
    let mut child = env.spawn("sync-stopped", &["sync", "slow/app"]);
    wait_until("the sync to claim slow/app", Duration::from_secs(20), || env.sync_state("slow/app").0 == "started");
    sigterm(&child);
    let (code, took) = exits_within(&mut child, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(code, Some(130), "interrupted");
    assert_ne!(env.sync_state("slow/app").0, "started", "the claim is given back");
}

#[test]
fn a_trickled_blob_is_resumed_then_failed_and_nothing_is_pushed() {
    let env = Env::new("hostile-trickle-blob");
    env.p.push_image("slow/blob", "v1", &oci_image(6, &[64 << 10]));
    env.add_replication("stall_seconds = 1\nmin_rate = \"1KiB/s\"");
    let _double = behind(&env, |r| {
        if r.method == "GET" && r.target.starts_with("/v2/slow/blob/blobs/") {
            Answer::Trickle(Duration::from_millis(100))
        } else {
            Answer::Forward
        }
    });
    let start = Instant::now();
    let run = env.georeg(&["sync", "slow/blob"]);
    run.assert_code(1);
    assert!(start.elapsed() < Duration::from_secs(90), "took {:?}", start.elapsed());
    assert!(output(&run).contains("broke 5 times in a row") || output(&run).contains("minimum rate"), "{run}");
    assert!(env.s.tag_digests("slow/blob").is_empty(), "nothing pushed after a failed blob");
}

#[test]
fn hostile_repositories_hold_at_most_half_the_workers_and_a_notified_tag_still_replicates() {
    let env = Env::with_mode("hostile-pinned-workers", Mode::Direct);
    // Pushed first, so that they are claimed first.
    for repo in ["pin/a", "pin/b", "pin/c"] {
        env.p.push_image(repo, "v1", &oci_image(7, &[64 << 10]));
    }
    for repo in ["good/1", "good/2", "good/3"] {
        env.p.push_image(repo, "v1", &oci_image(8, &[2000]));
    }
    // 200 bytes/s: above the minimum rate, so only the budget ends them.
    env.add_replication("sync_budget_seconds = 10\nstall_seconds = 2\nmin_rate = \"100B/s\"");
    let _double = behind(&env, |r| {
        if r.method == "GET" && r.target.starts_with("/v2/pin/") && r.target.contains("/blobs/") {
            Answer::Trickle(Duration::from_millis(5))
        } else {
            Answer::Forward
        }
    });
    env.start_secondary_daemon();
    for repo in ["good/1", "good/2", "good/3"] {
        env.wait_in_sync(repo, Duration::from_secs(60));
    }
    env.p.push_image("good/1", "v2", &oci_image(9, &[2000]));
    env.wait_in_sync("good/1", Duration::from_secs(40));
    // The hostile ones are failing, with the reason, not "syncing".
    wait_until("the hostile repositories to overrun their budget", Duration::from_secs(60), || {
        let overran: i64 = env
            .state()
            .query_row("SELECT COUNT(*) FROM repositories WHERE overran_at IS NOT NULL", [], |r| r.get(0))
            .unwrap();
        overran >= 2
    });
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("failing") || status.stdout.contains("failed"), "{status}");
    let (_, reason) = env.sync_state("pin/a");
    let reason = reason.unwrap_or_default();
    assert!(reason.is_empty() || reason.contains("sync_budget_seconds"), "{reason}");
    let reasons: Vec<String> = {
        let conn = env.state();
        let mut stmt = conn.prepare("SELECT last_sync_failure FROM repositories WHERE overran_at IS NOT NULL").unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0)).unwrap();
        rows.map(|r| r.unwrap().unwrap_or_default()).collect()
    };
    assert!(reasons.iter().any(|r| r.contains("time budget (replication.sync_budget_seconds)")), "{reasons:?}");
}

#[test]
fn a_tag_list_of_five_million_and_a_catalog_page_of_two_million_are_bounded() {
    let env = Env::new("hostile-huge-listings");
    env.p.push_image("huge/tags", "v1", &oci_image(10, &[1000]));
    env.add_replication("max_tags = 100000");
    let _double = behind(&env, |r| {
        if r.target == "/v2/huge/tags/tags/list" {
            let (length, body) = Listing::tags("huge/tags", 5_000_000);
            Answer::Generated { content_type: "application/json", length, body: Box::new(body) }
        } else if r.target.starts_with("/v2/_catalog") {
            let (length, body) = Listing::catalog(2_000_000);
            Answer::Generated { content_type: "application/json", length, body: Box::new(body) }
        } else {
            Answer::Forward
        }
    });
    let (run, peak_kb) = run_measured(&env, &["sync", "huge/tags"]);
    run.assert_code(1);
    assert!(output(&run).contains("replication.max_tags") && output(&run).contains("huge/tags"), "{run}");
    eprintln!("a tag list of 5,000,000 tags, cap 100,000: peak RSS {peak_kb} KiB");
    assert!(peak_kb < 150_000, "peak RSS {peak_kb} KiB");

    let (run, peak_kb) = run_measured(&env, &["backfill"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(output(&run).contains("_catalog"), "{run}");
    eprintln!("a catalog page of 2,000,000 names: peak RSS {peak_kb} KiB");
    assert!(peak_kb < 150_000, "peak RSS {peak_kb} KiB");
}

#[test]
fn a_registry_that_never_answers_cannot_hold_a_stop_request() {
    let env = Env::new("hostile-silent");
    env.p.push_image("app", "v1", &oci_image(11, &[1000]));
    let _double = behind(&env, |_| Answer::Silent);
    let mut child = env.spawn("sync-silent", &["sync", "app"]);
    wait_until("the sync to claim app", Duration::from_secs(20), || {
        env.state()
            .query_row("SELECT sync_state FROM repositories WHERE name = 'app'", [], |r| r.get::<_, String>(0))
            .is_ok_and(|s| s == "started")
    });
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    // The read waits in the kernel (stall_seconds, 30 s by default): the
    // process exits anyway, 15 s after the request.
    let (code, took) = exits_within(&mut child, Duration::from_secs(25));
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert_eq!(code, Some(130));
}

#[test]
fn a_primary_refusing_its_catalog_replicates_the_configured_repositories_and_says_so_once() {
    let env = Env::new("no-catalog");
    env.p.push_image("team/app", "v1", &oci_image(50, &[1000]));
    env.p.push_image("team/lib", "v1", &oci_image(51, &[2000]));
    env.p.push_image("team/unlisted", "v1", &oci_image(52, &[3000]));
    let _double = behind(&env, |r| {
        if r.target.starts_with("/v2/_catalog") {
            Answer::Refuse(403, "DENIED")
        } else {
            Answer::Forward
        }
    });

    // Without replication.repositories: the scan fails, saying what to set.
    let run = env.georeg(&["backfill"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(output(&run).contains("403") && output(&run).contains("replication.repositories"), "{run}");

    // With it: the named repositories replicate, one of them not on the
    // primary at all, and the refusal is one line naming the key.
    env.add_replication("repositories = [\"team/app\", \"team/lib\", \"team/missing\"]");
    let run = env.georeg(&["backfill"]);
    run.assert_ok();
    let said: Vec<&str> = run.stderr.lines().filter(|l| l.contains("refuses its catalog")).collect();
    assert_eq!(said.len(), 1, "{run}");
    assert!(said[0].contains("DENIED") && said[0].contains("replication.repositories"), "{}", said[0]);
    env.assert_in_sync("team/app");
    env.assert_in_sync("team/lib");
    let check = env.georeg(&["check"]);
    check.assert_ok();
    let primary = check.stdout.lines().find(|l| l.contains("primary registry")).unwrap();
    assert!(primary.contains("may read team/app (found), but not the catalog"), "{primary}");
    assert!(env.s.tags("team/unlisted").is_empty(), "a repository neither listed nor named stays unknown");
    env.georeg(&["verify"]).assert_ok();
}

/// `{"name":..,"tags":[..]}` as a generated answer.
fn tag_page(repo: &str, tags: &[String]) -> Answer {
    let body = serde_json::json!({"name": repo, "tags": tags}).to_string().into_bytes();
    Answer::Generated {
        content_type: "application/json",
        length: body.len() as u64,
        body: Box::new(std::io::Cursor::new(body)),
    }
}

#[test]
fn a_tag_list_paged_by_n_and_last_without_link_is_read_to_its_end() {
    let env = Env::new("paged-tags");
    let image = oci_image(60, &[1000]);
    let tags: Vec<String> = (0..130).map(|i| format!("t{i:03}")).collect();
    env.p.push_image("paged/app", &tags[0], &image);
    for tag in &tags[1..] {
        env.p.put_manifest("paged/app", tag, &image.media_type, &image.manifest);
    }
    // Pages of at most 60 tags, by n and last, and never a Link header: as
    // registries that leave out the spec's SHOULD do.
    let all = tags.clone();
    let _double = behind(&env, move |r| {
        let Some(query) = r.target.strip_prefix("/v2/paged/app/tags/list") else { return Answer::Forward };
        let last = query.split(['?', '&']).find_map(|p| p.strip_prefix("last=")).unwrap_or("");
        let page: Vec<String> = all.iter().filter(|t| t.as_str() > last).take(60).cloned().collect();
        tag_page("paged/app", &page)
    });
    env.georeg(&["sync", "paged/app"]).assert_ok();
    let got = env.s.tag_digests("paged/app");
    assert_eq!(got.len(), 130, "every tag of every page arrived");
    assert!(got.values().all(|d| d == &image.digest), "each with the primary's digest");
    env.georeg(&["verify", "paged/app"]).assert_ok();
}

#[test]
fn a_primary_that_lists_no_tags_is_never_taken_for_emptied() {
    let env = Env::new("unlisted-primary");
    env.p.push_image("team/app", "v1", &oci_image(90, &[1000]));
    env.georeg(&["sync", "team/app"]).assert_ok();
    env.assert_in_sync("team/app");
    // From now on the primary answers tag lists with a bare 404, as a
    // registry without content discovery does.
    let _double = behind(&env, |r| if r.target.contains("/tags/list") { Answer::Bare(404) } else { Answer::Forward });
    let run = env.georeg(&["sync", "team/app"]);
    run.assert_code(1);
    assert!(output(&run).contains("lists no tags") && output(&run).contains("nothing was removed"), "{run}");
    let verify = env.georeg(&["verify", "team/app"]);
    verify.assert_code(1);
    assert!(output(&verify).contains("lists no tags") && !output(&verify).contains("resync queued"), "{verify}");
    assert_eq!(env.s.tags("team/app"), ["v1"], "the secondary keeps what it had");
}

/// A registry that sends every tag in one answer without a `Link`, and
/// ignores `last` when asked for the next page, lists its tags once: the
/// repeat is not counted against replication.max_tags.
#[test]
fn a_tag_list_that_ignores_last_is_read_once_and_not_counted_twice() {
    let env = Env::new("hostile-ignores-last");
    let image = oci_image(12, &[500]);
    for i in 0..60u64 {
        env.p.push_image("many/app", &format!("t{i:09}"), &image);
    }
    env.add_replication("max_tags = 100");
    let _double = behind(&env, |r| {
        if r.target.starts_with("/v2/many/app/tags/list") {
            let (length, body) = Listing::tags("many/app", 60);
            Answer::Generated { content_type: "application/json", length, body: Box::new(body) }
        } else {
            Answer::Forward
        }
    });
    let run = env.georeg(&["sync", "many/app"]);
    run.assert_ok();
    assert_eq!(env.s.tags("many/app").len(), 60, "{run}");
    env.assert_in_sync("many/app");
}
