//! The reconcile scenario (issue 23): what reconciliation costs one node,
//! and how soon it repairs what notifications lost, against a synthetic
//! primary of 10,000 and of 100,000 repositories of 10 tags (200 at smoke
//! size).
//!
//! At each size the primary registry is synthetic (synthetic.rs), and so
//! is the secondary ([`Synthetic::mirror`]: a full secondary, which would
//! take hours to fill for real, that accepts georeg's repairs). A primary
//! georeg reads the primary registry; the follower reads the primary
//! georeg and the primary registry across the WAN emulator (40 ms RTT),
//! the primary georeg through a tap (tap.rs) that counts its requests.
//! Both state files are seeded as nodes in their steady state leave them
//! (seed.rs): every repository synced, compared, and fingerprinted.
//!
//! 1. Follow, with a short window whose passes come every quarter of it,
//!    the fingerprints seeded as just read so that the keepers stay idle
//!    for half of it: the pass at start (nothing changed); 1 % of the
//!    repositories re-pointed on the primary, notifying nobody, and the
//!    primary georeg's keeper pointed at them (marked to be read first, as
//!    its schedule reaches each within half the window): the pass that
//!    finds them, the time until every one is repaired on the secondary;
//!    the next pass (nothing changed since); then the keepers, once every
//!    fingerprint is due, measured for a while (reads, requests, CPU).
//! 2. At the first size, the same end to end with nothing told, at a
//!    window the keepers sustain there (from what phase 1 measured):
//!    fingerprint times spread over half the window as a keeper leaves
//!    them, another 1 % re-pointed, and the time until every one is repaired (reconcile_repair.rs).
//! 3. Without a primary georeg, a direct pass sampled (reconcile_direct.rs).
//! 4. A state file lost over a full, real secondary registry of 1,000
//!    repositories (reconcile_direct.rs).
//!
//! reconcile_table.rs renders the figures and the targets. Every wait is
//! bounded by a deadline, every loop by a count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::lab::{Georeg, Lab, Serve};
use crate::passlog::{self, PassLine};
use crate::reconcile_table::{self, AtSize, Keeper, Pass};
use crate::report::{thousands, Report};
use crate::scenarios::{background, Sizes};
use crate::seed;
use crate::support::wan::WanProxy;
use crate::synthetic::{self, Counts, Synthetic};
use crate::tap::Tap;
use crate::wan::link;
use crate::{reconcile_direct, reconcile_repair};

/// Tags per small repository.
pub const TAGS: usize = 10;
/// The follower logs each pass (at debug level when it found nothing).
pub const FOLLOWER_LOG: &str = "info,georeg::reconcile=debug";
/// One repository in this many is changed: 1 %.
pub const CHANGE_EVERY: usize = 100;

/// The scenario's sizes and windows.
pub struct Plan {
    pub smoke: bool,
    pub repos: Vec<usize>,
    pub large_tags: usize,
    pub workers: usize,
    /// The end-to-end run's shortest window, at the first size only.
    pub steady_window: u64,
    /// How long the keepers are watched once every fingerprint is due.
    pub keeper_sample: Duration,
    /// The direct pass's window, and how long it is sampled.
    pub direct_window: u64,
    pub direct_sample: Duration,
    /// Repositories of the real secondary whose state file is lost.
    pub lost_repos: usize,
}

impl Plan {
    pub fn new(s: &Sizes) -> Plan {
        if s.smoke {
            Plan {
                smoke: true,
                repos: vec![200],
                large_tags: 10,
                workers: s.workers,
                steady_window: 10,
                keeper_sample: Duration::from_secs(1),
                direct_window: 10,
                direct_sample: Duration::from_secs(1),
                lost_repos: 10,
            }
        } else {
            Plan {
                smoke: false,
                repos: vec![10_000, 100_000],
                large_tags: 100,
                workers: s.workers,
                steady_window: 120,
                keeper_sample: Duration::from_secs(20),
                direct_window: 60,
                direct_sample: Duration::from_secs(25),
                lost_repos: 1_000,
            }
        }
    }

    /// The follow phase's window at `n` repositories: its passes come
    /// every quarter of it, and the repairs of 1 % must fit in one quarter.
    pub fn window(&self, n: usize) -> u64 {
        match n {
            _ if self.smoke => 10,
            n if n <= 20_000 => 240,
            _ => 400,
        }
    }

