//! The WAN scenario: the primary registry far away, the secondary at hand.
//! A WAN emulator (tests/integration/support/wan.rs: a userspace TCP proxy
//! on loopback) sits between the copier and the primary registry only, at
//! 40 ms round trip and 200 Mbit/s (25 MB/s) each way, shared by every
//! connection; the secondary registry stays local, as at a secondary site.
//! On two corpora, (a) many small images, where round trips dominate, and
//! (b) large layers, where the link's capacity does, it measures georeg
//! backfill and `skopeo sync` into a fresh secondary each, counts the bytes
//! that crossed the link, and sets both beside the link's capacity: the
//! corpus's blob bytes at 25 MB/s, a floor computed, not run. Every tool's
//! result is checked complete, tag by tag. (b) runs again at 200 ms round
//! trip, where one TCP stream's window (4 MiB in the emulator) carries at
//! most 21 MB/s: only several streams fill the link.

use std::time::Duration;

use crate::corpus::{self, Corpus, ImagePlan, RepoPlan};
use crate::lab::{count, discard, harness_api, mark, CpuMark, Georeg, Lab, GEOREG_AGENT, SKOPEO_AGENT};
use crate::peers;
use crate::report::{Report, Row};
use crate::scenarios::{assert_complete, background, georeg_run, seed, speedup, Sizes};
use crate::support::registry::Registry;
use crate::support::wan::{Link, WanProxy};

/// The emulated link: round trip and capacity of each direction.
pub const RTT: Duration = Duration::from_millis(40);
const BITS_PER_SECOND: u64 = 200_000_000;

/// The long link of the (b) row at 200 ms.
const LONG_RTT: Duration = Duration::from_millis(200);

pub fn link() -> Link {
    Link::wan(RTT, BITS_PER_SECOND)
}

/// The link's capacity in MB/s (10^6 bytes).
fn capacity_mb_per_s() -> f64 {
    BITS_PER_SECOND as f64 / 8.0 / 1e6
}

/// One corpus to copy across the link.
struct Shape {
    key: &'static str,
    label: String,
    plans: Vec<RepoPlan>,
    rtt: Duration,
}

/// (a) many small images; (b) large layers, at 40 ms and at 200 ms.
/// Smaller at smoke size.
fn shapes(s: &Sizes) -> [Shape; 3] {
    let (repos, tags, layers, layer_bytes) = if s.smoke { (4, 1, 3, 64 << 10) } else { (40, 2, 3, 64 << 10) };
    let small = Shape {
        key: "wan-a",
        label: format!(
            "WAN (a) {} x {} x {} of {} KiB, {} ms RTT, {} Mbit/s",
            plural(repos, "repo"),
            plural(tags, "tag"),
            plural(layers, "layer"),
            layer_bytes >> 10,
            RTT.as_millis(),
            BITS_PER_SECOND / 1_000_000
        ),
        plans: (0..repos)
            .map(|r| RepoPlan {
                name: format!("wan-small/r{r:03}"),
                images: (0..tags)
                    .map(|t| ImagePlan {
                        tag: format!("v{t}"),
                        layers: (0..layers).map(|l| (seed(5, r, t, l), layer_bytes)).collect(),
                    })
                    .collect(),
            })
            .collect(),
        rtt: RTT,
    };
    let (repos, layer_bytes): (usize, u64) = if s.smoke { (1, 8_000_000) } else { (2, 150_000_000) };
    let large = |key, rtt: Duration| Shape {
        key,
        label: format!(
            "WAN (b) {} x 1 layer of {} MB, {} ms RTT, {} Mbit/s",
            plural(repos, "repo"),
            layer_bytes / 1_000_000,
            rtt.as_millis(),
            BITS_PER_SECOND / 1_000_000
        ),
        plans: (0..repos)
            .map(|r| RepoPlan {
                name: format!("wan-large/r{r}"),
                images: vec![ImagePlan { tag: "v1".into(), layers: vec![(seed(6, r, 0, 0), layer_bytes)] }],
            })
            .collect(),
        rtt,
    };
    [small, large("wan-b", RTT), large("wan-b200", LONG_RTT)]
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Both corpora, then the notes that explain the setup.
pub fn wan(lab: &Lab, s: &Sizes, report: &mut Report) {
    for shape in shapes(s) {
        corpus_across(lab, s, report, &shape);
    }
    report.notes.push(format!(
        "WAN: a userspace proxy on loopback (tests/integration/support/wan.rs) between the copier and the \
         primary registry only: {} ms each way ({} ms RTT; the second (b) row 100 ms, 200 ms RTT), {} Mbit/s ({:.0} MB/s) in each direction shared by \
         all connections, a new connection paying its handshake's round trip; the secondary registry stays \
         local, as at a secondary site. Each connection carries at most 4 MiB in flight each way, a TCP \
         window's worth: at 200 ms RTT one stream reaches at most 21 MB/s. \"link capacity\" is the corpus's blob bytes at {:.0} MB/s: a floor \
         that ignores latency, computed, not run. \"MB over the link\" is what the proxy forwarded (down: from \
         the primary; up: requests). The tool's CPU counts its own processes, not the proxy's threads",
        RTT.as_millis() / 2,
        RTT.as_millis(),
        BITS_PER_SECOND / 1_000_000,
        capacity_mb_per_s(),
        capacity_mb_per_s(),
    ));
}

/// What one copier's run across the link took.
struct Crossing {
    wall: Duration,
    /// The bytes past the first megabyte and how long the link took to
    /// send them.
    bulk: Option<(u64, Duration)>,
    rss_kib: u64,
    requests: u64,
    cpu: crate::lab::Cpu,
    down: u64,
    up: u64,
}

/// A corpus on its primary registry, ready to be copied.
struct Primary<'a> {
    shape: &'a Shape,
    registry: Registry,
    names: Vec<String>,
}

