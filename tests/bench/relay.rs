//! Relays: a chain of three real registries and three georeg nodes
//! (primary registry -> primary georeg -> relay -> second hop), and one
//! primary georeg serving the long polls of many followers.
//!
//! The chain measures, in one run, how long a pushed image takes to be
//! pullable at the relay (one hop) and at the second hop, which follows the
//! relay's log of what it applied and copies from the relay's registry; and
//! what the primary registry served to georeg against what was pushed (its
//! access log): one copy should cross the primary's link, however many hops
//! follow.
//!
//! The fan-out runs one primary georeg (its registry notifying it) and many
//! clients that long-poll its event log exactly as a secondary's cursor
//! does (`after`, `limit=500`, `wait=5`, a node token signed with the shared
//! key), while the harness posts notifications at a steady pace, as a
//! registry would: the answers served per second, the node's CPU time, and
//! how long after its notification was answered each follower had each
//! event. Each follower's token is signed once: signing costs the
//! follower, and the node verifies every request's token all the same.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::corpus::{self, Tagged};
use crate::lab::{discard, harness_api, mark, Georeg, Lab, Request, Serve, GEOREG_AGENT, HARNESS_AGENT};
use crate::notify::{lag_plan, push_until_served};
use crate::report::{millis, percentile, Latency, Report, Table};
use crate::scenarios::{assert_complete, background, Sizes};
use crate::support::oci::{describe, sha256, OCI_MANIFEST};
use crate::support::{keys, poll_until, Api, SECRET};

const REPO: &str = "relay/app";
/// A follower's long poll, as a secondary's cursor asks for it.
const WAIT_SECONDS: u64 = 5;
const PAGE: usize = 500;
/// georeg's audience for the tokens its nodes sign for each other.
const NODE_AUDIENCE: &str = "georeg";