    /// The end-to-end run's window at `n`: the primary georeg's keeper
    /// must read every repository within it (a page of fingerprints older
    /// than the window is compared by reading the primary registry, one
    /// repository after another across the WAN), and it reads each again
    /// once older than half the window: four times the time it took to
    /// read them all at the rate measured (`read`) leaves it half of the
    /// window to spare. At least `steady_window`, at most 20 minutes.
    pub fn steady_window(&self, n: usize, read: Option<Duration>) -> u64 {
        let needed = read.map(|t| 4.0 * (n + 1) as f64 * t.as_secs_f64()).unwrap_or(0.0);
        ((needed / 10.0).ceil() as u64 * 10).clamp(self.steady_window, 1200)
    }

    /// Gets the machine ready for a measurement and notes how busy other
    /// work keeps it (scenarios::background, a second); at smoke size
    /// only the first time, to keep the smoke run short.
    pub fn settle(&self, report: &mut Report, label: &str) {
        if !self.smoke || !report.noise.iter().any(|(s, _)| s.starts_with("reconcile")) {
            background(report, label);
        }
    }

    /// Repositories changed at `n` (1 %), picked evenly across the names,
    /// the `salt`-th of each hundred.
    pub fn changed(&self, n: usize, salt: usize) -> Vec<String> {
        (0..n).filter(|i| i % CHANGE_EVERY == salt % CHANGE_EVERY).map(synthetic::name).collect()
    }
}

pub fn reconcile(lab: &Lab, s: &Sizes, report: &mut Report) {
    let plan = Plan::new(s);
    let mut sizes = Vec::new();
    for (i, &n) in plan.repos.iter().enumerate() {
        sizes.push(at_size(lab, &plan, n, i == 0, report));
    }
    let lost = reconcile_direct::lost_state(lab, &plan, report);
    reconcile_table::render(&plan, &sizes, &lost, report);
}

/// Everything of one size: the registries, the two nodes, the links.
pub struct Setup {
    pub n: usize,
    pub primary: Synthetic,
    /// The follower's door onto the primary registry, behind `wan_registry`.
    pub far: Synthetic,
    pub secondary: Synthetic,
    pub wan_registry: WanProxy,
    pub wan_node: WanProxy,
    pub tap: Tap,
    pub g1: Georeg,
    pub g2: Georeg,
}

impl Setup {
    fn new(lab: &Lab, plan: &Plan, n: usize, window: u64) -> Setup {
        let primary = Synthetic::start(n, TAGS, plan.large_tags);
        let far = primary.door();
        let secondary = Synthetic::mirror(n, TAGS, plan.large_tags);
        let wan_registry = WanProxy::start(&far.addr(), link());
        let g1 = Georeg::primary(lab, &format!("rec-{n}-primary"), &primary.url);
        let wan_node = WanProxy::start(&format!("127.0.0.1:{}", g1.port), link());
        let tap = Tap::start(&wan_node.addr());
        let name = format!("rec-{n}-follower");
        let g2 = Georeg::secondary_at(lab, &name, &secondary.url, &wan_registry.url, plan.workers, Some(tap.port()));
        // Drills read the secondary and are measured elsewhere.
        g2.add_replication("drill_interval_seconds = 0");
        for node in [&g1, &g2] {
            node.add_replication(&format!("reconcile_interval_seconds = {window}"));
        }
        Setup { n, primary, far, secondary, wan_registry, wan_node, tap, g1, g2 }
    }

    pub fn log(&self, node: &Georeg, lab: &Lab) -> PathBuf {
        lab.path(&format!("{}-serve.log", node.name))
    }
}

/// Sets `replication.reconcile_interval_seconds`.
pub fn set_window(node: &Georeg, seconds: u64) {
    let text = std::fs::read_to_string(&node.config).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("reconcile_interval_seconds") {
            true => format!("reconcile_interval_seconds = {seconds}"),
            false => l.to_string(),
        })
        .collect();
    std::fs::write(&node.config, text.join("\n") + "\n").unwrap();
}

/// Sets when the fingerprints were read (and, on a secondary, when the
/// repositories were compared) to now, so that no fingerprint comes due
/// for half the window.
pub fn fresh(node: &Georeg, compared_ago: u64) {
    node.db()
        .execute_batch(&format!(
            "UPDATE fingerprints SET checked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), stale = 0;
             UPDATE repositories SET compared_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-{compared_ago} seconds');"
        ))
        .unwrap();
}

