//! The reconcile scenario without a primary georeg: a direct pass, and a
//! state file lost over a full secondary.
//!
//! - [`direct`]: the follower's state file served again without
//!   `primary_node_url`, so that each pass reads the primary registry's
//!   catalog and every repository's tags on both registries, spread over
//!   half the window. A pass lasts longer than half the window by design,
//!   so it is sampled: from its first tag listing for
//!   `plan.direct_sample`, the fingerprints seeded as just read so that
//!   the keeper stays idle meanwhile. The primary registry is read on
//!   loopback here; across a WAN each of its requests is a round trip
//!   more, one after another (reconcile_table.rs computes that).
//! - [`lost_state`]: a real secondary registry filled with
//!   `plan.lost_repos` repositories by `georeg backfill`, the state file
//!   deleted, `georeg serve` started on a new one: the time until
//!   `georeg failover-check` exits 0, the requests to each registry, and
//!   an assertion that no blob was uploaded again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{count, discard, harness_api, mark, Georeg, Lab, GEOREG_AGENT};
use crate::passlog;
use crate::reconcile::{fresh, set_window, Plan, Setup, FOLLOWER_LOG, TAGS};
use crate::reconcile_table::{Direct, Lost, RealKeeper};
use crate::report::{thousands, Report};
use crate::scenarios::georeg_run;
use crate::support::georeg_bin;
use crate::support::registry::Registry;
use crate::synthetic::{self, Synthetic};

/// A direct pass over the follower's state file, sampled.
pub fn direct(lab: &Lab, plan: &Plan, setup: &Setup, label: &str, report: &mut Report) -> Direct {
    let window = plan.direct_window;
    let node = Georeg {
        name: format!("rec-{}-direct", setup.n),
        config: lab.path(&format!("rec-{}-direct.toml", setup.n)),
        port: setup.g2.port,
        state: setup.g2.state.clone(),
    };
    let text = std::fs::read_to_string(&setup.g2.config).unwrap();
    let text: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("primary_node_url"))
        .map(|l| match l.starts_with("primary_api_url") {
            true => format!("primary_api_url = \"{}/\"", setup.far.url),
            false => l.to_string(),
        })
        .collect();
    std::fs::write(&node.config, text.join("\n") + "\n").unwrap();
    set_window(&node, window);
    fresh(&node, 0);
    plan.settle(report, label);
    eprintln!("bench: {label}: a direct pass, window {window} s, sampled for {:?}", plan.direct_sample);
    let far0 = setup.far.reconcile_counts();
    let started = Instant::now();
    let serve = node.serve_logging(lab, FOLLOWER_LOG);
    let log = lab.path(&format!("{}-serve.log", node.name));
    // The pass reads the catalog, then the first repository's tags.
    let deadline = started + Duration::from_secs(300);
    while setup.far.reconcile_counts().since(&far0).tag_lists() == 0 {
        assert!(Instant::now() < deadline, "no direct pass began:\n{}", passlog::tail(&log, 30));
        std::thread::sleep(Duration::from_millis(10));
    }
    let catalog_wall = started.elapsed();
    let (far1, secondary1, cpu1, t1) = (
        setup.far.reconcile_counts(),
        setup.secondary.reconcile_counts(),
        serve.thread_cpu_seconds("reconcile"),
        Instant::now(),
    );
    let cpu0 = serve.cpu_seconds();
    // Until the sample's end, or the pass's (a small one ends first).
    let end = t1 + plan.direct_sample;
    while Instant::now() < end && passlog::passes(&log).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = t1.elapsed();
    let out = Direct {
        window,
        catalog: far1.since(&far0),
        catalog_wall,
        elapsed,
        primary: setup.far.reconcile_counts().since(&far1),
        secondary: setup.secondary.reconcile_counts().since(&secondary1),
        cpu: serve.thread_cpu_seconds("reconcile") - cpu1,
        cpu_share: (serve.cpu_seconds() - cpu0) / elapsed.as_secs_f64().max(1e-9),
        spacing: Duration::from_secs(window / 2) / (setup.n + 1) as u32,
        pass: passlog::passes(&log).into_iter().next(),
        rss_kib: serve.peak_rss_kib(),
    };
    serve.stop();
    out
}

