//! The event-driven path: how long a push takes to be pullable from the
//! secondary (through a primary georeg, as deployed), and how many registry
//! notifications georeg's endpoint takes in per second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::corpus::{self, ImagePlan, RepoPlan, Tagged};
use crate::lab::{discard, harness_api, Georeg, Lab};
use crate::report::{millis, Latency, Report};
use crate::scenarios::{background, Sizes};
use crate::support::oci::{describe, sha256};
use crate::support::{poll_until, Api, SECRET};

/// Pushes of a small image, one after another, each timed from the
/// registry's answer to the manifest PUT until the secondary serves the
/// tag: with the primary registry notifying the secondary georeg directly,
/// and through a primary georeg's event log, as deployed at scale.
pub fn lag(lab: &Lab, s: &Sizes, report: &mut Report) {
    let (direct, direct_push) = lag_in(lab, s, report, false);
    let (follow, follow_push) = lag_in(lab, s, report, true);
    let p99 = |l: &Latency| l.percentile(0.99);
    report.target(
        "lag p99 no more than the p99 of the client's own push of the same image in the same run, in both modes",
        format!(
            "direct: lag p50 {}, p99 {} against the push's p99 {}; through a primary georeg: lag p50 {}, p99 {} \
             against {}",
            millis(direct.percentile(0.5)),
            millis(p99(&direct)),
            millis(p99(&direct_push)),
            millis(follow.percentile(0.5)),
            millis(p99(&follow)),
            millis(p99(&follow_push))
        ),
        p99(&direct) <= p99(&direct_push) && p99(&follow) <= p99(&follow_push),
    );
    report.latencies.extend([direct_push, direct, follow_push, follow]);
}

/// The lag in one mode, and the client's pushes it followed.
fn lag_in(lab: &Lab, s: &Sizes, report: &mut Report, follow: bool) -> (Latency, Latency) {
    const REPO: &str = "lag/app";
    let (mode, label) = if follow {
        ("follow", "primary registry -> primary georeg -> secondary georeg")
    } else {
        ("direct", "primary registry notifies the secondary georeg")
    };
    let what = format!(
        "lag: end of the push of a {} MB image until pullable from the secondary ({label})",
        s.lag_bytes / 1_000_000
    );
    let plans = [lag_plan(REPO, s.lag_pushes, s.lag_bytes, 4_000_000_000)];
    eprintln!("bench: {what}");
    let files = lab.path(&format!("lag-{mode}-files"));
    let corpus = corpus::build(&files, &plans, s.workers);
    let primary = lab.registry(&format!("lag-{mode}-primary"), None);
    let secondary = lab.registry(&format!("lag-{mode}-secondary"), None);
    let (primary, pnode, snode) = if follow {
        let pnode = Georeg::primary(lab, &format!("lag-{mode}-georeg-primary"), &primary.url);
        let primary = lab.restart_registry(primary, Some(&pnode.notify()));
        let snode =
            Georeg::secondary(lab, &format!("lag-{mode}-georeg"), &secondary, &primary, s.workers, Some(pnode.port));
        (primary, Some(pnode), snode)
    } else {
        let snode = Georeg::secondary(lab, &format!("lag-{mode}-georeg"), &secondary, &primary, s.workers, None);
        let primary = lab.restart_registry(primary, Some(&snode.notify()));
        (primary, None, snode)
    };
    let pserve = pnode.as_ref().map(|n| n.serve(lab));
    let sserve = snode.serve(lab);
    let (papi, sapi) = (harness_api(&primary), harness_api(&secondary));
    background(report, &format!("lag ({mode})"));
    let (mut samples, mut pushes) = (Vec::new(), Vec::new());
    for t in &corpus.repos[0].tags {
        let served = || sapi.digest(REPO, &t.tag).as_deref() == Some(t.digest.as_str());
        let (push, lags) = push_until_served(&papi, REPO, t, &[("the secondary", &served)]);
        pushes.push(push);
        samples.extend(lags);
    }
    let rss = pserve.as_ref().map(|p| p.peak_rss_kib()).unwrap_or(0).max(sserve.peak_rss_kib());
    sserve.stop();
    if let Some(p) = pserve {
        p.stop();
    }
    discard(secondary);
    discard(primary);
    let _ = std::fs::remove_dir_all(&files);
    let push = format!(
        "the client's own push of the same {} MB image (blobs, then the manifest), in the same run ({mode})",
        s.lag_bytes / 1_000_000
    );
    let push = Latency { what: push, samples: pushes, rate: None, rss_kib: None, note: String::new() };
    (Latency { what, samples, rate: None, rss_kib: Some(rss), note: String::new() }, push)
}

