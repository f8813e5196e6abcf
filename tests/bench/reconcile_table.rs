//! The reconcile scenario's results: one table with a column per size and
//! the ratio between them, the lost state file's rows, the targets of
//! issue 23, and notes saying what was measured and what was computed
//! from it.

use std::time::Duration;

use crate::passlog::PassLine;
use crate::reconcile::{Plan, CHANGE_EVERY, TAGS};
use crate::report::{millis, seconds, thousands, Report, Table};
use crate::synthetic::{Counts, LARGE};
use crate::wan::RTT;

/// The default `replication.reconcile_interval_seconds`.
pub const DEFAULT_WINDOW: u64 = 3600;

/// One pass as measured.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub line: PassLine,
    /// From its first request (the list of pages, seen at the tap) to its
    /// log line; `None` when the tap saw no start.
    pub wall: Option<Duration>,
    /// Requests to the primary georeg (fingerprints), through the tap.
    pub node_requests: u64,
    /// Reconciliation's requests to the primary registry.
    pub registry_requests: u64,
    /// Bytes across the WAN, both ways, meanwhile (the event log's long
    /// polls, status reports and health checks included).
    pub wan_bytes: u64,
    /// CPU seconds of the follower's reconcile thread.
    pub cpu: f64,
    /// CPU seconds of the primary georeg's HTTP threads meanwhile.
    pub primary_cpu: f64,
}

impl Pass {
    fn wall_or_logged(&self) -> Duration {
        self.wall.unwrap_or(Duration::from_secs_f64(self.line.seconds))
    }

    fn across(&self) -> u64 {
        self.node_requests + self.registry_requests
    }
}

/// Changes made on the primary and their repair.
#[derive(Clone, Debug, Default)]
pub struct Repair {
    pub window: u64,
    pub changed: usize,
    /// From the change until every one was repaired (or the deadline).
    pub elapsed: Duration,
    /// For each repository: when the primary georeg's fingerprint showed
    /// the change, and when the secondary held it.
    pub detected: Vec<Option<Duration>>,
    pub repaired: Vec<Option<Duration>>,
    /// The passes that ended meanwhile.
    pub passes: Vec<PassLine>,
    /// When the change was made, in milliseconds since the epoch.
    pub since_ms: i64,
    pub node_requests: u64,
    pub registry_reconcile: u64,
    /// What the repairs read from the primary registry (not reconciliation's).
    pub registry_sync: Counts,
    /// What their verifications read from the primary registry next.
    pub verification: u64,
    pub secondary_writes: Counts,
    /// Repositories each keeper read meanwhile.
    pub follower_keeper_reads: u64,
    pub primary_keeper_reads: u64,
    pub follower_cpu_share: f64,
    pub primary_cpu_share: f64,
}

impl Repair {
    fn all_repaired(&self) -> bool {
        !self.repaired.is_empty() && self.repaired.iter().all(Option::is_some)
    }

    fn last(v: &[Option<Duration>]) -> Option<Duration> {
        v.iter().copied().collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().max())
    }

    fn p50(v: &[Option<Duration>]) -> Option<Duration> {
        let mut all: Vec<Duration> = v.iter().flatten().copied().collect();
        all.sort();
        all.get(all.len().saturating_sub(1) / 2).copied()
    }

    /// From the end of the first pass that found a difference to the
    /// last repair: the follower's own share of the time.
    fn after_found(&self) -> Option<Duration> {
        let found = self.passes.iter().find(|p| !p.found.is_empty())?;
        let at = Duration::from_millis((found.end_ms - self.since_ms).max(0) as u64);
        Some(Repair::last(&self.repaired)?.saturating_sub(at))
    }

    fn describe(&self) -> String {
        let repaired = self.repaired.iter().flatten().count();
        let mut out = match (Repair::p50(&self.repaired), Repair::last(&self.repaired)) {
            (Some(p50), Some(max)) => format!("p50 {}, all {} in {}", seconds(p50), self.changed, seconds(max)),
            _ => format!("**{repaired} of {} repaired in {}**", self.changed, seconds(self.elapsed)),
        };
        if let Some(seen) = Repair::last(&self.detected) {
            out.push_str(&format!("; every change seen by the primary georeg after {}", seconds(seen)));
        }
        out
    }
}

