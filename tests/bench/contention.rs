//! Notifications while the pages are read, for the scale scenario: the
//! registry's notifications, sent one every `notify_every` on one
//! kept-alive connection as the registry sends them, timed to their answer, first with
//! no other client (the baseline) and then while two clients read
//! continuously, as a browser on the dashboard and a Prometheus scraper
//! would: one the dashboard's pages (`/admin/geo/nodes` and pages of the
//! repository list spread over all of it), the other `/metrics` and
//! `/api/v1/status`. Every one of those reads the status snapshot of the
//! whole state file, and georeg answers a notification only once its
//! events are committed: a read that holds up the commit shows here.
//!
//! The events are pushes of tags the secondary registry already holds (the
//! repositories of the scenario's first pass), each with an id of its own,
//! so the sync each one queues costs two manifest HEADs and a few rows, the
//! same in both runs. The sync queue is drained before each run. Every loop
//! is bounded: the notifications by count and a deadline, the readers by
//! the end of the notifications, the same deadline and a count.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::lab::Georeg;
use crate::report::{millis, percentile, seconds, thousands};
use crate::scale::Scale;
use crate::support::oci::describe;
use crate::support::SECRET;
use crate::synthetic;

/// Reads one reader makes at most in one run, whatever the deadline.
const MAX_READS: usize = 100_000;
/// Notifications sent before each run, untimed: the connection is open and
/// the handler's first allocations made when the timed ones start.
pub const WARM_UP: usize = 2;
/// How long the sync queue may take to drain before a run.
const DRAIN: Duration = Duration::from_secs(120);

/// What one run measured.
#[derive(Default)]
pub struct Run {
    /// Time from sending each timed notification to its 2xx answer.
    pub samples: Vec<Duration>,
    /// Timed notifications answered otherwise, or not at all.
    pub failed: usize,
    pub first_failure: Option<String>,
    /// From the first timed notification to the last answer.
    pub wall: Duration,
    /// The deadline passed before every notification was sent.
    pub cut_short: bool,
    /// The sync queue was still not empty when the run started.
    pub undrained: bool,
    /// Each reader's name, and how long each of its reads that ended within
    /// the timed notifications took.
    pub readers: Vec<(String, Vec<Duration>)>,
    /// Reads answered otherwise than 200 with a body, during the run.
    pub read_failures: usize,
    pub first_read_failure: Option<String>,
}

impl Run {
    pub fn p50(&self) -> Duration {
        percentile(&self.samples, 0.50)
    }

    pub fn p99(&self) -> Duration {
        percentile(&self.samples, 0.99)
    }

    pub fn reads(&self) -> usize {
        self.readers.iter().map(|(_, r)| r.len()).sum()
    }

    /// `p50 1.2 ms, p99 3.4 ms of 300`, with what went wrong, if anything.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "p50 {}, p99 {} of {}",
            millis(self.p50()),
            millis(self.p99()),
            thousands(self.samples.len() as u64)
        );
        if self.failed > 0 {
            out.push_str(&format!(
                "; {} failed ({})",
                self.failed,
                self.first_failure.as_deref().unwrap_or("no answer")
            ));
        }
        if self.cut_short {
            out.push_str("; stopped by the deadline");
        }
        if self.undrained {
            out.push_str("; the sync queue was not empty at the start");
        }
        out
    }

    /// `412 in 31.0 s (13.3/s): pages 206, p50 120 ms; /metrics and status 206, p50 98 ms`.
    pub fn describe_reads(&self) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let each: Vec<String> = self
            .readers
            .iter()
            .map(|(name, r)| format!("{name} {}, p50 {}", thousands(r.len() as u64), millis(percentile(r, 0.50))))
            .collect();
        let mut out = format!(
            "{} in {} ({:.1}/s): {}",
            thousands(self.reads() as u64),
            seconds(self.wall),
            self.reads() as f64 / secs,
            each.join("; ")
        );
        if self.read_failures > 0 {
            out.push_str(&format!(
                "; {} failed ({})",
                self.read_failures,
                self.first_read_failure.as_deref().unwrap_or("no answer")
            ));
        }
        out
    }

    /// Whether every timed notification was sent and answered 2xx.
    pub fn complete(&self) -> bool {
        self.failed == 0 && !self.cut_short && !self.samples.is_empty()
    }
}