/// `pushes` images of one layer of `bytes` each into `repo`, tagged p00,
/// p01...: distinct content each push (the layers' noise seeded from `seed` on).
pub fn lag_plan(repo: &str, pushes: usize, bytes: u64, seed: u64) -> RepoPlan {
    RepoPlan {
        name: repo.into(),
        images: (0..pushes)
            .map(|i| ImagePlan { tag: format!("p{i:02}"), layers: vec![(seed + i as u64, bytes)] })
            .collect(),
    }
}

/// Pushes `t` into the primary as a client does, then waits on each of
/// `sides` in turn (a name, and whether that side serves the image yet),
/// polling every 2 ms for up to a minute: how long the push took, and for
/// each side the time from the end of the push until it served the image.
pub fn push_until_served(
    papi: &Api,
    repo: &str,
    t: &Tagged,
    sides: &[(&str, &dyn Fn() -> bool)],
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    corpus::push_image(papi, repo, t);
    let pushed = Instant::now();
    let lags = sides
        .iter()
        .map(|(side, served)| {
            poll_until(
                &format!("{repo}:{} on {side}", t.tag),
                Duration::from_secs(60),
                Duration::from_millis(2),
                served,
            );
            pushed.elapsed()
        })
        .collect();
    (pushed - started, lags)
}

/// Concurrent clients POST one-event envelopes, as the registry does, to a
/// primary georeg; every event must be stored exactly once.
pub fn ingest(lab: &Lab, s: &Sizes, report: &mut Report) {
    let per_client = s.ingest_events / s.ingest_clients;
    let total = per_client * s.ingest_clients;
    let what = format!("notification ingest: {total} events from {} concurrent clients", s.ingest_clients);
    eprintln!("bench: {what}");
    let template: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/notifications/push-manifest-tagged.json"))
            .unwrap(),
    )
    .unwrap();
    let envelope = |client: usize, i: usize| -> Vec<u8> {
        let mut e = template.clone();
        let event = &mut e["events"][0];
        let id = format!("bench-{client:02}-{i:06}");
        let digest = sha256(id.as_bytes());
        let repo = format!("ingest/r{:02}", (client * 7 + i) % 50);
        event["id"] = id.into();
        event["target"]["digest"] = digest.clone().into();
        event["target"]["url"] = format!("http://127.0.0.1:5000/v2/{repo}/manifests/{digest}").into();
        event["target"]["repository"] = repo.into();
        event["target"]["tag"] = format!("t{i}").into();
        serde_json::to_vec(&e).unwrap()
    };
    let node = Georeg::primary(lab, "ingest-georeg", "http://127.0.0.1:9");
    let serve = node.serve(lab);
    let url = format!("{}/api/v4/container_registry_event/events", node.url());
    let post = |agent: &ureq::Agent, body: &[u8]| {
        agent
            .post(&url)
            .set("Authorization", SECRET)
            .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
            .send_bytes(body)
            .unwrap_or_else(|e| panic!("POST to georeg: {}", describe(e)));
    };
    background(report, "notification ingest");
    let samples = Mutex::new(Vec::with_capacity(total));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..s.ingest_clients {
            let (samples, post, envelope) = (&samples, &post, &envelope);
            std::thread::Builder::new()
                .name(format!("client-{client}"))
                .spawn_scoped(scope, move || {
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                    let mut mine = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        let body = envelope(client, i);
                        let t = Instant::now();
                        post(&agent, &body);
                        mine.push(t.elapsed());
                    }
                    samples.lock().unwrap().extend(mine);
                })
                .expect("start a client thread");
        }
    });
    let wall = started.elapsed();
    // The registry delivers again whatever it thinks failed: redeliveries must not add rows.
    let redelivered = (per_client / 10).max(1);
    let agent = ureq::agent();
    for i in 0..redelivered {
        post(&agent, &envelope(0, i));
    }
    let rows = node.query("SELECT COUNT(*) FROM events");
    let distinct = node.query("SELECT COUNT(DISTINCT event_id) FROM events");
    let rss = serve.peak_rss_kib();
    serve.stop();
    assert!(
        rows == total as i64 && distinct == total as i64,
        "{total} events sent ({redelivered} of them twice): {rows} rows, {distinct} distinct ids"
    );
    let rate = total as f64 / wall.as_secs_f64();
    let ingest = Latency {
        what,
        samples: samples.into_inner().unwrap(),
        rate: Some(format!("{rate:.0} events/s")),
        rss_kib: Some(rss),
        note: format!("{rows} rows, each event once; {redelivered} redelivered without a duplicate"),
    };
    let p99 = ingest.percentile(0.99);
    report.target(
        "notification ingest at least 2,000 events/s with p99 under 50 ms",
        format!("{rate:.0} events/s, p99 {}", millis(p99)),
        rate >= 2000.0 && p99 < Duration::from_millis(50),
    );
    report.latencies.push(ingest);
}