/// Both keepers, once every fingerprint was due.
#[derive(Clone, Debug, Default)]
pub struct Keeper {
    pub elapsed: Duration,
    /// The pause between two reads: half the window over the repositories.
    pub spacing: Duration,
    pub follower_reads: u64,
    pub follower_requests: u64,
    pub follower_cpu: f64,
    pub primary_reads: u64,
    pub primary_requests: u64,
    pub primary_cpu: f64,
}

impl Keeper {
    /// Time one read of a repository takes, pauses taken out.
    pub fn read_time(&self, reads: u64) -> Option<Duration> {
        (reads > 0).then(|| (self.elapsed / reads as u32).saturating_sub(self.spacing))
    }

    /// How long a keeper takes to read `n` repositories once at the
    /// default window: the pauses fill half of it, the reads come on top.
    fn cycle(&self, reads: u64, n: usize) -> Option<f64> {
        Some(DEFAULT_WINDOW as f64 / 2.0 + n as f64 * self.read_time(reads)?.as_secs_f64())
    }
}

/// A direct pass, sampled.
#[derive(Clone, Debug, Default)]
pub struct Direct {
    pub window: u64,
    /// Requests before the first repository (the catalog), and how long.
    pub catalog: Counts,
    pub catalog_wall: Duration,
    pub elapsed: Duration,
    /// Reconciliation's requests during the sample.
    pub primary: Counts,
    pub secondary: Counts,
    pub cpu: f64,
    pub cpu_share: f64,
    pub spacing: Duration,
    /// The pass's line, when it ended within the sample.
    pub pass: Option<PassLine>,
    pub rss_kib: u64,
}

impl Direct {
    fn compared(&self) -> u64 {
        self.primary.tag_lists()
    }

    fn read_time(&self) -> Option<Duration> {
        let c = self.compared();
        (c > 0).then(|| (self.elapsed / c as u32).saturating_sub(self.spacing))
    }

    /// A whole pass over `n` at `window`, from the sample: the pauses fill
    /// half the window, the reads come on top; `rtt` adds a round trip per
    /// request to the primary registry.
    fn pass_seconds(&self, n: usize, window: u64, rtt: Duration) -> Option<f64> {
        let per_repo = self.primary.total() as f64 / self.compared().max(1) as f64;
        let read = self.read_time()?.as_secs_f64() + per_repo * rtt.as_secs_f64();
        Some(window as f64 / 2.0 + self.catalog_wall.as_secs_f64() + n as f64 * read)
    }
}

/// What one size measured.
#[derive(Clone, Debug, Default)]
pub struct AtSize {
    pub n: usize,
    pub window: u64,
    pub seed: Duration,
    pub first: Pass,
    pub repair: Repair,
    pub after: Pass,
    pub keeper: Keeper,
    pub follower_cpu_share: f64,
    pub primary_cpu_share: f64,
    pub follower_rss_kib: u64,
    pub primary_rss_kib: u64,
    /// What else crossed the WAN between the repairs and the next pass.
    pub other_node: u64,
    pub other_registry: u64,
    pub other_wall: Duration,
    pub steady: Option<Repair>,
    pub direct: Direct,
}

/// A primary georeg's keeper over a real registry, sampled.
#[derive(Clone, Debug, Default)]
pub struct RealKeeper {
    pub elapsed: Duration,
    /// Repositories read (tag listings), and every request.
    pub reads: u64,
    pub requests: u64,
    pub cpu: f64,
    pub spacing: Duration,
}

impl RealKeeper {
    pub fn read_time(&self) -> Option<Duration> {
        (self.reads > 0).then(|| (self.elapsed / self.reads as u32).saturating_sub(self.spacing))
    }
}

