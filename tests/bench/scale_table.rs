//! The scale scenario's results: one table with a column per size and the
//! ratio between them (costs growing linearly show the ratio of the sizes,
//! 10; those that do not depend on the size, about 1), the targets of
//! issue 16 and of notifications while the pages are read, and notes
//! saying what was seeded and what was computed.

use std::time::Duration;

use crate::contention::Contention;
use crate::report::{millis, seconds, thousands, Report, Table};
use crate::scale::Scale;
use crate::synthetic::{Counts, LARGE};

/// What one size measured.
#[derive(Default)]
pub struct AtSize {
    pub n: usize,
    pub scan: Duration,
    pub scan_requests: Counts,
    pub seed: Duration,
    pub noop: Duration,
    pub noop_rss_kib: u64,
    pub noop_primary: Counts,
    pub noop_secondary: u64,
    pub state_bytes: u64,
    pub verify: Duration,
    pub verify_primary: u64,
    pub verify_secondary: u64,
    pub failed: i64,
    /// Share of one CPU `georeg serve` used while idle.
    pub idle_cpu: f64,
    /// (what, timed samples) for each page and `georeg status`.
    pub pages: Vec<(String, Vec<Duration>)>,
    pub event: Duration,
    pub event_primary: Counts,
    pub event_secondary: u64,
    /// Notifications alone and while the pages are read.
    pub contention: Contention,
    /// Notifications while a node on a fresh state file scans the catalog,
    /// and how long it took from its start to the end of its scan.
    pub scan_notify: crate::contention::Run,
    pub scan_notify_wall: Duration,
    pub rss_kib: u64,
}

/// The real first pass of a subset of the first size.
pub struct FirstPass {
    pub repos: usize,
    pub images: u64,
    pub wall: Duration,
    pub primary: u64,
    pub secondary: u64,
    pub rss_kib: u64,
}

const WEEK: f64 = 7.0 * 86400.0;

/// The repository list's pages, as their measures name them.
const LIST: &str = "container_repositories";

/// `25 min` from 120 s on, else as [`seconds`] writes it.
fn minutes(secs: f64) -> String {
    if secs >= 120.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        seconds(Duration::from_secs_f64(secs))
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

fn p50(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len().saturating_sub(1) / 2).copied().unwrap_or_default()
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().max().copied().unwrap_or_default()
}

/// Registry requests of one verification of a repository of `tags` tags,
/// from one measured at `measured_tags`: a listing and a HEAD per tag on
/// each registry, plus what does not depend on the tags.
fn verification_requests(measured: u64, measured_tags: usize, tags: usize) -> f64 {
    let fixed = measured as f64 - 2.0 * (1 + measured_tags) as f64;
    2.0 * (1 + tags) as f64 + fixed.max(0.0)
}

/// Requests per day verifying every repository once per default interval.
fn per_day(sc: &Scale, a: &AtSize) -> f64 {
    let one = a.verify_primary + a.verify_secondary;
    let all = a.n as f64 * one as f64 + verification_requests(one, sc.tags, sc.large_tags);
    all * 86400.0 / WEEK
}

/// Whether a measure is a cost judged for growing linearly or better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Judge {
    Not,
    /// A count (requests, bytes): its ratio as it is.
    Count,
    /// A time in seconds: those under [`TIME_FLOOR`] count as that much.
    Time,
}

/// Times below this are noise on a shared machine.
const TIME_FLOOR: f64 = 0.005;

struct Line {
    what: String,
    show: [String; 2],
    raw: [f64; 2],
    judge: Judge,
    target: String,
}

impl Line {
    fn judged(&self) -> f64 {
        let floor = if self.judge == Judge::Time { TIME_FLOOR } else { 0.0 };
        self.raw[1].max(floor) / self.raw[0].max(floor).max(1e-9)
    }
}

