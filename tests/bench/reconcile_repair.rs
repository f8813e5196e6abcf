//! Changes the notifications lost, and their repair, for the reconcile
//! scenario: tags re-pointed on the synthetic primary telling nobody, then
//! polled until the secondary holds every one, noting for each repository
//! when the primary georeg's fingerprint showed the change (its state
//! file, read only, every 250 ms) and when the secondary was repaired
//! (the synthetic secondary's memory, every 100 ms).
//!
//! [`steady`] runs it end to end with nothing told: both nodes' fingerprint
//! times spread over half a window as keepers in their steady state leave
//! them, so that the primary georeg finds each change when its schedule
//! reaches it, and the follower at its next pass.

use std::time::{Duration, Instant};

use crate::lab::{Georeg, Lab};
use crate::reconcile::{non_reconcile, set_window, stop, Marks, Plan, Setup, Watch, FOLLOWER_LOG};
use crate::reconcile_table::Repair;
use crate::report::Report;
use crate::seed;

/// Re-points tag `v0` of each repository of `changed` on the primary (its
/// `generation`-th image), notifying nobody; with `read_first`, the
/// primary georeg's keeper is pointed at them (as its schedule reaches
/// each within half the window). Then waits, up to `timeout_seconds`,
/// until every one is repaired on the secondary.
pub fn change_and_track(
    setup: &Setup,
    changed: &[String],
    generation: u32,
    read_first: bool,
    timeout_seconds: u64,
    watch: &mut Watch,
) -> Repair {
    let before = fingerprints_of(&setup.g1, changed);
    let (tap_mark, far_sync, far_rec, secondary) =
        (setup.tap.mark(), non_reconcile(&setup.far), setup.far.reconcile_counts(), setup.secondary.counts());
    let (keeper_s, keeper_p) = (setup.secondary.reconcile_counts(), setup.primary.reconcile_counts());
    let (since, since_ms) = (Instant::now(), crate::passlog::now_ms());
    let want: Vec<String> = changed.iter().map(|r| setup.primary.repoint(r, "v0", generation).digest).collect();
    if read_first {
        mark_read_first(&setup.g1, changed);
    }
    let (detected, repaired) = track(setup, changed, &want, &before, since, Duration::from_secs(timeout_seconds));
    let elapsed = since.elapsed();
    let passes = watch.catch_up();
    let seen = setup.tap.since(tap_mark);
    Repair {
        changed: changed.len(),
        elapsed,
        since_ms,
        detected,
        repaired,
        passes,
        node_requests: seen.iter().filter(|s| s.path.starts_with("/api/v1/fingerprints")).count() as u64,
        registry_reconcile: setup.far.reconcile_counts().since(&far_rec).total(),
        registry_sync: non_reconcile(&setup.far).since(&far_sync),
        secondary_writes: setup.secondary.counts().since(&secondary),
        follower_keeper_reads: setup.secondary.reconcile_counts().since(&keeper_s).tag_lists(),
        primary_keeper_reads: setup.primary.reconcile_counts().since(&keeper_p).tag_lists(),
        ..Repair::default()
    }
}

/// Polls until every repository is repaired and its change seen on the
/// primary georeg, or `timeout` passes; returns, for each, how long after
/// `since` it was seen and repaired.
fn track(
    setup: &Setup,
    repos: &[String],
    want: &[String],
    before: &[String],
    since: Instant,
    timeout: Duration,
) -> (Vec<Option<Duration>>, Vec<Option<Duration>>) {
    let mut detected = vec![None; repos.len()];
    let mut repaired = vec![None; repos.len()];
    let deadline = since + timeout;
    let mut next_read = Instant::now();
    while Instant::now() < deadline {
        for (i, repo) in repos.iter().enumerate() {
            if repaired[i].is_none() && setup.secondary.digest(repo, "v0").as_deref() == Some(want[i].as_str()) {
                repaired[i] = Some(since.elapsed());
            }
        }
        if Instant::now() >= next_read {
            for (i, fp) in fingerprints_of(&setup.g1, repos).iter().enumerate() {
                if detected[i].is_none() && !fp.is_empty() && *fp != before[i] {
                    detected[i] = Some(since.elapsed());
                }
            }
            next_read = Instant::now() + Duration::from_millis(250);
        }
        if repaired.iter().all(Option::is_some) && detected.iter().all(Option::is_some) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (detected, repaired)
}

/// Marks repositories to be read first by a node's keeper (an event marks
/// them so too).
fn mark_read_first(node: &Georeg, repos: &[String]) {
    let mut conn = node.db();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx.prepare("UPDATE fingerprints SET stale = 1 WHERE repository = ?1").unwrap();
        for r in repos {
            stmt.execute([r]).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// The fingerprints a node holds of `repos` now (empty: none).
fn fingerprints_of(node: &Georeg, repos: &[String]) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(&node.state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn.prepare("SELECT fingerprint FROM fingerprints WHERE repository = ?1").unwrap();
    repos.iter().map(|r| stmt.query_row([r], |row| row.get(0)).unwrap_or_default()).collect()
}

/// End to end with nothing told, at `window`: both nodes in
/// their steady state, another 1 % re-pointed, the time until every one is
/// repaired, and what the keepers read meanwhile.
pub fn steady(lab: &Lab, plan: &Plan, setup: &Setup, window: u64, label: &str, report: &mut Report) -> Repair {
    for node in [&setup.g1, &setup.g2] {
        set_window(node, window);
    }
    seed::spread(&setup.g1, window / 2, 1);
    seed::spread(&setup.g2, window / 2, 2);
    plan.settle(report, label);
    eprintln!("bench: {label}: end to end, window {window} s, nobody told");
    let primary = setup.g1.serve_logging(lab, "info");
    let marks = Marks::now(lab, setup);
    let follower = setup.g2.serve_logging(lab, FOLLOWER_LOG);
    let mut watch = Watch::new(lab, setup, &follower, &primary, marks);
    watch.next(Duration::from_secs(window + 120));
    let (cpu, primary_cpu, started) = (follower.cpu_seconds(), primary.cpu_seconds(), Instant::now());
    let changed = plan.changed(setup.n, 71);
    let mut repair = change_and_track(setup, &changed, 1, false, 2 * window + 120, &mut watch);
    let secs = started.elapsed().as_secs_f64();
    repair.window = window;
    repair.follower_cpu_share = (follower.cpu_seconds() - cpu) / secs;
    repair.primary_cpu_share = (primary.cpu_seconds() - primary_cpu) / secs;
    stop(primary, follower);
    repair
}