/// The chain, then a fan-out run for each follower count: their tables,
/// the chain's and the largest fan-out's latencies, and the two targets.
pub fn relay(lab: &Lab, s: &Sizes, report: &mut Report) {
    let chain = chain(lab, s, report);
    let fans: Vec<FanOut> = s.fanout_followers.iter().map(|&n| fan_out(lab, s, report, n)).collect();

    let (one, two) = (chain.one.percentile(0.99), chain.two.percentile(0.99));
    let ratio = two.as_secs_f64() / one.as_secs_f64().max(1e-9);
    let p50_ratio = chain.two.percentile(0.5).as_secs_f64() / chain.one.percentile(0.5).as_secs_f64().max(1e-9);
    let blob_ratio = chain.primary_blobs as f64 / chain.pushed_blobs.max(1) as f64;
    let all_ratio = chain.primary_all as f64 / (chain.pushed_blobs + chain.pushed_manifests).max(1) as f64;
    let relay_ratio = chain.relay_blobs as f64 / chain.pushed_blobs.max(1) as f64;
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    report.tables.push(Table {
        title: format!(
            "Relays: {} pushes of a {} MB image through primary -> relay -> second hop",
            s.relay_pushes,
            s.lag_bytes / 1_000_000
        ),
        header: vec!["measure".into(), "measured".into()],
        rows: vec![
            vec![
                "lag at the second hop against one hop".into(),
                format!(
                    "p50 {} against {} ({p50_ratio:.2}x); p99 {} against {} ({ratio:.2}x)",
                    millis(chain.two.percentile(0.5)),
                    millis(chain.one.percentile(0.5)),
                    millis(two),
                    millis(one)
                ),
            ],
            vec![
                "blob bytes the primary registry served to georeg, against the blob bytes pushed".into(),
                format!("{} / {} = {blob_ratio:.3}", mb(chain.primary_blobs), mb(chain.pushed_blobs)),
            ],
            vec![
                "every byte the primary registry served to georeg (manifests and listings too), against every \
                 byte pushed"
                    .into(),
                format!(
                    "{} / {} = {all_ratio:.3}",
                    mb(chain.primary_all),
                    mb(chain.pushed_blobs + chain.pushed_manifests)
                ),
            ],
            vec![
                "blob bytes the relay's registry served (to the second hop), against the blob bytes pushed".into(),
                format!("{} / {} = {relay_ratio:.3}", mb(chain.relay_blobs), mb(chain.pushed_blobs)),
            ],
        ],
    });
    report.tables.push(Table {
        title: format!(
            "Fan-out: one primary georeg, its event log long-polled by each follower (limit={PAGE}, \
             wait={WAIT_SECONDS}); a notification every {} for up to {} or {}; CPU is the node's utime + stime, \
             the notifications' included",
            millis(s.fanout_every),
            s.fanout_events,
            crate::report::seconds(s.fanout_for)
        ),
        header: [
            "followers",
            "notifications",
            "log answers (without an event)",
            "answers/s",
            "CPU: share of a core; per answer",
            "notification answered: p50 / p99 / max",
            "event to each follower: p50 / p99",
            "one core serves (computed from the CPU per answer)",
        ]
        .map(String::from)
        .to_vec(),
        rows: fans
            .iter()
            .map(|f| {
                let per_core = 1.0 / f.cpu_per_answer().max(1e-9);
                let at = |d: &[Duration], q: f64| millis(percentile(d, q));
                vec![
                    f.followers.to_string(),
                    format!("{} in {}", f.posted, crate::report::seconds(f.wall)),
                    format!("{} ({})", f.answers, f.empty),
                    format!("{:.0}", f.answers_per_s()),
                    format!("{:.0} %; {:.2} ms", f.core_share() * 100.0, f.cpu_per_answer() * 1000.0),
                    format!("{} / {} / {}", at(&f.notified, 0.5), at(&f.notified, 0.99), at(&f.notified, 1.0)),
                    format!("{} / {}", at(&f.delays, 0.5), at(&f.delays, 0.99)),
                    format!(
                        "{per_core:.0} answers/s: {:.0} followers at an event every {}, {:.0} idle ones",
                        per_core * s.fanout_every.as_secs_f64(),
                        millis(s.fanout_every),
                        per_core * WAIT_SECONDS as f64
                    ),
                ]
            })
            .collect(),
    });
    report.target(
        "relay: second-hop lag p99 under twice the one-hop p99 (1 MB image)",
        format!(
            "one hop: p50 {}, p99 {}; two hops: p50 {}, p99 {}; {ratio:.2}x",
            millis(chain.one.percentile(0.5)),
            millis(one),
            millis(chain.two.percentile(0.5)),
            millis(two)
        ),
        ratio < 2.0,
    );
    report.target(
        "relay: one copy across the primary's link, however many hops (blob bytes served / pushed about 1.0)",
        format!("{blob_ratio:.3} (every byte served to georeg / every byte pushed: {all_ratio:.3})"),
        blob_ratio <= 1.05,
    );
    report.latencies.extend([chain.one, chain.two]);
    // The most followers: the run the measure is about.
    if let Some(f) = fans.into_iter().max_by_key(|f| f.followers) {
        let (n, rate) = (f.followers, f.answers_per_s());
        report.latencies.push(Latency {
            what: format!(
                "fan-out: an event's notification answered until each of {n} followers' long polls returned it"
            ),
            samples: f.delays,
            rate: Some(format!("{rate:.0} answers/s")),
            rss_kib: Some(f.rss_kib),
            note: format!("{} returned before the notification's answer reached its sender: counted as 0", f.early),
        });
        report.latencies.push(Latency {
            what: format!("fan-out: a notification answered, while {n} followers long-poll the same node"),
            samples: f.notified,
            rate: None,
            rss_kib: None,
            note: String::new(),
        });
    }
}

/// What the chain measured.
struct Chain {
    one: Latency,
    two: Latency,
    pushed_blobs: u64,
    pushed_manifests: u64,
    /// Blob GET bytes the primary registry served to georeg.
    primary_blobs: u64,
    /// Every body byte the primary registry served to georeg.
    primary_all: u64,
    /// Blob GET bytes the relay's registry served to georeg (the second hop).
    relay_blobs: u64,
}

