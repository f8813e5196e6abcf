//! The copy scenarios, each on fresh registries: (a) many small images and
//! (d) a no-op pass over them, (b) large layers, (c) one new tag in a
//! repository of thousands. Each runs georeg, skopeo sync and the ingest
//! limit on the same corpus and checks that every tool's result is complete.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::corpus::{self, ImagePlan, RepoPlan};
use crate::lab::{
    busy_share, count, discard, harness_api, mark, measured, pool, Cpu, CpuMark, Georeg, Lab, Mark, GEOREG_AGENT,
    SKOPEO_AGENT,
};
use crate::peers;
use crate::report::{Report, Row};
use crate::support::poll_until;
use crate::support::registry::Registry;

/// Corpus sizes and concurrency.
pub struct Sizes {
    pub smoke: bool,
    /// georeg's replication.workers; skopeo and the limit get as many processes.
    pub workers: usize,
    pub a_repos: usize,
    pub a_tags: usize,
    pub a_layers: usize,
    pub a_layer_bytes: u64,
    pub b_repos: usize,
    pub b_layers: usize,
    pub b_layer_bytes: u64,
    /// How many times each tool copies (b); its fastest run counts.
    pub reps: usize,
    pub c_tags: usize,
    pub lag_pushes: usize,
    pub lag_bytes: u64,
    pub ingest_events: usize,
    pub ingest_clients: usize,
    /// Notifications sent while 200 slow connections are open.
    pub fair_notifications: usize,
    /// Pushes through the chain primary -> relay -> second hop.
    pub relay_pushes: usize,
    /// Followers long-polling one primary georeg's event log: a run for each count.
    pub fanout_followers: &'static [usize],
    /// Notifications posted to it while they do, one every `fanout_every`,
    /// for at most `fanout_for`.
    pub fanout_events: usize,
    pub fanout_every: Duration,
    pub fanout_for: Duration,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            smoke: false,
            workers: 8,
            a_repos: 200,
            a_tags: 5,
            a_layers: 3,
            a_layer_bytes: 64 * 1024,
            b_repos: 4,
            b_layers: 2,
            b_layer_bytes: 500_000_000,
            reps: 3,
            c_tags: 2000,
            lag_pushes: 50,
            lag_bytes: 1_000_000,
            ingest_events: 10_000,
            ingest_clients: 16,
            fair_notifications: 1000,
            relay_pushes: 100,
            fanout_followers: &[10, 20, 30],
            fanout_events: 500,
            fanout_every: Duration::from_millis(20),
            fanout_for: Duration::from_secs(30),
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            smoke: true,
            a_repos: 6,
            a_tags: 2,
            a_layer_bytes: 16 * 1024,
            b_repos: 2,
            b_layer_bytes: 4_000_000,
            reps: 1,
            c_tags: 40,
            lag_pushes: 5,
            ingest_events: 320,
            fair_notifications: 100,
            relay_pushes: 5,
            fanout_followers: &[10],
            fanout_events: 50,
            fanout_for: Duration::from_secs(3),
            ..Sizes::full()
        }
    }

    fn label_a(&self) -> String {
        format!(
            "(a) {} repos x {} tags x {} layers of {} KiB",
            self.a_repos,
            self.a_tags,
            self.a_layers,
            self.a_layer_bytes / 1024
        )
    }
}

/// Seeds of layer noise: distinct across scenarios, repositories, tags and layers.
pub fn seed(scenario: u64, repo: usize, tag: usize, layer: usize) -> u64 {
    scenario * 1_000_000_000 + repo as u64 * 1_000_000 + tag as u64 * 100 + layer as u64
}

/// Every tag of every repository has the primary's digest on the secondary.
pub fn assert_complete(primary: &Registry, secondary: &Registry, repos: &[String], who: &str) {
    let (p, s) = (harness_api(primary), harness_api(secondary));
    let wrong = Mutex::new(Vec::new());
    pool(repos, 4, |repo| {
        let (want, got) = (p.tag_digests(repo), s.tag_digests(repo));
        if want.is_empty() || want != got {
            wrong.lock().unwrap().push(format!("{repo}: {} tags on the primary, {} match", want.len(), {
                want.iter().filter(|(t, d)| got.get(*t) == Some(*d)).count()
            }));
        }
    });
    let wrong = wrong.into_inner().unwrap();
    assert!(wrong.is_empty(), "{who} left the secondary incomplete:\n{}", wrong.join("\n"));
}

