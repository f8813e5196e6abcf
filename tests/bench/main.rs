//! The benchmark: georeg, `skopeo sync` and the secondary registry's own
//! ingest limit, side by side on the same corpora, against real
//! `docker-registry` processes on loopback, and georeg beside skopeo across
//! an emulated WAN (wan.rs), one node against a synthetic primary of
//! 100,000 repositories (scale.rs), and what reconciliation costs there
//! (reconcile.rs), the memory one repository of 1,000,000 tags costs
//! (tags.rs), and a chain of relays and one node's many followers
//! (relay.rs). Run it with
//! `tests/bench/run.sh [--smoke]` (docs/benchmark.md); it is not part of
//! `cargo test`.
//!
//! usage: bench [--smoke] [--only a,b,c,wan,workers,lag,ingest,fair,scale,reconcile,tags,relay] [--out FILE]
//!
//! It prints a markdown report (and writes it to FILE): every figure, every
//! ratio, and whether each target is met. It asserts that every tool left
//! the secondary complete, never that a timing is good.

#[allow(dead_code)]
#[path = "../integration/support/mod.rs"]
mod support;

mod contention;
mod corpus;
mod lab;
mod notify;
mod overlay;
mod passlog;
mod peers;
mod reconcile;
mod reconcile_direct;
mod reconcile_repair;
mod reconcile_table;
mod relay;
mod report;
mod scale;
mod scale_table;
mod scan_notify;
mod scenarios;
mod seed;
mod sweep;
mod synthetic;
mod tags;
mod tap;
mod wan;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use lab::Lab;
use report::Report;
use scenarios::Sizes;

const ALL: [&str; 12] =
    ["a", "b", "c", "wan", "workers", "lag", "ingest", "fair", "scale", "reconcile", "tags", "relay"];

struct Options {
    smoke: bool,
    only: Vec<String>,
    out: Option<PathBuf>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options { smoke: false, only: ALL.iter().map(|s| s.to_string()).collect(), out: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => o.smoke = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list, e.g. a,c,lag")?;
                o.only = list.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.only.iter().find(|s| !ALL.contains(&s.as_str())) {
                    return Err(format!("unknown scenario {bad:?}; known: {}", ALL.join(",")));
                }
            }
            "--out" => o.out = Some(args.next().ok_or("--out needs a file")?.into()),
            // What cargo's test runner may pass along.
            "--nocapture" | "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: bench [--smoke] [--only a,b,c,wan,workers,lag,ingest,fair,scale,reconcile,tags,relay] [--out FILE]"
                ))
            }
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    for (tool, hint) in [
        ("docker-registry", "apt-get install -y docker-registry"),
        ("skopeo", "apt-get install -y skopeo"),
        ("curl", "apt-get install -y curl"),
    ] {
        if peers::program(tool).is_none() && !std::path::Path::new(&format!("/usr/bin/{tool}")).exists() {
            eprintln!("bench: {tool} is needed: {hint}");
            return ExitCode::from(2);
        }
    }
    let sizes = if options.smoke { Sizes::smoke() } else { Sizes::full() };
    let lab = Lab::new();
    let mut report = Report {
        title: format!(
            "georeg benchmark{}, {}",
            if sizes.smoke { " (smoke size)" } else { "" },
            output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        ),
        machine: machine(&sizes),
        ..Report::default()
    };
    let started = Instant::now();
    let run = |name: &str| options.only.iter().any(|o| o == name);
    if run("a") {
        scenarios::small(&lab, &sizes, &mut report);
    }
    if run("b") {
        scenarios::large(&lab, &sizes, &mut report);
    }
    if run("c") {
        scenarios::incremental(&lab, &sizes, &mut report);
    }
    if run("wan") {
        wan::wan(&lab, &sizes, &mut report);
    }
    if run("lag") {
        notify::lag(&lab, &sizes, &mut report);
    }
    if run("ingest") {
        notify::ingest(&lab, &sizes, &mut report);
    }
    if run("workers") {
        sweep::workers(&lab, &sizes, &mut report);
    }
    if run("fair") {
        notify::fairness(&lab, &sizes, &mut report);
    }
    if run("scale") {
        scale::scale(&lab, &sizes, &mut report);
    }
    if run("reconcile") {
        reconcile::reconcile(&lab, &sizes, &mut report);
    }
    if run("tags") {
        tags::many_tags(&sizes, &mut report);
    }
    if run("relay") {
        relay::relay(&lab, &sizes, &mut report);
    }
    report.notes.push(format!("the whole run took {}", report::seconds(started.elapsed())));
    let md = report.markdown();
    println!("{md}");
    if let Some(out) = &options.out {
        if let Err(e) = std::fs::write(out, &md) {
            eprintln!("bench: cannot write {}: {e}", out.display());
            return ExitCode::from(1);
        }
        eprintln!("bench: report written to {}", out.display());
    }
    ExitCode::SUCCESS
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(if o.stdout.is_empty() { &o.stderr } else { &o.stdout }).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn machine(s: &Sizes) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let registry = output("docker-registry", &["--version"]);
    let skopeo = output("skopeo", &["--version"]);
    let curl = output("curl", &["--version"]);
    vec![
        ("machine".into(), format!("{nproc} CPUs ({model}), {:.1} GiB memory, {os}", mem_kib as f64 / 1048576.0)),
        ("registries".into(), format!("{registry}, filesystem storage, token auth, loopback")),
        ("peers".into(), format!("{skopeo}; {}", curl.lines().next().unwrap_or(""))),
        (
            "georeg".into(),
            format!(
                "{} ({} build), replication.workers = {}; skopeo and the limit run {} processes at a time",
                env!("CARGO_PKG_VERSION"),
                if cfg!(debug_assertions) { "debug" } else { "release" },
                s.workers,
                s.workers
            ),
        ),
    ]
}