/// Both runs at one size.
#[derive(Default)]
pub struct Contention {
    /// No other client.
    pub quiet: Run,
    /// While the readers read.
    pub read: Run,
}

/// The two runs against the running node of `n` repositories.
pub fn measure(node: &Georeg, sc: &Scale, n: usize, primary_url: &str) -> Contention {
    let label = format!("scale: {} repositories", thousands(n as u64));
    eprintln!("bench: {label}: {} notifications, no other client", sc.notifications);
    let quiet = run(node, sc, n, primary_url, "quiet", false);
    eprintln!("bench: {label}: {} notifications while the pages and /metrics are read", sc.notifications);
    let read = run(node, sc, n, primary_url, "read", true);
    // What was acknowledged was committed: every event answered 2xx is stored.
    let stored = node.query(&format!("SELECT COUNT(*) FROM events WHERE event_id LIKE 'contention-{n}-%'"));
    let answered = (quiet.samples.len() + read.samples.len() + 2 * WARM_UP) as i64;
    assert!(stored >= answered, "{answered} notifications answered 2xx, {stored} of their events stored");
    Contention { quiet, read }
}

/// One envelope as distribution sends it: a manifest push by tag.
pub fn envelope(primary_url: &str, id: &str, repo: &str, tag: &str) -> String {
    let img = synthetic::image(repo, tag);
    serde_json::json!({"events": [{
        "id": id, "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": img.manifest.len(),
                   "digest": img.digest, "length": img.manifest.len(), "repository": repo, "tag": tag,
                   "url": format!("{primary_url}/v2/{repo}/manifests/{}", img.digest)},
        "request": {"id": id, "addr": "127.0.0.1", "method": "PUT",
                    "useragent": "docker/24.0.7"},
        "actor": {"name": "bench"}, "source": {"addr": "primary:5000", "instanceID": "bench"}}]})
    .to_string()
}