/// Runs `copy` (given a fresh proxy in front of the primary registry) into
/// a fresh secondary, then checks that secondary complete and discards it.
fn across(
    lab: &Lab,
    report: &mut Report,
    p: &Primary,
    tool: &str,
    agent: &str,
    copy: impl FnOnce(&WanProxy, &Registry) -> (Duration, u64),
) -> Crossing {
    let (shape, primary, names) = (p.shape, &p.registry, &p.names);
    eprintln!("bench: {}: {tool}", shape.label);
    background(report, &shape.label);
    let secondary = lab.registry(&format!("{}-{}", shape.key, tool.split(' ').next().unwrap_or(tool)), None);
    let proxy = WanProxy::start(primary.url.trim_start_matches("http://"), Link::wan(shape.rtt, BITS_PER_SECOND));
    let marks = (mark(primary), mark(&secondary));
    let cpu = CpuMark::children(primary, &secondary);
    let (wall, rss_kib) = copy(&proxy, &secondary);
    let cpu = cpu.elapsed();
    let (down, up, bulk) = (proxy.downstream_bytes(), proxy.upstream_bytes(), proxy.bulk());
    drop(proxy);
    let requests = count(&[&marks.0, &marks.1], agent);
    assert_complete(primary, &secondary, names, &format!("{tool} across the WAN"));
    discard(secondary);
    Crossing { wall, bulk, rss_kib, requests, cpu, down, up }
}

fn row(shape: &Shape, tool: &str, corpus: &Corpus, c: &Crossing) -> Row {
    Row::new(&shape.label, tool, c.wall, corpus.bytes(), corpus.images())
        .cpu(c.cpu)
        .rss(c.rss_kib)
        .requests(c.requests)
        .link(c.down, c.up)
}

/// One corpus: georeg, skopeo, and the link's capacity beside them.
fn corpus_across(lab: &Lab, s: &Sizes, report: &mut Report, shape: &Shape) {
    eprintln!("bench: {}: building the corpus", shape.label);
    let files = lab.path(&format!("{}-files", shape.key));
    let corpus = corpus::build(&files, &shape.plans, s.workers);
    let registry = lab.registry(&format!("{}-primary", shape.key), None);
    corpus::push(&harness_api(&registry), &corpus, s.workers);
    let primary = Primary { shape, registry, names: corpus.names() };

    let georeg = across(lab, report, &primary, "georeg backfill", GEOREG_AGENT, |proxy, secondary| {
        let label = format!("{}-georeg", shape.key);
        let node = Georeg::secondary_via(lab, &label, secondary, &proxy.url, s.workers, None);
        let run = georeg_run(&node, lab, &label, &["backfill".into()]);
        (run.wall, run.rss_kib)
    });
    let skopeo = across(lab, report, &primary, "skopeo sync", SKOPEO_AGENT, |proxy, secondary| {
        let label = format!("{}-skopeo", shape.key);
        let run = peers::skopeo_from(lab, &label, &proxy.addr(), secondary, &primary.names, s.workers);
        (run.wall, run.rss_kib)
    });
    discard(primary.registry);
    let _ = std::fs::remove_dir_all(&files);

    let mut g = row(shape, "georeg backfill", &corpus, &georeg);
    let mut k = row(shape, "skopeo sync", &corpus, &skopeo);
    let floor = Duration::from_secs_f64(corpus.bytes() as f64 / 1e6 / capacity_mb_per_s());
    let mut l = Row::new(
        &shape.label,
        &format!("link capacity: the blob bytes at {:.0} MB/s, computed", capacity_mb_per_s()),
        floor,
        corpus.bytes(),
        corpus.images(),
    );
    let x = speedup(&g, &k);
    let (g_share, k_share) = (g.mb_per_s() / capacity_mb_per_s(), k.mb_per_s() / capacity_mb_per_s());
    let over = |c: &Crossing| c.down as f64 / corpus.bytes().max(1) as f64;
    g.versus = format!("{x:.1}x skopeo; {g_share:.2} of the link");
    k.versus = format!("georeg {x:.1}x faster; skopeo at {k_share:.2} of the link");
    l.versus = format!("georeg at {g_share:.2} of it");
    report.notes.push(format!(
        "{}: georeg {x:.2}x faster than skopeo sync; georeg at {g_share:.2} of the link's capacity, skopeo at \
         {k_share:.2}; over the link, georeg read {:.2}x the corpus's blob bytes in {} requests, skopeo {:.2}x \
         in {} (requests counted on both registries)",
        shape.label,
        over(&georeg),
        crate::report::thousands(georeg.requests),
        over(&skopeo),
        crate::report::thousands(skopeo.requests),
    ));
    if let Some((bytes, took)) = georeg.bulk.filter(|_| shape.key != "wan-a") {
        let rate = bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9);
        report.notes.push(format!(
            "{}: georeg's breakdown: {:.2} s of {:.2} s before the link had carried the first megabyte (its first \
             requests, {:.0} round trips of {} ms), then {:.1} MB in {:.2} s at {rate:.1} MB/s, {:.2} of the link",
            shape.label,
            (georeg.wall.saturating_sub(took)).as_secs_f64(),
            georeg.wall.as_secs_f64(),
            georeg.wall.saturating_sub(took).as_secs_f64() / shape.rtt.as_secs_f64(),
            shape.rtt.as_millis(),
            bytes as f64 / 1e6,
            took.as_secs_f64(),
            rate / capacity_mb_per_s()
        ));
    }
    report.wan_rows.extend([g, k, l]);
}