/// Pushes through primary registry -> primary georeg -> relay -> second
/// hop, each push timed until pullable at the relay, then at the second hop.
fn chain(lab: &Lab, s: &Sizes, report: &mut Report) -> Chain {
    let what =
        |at: &str| format!("relay lag: end of the push of a {} MB image until pullable {at}", s.lag_bytes / 1_000_000);
    eprintln!("bench: relay chain: {} pushes through primary -> relay -> second hop", s.relay_pushes);
    let files = lab.path("relay-files");
    let corpus = corpus::build(&files, &[lag_plan(REPO, s.relay_pushes, s.lag_bytes, 5_000_000_000)], s.workers);
    let primary = lab.registry("relay-primary", None);
    let relay = lab.registry("relay-relay", None);
    let hop = lab.registry("relay-hop", None);
    let pnode = Georeg::primary(lab, "relay-georeg-primary", &primary.url);
    let primary = lab.restart_registry(primary, Some(&pnode.notify()));
    let rnode = Georeg::secondary(lab, "relay-georeg-relay", &relay, &primary, s.workers, Some(pnode.port));
    // Configured as any follower of the primary, with the relay in its place.
    let hnode = Georeg::secondary_at(lab, "relay-georeg-hop", &hop.url, &relay.url, s.workers, Some(rnode.port));
    let marks = (mark(&primary), mark(&relay));
    let serves = [pnode.serve(lab), rnode.serve(lab), hnode.serve(lab)];
    let (papi, rapi, hapi) = (harness_api(&primary), harness_api(&relay), harness_api(&hop));
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).user_agent(HARNESS_AGENT).build();
    background(report, "relay chain");
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for t in &corpus.repos[0].tags {
        let at_relay = || pullable(&agent, &rapi, t);
        let at_hop = || pullable(&agent, &hapi, t);
        let (_, took) = push_until_served(&papi, REPO, t, &[("the relay", &at_relay), ("the second hop", &at_hop)]);
        one.push(took[0]);
        two.push(took[1]);
    }
    let rss = serves.iter().map(Serve::peak_rss_kib).max().unwrap_or(0);
    for serve in serves {
        serve.stop();
    }
    // The registries log a request after answering it: let the last lines land.
    std::thread::sleep(Duration::from_millis(300));
    let served = |requests: &[Request], blobs_only: bool| -> u64 {
        requests
            .iter()
            .filter(|r| r.method == "GET" && (!blobs_only || (r.status == 200 && r.path.contains("/blobs/sha256:"))))
            .map(|r| r.bytes)
            .sum()
    };
    let (from_primary, from_relay) = (marks.0.requests(GEOREG_AGENT), marks.1.requests(GEOREG_AGENT));
    let pushed_manifests =
        corpus.repos[0].tags.iter().map(|t| std::fs::metadata(&t.manifest).map(|m| m.len()).unwrap_or(0)).sum();
    let chain = Chain {
        one: Latency {
            what: what("at the relay (one hop: primary registry -> primary georeg -> relay)"),
            samples: one,
            rate: None,
            rss_kib: Some(rss),
            note: String::new(),
        },
        two: Latency {
            what: what("at the second hop, in the same run (two hops: ... -> relay georeg -> second hop)"),
            samples: two,
            rate: None,
            rss_kib: Some(rss),
            note: String::new(),
        },
        pushed_blobs: corpus.bytes(),
        pushed_manifests,
        primary_blobs: served(&from_primary, true),
        primary_all: served(&from_primary, false),
        relay_blobs: served(&from_relay, true),
    };
    assert_complete(&primary, &hop, &[REPO.to_string()], "the chain");
    discard(hop);
    discard(relay);
    discard(primary);
    let _ = std::fs::remove_dir_all(&files);
    chain
}

/// Whether `api`'s registry serves `t` by its tag: a manifest GET that
/// answers 200 with `t`'s bytes.
fn pullable(agent: &ureq::Agent, api: &Api, t: &Tagged) -> bool {
    let url = format!("{}/v2/{REPO}/manifests/{}", api.url, t.tag);
    match agent.get(&url).set("Authorization", &api.auth(REPO)).set("Accept", OCI_MANIFEST).call() {
        Ok(resp) => {
            let mut body = Vec::new();
            resp.into_reader().take(1 << 20).read_to_end(&mut body).is_ok() && sha256(&body) == t.digest
        }
        // Not there yet; or a read racing the filesystem driver's rewrite
        // of the tag's link, which answers 500.
        Err(ureq::Error::Status(404 | 500, _)) => false,
        Err(e) => panic!("GET {url}: {}", describe(e)),
    }
}