/// One address holds 200 slow connections (a whole request head, then a
/// body byte every 100 ms) while another sends valid notifications one
/// after another: how long each takes.
pub fn fairness(lab: &Lab, s: &Sizes, report: &mut Report) {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    let what = format!(
        "fairness: {} notifications from 127.0.0.1 while 127.0.0.2 holds 200 slow connections",
        s.fair_notifications
    );
    eprintln!("bench: {what}");
    let node = Georeg::primary(lab, "fair-georeg", "http://127.0.0.1:9");
    let serve = node.serve(lab);
    let addr: SocketAddr = format!("127.0.0.1:{}", node.port).parse().unwrap();
    let head = format!(
        "POST /api/v4/container_registry_event/events HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\n\
         Content-Length: 500\r\n\r\n"
    );
    let slow: Vec<TcpStream> = (0..200).filter_map(|_| crate::support::slow_connection(addr, &head)).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = format!("{}/api/v4/container_registry_event/events", node.url());
    let samples = std::thread::scope(|scope| {
        let mut slow = slow;
        let stop = &stop;
        scope.spawn(move || {
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300) {
                for c in slow.iter_mut() {
                    let _ = c.write(b" ");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut samples = Vec::with_capacity(s.fair_notifications);
        for i in 0..s.fair_notifications {
            let body = serde_json::json!({"events": [{"id": format!("fair-{i}"), "action": "push", "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "fair/app", "tag": "v1",
                "digest": sha256(format!("fair-{i}").as_bytes())}}]})
            .to_string();
            let t = Instant::now();
            ureq::post(&url)
                .set("Authorization", SECRET)
                .set("Content-Type", "application/json")
                .timeout(Duration::from_secs(30))
                .send_string(&body)
                .unwrap_or_else(|e| panic!("POST to georeg: {}", describe(e)));
            samples.push(t.elapsed());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        samples
    });
    let stored = node.query("SELECT COUNT(*) FROM events");
    let rss = serve.peak_rss_kib();
    serve.stop();
    assert_eq!(stored, s.fair_notifications as i64, "every notification stored once");
    let fair = Latency { what, samples, rate: None, rss_kib: Some(rss), note: String::new() };
    let p99 = fair.percentile(0.99);
    report.target(
        "with 200 slow connections open from one address, p99 of notifications from another under 100 ms",
        format!("p50 {}, p99 {}", millis(fair.percentile(0.5)), millis(p99)),
        p99 < Duration::from_millis(100),
    );
    report.latencies.push(fair);
}