fn at_size(lab: &Lab, plan: &Plan, n: usize, first: bool, report: &mut Report) -> AtSize {
    let label = format!("reconcile: {} repositories", thousands(n as u64));
    let window = plan.window(n);
    let setup = Setup::new(lab, plan, n, window);
    eprintln!("bench: {label}: seeding both state files");
    let started = Instant::now();
    seed::seed(&setup.g2, n, TAGS, plan.large_tags);
    seed::reconciled(&setup.g2);
    seed::fingerprints_from(&setup.g1, &setup.g2);
    let seeded = started.elapsed();
    let mut out = follow(lab, plan, &setup, window, &label, report);
    out.seed = seeded;
    if first {
        let window = plan.steady_window(n, out.keeper.read_time(out.keeper.primary_reads));
        out.steady = Some(reconcile_repair::steady(lab, plan, &setup, window, &label, report));
    }
    out.direct = reconcile_direct::direct(lab, plan, &setup, &label, report);
    out
}

/// Where the counters stood before the follower started: its first pass
/// begins as it starts.
pub struct Marks {
    seen: usize,
    tap: usize,
    far: Counts,
    bytes: u64,
}

impl Marks {
    pub fn now(lab: &Lab, setup: &Setup) -> Marks {
        Marks {
            seen: passlog::passes(&setup.log(&setup.g2, lab)).len(),
            tap: setup.tap.mark(),
            far: setup.far.reconcile_counts(),
            bytes: wan_bytes(setup),
        }
    }
}

/// Bytes across the WAN, both ways, to the primary georeg and registry.
fn wan_bytes(setup: &Setup) -> u64 {
    [&setup.wan_node, &setup.wan_registry].iter().map(|w| w.downstream_bytes() + w.upstream_bytes()).sum()
}

/// Watches the follower's passes one after another: what each cost since
/// the one before.
pub struct Watch<'a> {
    pub log: PathBuf,
    pub seen: usize,
    setup: &'a Setup,
    follower: &'a Serve,
    primary: &'a Serve,
    tap_mark: usize,
    far: Counts,
    bytes: u64,
    cpu: f64,
    primary_cpu: f64,
}

impl<'a> Watch<'a> {
    /// From `marks`, taken before the follower started.
    pub fn new(lab: &Lab, setup: &'a Setup, follower: &'a Serve, primary: &'a Serve, marks: Marks) -> Watch<'a> {
        Watch {
            log: setup.log(&setup.g2, lab),
            seen: marks.seen,
            setup,
            follower,
            primary,
            tap_mark: marks.tap,
            far: marks.far,
            bytes: marks.bytes,
            cpu: follower.thread_cpu_seconds("reconcile"),
            primary_cpu: primary.thread_cpu_seconds("http"),
        }
    }

    /// The next pass to end, within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Pass {
        let line = passlog::next_pass(&self.log, self.seen, timeout);
        self.seen += 1;
        self.close(line)
    }

    /// Every pass that ended since, taken as one.
    pub fn catch_up(&mut self) -> Vec<PassLine> {
        let lines: Vec<PassLine> = passlog::passes(&self.log).into_iter().skip(self.seen).collect();
        self.seen += lines.len();
        if let Some(last) = lines.last() {
            self.close(last.clone());
        }
        lines
    }

    /// What the requests and CPU since the last close add up to.
    fn close(&mut self, line: PassLine) -> Pass {
        let seen = self.setup.tap.since(self.tap_mark);
        self.tap_mark += seen.len();
        let fingerprints: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/api/v1/fingerprints")).collect();
        let start = fingerprints
            .iter()
            .filter(|s| s.path == "/api/v1/fingerprints" && passlog::ms(s.at) <= line.end_ms)
            .map(|s| passlog::ms(s.at))
            .next_back();
        let (far, bytes) = (self.setup.far.reconcile_counts(), wan_bytes(self.setup));
        let (cpu, primary_cpu) =
            (self.follower.thread_cpu_seconds("reconcile"), self.primary.thread_cpu_seconds("http"));
        let pass = Pass {
            wall: start.map(|s| Duration::from_millis((line.end_ms - s).max(0) as u64)),
            node_requests: fingerprints.len() as u64,
            registry_requests: far.since(&self.far).total(),
            wan_bytes: bytes - self.bytes,
            cpu: cpu - self.cpu,
            primary_cpu: primary_cpu - self.primary_cpu,
            line,
        };
        (self.far, self.bytes, self.cpu, self.primary_cpu) = (far, bytes, cpu, primary_cpu);
        pass
    }
}

/// Stops the primary georeg first: the follower's long poll of its event
/// log then ends at once instead of holding the follower's stop.
pub fn stop(primary: Serve, follower: Serve) {
    primary.stop();
    follower.stop();
}