/// A state file lost over a full secondary registry.
#[derive(Clone, Debug, Default)]
pub struct Lost {
    pub repos: usize,
    pub fill: Duration,
    pub fill_images: u64,
    pub ready: Option<Duration>,
    /// When readiness was first said while fewer repositories than the
    /// primary's were known, and how many were.
    pub vacuous: Option<(Duration, u64)>,
    /// The findings last reported when it never became ready.
    pub not_ready: String,
    pub keeper: RealKeeper,
    pub primary: Counts,
    pub secondary: u64,
    pub secondary_by: Vec<(String, u64)>,
    pub uploads: u64,
    pub rss_kib: u64,
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

fn minutes(secs: f64) -> String {
    if secs >= 120.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        seconds(Duration::from_secs_f64(secs))
    }
}

fn hours(secs: f64) -> String {
    if secs >= 7200.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        minutes(secs)
    }
}

/// `a + b` requests across the WAN, and per 1,000 repositories.
fn per_thousand(requests: u64, n: usize) -> f64 {
    requests as f64 / ((n + 1) as f64 / 1000.0)
}

fn pass_cell(p: &Pass) -> String {
    let mode = if p.line.mode == "fingerprints" { String::new() } else { format!(", **{} pass**", p.line.mode) };
    format!(
        "{} ({} of {} compared{mode}); {} + {} requests (georeg counted {}), {:.1} kB across the WAN; CPU {:.2} s \
         (primary georeg {:.2} s)",
        millis(p.wall_or_logged()),
        thousands(p.line.compared),
        thousands(p.line.repositories),
        p.node_requests,
        p.registry_requests,
        p.line.requests,
        p.wan_bytes as f64 / 1e3,
        p.cpu,
        p.primary_cpu
    )
}

struct Line {
    what: String,
    cells: Vec<String>,
    /// The ratio between the sizes of what this line measures, if it scales.
    raw: Option<Vec<f64>>,
    target: String,
}

