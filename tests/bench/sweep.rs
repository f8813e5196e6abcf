//! The `replication.workers` sweep: the same corpus of small images copied
//! by `georeg backfill` into a fresh secondary with 1, 2, 4, 8 and 16
//! workers, on loopback and across the emulated WAN (40 ms round trip,
//! 200 Mbit/s, in front of the primary only). The default of
//! `replication.workers` is what this says is best; the report names the
//! fastest count of each link and how far the default is from it.

use std::time::Duration;

use crate::corpus::{self, ImagePlan, RepoPlan};
use crate::lab::{discard, harness_api, Georeg, Lab};
use crate::report::{Report, Row};
use crate::scenarios::{assert_complete, background, georeg_run, seed, Sizes};
use crate::support::wan::{Link, WanProxy};

/// georeg's default `replication.workers` (src/config/mod.rs).
const DEFAULT_WORKERS: usize = 8;

pub fn workers(lab: &Lab, s: &Sizes, report: &mut Report) {
    let (repos, tags) = if s.smoke { (6, 1) } else { (48, 3) };
    let counts: &[usize] = if s.smoke { &[1, 4] } else { &[1, 2, 4, 8, 16] };
    let plans: Vec<RepoPlan> = (0..repos)
        .map(|r| RepoPlan {
            name: format!("sweep/r{r:03}"),
            images: (0..tags)
                .map(|t| ImagePlan {
                    tag: format!("v{t}"),
                    layers: (0..3).map(|l| (seed(7, r, t, l), 64 << 10)).collect(),
                })
                .collect(),
        })
        .collect();
    eprintln!("bench: workers sweep: building the corpus");
    let corpus = corpus::build(&lab.path("sweep-files"), &plans, s.workers);
    let primary = lab.registry("sweep-primary", None);
    corpus::push(&harness_api(&primary), &corpus, s.workers);
    let names = corpus.names();
    let (bytes, images) = (corpus.bytes(), corpus.images());
    for (link_name, link) in
        [("loopback", None), ("WAN 40 ms RTT, 200 Mbit/s", Some(Link::wan(Duration::from_millis(40), 200_000_000)))]
    {
        let scenario = format!("workers sweep: {repos} repos x {tags} tags x 3 layers of 64 KiB, {link_name}");
        let mut rows: Vec<(usize, Row)> = Vec::new();
        for &n in counts {
            let name = format!("sweep-{}-{n}", if link.is_some() { "wan" } else { "lan" });
            eprintln!("bench: {scenario}: {n} workers");
            background(report, &scenario);
            let proxy = link.map(|l| WanProxy::start(primary.url.trim_start_matches("http://"), l));
            let url = proxy.as_ref().map(|p| p.url.clone()).unwrap_or_else(|| primary.url.clone());
            let secondary = lab.registry(&name, None);
            let node = Georeg::secondary_via(lab, &name, &secondary, &url, n, None);
            let run = georeg_run(&node, lab, &format!("{name}-backfill"), &["backfill".into()]);
            assert_complete(&primary, &secondary, &names, &format!("georeg with {n} workers"));
            rows.push((
                n,
                Row::new(&scenario, &format!("georeg backfill, {n} workers"), run.wall, bytes, images).rss(run.rss_kib),
            ));
            discard(secondary);
        }
        let best = rows.iter().min_by_key(|(_, r)| r.wall).map(|(n, r)| (*n, r.wall)).unwrap();
        let default = rows.iter().find(|(n, _)| *n == DEFAULT_WORKERS).map(|(_, r)| r.wall);
        for (n, row) in &mut rows {
            row.versus =
                format!("{:.2}x the fastest ({} workers)", row.wall.as_secs_f64() / best.1.as_secs_f64(), best.0);
            if *n == DEFAULT_WORKERS {
                row.versus.push_str("; the default");
            }
        }
        if let Some(default) = default {
            report.target(
                &format!(
                    "default replication.workers ({DEFAULT_WORKERS}) within 10 % of the fastest count, {link_name}"
                ),
                format!(
                    "fastest: {} workers; the default takes {:.2}x as long",
                    best.0,
                    default.as_secs_f64() / best.1.as_secs_f64()
                ),
                default.as_secs_f64() <= best.1.as_secs_f64() * 1.10,
            );
        }
        report.rows.extend(rows.into_iter().map(|(_, r)| r));
    }
    discard(primary);
    let _ = std::fs::remove_dir_all(lab.path("sweep-files"));
}