/// What one fan-out run measured.
struct FanOut {
    followers: usize,
    /// Notifications posted (and events each follower had).
    posted: usize,
    /// From the first notification until the last follower had the last event.
    wall: Duration,
    answers: u64,
    /// Answers that carried no event (a long poll that waited it out).
    empty: u64,
    /// CPU seconds of the primary georeg over the run.
    cpu: f64,
    /// From each event's notification answered until each follower had it.
    delays: Vec<Duration>,
    /// Of those, how many a follower had before the notification's answer
    /// reached its sender (counted as 0).
    early: usize,
    /// How long each notification took to be answered.
    notified: Vec<Duration>,
    rss_kib: u64,
}

impl FanOut {
    fn answers_per_s(&self) -> f64 {
        self.answers as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// CPU seconds per answer served.
    fn cpu_per_answer(&self) -> f64 {
        self.cpu / self.answers.max(1) as f64
    }

    /// The share of one core the node used.
    fn core_share(&self) -> f64 {
        self.cpu / self.wall.as_secs_f64().max(1e-9)
    }
}

/// What one follower saw: each event's registry id, when the long poll
/// that carried it returned, and how many answers it had.
struct Followed {
    got: Vec<(String, Instant)>,
    answers: u64,
    empty: u64,
}

/// One primary georeg, `n` followers long-polling it, and notifications
/// posted to it one every `fanout_every`, up to `fanout_events` or for
/// `fanout_for`, whichever ends first.
fn fan_out(lab: &Lab, s: &Sizes, report: &mut Report, n: usize) -> FanOut {
    eprintln!("bench: relay fan-out: {n} followers long-polling one primary georeg");
    let registry = lab.registry(&format!("fan{n}-primary"), None);
    let node = Georeg::primary(lab, &format!("fan{n}-georeg"), &registry.url);
    let registry = lab.restart_registry(registry, Some(&node.notify()));
    let serve = node.serve(lab);
    let log = format!("{}/api/v1/events", node.url());
    let notifications = node.notify().url;
    let tokens: Vec<String> = (0..n)
        .map(|i| keys().signer.sign(NODE_AUDIENCE, &format!("follower-{i:02}"), Duration::from_secs(3600), &[]).text)
        .collect();
    let deadline = Instant::now() + s.fanout_for + Duration::from_secs(120);
    // How many events the followers wait for: known once the posting ends.
    let (ready, total, stop) = (AtomicUsize::new(0), AtomicUsize::new(usize::MAX), AtomicBool::new(false));
    background(report, &format!("relay fan-out, {n} followers"));
    let (followed, (committed, notified), cpu, started) = std::thread::scope(|scope| {
        // However this ends, the followers stop within one long poll.
        let _stop = StopOnDrop(&stop);
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (log, ready, total, stop) = (&log, &ready, &total, &stop);
                std::thread::Builder::new()
                    .name(format!("follower-{i:02}"))
                    .spawn_scoped(scope, move || follow(i, log, token, deadline, ready, total, stop))
                    .expect("start a follower thread")
            })
            .collect();
        poll_until("every follower's first answer", Duration::from_secs(60), Duration::from_millis(5), || {
            ready.load(Ordering::SeqCst) == n
        });
        // Every follower's first long poll reaches the node before the first event.
        std::thread::sleep(Duration::from_millis(200));
        let cpu = serve.cpu_seconds();
        let started = Instant::now();
        let posted = post_paced(&notifications, s);
        total.store(posted.0.len(), Ordering::SeqCst);
        let followed: Vec<Followed> =
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
        (followed, posted, serve.cpu_seconds() - cpu, started)
    });
    let rss_kib = serve.peak_rss_kib();
    serve.stop();
    discard(registry);

    let ids: Vec<String> = (0..committed.len()).map(event_id).collect();
    let mut delays = Vec::with_capacity(n * ids.len());
    let (mut early, mut last) = (0, started);
    for (i, f) in followed.iter().enumerate() {
        assert!(f.got.iter().map(|(id, _)| id).eq(ids.iter()), "follower {i} did not get every event once, in order");
        for (id, at) in &f.got {
            let commit = committed[id];
            early += usize::from(*at < commit);
            delays.push(at.saturating_duration_since(commit));
            last = last.max(*at);
        }
    }
    FanOut {
        followers: n,
        posted: ids.len(),
        wall: last - started,
        answers: followed.iter().map(|f| f.answers).sum(),
        empty: followed.iter().map(|f| f.empty).sum(),
        cpu,
        delays,
        early,
        notified,
        rss_kib,
    }
}