pub fn render(plan: &Plan, sizes: &[AtSize], lost: &Lost, report: &mut Report) {
    let mut lines: Vec<Line> = Vec::new();
    let mut add = |what: String, f: &dyn Fn(&AtSize) -> (String, Option<f64>), target: &str| {
        let cells: Vec<(String, Option<f64>)> = sizes.iter().map(f).collect();
        let raw = cells.iter().map(|c| c.1).collect::<Option<Vec<f64>>>();
        lines.push(Line { what, cells: cells.into_iter().map(|c| c.0).collect(), raw, target: target.into() });
    };
    add("follow: window (passes every quarter of it)".into(), &|m| (format!("{} s", m.window), None), "");
    add(
        "the pass at start, nothing changed: wall (compared); requests across the WAN: primary georeg + primary \
         registry; CPU of the pass"
            .into(),
        &|m| (pass_cell(&m.first), Some(m.first.wall_or_logged().as_secs_f64())),
        "",
    );
    add(
        "the next pass, nothing changed since the repairs (the keepers waking)".into(),
        &|m| (pass_cell(&m.after), Some(m.after.wall_or_logged().as_secs_f64())),
        "",
    );
    add(
        "nothing changed: requests across the WAN per 1,000 repositories (the worse pass)".into(),
        &|m| {
            let worst = m.first.across().max(m.after.across());
            (format!("{:.2}", per_thousand(worst, m.n)), None)
        },
        "at most 1",
    );
    add(
        format!(
            "1 % re-pointed on the primary, nobody told, the primary georeg's keeper pointed at them (1 in {CHANGE_EVERY}): \
             from the change to repaired"
        ),
        &|m| (m.repair.describe(), Repair::last(&m.repair.repaired).map(|d| d.as_secs_f64())),
        "",
    );
    add(
        "the same: the passes meanwhile; requests across the WAN: primary georeg + reconciliation's to the primary \
         registry"
            .into(),
        &|m| {
            let found: Vec<String> =
                m.repair.passes.iter().map(|p| p.found.clone()).filter(|f| !f.is_empty()).collect();
            (
                format!(
                    "{} passes (found: {}); {} + {}",
                    m.repair.passes.len(),
                    if found.is_empty() { "nothing".into() } else { found.join("; ") },
                    m.repair.node_requests,
                    m.repair.registry_reconcile
                ),
                Some((m.repair.node_requests + m.repair.registry_reconcile) as f64),
            )
        },
        "",
    );
    add(
        "the same: the follower's share, from the end of the pass that found them to the last repair".into(),
        &|m| match m.repair.after_found() {
            Some(d) => (seconds(d), Some(d.as_secs_f64())),
            None => ("-".into(), None),
        },
        "",
    );
    add(
        "the repairs, per repository: requests to the primary registry across the WAN (the full sync and the \
         verification after it); to the secondary"
            .into(),
        &|m| {
            let c = m.repair.changed.max(1) as f64;
            (
                format!(
                    "{:.1}; {:.1} ({} uploads opened or mounts, {} manifests put in all)",
                    (m.repair.registry_sync.total() + m.repair.verification) as f64 / c,
                    m.repair.secondary_writes.total() as f64 / c,
                    m.repair.secondary_writes.upload_posts(),
                    m.repair.secondary_writes.manifest_puts()
                ),
                None,
            )
        },
        "",
    );
    add(
        "keepers, every fingerprint due: repositories read per second, the follower's (secondary) / the primary \
         georeg's (primary); CPU per repository"
            .into(),
        &|m| {
            let k = &m.keeper;
            let rate = |r: u64| r as f64 / k.elapsed.as_secs_f64().max(1e-9);
            let cpu = |c: f64, r: u64| c * 1000.0 / r.max(1) as f64;
            (
                format!(
                    "{:.0} / {:.0} per s; {:.2} / {:.2} ms CPU; {:.1} / {:.1} requests each",
                    rate(k.follower_reads),
                    rate(k.primary_reads),
                    cpu(k.follower_cpu, k.follower_reads),
                    cpu(k.primary_cpu, k.primary_reads),
                    k.follower_requests as f64 / k.follower_reads.max(1) as f64,
                    k.primary_requests as f64 / k.primary_reads.max(1) as f64
                ),
                None,
            )
        },
        "",
    );
    add(
        format!(
            "a keeper at the default window ({DEFAULT_WINDOW} s), computed: one read of every repository takes; \
             requests per second to its registry; share of a CPU"
        ),
        &|m| {
            let k = &m.keeper;
            let reads = k.follower_reads.min(k.primary_reads).max(1);
            let cycle = k.cycle(reads, m.n).unwrap_or(f64::NAN);
            let per_read = k.follower_requests as f64 / k.follower_reads.max(1) as f64;
            let cpu =
                (k.follower_cpu / k.follower_reads.max(1) as f64).max(k.primary_cpu / k.primary_reads.max(1) as f64);
            let rate = (m.n + 1) as f64 / cycle;
            (format!("{}; {:.0}/s; {:.1} %", minutes(cycle), rate * per_read, rate * cpu * 100.0), Some(cycle))
        },
        &format!("within {DEFAULT_WINDOW} s (the window): the oldest fingerprint's age"),
    );
    add(
        "follower: CPU while following (share of one CPU); peak RSS. Primary georeg: the same".into(),
        &|m| {
            (
                format!(
                    "{:.1} %, {}; {:.1} %, {}",
                    m.follower_cpu_share * 100.0,
                    mb(m.follower_rss_kib),
                    m.primary_cpu_share * 100.0,
                    mb(m.primary_rss_kib)
                ),
                Some(m.follower_rss_kib as f64),
            )
        },
        "",
    );
    add(
        "what else crosses the WAN (event log, status reports, health checks): requests per minute to the primary \
         georeg + the primary registry"
            .into(),
        &|m| {
            let per_min = |r: u64| r as f64 * 60.0 / m.other_wall.as_secs_f64().max(1e-9);
            (format!("{:.1} + {:.1}", per_min(m.other_node), per_min(m.other_registry)), None)
        },
        "",
    );
    add(
        "direct pass (no primary georeg), sampled: the catalog; per repository: requests to the primary + the \
         secondary, read time, CPU; the node's CPU (share of one CPU) and peak RSS"
            .into(),
        &|m| {
            let d = &m.direct;
            let c = d.compared().max(1) as f64;
            let ended =
                d.pass.as_ref().map(|p| format!(", the pass ended: {:.1} s logged", p.seconds)).unwrap_or_default();
            (
                format!(
                    "{} requests in {}; {:.1} + {:.1}, {}, {:.2} ms ({} repositories in {}, window {} s{ended}); {:.0} %, {}",
                    d.catalog.total(),
                    millis(d.catalog_wall),
                    d.primary.total() as f64 / c,
                    d.secondary.total() as f64 / c,
                    d.read_time().map(millis).unwrap_or_else(|| "-".into()),
                    d.cpu * 1000.0 / c,
                    thousands(d.compared()),
                    seconds(d.elapsed),
                    d.window,
                    d.cpu_share * 100.0,
                    mb(d.rss_kib)
                ),
                d.read_time().map(|t| t.as_secs_f64()),
            )
        },
        "",
    );
    add(
        format!(
            "a whole direct pass, computed: at the default window, loopback; across {} ms RTT to the primary registry",
            RTT.as_millis()
        ),
        &|m| {
            let d = &m.direct;
            let local = d.pass_seconds(m.n, DEFAULT_WINDOW, Duration::ZERO);
            let far = d.pass_seconds(m.n, DEFAULT_WINDOW, RTT);
            match (local, far) {
                (Some(l), Some(f)) => (format!("{}; {}", hours(l), hours(f)), Some(f)),
                _ => ("-".into(), None),
            }
        },
        &format!("within {DEFAULT_WINDOW} s"),
    );
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let mut row = vec![l.what.clone()];
            row.extend(l.cells.iter().cloned());
            if sizes.len() > 1 {
                let ratio = l
                    .raw
                    .as_ref()
                    .filter(|r| r[0] > 0.0)
                    .map(|r| format!("{:.1}x", r[r.len() - 1] / r[0]))
                    .unwrap_or_else(|| "-".into());
                row.push(ratio);
            }
            row.push(l.target.clone());
            row
        })
        .collect();
    let mut header = vec!["measure".to_string()];
    header.extend(sizes.iter().map(|m| format!("{} repositories", thousands(m.n as u64))));
    if sizes.len() > 1 {
        header.push("ratio".into());
    }
    header.push("target".into());
    report.tables.push(Table {
        title: format!(
            "Reconciliation: a follower and its primary georeg, synthetic primary and secondary registries, {TAGS} tags \
             per repository (plus `{LARGE}`, {} tags), {} ms RTT to the primary site",
            plan.large_tags,
            RTT.as_millis()
        ),
        header,
        rows,
    });
    lost_table(lost, report);
    if let Some(steady) = sizes.first().and_then(|m| m.steady.as_ref().map(|s| (m, s))) {
        steady_table(steady.0, steady.1, report);
    }
    targets(sizes, lost, report);
    notes(plan, sizes, report);
}