pub fn render(sc: &Scale, first: &FirstPass, sizes: &[AtSize], report: &mut Report) {
    let (a, b) = (&sizes[0], &sizes[1]);
    let mut lines: Vec<Line> = Vec::new();
    let mut add = |what: &str, f: &dyn Fn(&AtSize) -> (String, f64), judge: Judge, target: &str| {
        let (x, y) = (f(a), f(b));
        lines.push(Line { what: what.into(), show: [x.0, y.0], raw: [x.1, y.1], judge, target: target.into() });
    };
    add(
        "backfill scan of the catalog into a fresh state file",
        &|m| (seconds(m.scan), m.scan.as_secs_f64()),
        Judge::Time,
        "",
    );
    add(
        "scan: requests to the primary",
        &|m| (m.scan_requests.describe(), m.scan_requests.total() as f64),
        Judge::Count,
        "",
    );
    add(
        "no-op backfill pass (`georeg backfill`, all synced)",
        &|m| (seconds(m.noop), m.noop.as_secs_f64()),
        Judge::Time,
        "under 60 s",
    );
    add(
        "no-op pass: requests to the primary + the secondary",
        &|m| {
            (
                format!("{} + {}", m.noop_primary.describe(), m.noop_secondary),
                (m.noop_primary.total() + m.noop_secondary) as f64,
            )
        },
        Judge::Count,
        "",
    );
    add("no-op pass: peak RSS", &|m| (mb(m.noop_rss_kib as f64 * 1024.0), m.noop_rss_kib as f64), Judge::Count, "");
    add("state file size", &|m| (mb(m.state_bytes as f64), m.state_bytes as f64), Judge::Count, "");
    add(
        "`georeg serve` peak RSS",
        &|m| (mb(m.rss_kib as f64 * 1024.0), m.rss_kib as f64),
        Judge::Count,
        "under 200 MB",
    );
    add(
        "`georeg serve` CPU while idle (share of one CPU)",
        &|m| (format!("{:.1} %", m.idle_cpu * 100.0), m.idle_cpu),
        Judge::Not,
        "",
    );
    for (i, (what, _)) in a.pages.iter().enumerate() {
        let f = move |m: &AtSize| {
            let s = &m.pages[i].1;
            (format!("{} (max {})", millis(p50(s)), millis(max(s))), p50(s).as_secs_f64())
        };
        let target = if what.contains(LIST) { "under 10 ms" } else { "under 300 ms" };
        add(&format!("{what}: p50 of {}", sc.samples), &f, Judge::Time, target);
    }
    let event = format!(
        "one event (new tag) into `{LARGE}` of {} tags: notification to pullable",
        thousands(sc.large_tags as u64)
    );
    add(&event, &|m| (millis(m.event), m.event.as_secs_f64()), Judge::Time, "");
    add(
        "one event: requests to the primary + the secondary",
        &|m| {
            (
                format!("{} + {}", m.event_primary.describe(), m.event_secondary),
                (m.event_primary.total() + m.event_secondary) as f64,
            )
        },
        Judge::Count,
        "",
    );
    add(
        "notifications (`POST /api/v4/container_registry_event/events`, one every 20 ms) with no other client: \
         time to the answer",
        &|m| (m.contention.quiet.describe(), m.contention.quiet.p99().as_secs_f64()),
        Judge::Not,
        "",
    );
    add(
        "the same while 2 clients read the pages and `/metrics` continuously",
        &|m| (m.contention.read.describe(), m.contention.read.p99().as_secs_f64()),
        Judge::Not,
        "p99 under 10 ms, and under 10 ms more than with no other client",
    );
    add(
        "the same while a node started on a fresh state file scans the catalog (time to the scan's end)",
        &|m| {
            let r = &m.scan_notify;
            (format!("{} ({})", r.describe(), seconds(m.scan_notify_wall)), r.p99().as_secs_f64())
        },
        Judge::Not,
        "p99 under 10 ms more than with no other client",
    );
    add(
        "reads completed meanwhile (pages: `/admin/geo/nodes` and pages of the list; `/metrics` and `/api/v1/status`)",
        &|m| {
            let r = &m.contention.read;
            (r.describe_reads(), r.reads() as f64 / r.wall.as_secs_f64().max(1e-9))
        },
        Judge::Not,
        "",
    );
    add(
        &format!("verification of one repository of {} tags (`georeg verify`): requests, primary + secondary", sc.tags),
        &|m| {
            (
                format!("{} + {} in {}", m.verify_primary, m.verify_secondary, seconds(m.verify)),
                (m.verify_primary + m.verify_secondary) as f64,
            )
        },
        Judge::Not,
        "",
    );
    add(
        "scheduled verification of everything, default interval (7 days): requests per day (computed)",
        &|m| {
            let d = per_day(sc, m);
            (format!("{} ({:.1}/s)", thousands(d as u64), d / 86400.0), d)
        },
        Judge::Count,
        "",
    );
    let size_ratio = (b.n + 1) as f64 / (a.n + 1) as f64;
    let ratio = |l: &Line| l.raw[1] / l.raw[0].max(1e-9);
    let mut rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let r = if l.raw[0] > 0.0 { format!("{:.1}x", ratio(l)) } else { "-".into() };
            vec![l.what.clone(), l.show[0].clone(), l.show[1].clone(), r, l.target.clone()]
        })
        .collect();
    rows.insert(
        0,
        vec![
            format!(
                "first full pass into the real secondary registry: {} of the repositories x {} tags",
                thousands(first.repos as u64),
                sc.tags
            ),
            format!(
                "{}, {:.1} images/s, {} requests (primary + secondary), peak RSS {}",
                seconds(first.wall),
                first.images as f64 / first.wall.as_secs_f64().max(1e-9),
                thousands(first.primary + first.secondary),
                mb(first.rss_kib as f64 * 1024.0)
            ),
            "-".into(),
            "-".into(),
            String::new(),
        ],
    );
    report.tables.push(Table {
        title: format!(
            "Scale: one node, synthetic primary, {} tags per repository (plus `{LARGE}`, {} tags)",
            sc.tags,
            thousands(sc.large_tags as u64)
        ),
        header: vec![
            "measure".into(),
            format!("{} repositories", thousands(a.n as u64)),
            format!("{} repositories", thousands(b.n as u64)),
            "ratio".into(),
            format!("target at {}", thousands(b.n as u64)),
        ],
        rows,
    });
    targets(sc, &lines, a, b, size_ratio, report);
    notes(sc, first, a, b, report);
}

