//! The scale scenario (issue 16): one georeg node against a primary of
//! 10,000 and of 100,000 repositories of 10 tags (200 and 2,000 at smoke
//! size), served by the synthetic primary (synthetic.rs), with a real
//! secondary registry. At each size: a backfill scan of the catalog into a
//! fresh state file, a no-op backfill pass over a state file seeded synced
//! (seed.rs), the state file's size, one verification, then `georeg serve`
//! on that state: its memory and idle CPU, the pages' and `georeg status`'s
//! response times, one event into a repository of 10,000 tags, and the
//! notifications' latency alone and while the pages and `/metrics` are read
//! (contention.rs). At the first size only, a real first pass of a subset
//! into the secondary. scale_table.rs renders the figures and the targets.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::contention;
use crate::lab::{count, discard, harness_api, mark, Georeg, Lab, GEOREG_AGENT};
use crate::report::{thousands, Report};
use crate::scale_table::{self, AtSize, FirstPass};
use crate::scenarios::{background, georeg_run, Sizes};
use crate::seed;
use crate::support::registry::Registry;
use crate::support::{georeg_bin, poll_until, SECRET};
use crate::synthetic::{self, Synthetic, LARGE, REPOS_PER_NAMESPACE};

/// The scenario's sizes.
pub struct Scale {
    pub repos: [usize; 2],
    pub tags: usize,
    pub large_tags: usize,
    /// Repositories of the first size copied for real into the secondary.
    pub first_pass: usize,
    /// Timed requests per page (after one to warm up).
    pub samples: usize,
    pub idle: Duration,
    pub workers: usize,
    /// Notifications timed in each run of contention.rs, and the longest
    /// one run may take.
    pub notifications: usize,
    pub notify_deadline: Duration,
    /// The pace of the notifications: one every so long.
    pub notify_every: Duration,
}

impl Scale {
    pub fn new(s: &Sizes) -> Scale {
        if s.smoke {
            Scale {
                repos: [200, 2_000],
                tags: 10,
                large_tags: 500,
                first_pass: 20,
                samples: 3,
                idle: Duration::from_secs(2),
                workers: s.workers,
                notifications: 20,
                notify_deadline: Duration::from_secs(20),
                notify_every: Duration::from_millis(20),
            }
        } else {
            Scale {
                repos: [10_000, 100_000],
                tags: 10,
                large_tags: 10_000,
                first_pass: 1_000,
                samples: 10,
                idle: Duration::from_secs(10),
                workers: s.workers,
                notifications: 200,
                notify_deadline: Duration::from_secs(120),
                notify_every: Duration::from_millis(20),
            }
        }
    }
}

pub fn scale(lab: &Lab, s: &Sizes, report: &mut Report) {
    let sc = Scale::new(s);
    let secondary = lab.registry("scale-secondary", None);
    let first = first_pass(lab, &sc, &secondary, report);
    let sizes: Vec<AtSize> = sc.repos.iter().map(|&n| at_size(lab, &sc, n, &secondary, report)).collect();
    discard(secondary);
    scale_table::render(&sc, &first, &sizes, report);
}

/// The node's configuration, reading the synthetic primary.
pub fn node(lab: &Lab, name: &str, secondary: &Registry, synthetic: &Synthetic, workers: usize) -> Georeg {
    let node = Georeg::secondary_via(lab, name, secondary, &synthetic.url, workers, None);
    // The seeded state file says synced for repositories the secondary
    // registry does not hold: a drill at start would find them missing and
    // queue full syncs of them all. Drills are measured elsewhere.
    let text = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(&node.config, text.replace("[replication]\n", "[replication]\ndrill_interval_seconds = 0\n"))
        .unwrap();
    node
}

pub fn remove_state(node: &Georeg) {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", node.state.display()));
    }
}