fn steady_table(m: &AtSize, r: &Repair, report: &mut Report) {
    let ratio = Repair::last(&r.repaired).map(|d| d.as_secs_f64() / r.window as f64);
    let rate = |reads: u64| reads as f64 / r.elapsed.as_secs_f64().max(1e-9);
    report.tables.push(Table {
        title: format!(
            "Reconciliation end to end, nobody told: {} repositories, window {} s (four times what the primary \
             georeg's keeper took to read every repository at the rate measured above, {}), both nodes' fingerprints \
             as keepers in their steady state leave them",
            thousands(m.n as u64),
            r.window,
            m.keeper
                .read_time(m.keeper.primary_reads)
                .map(|t| seconds(t * (m.n + 1) as u32))
                .unwrap_or_else(|| "-".into())
        ),
        header: vec!["measure".into(), "measured".into()],
        rows: vec![
            vec![format!("1 % re-pointed on the primary ({} repositories): from the change to repaired", r.changed), {
                r.describe()
            }],
            vec![
                "the last repair, as a share of the window".into(),
                ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
            ],
            vec![
                "requests across the WAN meanwhile: primary georeg + reconciliation's to the primary registry (a \
                 page older than the window is compared by reading the registry)"
                    .into(),
                format!("{} + {} in {} passes", r.node_requests, r.registry_reconcile, r.passes.len()),
            ],
            vec![
                "keepers meanwhile: repositories read per second, the follower's / the primary georeg's".into(),
                format!("{:.0} / {:.0}", rate(r.follower_keeper_reads), rate(r.primary_keeper_reads)),
            ],
            vec![
                "CPU meanwhile (share of one CPU): follower; primary georeg".into(),
                format!("{:.1} %; {:.1} %", r.follower_cpu_share * 100.0, r.primary_cpu_share * 100.0),
            ],
        ],
    });
}