/// Gets the machine ready for a measurement: writes the page cache still
/// holds for earlier steps (a corpus, another tool's copy) go to disk
/// first, so that a tool does not pay for them; then records how busy
/// other work keeps the CPUs, for the notes.
pub fn background(report: &mut Report, scenario: &str) {
    let _ = std::process::Command::new("sync").status();
    report.noise(scenario, busy_share(Duration::from_secs(1)));
}

pub fn georeg_run(node: &Georeg, lab: &Lab, label: &str, args: &[String]) -> crate::lab::Measured {
    let run = node.run(lab, label, args);
    assert_eq!(run.code, 0, "georeg {args:?} failed:\n{}\n{}", run.stdout, run.stderr);
    run
}

pub fn speedup(georeg: &Row, other: &Row) -> f64 {
    other.wall.as_secs_f64() / georeg.wall.as_secs_f64().max(1e-9)
}

/// (a) many small images, then (d) a second pass over them with nothing changed.
pub fn small(lab: &Lab, s: &Sizes, report: &mut Report) {
    let scenario = s.label_a();
    let plans: Vec<RepoPlan> = (0..s.a_repos)
        .map(|r| RepoPlan {
            name: format!("small/r{r:03}"),
            images: (0..s.a_tags)
                .map(|t| ImagePlan {
                    tag: format!("v{t}"),
                    layers: (0..s.a_layers).map(|l| (seed(1, r, t, l), s.a_layer_bytes)).collect(),
                })
                .collect(),
        })
        .collect();
    eprintln!("bench: {scenario}: building the corpus");
    let corpus = corpus::build(&lab.path("a-files"), &plans, s.workers);
    let primary = lab.registry("a-primary", None);
    corpus::push(&harness_api(&primary), &corpus, s.workers);
    let names = corpus.names();
    let (bytes, images) = (corpus.bytes(), corpus.images());
    let tags = images;
    let noop = format!("(d) no-op pass over (a), {} tags", tags);

    // georeg
    eprintln!("bench: {scenario}: georeg backfill");
    background(report, &scenario);
    let secondary = lab.registry("a-georeg", None);
    let node = Georeg::secondary(lab, "a-georeg", &secondary, &primary, s.workers, None);
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || georeg_run(&node, lab, "a-georeg-backfill", &["backfill".into()]));
    let requests = count(&[&marks.0, &marks.1], GEOREG_AGENT);
    assert_complete(&primary, &secondary, &names, "georeg backfill");
    let mut g_a =
        Row::new(&scenario, "georeg backfill", run.wall, bytes, images).cpu(cpu).rss(run.rss_kib).requests(requests);

    eprintln!("bench: {noop}: georeg");
    background(report, &noop);
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || georeg_run(&node, lab, "d-georeg-backfill", &["backfill".into()]));
    let requests = count(&[&marks.0, &marks.1], GEOREG_AGENT);
    let mut g_d = Row::new(&noop, "georeg backfill", run.wall, 0, tags)
        .cpu(cpu)
        .rss(run.rss_kib)
        .requests(requests)
        .note(format!("{:.2} requests per tag", requests as f64 / tags as f64));
    let marks = (mark(&primary), mark(&secondary));
    let mut args = vec!["sync".to_string()];
    args.extend(names.iter().cloned());
    let (run, cpu) = measured(&primary, &secondary, || georeg_run(&node, lab, "d-georeg-sync", &args));
    let requests = count(&[&marks.0, &marks.1], GEOREG_AGENT);
    let mut g_d_full = Row::new(&noop, "georeg sync of every repository", run.wall, 0, tags)
        .cpu(cpu)
        .rss(run.rss_kib)
        .requests(requests)
        .note(format!("full tag comparison, {:.2} requests per tag", requests as f64 / tags as f64));
    discard(secondary);

    // skopeo
    eprintln!("bench: {scenario}: skopeo sync");
    background(report, &scenario);
    let secondary = lab.registry("a-skopeo", None);
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || peers::skopeo(lab, "a-skopeo", &primary, &secondary, &names, s.workers));
    let requests = count(&[&marks.0, &marks.1], SKOPEO_AGENT);
    assert_complete(&primary, &secondary, &names, "skopeo sync");
    let mut k_a =
        Row::new(&scenario, "skopeo sync", run.wall, bytes, images).cpu(cpu).rss(run.rss_kib).requests(requests);
    eprintln!("bench: {noop}: skopeo sync");
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || peers::skopeo(lab, "d-skopeo", &primary, &secondary, &names, s.workers));
    let requests = count(&[&marks.0, &marks.1], SKOPEO_AGENT);
    let mut k_d = Row::new(&noop, "skopeo sync", run.wall, 0, tags)
        .cpu(cpu)
        .rss(run.rss_kib)
        .requests(requests)
        .note(format!("{:.2} requests per tag", requests as f64 / tags as f64));
    discard(secondary);

    // the limit
    eprintln!("bench: {scenario}: ingest limit");
    background(report, &scenario);
    let secondary = lab.registry("a-limit", None);
    let m = mark(&secondary);
    let (run, cpu) =
        measured(&primary, &secondary, || peers::ingest(lab, "a-limit", &secondary, &corpus.repos, s.workers));
    let requests = count(&[&m], "");
    assert_complete(&primary, &secondary, &names, "the ingest limit");
    let mut l_a = Row::new(&scenario, "limit: curl uploads from local files", run.wall, bytes, images)
        .cpu(cpu)
        .requests(requests);
    discard(secondary);
    discard(primary);
    let _ = std::fs::remove_dir_all(lab.path("a-files"));

    let x_skopeo = speedup(&g_a, &k_a);
    k_a.versus = format!("georeg {x_skopeo:.1}x faster");
    l_a.versus = format!("georeg at {:.2} of it", l_a.wall.as_secs_f64() / g_a.wall.as_secs_f64());
    g_a.versus = format!("{x_skopeo:.1}x skopeo");
    let x_noop = speedup(&g_d, &k_d);
    k_d.versus = format!("georeg {x_noop:.0}x faster (full comparison: {:.1}x)", speedup(&g_d_full, &k_d));
    let per_tag = g_d.requests.unwrap_or(0) as f64 / tags as f64;
    let per_tag_full = g_d_full.requests.unwrap_or(0) as f64 / tags as f64;
    g_d.versus = format!("{x_noop:.0}x skopeo");
    g_d_full.versus = format!("{:.1}x skopeo", speedup(&g_d_full, &k_d));
    report.target("(a) georeg at least 2x faster than skopeo sync", format!("{x_skopeo:.2}x"), x_skopeo >= 2.0);
    report.target(
        "(d) no-op pass at least 5x faster than skopeo's",
        format!(
            "{x_noop:.0}x (`georeg backfill`); {:.1}x for a full tag comparison (`georeg sync`)",
            speedup(&g_d_full, &k_d)
        ),
        x_noop >= 5.0,
    );
    report.target(
        "(d) at most 2 registry requests per unchanged tag",
        format!("{per_tag:.3} (`georeg backfill`); {per_tag_full:.2} for a full tag comparison"),
        per_tag <= 2.0,
    );
    report.rows.extend([g_a, k_a, l_a, g_d, g_d_full, k_d]);
}