/// A real `georeg backfill` of the first `sc.first_pass` repositories
/// (selective sync) of the first size, into the real secondary registry.
fn first_pass(lab: &Lab, sc: &Scale, secondary: &Registry, report: &mut Report) -> FirstPass {
    let n = sc.repos[0];
    let subset = sc.first_pass.min(n);
    let label = format!("scale: first pass of {} repositories x {} tags", thousands(subset as u64), sc.tags);
    eprintln!("bench: {label}");
    let synthetic = Synthetic::start(n, sc.tags, sc.large_tags);
    let node = node(lab, "scale-first", secondary, &synthetic, sc.workers);
    let include: Vec<String> = if subset % REPOS_PER_NAMESPACE == 0 {
        (0..subset / REPOS_PER_NAMESPACE).map(|k| format!("\"ns{k:03}/*\"")).collect()
    } else {
        (0..subset).map(|i| format!("\"{}\"", synthetic::name(i))).collect()
    };
    let mut config = std::fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!("include = [{}]\n", include.join(", ")));
    std::fs::write(&node.config, config).unwrap();
    background(report, &label);
    let (m, before) = (mark(secondary), synthetic.counts());
    let run = georeg_run(&node, lab, "scale-first", &["backfill".into()]);
    let primary = synthetic.counts().since(&before);
    let requests = count(&[&m], GEOREG_AGENT);
    // georeg exits 0 only with every repository synced; check a few by hand.
    let api = harness_api(secondary);
    for i in [0, subset / 2, subset - 1] {
        let repo = synthetic::name(i);
        let digests = api.tag_digests(&repo);
        let want: Vec<String> =
            (0..sc.tags).map(|t| synthetic::image(&repo, &synthetic::small_tag(t)).digest).collect();
        assert_eq!(digests.values().cloned().collect::<Vec<_>>(), want, "{repo} on the secondary");
    }
    remove_state(&node);
    FirstPass {
        repos: subset,
        images: (subset * sc.tags) as u64,
        wall: run.wall,
        primary: primary.total(),
        secondary: requests,
        rss_kib: run.rss_kib,
    }
}

fn at_size(lab: &Lab, sc: &Scale, n: usize, secondary: &Registry, report: &mut Report) -> AtSize {
    let label = format!("scale: {} repositories", thousands(n as u64));
    eprintln!("bench: {label}: starting the synthetic primary");
    let synthetic = Synthetic::start(n, sc.tags, sc.large_tags);
    let mut out = AtSize { n, ..AtSize::default() };

    eprintln!("bench: {label}: backfill scan into a fresh state file");
    let scan_node = node(lab, &format!("scale-{n}-scan"), secondary, &synthetic, sc.workers);
    background(report, &label);
    (out.scan, out.scan_requests) = scan(&scan_node, &synthetic);
    remove_state(&scan_node);

    eprintln!("bench: {label}: seeding a state file, every repository synced");
    let node = node(lab, &format!("scale-{n}"), secondary, &synthetic, sc.workers);
    out.seed = seed::seed(&node, n, sc.tags, sc.large_tags);

    eprintln!("bench: {label}: no-op backfill pass");
    background(report, &label);
    let (m, before) = (mark(secondary), synthetic.counts());
    let run = georeg_run(&node, lab, &format!("scale-{n}-noop"), &["backfill".into()]);
    out.noop = run.wall;
    out.noop_rss_kib = run.rss_kib;
    out.noop_primary = synthetic.counts().since(&before);
    out.noop_secondary = count(&[&m], GEOREG_AGENT);
    out.state_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", node.state.display())).ok())
        .map(|m| m.len())
        .sum();

    eprintln!("bench: {label}: verification of one repository");
    let repo = synthetic::name(0);
    let (m, before) = (mark(secondary), synthetic.counts());
    let run = georeg_run(&node, lab, &format!("scale-{n}-verify"), &["verify".into(), repo]);
    out.verify = run.wall;
    out.verify_primary = synthetic.counts().since(&before).total();
    out.verify_secondary = count(&[&m], GEOREG_AGENT);

    out.failed = seed::fail_some(&node.state, 1000);
    eprintln!("bench: {label}: georeg serve");
    let serve = node.serve(lab);
    let log = lab.path(&format!("{}-serve.log", node.name));
    poll_until("the daemon's first catalog scan", Duration::from_secs(900), Duration::from_millis(50), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("catalog of")
    });
    background(report, &label);
    let cpu = serve.cpu_seconds();
    std::thread::sleep(sc.idle);
    out.idle_cpu = (serve.cpu_seconds() - cpu) / sc.idle.as_secs_f64();
    out.pages = pages(&node, sc);
    out.pages.push(("`georeg status`".into(), status_times(&node, sc.samples)));
    event(&node, &synthetic, secondary, &mut out);
    background(report, &label);
    out.contention = contention::measure(&node, sc, n, &synthetic.url);
    out.rss_kib = serve.peak_rss_kib();
    serve.stop();
    remove_state(&node);
    eprintln!("bench: {label}: notifications while a fresh node scans the catalog");
    background(report, &label);
    (out.scan_notify, out.scan_notify_wall) = crate::scan_notify::measure(lab, sc, n, secondary, &synthetic);
    out
}