fn lost_table(l: &Lost, report: &mut Report) {
    let by: Vec<String> = l.secondary_by.iter().map(|(k, n)| format!("{} {k}", thousands(*n))).collect();
    report.tables.push(Table {
        title: format!(
            "A lost state file: a secondary registry holding {} repositories x {TAGS} tags (real docker-registry), the \
             state file deleted, `georeg serve` on a new one (no primary georeg, default window)",
            thousands(l.repos as u64)
        ),
        header: vec!["measure".into(), "measured".into()],
        rows: vec![
            vec![
                "filling the secondary first (`georeg backfill`, not part of the measure)".into(),
                format!("{} images in {}", thousands(l.fill_images), seconds(l.fill)),
            ],
            vec![
                "from the start until ready (`georeg status --json`: failover.ready with every repository of the \
                 primary known; `georeg failover-check` exits 0)"
                    .into(),
                l.ready.map(seconds).unwrap_or_else(|| format!("**not ready**: {}", l.not_ready)),
            ],
            vec![
                "ready said before every repository of the primary was known (ready on faith)".into(),
                match l.vacuous {
                    Some((at, known)) => format!(
                        "**yes**: after {}, with {} of {} repositories known",
                        millis(at),
                        thousands(known),
                        thousands(l.repos as u64 + 1)
                    ),
                    None => "no".into(),
                },
            ],
            vec!["requests to the primary registry".into(), l.primary.describe()],
            vec![
                "requests to the secondary registry".into(),
                format!("{} ({})", thousands(l.secondary), by.join(", ")),
            ],
            vec!["blob uploads to the secondary (`POST .../blobs/uploads/`)".into(), l.uploads.to_string()],
            vec!["`georeg serve` peak RSS".into(), mb(l.rss_kib)],
            vec![
                format!(
                    "a primary georeg's keeper over this registry, every fingerprint due, sampled {}: repositories \
                     read; one read (pauses taken out); requests each; CPU each",
                    seconds(l.keeper.elapsed)
                ),
                format!(
                    "{}; {}; {:.1}; {:.2} ms",
                    thousands(l.keeper.reads),
                    l.keeper.read_time().map(millis).unwrap_or_else(|| "-".into()),
                    l.keeper.requests as f64 / l.keeper.reads.max(1) as f64,
                    l.keeper.cpu * 1000.0 / l.keeper.reads.max(1) as f64
                ),
            ],
        ],
    });
}