fn event_id(i: usize) -> String {
    format!("fan-{i:05}")
}

/// Posts one-event notifications as the registry sends them, one every
/// `fanout_every` (at once after a late one), up to `fanout_events` or for
/// `fanout_for`: when each event's answer came, by its id, and how long
/// each answer took.
fn post_paced(url: &str, s: &Sizes) -> (HashMap<String, Instant>, Vec<Duration>) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).user_agent(HARNESS_AGENT).build();
    let (mut committed, mut answered) = (HashMap::new(), Vec::new());
    let started = Instant::now();
    for i in 0..s.fanout_events {
        let slot = started + s.fanout_every * i as u32;
        if slot - started >= s.fanout_for {
            break;
        }
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = event_id(i);
        let body = serde_json::json!({"events": [{"id": id, "action": "push", "target": {
            "mediaType": OCI_MANIFEST, "repository": "fan/app", "tag": format!("t{i}"),
            "digest": sha256(id.as_bytes())}}]})
        .to_string();
        let sent = Instant::now();
        agent
            .post(url)
            .set("Authorization", SECRET)
            .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
            .send_string(&body)
            .unwrap_or_else(|e| panic!("POST to georeg: {}", describe(e)));
        let at = Instant::now();
        answered.push(at - sent);
        committed.insert(id, at);
        if at - started >= s.fanout_for {
            break;
        }
    }
    (committed, answered)
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Follower `index`: long polls after the last id it had, as a
/// secondary's cursor does, until it had the `total` events posted (or is
/// told to stop). Its connection opens once the followers before it had their
/// first answer: secondaries start at different times, and connections
/// that open within the same few milliseconds can go unanswered (see
/// docs/benchmark.md).
fn follow(
    index: usize,
    log: &str,
    token: &str,
    deadline: Instant,
    ready: &AtomicUsize,
    total: &AtomicUsize,
    stop: &AtomicBool,
) -> Followed {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(WAIT_SECONDS + 30)).build();
    let auth = format!("Bearer {token}");
    let who = std::thread::current().name().unwrap_or("a follower").to_string();
    let poll = |after: i64, wait: u64| -> serde_json::Value {
        let url = format!("{log}?after={after}&limit={PAGE}&wait={wait}");
        let resp = agent
            .get(&url)
            .set("Authorization", &auth)
            .call()
            .unwrap_or_else(|e| panic!("{who}: GET {url}: {}", describe(e)));
        serde_json::from_reader(resp.into_reader().take(64 << 20))
            .unwrap_or_else(|e| panic!("{who}: GET {url}: not a page of the event log: {e}"))
    };
    while ready.load(Ordering::SeqCst) < index && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // An answer at once first: the connection is open and the token
    // accepted before the clock starts.
    poll(0, 0);
    ready.fetch_add(1, Ordering::SeqCst);
    let mut f = Followed { got: Vec::new(), answers: 0, empty: 0 };
    let mut after = 0;
    while f.got.len() < total.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{who} had {} events at its deadline", f.got.len());
        let page = poll(after, WAIT_SECONDS);
        let at = Instant::now();
        let events = page["events"].as_array().map(Vec::as_slice).unwrap_or_default();
        f.answers += 1;
        f.empty += u64::from(events.is_empty());
        for e in events {
            after = e["id"].as_i64().unwrap_or(after);
            f.got.push((e["event_id"].as_str().unwrap_or_default().to_string(), at));
        }
    }
    f
}