/// `georeg backfill` on a fresh state file until it has scanned the
/// catalog (its `catalog:` line), then stopped (SIGTERM): how long the
/// scan took from the start of the process, and the requests until then.
fn scan(node: &Georeg, synthetic: &Synthetic) -> (Duration, synthetic::Counts) {
    let before = synthetic.counts();
    let started = Instant::now();
    let mut child = Command::new(georeg_bin())
        .arg("--config")
        .arg(&node.config)
        .arg("backfill")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start georeg backfill");
    let stderr = child.stderr.take().expect("its stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = started + Duration::from_secs(900);
    let (mut at, mut lines) = (None, Vec::new());
    while at.is_none() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if line.starts_with("catalog:") {
                    at = Some((started.elapsed(), synthetic.counts()));
                }
                lines.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let stop = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let (wall, counts) = at.unwrap_or_else(|| panic!("georeg backfill printed no catalog line:\n{}", lines.join("\n")));
    (wall, counts.since(&before))
}

/// The repository list's pages timed in `pages`, as their links name them
/// (src/web/dashboard.rs): the first, the last, filtered by state, and by
/// state and a part of the name; and a page after a repository's key.
pub const LIST_PAGES: [&str; 5] = [
    "/admin/geo/replication/container_repositories",
    "/admin/geo/replication/container_repositories?last=1",
    "/admin/geo/replication/container_repositories?state=failed",
    "/admin/geo/replication/container_repositories?state=synced&name=repo000042",
    "/admin/geo/replication/container_repositories?after=ns500%2Frepo050000&group=3",
];

/// Each page, timed `samples` times after one request to warm up.
fn pages(node: &Georeg, sc: &Scale) -> Vec<(String, Vec<Duration>)> {
    let mut paths = vec!["/admin/geo/nodes".to_string()];
    paths.extend(LIST_PAGES.iter().map(|p| p.to_string()));
    paths.extend(["/api/v1/status".to_string(), "/metrics".to_string()]);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    paths
        .iter()
        .map(|path| {
            let url = format!("{}{path}", node.url());
            let get = || {
                let started = Instant::now();
                let resp = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let mut body = Vec::new();
                resp.into_reader().read_to_end(&mut body).unwrap();
                assert!(!body.is_empty(), "GET {url}: an empty page");
                started.elapsed()
            };
            get();
            (format!("`GET {path}`"), (0..sc.samples).map(|_| get()).collect())
        })
        .collect()
}

/// `georeg status`, run `samples` times, while the daemon runs.
fn status_times(node: &Georeg, samples: usize) -> Vec<Duration> {
    (0..samples)
        .map(|_| {
            let started = Instant::now();
            let out = Command::new(georeg_bin())
                .arg("--config")
                .arg(&node.config)
                .arg("status")
                .stdin(Stdio::null())
                .output()
                .expect("run georeg status");
            assert!(out.status.success(), "georeg status: {}", String::from_utf8_lossy(&out.stderr));
            started.elapsed()
        })
        .collect()
}

/// A new tag in the large repository, notified as the primary registry
/// would: how long until the secondary serves it, and what it cost.
/// The first event of a run copies the repository's shared layer too: it
/// is sent first, unmeasured, and then another.
fn event(node: &Georeg, synthetic: &Synthetic, secondary: &Registry, out: &mut AtSize) {
    for round in ["first", "measured"] {
        let tag = format!("new-{}-{round}", out.n);
        let img = synthetic.push_large(&tag);
        let (m, before) = (mark(secondary), synthetic.counts());
        out.event = notify(node, synthetic, secondary, &tag, &img);
        out.event_primary = synthetic.counts().since(&before);
        out.event_secondary = count(&[&m], GEOREG_AGENT);
    }
}

/// Notifies the push of `tag` as the registry would; returns how long
/// until the secondary serves it, once its sync is recorded.
fn notify(node: &Georeg, synthetic: &Synthetic, secondary: &Registry, tag: &str, img: &synthetic::Image) -> Duration {
    let body = serde_json::json!({"events": [{
        "id": format!("scale-{tag}"), "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": img.manifest.len(),
                   "digest": img.digest, "length": img.manifest.len(), "repository": LARGE, "tag": tag,
                   "url": format!("{}/v2/{LARGE}/manifests/{}", synthetic.url, img.digest)},
        "request": {"method": "PUT", "useragent": "bench"}, "actor": {}, "source": {}}]})
    .to_string();
    let started = Instant::now();
    ureq::post(&format!("{}/api/v4/container_registry_event/events", node.url()))
        .set("Authorization", SECRET)
        .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
        .timeout(Duration::from_secs(30))
        .send_string(&body)
        .unwrap_or_else(|e| panic!("POST the notification: {e}"));
    let sapi = harness_api(secondary);
    poll_until(&format!("{LARGE}:{tag} on the secondary"), Duration::from_secs(120), Duration::from_millis(2), || {
        sapi.digest(LARGE, tag).as_deref() == Some(img.digest.as_str())
    });
    let pullable = started.elapsed();
    let done = format!(
        "SELECT COUNT(*) FROM repositories WHERE name = '{LARGE}' AND sync_state = 'synced'
         AND events_done_through >= (SELECT MAX(id) FROM events)"
    );
    poll_until("the event's sync recorded", Duration::from_secs(120), Duration::from_millis(20), || {
        node.query(&done) == 1
    });
    pullable
}