fn targets(sizes: &[AtSize], lost: &Lost, report: &mut Report) {
    let Some(m) = sizes.last() else { return };
    let at = thousands(m.n as u64);
    let worst = m.first.across().max(m.after.across());
    report.target(
        &format!(
            "reconcile: with a primary georeg and nothing changed, at most 1 request across the WAN per 1,000 \
             repositories ({at})"
        ),
        format!(
            "{:.2} ({} + {} at start, {} + {} the next pass)",
            per_thousand(worst, m.n),
            m.first.node_requests,
            m.first.registry_requests,
            m.after.node_requests,
            m.after.registry_requests
        ),
        per_thousand(worst, m.n) <= 1.0,
    );
    // The default window, computed from what was measured: the primary
    // georeg's keeper reads a change within a cycle, the follower's next
    // pass comes within a quarter window (at most 300 s), then the repair.
    let cycle = m.keeper.cycle(m.keeper.primary_reads, m.n);
    let pass = (DEFAULT_WINDOW / 4).clamp(2, 300) as f64 + m.after.wall_or_logged().as_secs_f64();
    let repair = m.repair.after_found().map(|d| d.as_secs_f64());
    match (cycle, repair) {
        (Some(cycle), Some(repair)) if m.repair.all_repaired() => {
            let total = cycle + pass + repair;
            report.target(
                &format!(
                    "reconcile: every lost change repaired within the window at {at} repositories with the default \
                     window ({DEFAULT_WINDOW} s)"
                ),
                format!(
                    "computed: {} (the primary georeg's keeper reads every repository within {}, the next pass comes \
                     within {}, the repairs of 1 % took {} after the pass that found them); measured end to end: see \
                     below",
                    minutes(total),
                    minutes(cycle),
                    minutes(pass),
                    seconds(Duration::from_secs_f64(repair))
                ),
                total <= DEFAULT_WINDOW as f64,
            );
        }
        _ => report.target(
            &format!("reconcile: every lost change repaired within the window at {at} repositories"),
            format!("not every change was repaired: {}", m.repair.describe()),
            false,
        ),
    }
    if let Some((first, r)) = sizes.first().and_then(|f| f.steady.as_ref().map(|r| (f, r))) {
        let last = Repair::last(&r.repaired);
        report.target(
            &format!(
                "reconcile: end to end, nobody told, every lost change repaired within the window ({} repositories, \
                 {} s)",
                thousands(first.n as u64),
                r.window
            ),
            r.describe(),
            last.is_some_and(|d| d.as_secs() <= r.window),
        );
    }
    report.target(
        &format!(
            "reconcile: a state file lost over a full secondary of {} repositories: ready again, no blob uploaded again",
            thousands(lost.repos as u64)
        ),
        format!(
            "{}; {} uploads",
            lost.ready.map(seconds).unwrap_or_else(|| "not ready".into()),
            lost.uploads
        ),
        lost.ready.is_some() && lost.uploads == 0,
    );
    report.target(
        "reconcile: a new state file is not ready before it knows every repository of the primary (polled every \
         200 ms: a race)",
        match lost.vacuous {
            Some((at, known)) => format!(
                "ready after {} with {} of {} repositories known",
                millis(at),
                thousands(known),
                thousands(lost.repos as u64 + 1)
            ),
            None => "not seen".into(),
        },
        lost.vacuous.is_none(),
    );
}

fn notes(plan: &Plan, sizes: &[AtSize], report: &mut Report) {
    let seeds: Vec<String> =
        sizes.iter().map(|m| format!("{} at {}", seconds(m.seed), thousands(m.n as u64))).collect();
    report.notes.push(format!(
        "reconcile: both registries are synthetic (tests/bench/synthetic.rs: the secondary holds what the primary \
         generates and accepts georeg's repairs); the follower reads the primary georeg (through a tap that counts its \
         requests) and the primary registry across the WAN emulator ({} ms RTT). Both state files were seeded with SQL \
         ({}) as nodes in their steady state leave them: every repository synced, verified, compared and \
         fingerprinted. A pass's wall is from its first request (the list of pages, at the tap) to its log line; its \
         CPU is its thread's (/proc/PID/task)",
        RTT.as_millis(),
        seeds.join(", ")
    ));
    report.notes.push(
        "reconcile: in the follow phase the fingerprints were seeded as just read, so that the keepers stay idle for \
         half the window and the passes are measured alone; the 1 % changed were marked on the primary georeg to be \
         read first (as its keeper's schedule reaches each within half the window, or at once when an event names it), \
         so the time to repaired there is the follower's: its next pass (within a quarter window), then the syncs. The \
         end-to-end run adds the keeper's schedule: nothing is marked, and every fingerprint time is spread over half \
         the window"
            .into(),
    );
    report.notes.push(format!(
        "reconcile: the keepers' figures are measured once every fingerprint is due (read flat out, pausing half the \
         window over the repositories between reads) for {}; the default window's figures are computed from them: a \
         keeper reads each of its repositories again once older than half the window, pausing so that the pauses fill \
         that half, so one read of every repository takes half the window plus the reads themselves",
        seconds(plan.keeper_sample)
    ));
    report.notes.push(format!(
        "reconcile: the direct pass is sampled from its first tag listing for {} (a pass lasts at least half its window \
         by design) with the primary registry on loopback; a whole pass is computed from the sample: half the window, \
         the catalog, and each repository's reads (each request to the primary registry a round trip more across the \
         WAN, one after another)",
        seconds(plan.direct_sample)
    ));
}