/// The follow phase: the pass at start, 1 % changed, the next pass, the keepers.
fn follow(lab: &Lab, plan: &Plan, setup: &Setup, window: u64, label: &str, report: &mut Report) -> AtSize {
    let n = setup.n;
    let mut out = AtSize { n, window, ..AtSize::default() };
    for node in [&setup.g1, &setup.g2] {
        set_window(node, window);
    }
    // Compared a quarter window ago: the first pass records every
    // comparison anew, as each pass of a node in its steady state does.
    fresh(&setup.g1, 0);
    fresh(&setup.g2, window / 4);
    plan.settle(report, label);
    eprintln!("bench: {label}: follow, window {window} s: the pass at start");
    let primary = setup.g1.serve_logging(lab, "info");
    let (marks, tap0, far0) = (Marks::now(lab, setup), setup.tap.mark(), non_reconcile(&setup.far));
    let follower = setup.g2.serve_logging(lab, FOLLOWER_LOG);
    let (cpu0, primary_cpu0, t0) = (follower.cpu_seconds(), primary.cpu_seconds(), Instant::now());
    let mut watch = Watch::new(lab, setup, &follower, &primary, marks);
    let pass_timeout = Duration::from_secs(window / 2 + 120);
    out.first = watch.next(pass_timeout);

    eprintln!("bench: {label}: 1 % of the repositories re-pointed on the primary, nobody told");
    let changed = plan.changed(n, 37);
    out.repair = reconcile_repair::change_and_track(setup, &changed, 1, true, window + 300, &mut watch);
    out.repair.window = window;
    let repaired = non_reconcile(&setup.far);

    eprintln!("bench: {label}: the next pass");
    out.after = watch.next(pass_timeout);
    eprintln!("bench: {label}: the keepers, every fingerprint due");
    out.keeper = keepers(plan, setup, &follower, &primary, window);
    let secs = t0.elapsed().as_secs_f64();
    out.follower_cpu_share = (follower.cpu_seconds() - cpu0) / secs;
    out.primary_cpu_share = (primary.cpu_seconds() - primary_cpu0) / secs;
    out.follower_rss_kib = follower.peak_rss_kib();
    out.primary_rss_kib = primary.peak_rss_kib();
    stop(primary, follower);
    // A repaired repository is verified next (by an idle worker): its
    // reads of the primary registry, apart from the health checks and scans.
    let after = non_reconcile(&setup.far).since(&repaired);
    out.repair.verification = after.total() - after.background();
    // What a follower asks across the WAN whatever reconciliation does:
    // the event log's long polls and status reports (the primary georeg),
    // health checks and catalog scans (the primary registry).
    out.other_node =
        setup.tap.since(tap0).iter().filter(|s| !s.path.starts_with("/api/v1/fingerprints")).count() as u64;
    out.other_registry = non_reconcile(&setup.far).since(&far0).background();
    out.other_wall = Duration::from_secs_f64(secs);
    out
}

/// Both keepers for `plan.keeper_sample`, once every fingerprint is due
/// (they were read at once, half a window ago): how fast each reads its
/// registry, and at what cost.
fn keepers(plan: &Plan, setup: &Setup, follower: &Serve, primary: &Serve, window: u64) -> Keeper {
    // Each reads its registry with reconciliation's User-Agent: the
    // follower the secondary, the primary georeg its own registry.
    let (s0, p0) = (setup.secondary.reconcile_counts(), setup.primary.reconcile_counts());
    let (fc0, pc0) = (follower.thread_cpu_seconds("fingerprints"), primary.thread_cpu_seconds("fingerprints"));
    let started = Instant::now();
    std::thread::sleep(plan.keeper_sample);
    let elapsed = started.elapsed();
    let (s, p) = (setup.secondary.reconcile_counts().since(&s0), setup.primary.reconcile_counts().since(&p0));
    Keeper {
        elapsed,
        spacing: Duration::from_secs(window / 2) / (setup.n + 1) as u32,
        follower_reads: s.tag_lists(),
        follower_requests: s.total(),
        follower_cpu: follower.thread_cpu_seconds("fingerprints") - fc0,
        primary_reads: p.tag_lists(),
        primary_requests: p.total(),
        primary_cpu: primary.thread_cpu_seconds("fingerprints") - pc0,
    }
}

/// Requests at a door that were not reconciliation's.
pub fn non_reconcile(door: &Synthetic) -> Counts {
    door.counts().since(&door.reconcile_counts())
}