fn targets(sc: &Scale, lines: &[Line], a: &AtSize, b: &AtSize, size_ratio: f64, report: &mut Report) {
    let at = thousands(b.n as u64);
    report.target(
        &format!("scale: no-op backfill pass under 60 s at {at} repositories"),
        seconds(b.noop),
        b.noop < Duration::from_secs(60),
    );
    let list: Vec<&(String, Vec<Duration>)> = b.pages.iter().filter(|(what, _)| what.contains(LIST)).collect();
    let slowest_list = list.iter().max_by_key(|(_, s)| p50(s));
    report.target(
        &format!("scale: every page of the repository list under 10 ms at {at} repositories"),
        slowest_list
            .map(|(what, s)| {
                format!("slowest {what}: p50 {} (max {}) of {}", millis(p50(s)), millis(max(s)), sc.samples)
            })
            .unwrap_or_default(),
        !list.is_empty() && list.iter().all(|(_, s)| p50(s) < Duration::from_millis(10)),
    );
    let slowest = b.pages.iter().max_by_key(|(_, s)| p50(s));
    let all_fast = b.pages.iter().all(|(_, s)| p50(s) < Duration::from_millis(300));
    report.target(
        &format!("scale: every page and `georeg status` under 300 ms at {at} repositories"),
        slowest
            .map(|(what, s)| {
                format!("slowest {what}: p50 {} (max {}) of {}", millis(p50(s)), millis(max(s)), sc.samples)
            })
            .unwrap_or_default(),
        all_fast,
    );
    let (quiet, read) = (&b.contention.quiet, &b.contention.read);
    report.target(
        &format!(
            "scale: notification p99 under 10 ms at {at} repositories while the pages and `/metrics` are read continuously"
        ),
        format!(
            "{}, {} reads meanwhile ({:.1}/s); with no reader: p99 {}",
            read.describe(),
            thousands(read.reads() as u64),
            read.reads() as f64 / read.wall.as_secs_f64().max(1e-9),
            millis(quiet.p99())
        ),
        read.complete() && read.reads() > 0 && read.p99() < Duration::from_millis(10),
    );
    let idle = quiet.p99() + Duration::from_millis(10);
    for (what, run) in [("the pages and `/metrics` are read", read), ("a fresh node scans the catalog", &b.scan_notify)]
    {
        report.target(
            &format!(
                "scale: notification p99 under 10 ms more than with no other client at {at} repositories while {what}"
            ),
            format!("{}; with no other client: p99 {}", run.describe(), millis(quiet.p99())),
            run.complete() && run.p99() < idle,
        );
    }
    let rss_mb = b.rss_kib as f64 * 1024.0 / 1e6;
    report.target(
        &format!("scale: `georeg serve` peak RSS under 200 MB at {at} repositories"),
        format!("{rss_mb:.1} MB"),
        rss_mb < 200.0,
    );
    // Linear: the ratio of the sizes, with a quarter more for noise.
    let worst =
        lines.iter().filter(|l| l.judge != Judge::Not).map(|l| (l.judged(), l)).max_by(|x, y| x.0.total_cmp(&y.0));
    if let Some((r, l)) = worst {
        report.target(
            &format!("scale: cost grows linearly or better from {} to {at} repositories", thousands(a.n as u64)),
            format!(
                "largest ratio {r:.1}x ({}), sizes {size_ratio:.1}x (times under {} counted as that)",
                l.what,
                millis(Duration::from_secs_f64(TIME_FLOOR))
            ),
            r <= size_ratio * 1.25,
        );
    }
}