fn run(node: &Georeg, sc: &Scale, n: usize, primary_url: &str, phase: &str, readers: bool) -> Run {
    let undrained = !drain(node);
    // Repositories the first pass put on the secondary, tags in turn.
    let holds = sc.first_pass.min(n).max(1);
    let bodies: Vec<String> = (0..WARM_UP + sc.notifications)
        .map(|k| {
            let id = if k < WARM_UP {
                format!("contention-{n}-{phase}-warm-{k}")
            } else {
                format!("contention-{n}-{phase}-{}", k - WARM_UP)
            };
            envelope(primary_url, &id, &synthetic::name(k % holds), &synthetic::small_tag(k % sc.tags))
        })
        .collect();
    let url = format!("{}/api/v4/container_registry_event/events", node.url());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let post = |body: &str| -> Result<(), String> {
        agent
            .post(&url)
            .set("Authorization", SECRET)
            .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
            .send_string(body)
            .map(|_| ())
            .map_err(describe)
    };
    for body in &bodies[..WARM_UP] {
        post(body).unwrap_or_else(|e| panic!("POST a notification to {url}: {e}"));
    }
    let deadline = Instant::now() + sc.notify_deadline;
    let stop = AtomicBool::new(false);
    let started_reads = AtomicUsize::new(0);
    let base = node.url();
    // The list's pages in an order that jumps about it (7919 is prime), as
    // an operator paging and filtering would not read neighbours only: a
    // page after a repository (its link's key), the first and the last.
    let pages: Vec<String> = (0..500)
        .flat_map(|j| {
            let repos = "/admin/geo/replication/container_repositories";
            let page = match j % 10 {
                0 => repos.to_string(),
                5 => format!("{repos}?last=1"),
                _ => format!("{repos}?after={}&group=3", synthetic::name((j * 7919) % n.max(1))),
            };
            ["/admin/geo/nodes".to_string(), page]
        })
        .collect();
    let api = ["/metrics".to_string(), "/api/v1/status".to_string()];
    let mut out = Run { undrained, ..Run::default() };
    let (timed, all_reads) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        if readers {
            let (stop, started_reads, base) = (&stop, &started_reads, &base);
            for (name, paths) in [("pages", &pages[..]), ("/metrics and status", &api[..])] {
                let handle = std::thread::Builder::new()
                    .name(format!("reader {name}"))
                    .spawn_scoped(scope, move || {
                        (name.to_string(), read_on(base, paths, stop, started_reads, deadline))
                    })
                    .expect("start a reader thread");
                handles.push(handle);
            }
            // Both readers in their loop before the first timed notification.
            while started_reads.load(Ordering::SeqCst) < handles.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let begin = Instant::now();
        for (k, body) in bodies[WARM_UP..].iter().enumerate() {
            if Instant::now() >= deadline {
                out.cut_short = true;
                break;
            }
            // One every `notify_every`, as a registry's pushes arrive.
            let due = begin + sc.notify_every * k as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let t = Instant::now();
            match post(body) {
                Ok(()) => out.samples.push(t.elapsed()),
                Err(e) => {
                    out.failed += 1;
                    out.first_failure.get_or_insert(e);
                }
            }
        }
        let end = Instant::now();
        stop.store(true, Ordering::SeqCst);
        let reads: Vec<_> = handles.into_iter().map(|h| h.join().expect("a reader thread")).collect();
        ((begin, end), reads)
    });
    let (begin, end) = timed;
    out.wall = end - begin;
    for (name, reads) in all_reads {
        let mut during = Vec::new();
        for read in reads {
            if read.ended < begin || read.ended > end {
                continue;
            }
            match read.outcome {
                Ok(took) => during.push(took),
                Err(e) => {
                    out.read_failures += 1;
                    out.first_read_failure.get_or_insert(e);
                }
            }
        }
        out.readers.push((name, during));
    }
    out
}

/// One read: when it ended, and how long it took or why it failed.
struct Reading {
    ended: Instant,
    outcome: Result<Duration, String>,
}

/// Reads `paths` in turn, over and over, one after another on one
/// kept-alive connection until `stop`, the deadline or [`MAX_READS`].
fn read_on(base: &str, paths: &[String], stop: &AtomicBool, started: &AtomicUsize, deadline: Instant) -> Vec<Reading> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let mut reads = Vec::new();
    for k in 0..MAX_READS {
        if k == 1 {
            started.fetch_add(1, Ordering::SeqCst);
        }
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        let url = format!("{base}{}", paths[k % paths.len()]);
        let t = Instant::now();
        let outcome = match agent.get(&url).call() {
            Ok(resp) => {
                let mut body = Vec::new();
                match resp.into_reader().read_to_end(&mut body) {
                    Ok(_) if !body.is_empty() => Ok(t.elapsed()),
                    Ok(_) => Err(format!("GET {url}: an empty page")),
                    Err(e) => Err(format!("GET {url}: {e}")),
                }
            }
            Err(e) => Err(format!("GET {url}: {}", describe(e))),
        };
        reads.push(Reading { ended: Instant::now(), outcome });
    }
    reads
}

/// Waits, at most [`DRAIN`], until no repository is queued or syncing, so
/// that each run starts with the workers idle; whether they were.
fn drain(node: &Georeg) -> bool {
    let until = Instant::now() + DRAIN;
    loop {
        if node.query("SELECT COUNT(*) FROM repositories WHERE sync_state IN ('pending', 'started')") == 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