/// (b) large, incompressible layers.
pub fn large(lab: &Lab, s: &Sizes, report: &mut Report) {
    let scenario = format!("(b) {} repos x {} layers of {} MB", s.b_repos, s.b_layers, s.b_layer_bytes / 1_000_000);
    let plans: Vec<RepoPlan> = (0..s.b_repos)
        .map(|r| RepoPlan {
            name: format!("large/r{r}"),
            images: vec![ImagePlan {
                tag: "v1".into(),
                layers: (0..s.b_layers).map(|l| (seed(2, r, 0, l), s.b_layer_bytes)).collect(),
            }],
        })
        .collect();
    eprintln!("bench: {scenario}: building the corpus");
    let corpus = corpus::build(&lab.path("b-files"), &plans, s.workers);
    let primary = lab.registry("b-primary", None);
    corpus::push(&harness_api(&primary), &corpus, s.workers);
    let names = corpus.names();
    let (bytes, images) = (corpus.bytes(), corpus.images());

    // Large copies are the most sensitive to other work on the machine:
    // each tool runs `reps` times, in a rotating order, and its fastest run
    // counts (all are in the notes).
    type Run = (Duration, u64, u64, Cpu);
    let mut runs: [Vec<Run>; 3] = Default::default();
    for rep in 0..s.reps {
        for tool in [0, 1, 2].iter().map(|t| (t + rep) % 3) {
            background(report, &scenario);
            let secondary = lab.registry(&format!("b-{tool}-{rep}"), None);
            let marks = (mark(&primary), mark(&secondary));
            let cpu = CpuMark::new(&primary, &secondary);
            let label = format!("b-{tool}-{rep}");
            let (run, agent, who) = match tool {
                0 => {
                    eprintln!("bench: {scenario}: georeg backfill ({}/{})", rep + 1, s.reps);
                    let node = Georeg::secondary(lab, &label, &secondary, &primary, s.workers, None);
                    let run = georeg_run(&node, lab, &label, &["backfill".into()]);
                    ((run.wall, run.rss_kib), GEOREG_AGENT, "georeg backfill")
                }
                1 => {
                    eprintln!("bench: {scenario}: skopeo sync ({}/{})", rep + 1, s.reps);
                    let run = peers::skopeo(lab, &label, &primary, &secondary, &names, s.workers);
                    ((run.wall, run.rss_kib), SKOPEO_AGENT, "skopeo sync")
                }
                _ => {
                    eprintln!("bench: {scenario}: ingest limit ({}/{})", rep + 1, s.reps);
                    let run = peers::ingest(lab, &label, &secondary, &corpus.repos, s.workers);
                    ((run.wall, 0), "", "the ingest limit")
                }
            };
            let cpu = cpu.elapsed();
            // The limit's requests are all on the secondary, and all its own.
            let requests = if tool == 2 { count(&[&marks.1], agent) } else { count(&[&marks.0, &marks.1], agent) };
            assert_complete(&primary, &secondary, &names, who);
            runs[tool].push((run.0, run.1, requests, cpu));
            discard(secondary);
        }
    }
    discard(primary);
    let _ = std::fs::remove_dir_all(lab.path("b-files"));
    let row = |tool: usize, name: &str| {
        let best = runs[tool].iter().min_by_key(|r| r.0).copied().unwrap_or_default();
        let rss = runs[tool].iter().map(|r| r.1).max().unwrap_or(0);
        let all: Vec<String> = runs[tool].iter().map(|r| crate::report::seconds(r.0)).collect();
        let row = Row::new(&scenario, name, best.0, bytes, images).rss(rss).requests(best.2).cpu(best.3);
        if all.len() > 1 {
            row.note(format!("fastest of {}", all.join(", ")))
        } else {
            row
        }
    };
    let (mut g, mut k, mut l) =
        (row(0, "georeg backfill"), row(1, "skopeo sync"), row(2, "limit: curl uploads from local files"));
    let share = g.mb_per_s() / l.mb_per_s();
    let x = speedup(&g, &k);
    k.versus = format!("georeg {x:.1}x faster");
    l.versus = format!("georeg at {share:.2} of it");
    g.versus = format!("{share:.2} of the limit");
    let rss_mb = g.rss_kib.unwrap_or(0) as f64 * 1024.0 / 1e6;
    report.target("(b) georeg at least 0.85 of the limit", format!("{share:.2}"), share >= 0.85);
    report.target("(b) georeg peak RSS under 64 MB", format!("{rss_mb:.1} MB"), rss_mb < 64.0);
    report.rows.extend([g, k, l]);
}