fn notes(sc: &Scale, first: &FirstPass, a: &AtSize, b: &AtSize, report: &mut Report) {
    let rate = first.images as f64 / first.wall.as_secs_f64().max(1e-9);
    report.notes.push(format!(
        "scale: the primary is a synthetic registry (tests/bench/synthetic.rs) serving the catalog, tag lists, \
         manifests and blobs from memory; the secondary is a real docker-registry. A first full pass of all {} \
         repositories ({} images) into it would take about {} at the {rate:.1} images/s measured on {} of them \
         (computed; the secondary registry's CPU is the ceiling on this machine)",
        thousands(a.n as u64),
        thousands((a.n * sc.tags) as u64),
        minutes((a.n * sc.tags) as f64 / rate.max(1e-9)),
        thousands(first.repos as u64),
    ));
    report.notes.push(format!(
        "scale: the scan is timed from the start of `georeg backfill` on a fresh state file to its `catalog:` line, \
         then the process is stopped; the no-op pass, the verification, the pages, `georeg status` and the event ran \
         on a state file seeded with SQL (tests/bench/seed.rs, {} and {}): every repository synced and verified \
         within the last 6 days, with its tags and blobs rows, and then 1 in 1,000 marked failed ({} and {}) for the \
         pages. `{LARGE}` is seeded synced with its tags; the secondary registry holds only the tag the event adds",
        seconds(a.seed),
        seconds(b.seed),
        a.failed,
        b.failed
    ));
    report.notes.push(format!(
        "scale: requests per day of scheduled verification are computed: the repositories times the requests of one \
         verification measured (a tag listing and a HEAD per tag on each registry, plus the referrers probe), `{LARGE}` \
         extrapolated to its {} tags, over 7 days",
        thousands(sc.large_tags as u64)
    ));
    report.notes.push(format!(
        "scale: notifications are timed from sending to the answer, one every {} on one kept-alive connection \
         as the registry sends them, {} per run after {} untimed; each is the push of a tag the secondary registry \
         already holds (from the first pass), with an id of its own, so the sync it queues costs two HEADs, the same \
         in both runs; the sync queue was drained before each run. While they ran, one client read \
         `/admin/geo/nodes` and pages of the repository list spread over all of it (by the keys of its links), \
         another `/metrics` and `/api/v1/status`, each one read after another; the reads counted are those that \
         ended during the notifications. During the scan: `georeg serve` started on a fresh state file, the \
         notifications sent from its first answer until it logged the end of its first catalog scan (at most {}, \
         none untimed); its workers start on the new repositories meanwhile. The lab's nodes listen on loopback \
         without an admin credential",
        millis(sc.notify_every),
        sc.notifications,
        crate::contention::WARM_UP,
        sc.notifications
    ));
}