/// A state file lost over a full secondary registry of `plan.lost_repos`
/// repositories: the time until ready, and what it cost.
pub fn lost_state(lab: &Lab, plan: &Plan, report: &mut Report) -> Lost {
    let n = plan.lost_repos;
    let label = format!("reconcile: a lost state file, {} repositories", thousands(n as u64));
    let primary = Synthetic::start(n, TAGS, TAGS);
    let registry = lab.registry("rec-lost-secondary", None);
    let node = Georeg::secondary_via(lab, "rec-lost", &registry, &primary.url, plan.workers, None);
    node.add_replication("drill_interval_seconds = 0");
    eprintln!("bench: {label}: filling the real secondary registry");
    plan.settle(report, &label);
    let fill = georeg_run(&node, lab, "rec-lost-fill", &["backfill".into()]);
    let api = harness_api(&registry);
    for i in [0, n / 2, n - 1] {
        let repo = synthetic::name(i);
        let want: Vec<String> = (0..TAGS).map(|t| synthetic::image(&repo, &synthetic::small_tag(t)).digest).collect();
        assert_eq!(api.tag_digests(&repo).into_values().collect::<Vec<_>>(), want, "{repo} on the secondary");
    }
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", node.state.display()));
    }
    eprintln!("bench: {label}: georeg serve on a new state file, until failover-check exits 0");
    plan.settle(report, &label);
    let (m, before) = (mark(&registry), primary.counts());
    let started = Instant::now();
    let serve = node.serve(lab);
    let deadline = started + Duration::from_secs(if plan.smoke { 120 } else { 1200 });
    // `georeg status --json` reads readiness and the repositories known
    // from one snapshot: ready with fewer known than the primary lists is
    // ready on faith, noted and not taken for the measure.
    let (mut ready, mut vacuous, mut last) = (None, None, String::new());
    while Instant::now() < deadline {
        let out = Command::new(georeg_bin())
            .arg("--config")
            .arg(&node.config)
            .args(["status", "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("run georeg status");
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let known = status["reconcile"]["repositories"].as_u64().unwrap_or(0);
        if status["failover"]["ready"] == true {
            if known as usize > n {
                ready = Some(started.elapsed());
                break;
            }
            vacuous.get_or_insert((started.elapsed(), known));
        }
        last = status["failover"]["findings"].to_string();
        std::thread::sleep(Duration::from_millis(200));
    }
    // failover-check agrees.
    let check = Command::new(georeg_bin()).arg("--config").arg(&node.config).arg("failover-check").output();
    let check_ok = check.map(|o| o.status.success()).unwrap_or(false);
    let rss_kib = serve.peak_rss_kib();
    serve.stop();
    let primary_counts = primary.counts().since(&before);
    count(&[&m], GEOREG_AGENT);
    let requests = m.requests(GEOREG_AGENT);
    let uploads = requests.iter().filter(|r| r.path.contains("/blobs/uploads/")).count() as u64;
    // The promise: a lost state file costs no bytes.
    assert_eq!(uploads, 0, "a new state file over a full secondary uploaded blobs again ({uploads} upload requests)");
    let mut by: Vec<(String, u64)> = Vec::new();
    for r in &requests {
        let what = format!("{} {}", r.method, kind_of(&r.path));
        match by.iter_mut().find(|(k, _)| *k == what) {
            Some((_, c)) => *c += 1,
            None => by.push((what, 1)),
        }
    }
    by.sort_by_key(|b| std::cmp::Reverse(b.1));
    let keeper = real_keeper(lab, plan, &registry, n);
    discard(registry);
    Lost {
        repos: n,
        fill: fill.wall,
        fill_images: (n * TAGS + TAGS) as u64,
        ready: ready.filter(|_| check_ok),
        vacuous,
        keeper,
        not_ready: last.chars().take(400).collect(),
        primary: primary_counts,
        secondary: requests.len() as u64,
        secondary_by: by,
        uploads,
        rss_kib,
    }
}

/// A primary georeg's keeper over the real registry, every fingerprint due
/// (a new state file, the shortest window): how long one read of a
/// repository takes there, pauses taken out. The keeper alone reads it.
fn real_keeper(lab: &Lab, plan: &Plan, registry: &Registry, n: usize) -> RealKeeper {
    let node = Georeg::primary(lab, "rec-keeper", &registry.url);
    let window = 10;
    node.add_replication(&format!("reconcile_interval_seconds = {window}"));
    eprintln!("bench: reconcile: a primary georeg's keeper over the real registry, sampled");
    let m = mark(registry);
    let serve = node.serve(lab);
    let cpu0 = serve.thread_cpu_seconds("fingerprints");
    let started = Instant::now();
    let reads = |requests: &[crate::lab::Request]| requests.iter().filter(|r| r.path.ends_with("/tags/list")).count();
    // Until the sample's end, or every repository read once (then the
    // keeper waits for half the window).
    while started.elapsed() < plan.keeper_sample && reads(&m.requests(GEOREG_AGENT)) <= n {
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed();
    let cpu = serve.thread_cpu_seconds("fingerprints") - cpu0;
    serve.stop();
    count(&[&m], GEOREG_AGENT);
    let requests = m.requests(GEOREG_AGENT);
    let reads = reads(&requests) as u64;
    RealKeeper {
        elapsed,
        reads,
        requests: requests.len() as u64,
        cpu,
        spacing: Duration::from_secs(window / 2) / (n + 1) as u32,
    }
}

/// What a registry path asks for, for grouping.
fn kind_of(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/v2/" => "/v2/",
        "/v2/_catalog" => "catalog",
        p if p.ends_with("/tags/list") => "tags",
        p if p.contains("/manifests/") => "manifest",
        p if p.contains("/blobs/uploads/") => "upload",
        p if p.contains("/blobs/") => "blob",
        p if p.contains("/referrers/") => "referrers",
        _ => "other",
    }
}