/// (c) one new tag pushed into a repository of thousands: georeg event
/// driven (the primary registry notifies it), skopeo by a sync of the repository.
pub fn incremental(lab: &Lab, s: &Sizes, report: &mut Report) {
    const REPO: &str = "many/app";
    let scenario = format!("(c) 1 new tag in a repository of {} tags", s.c_tags);
    let initial = format!("(c) initial copy of the {} tags", s.c_tags);
    // Each tag: a shared 1 MB base layer, its own 64 KiB layer and config.
    let base = (seed(3, 0, 0, 0), 1_000_000);
    let image = |tag: String, t: usize| ImagePlan { tag, layers: vec![base, (seed(3, 0, t + 1, 1), 64 * 1024)] };
    let plans =
        vec![RepoPlan { name: REPO.into(), images: (0..s.c_tags).map(|t| image(format!("t{t:04}"), t)).collect() }];
    eprintln!("bench: {scenario}: building the corpus");
    let corpus = corpus::build(&lab.path("c-files"), &plans, s.workers);
    let extra = corpus::build(
        &lab.path("c-files"),
        &[RepoPlan { name: REPO.into(), images: vec![image("new".into(), s.c_tags + 1)] }],
        1,
    );
    let new = extra.repos[0].tags[0].clone();
    // What the new tag adds: its config and its own layer (the base is already there).
    let new_bytes: u64 =
        new.blobs.iter().filter(|b| b.digest != corpus.repos[0].tags[0].blobs[1].digest).map(|b| b.size).sum();
    let mut primary = lab.registry("c-primary", None);
    let papi = harness_api(&primary);
    corpus::push(&papi, &corpus, s.workers);
    let names = corpus.names();
    let (bytes, images) = (corpus.bytes(), corpus.images());

    // The limit uploads the tags into a fresh secondary.
    eprintln!("bench: {scenario}: ingest limit");
    background(report, &scenario);
    let secondary = lab.registry("c-limit", None);
    let m = mark(&secondary);
    let (run, cpu) =
        measured(&primary, &secondary, || peers::ingest(lab, "c-limit-initial", &secondary, &corpus.repos, 1));
    let mut l_init = Row::new(&initial, "limit: curl uploads from local files", run.wall, bytes, images)
        .cpu(cpu)
        .requests(count(&[&m], ""));

    // skopeo keeps no state: a secondary in step, whoever filled it, is
    // where it starts. The new tag is pushed, then the repository synced.
    eprintln!("bench: {scenario}: skopeo sync");
    background(report, &scenario);
    corpus::push_image(&papi, REPO, &new);
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || peers::skopeo(lab, "c-skopeo-new", &primary, &secondary, &names, 1));
    let requests = count(&[&marks.0, &marks.1], SKOPEO_AGENT);
    assert_complete(&primary, &secondary, &names, "skopeo sync");
    let mut k_new = Row::new(&scenario, "skopeo sync of the repository", run.wall, new_bytes, 1)
        .cpu(cpu)
        .rss(run.rss_kib)
        .requests(requests);
    discard(secondary);

    // The limit for the new tag: its config, its layer and its manifest,
    // into a secondary that holds the base layer.
    let secondary = lab.registry("c-limit-new", None);
    let base_layer = corpus.repos[0].tags[0].blobs[1].clone();
    let mut only_base = extra.repos[0].clone();
    only_base.blobs.retain(|b| b.digest == base_layer.digest);
    only_base.tags.clear();
    peers::ingest(lab, "c-limit-base", &secondary, &[only_base], 1);
    let mut only_new = extra.repos[0].clone();
    only_new.blobs.retain(|b| b.digest != base_layer.digest);
    let m = mark(&secondary);
    let (run, cpu) = measured(&primary, &secondary, || peers::ingest(lab, "c-limit-new", &secondary, &[only_new], 1));
    let mut l_new = Row::new(&scenario, "limit: curl uploads from local files", run.wall, new_bytes, 1)
        .cpu(cpu)
        .requests(count(&[&m], ""));
    discard(secondary);
    // georeg must find the tag new: off the primary until georeg's turn.
    papi.delete_manifest(REPO, &new.digest);

    // georeg: backfill, then `georeg serve` notified by the primary registry.
    eprintln!("bench: {scenario}: georeg backfill, then georeg serve");
    background(report, &scenario);
    let secondary = lab.registry("c-georeg", None);
    let node = Georeg::secondary(lab, "c-georeg", &secondary, &primary, s.workers, None);
    let marks = (mark(&primary), mark(&secondary));
    let (run, cpu) =
        measured(&primary, &secondary, || georeg_run(&node, lab, "c-georeg-backfill", &["backfill".into()]));
    let requests = count(&[&marks.0, &marks.1], GEOREG_AGENT);
    assert_complete(&primary, &secondary, &names, "georeg backfill");
    let mut g_init =
        Row::new(&initial, "georeg backfill", run.wall, bytes, images).cpu(cpu).rss(run.rss_kib).requests(requests);
    primary = lab.restart_registry(primary, Some(&node.notify()));
    let papi = harness_api(&primary);
    let serve = node.serve(lab);
    // Let the daemon finish what follows a backfill (verifying the repository) first.
    let settled = "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced' AND verification_state = 'succeeded'";
    poll_until("the repository to be verified", Duration::from_secs(600), Duration::from_millis(100), || {
        node.query(settled) == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    let marks = (mark(&primary), mark(&secondary));
    let sapi = harness_api(&secondary);
    corpus::push_image(&papi, REPO, &new);
    let pushed = Instant::now();
    poll_until("the new tag on the secondary", Duration::from_secs(120), Duration::from_millis(2), || {
        sapi.digest(REPO, &new.tag).as_deref() == Some(new.digest.as_str())
    });
    let lag = pushed.elapsed();
    // Then the sync is recorded and the repository verified again.
    let caught_up =
        "SELECT COUNT(*) FROM repositories WHERE sync_state = 'synced' AND verification_state = 'succeeded' \
                     AND events_done_through >= (SELECT MAX(id) FROM events)";
    poll_until("the sync and its verification", Duration::from_secs(600), Duration::from_millis(50), || {
        node.query(caught_up) == 1
    });
    let (copy, verification) = split_at_verification(&[&marks.0, &marks.1]);
    let rss = serve.peak_rss_kib();
    serve.stop();
    assert_complete(&primary, &secondary, &names, "georeg serve");
    let mut g_new = Row::new(&scenario, "georeg serve, notified", lag, new_bytes, 1)
        .rss(rss)
        .requests(copy)
        .note(format!("then {} requests to verify the repository", crate::report::thousands(verification)));
    discard(secondary);
    discard(primary);
    let _ = std::fs::remove_dir_all(lab.path("c-files"));

    let share_init = l_init.wall.as_secs_f64() / g_init.wall.as_secs_f64();
    l_init.versus = format!("georeg at {share_init:.2} of it");
    g_init.versus = format!("{share_init:.2} of the limit");
    let x_new = speedup(&g_new, &k_new);
    k_new.versus = format!("georeg {x_new:.0}x faster");
    l_new.versus = format!("georeg at {:.2} of it", l_new.wall.as_secs_f64() / g_new.wall.as_secs_f64());
    g_new.versus = format!("{x_new:.0}x skopeo");
    report.target(
        "(c) the new tag replicated with fewer than 10 registry requests",
        format!("{copy} (then {verification} for the verification that follows)"),
        copy < 10,
    );
    report.rows.extend([g_init, l_init, g_new, k_new, l_new]);
}

/// georeg's requests since the marks, split where the verification that
/// follows a sync begins (its first tag listing on each registry).
fn split_at_verification(marks: &[&Mark]) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(300));
    let (mut copy, mut verify) = (0, 0);
    for m in marks {
        let requests = m.requests(GEOREG_AGENT);
        let at =
            requests.iter().position(|r| r.method == "GET" && r.path.contains("/tags/list")).unwrap_or(requests.len());
        copy += at as u64;
        verify += (requests.len() - at) as u64;
    }
    (copy, verify)
}
