//! Backfill: replicating what the primary held before events started
//! flowing, and what events missed (the registry keeps its notification
//! queue in memory and loses it on restart).
//!
//! A scan reads the primary's catalog (pull-only catalog token, `Link`
//! pagination), records repositories georeg has never seen (they are then
//! synced, never-synced first), applies selective sync, and queues a full
//! sync of repositories that are gone from the primary so that their tags
//! are removed from the secondary too. The daemon scans at start and every
//! `replication.backfill_interval_seconds`; `georeg backfill` runs one pass
//! in the foreground.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::node::Node;
use crate::registry;
use crate::replicate::human_bytes;

/// What a scan of the primary's catalog found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Repositories in the catalog that selective sync includes.
    pub included: usize,
    /// Of those, never seen before.
    pub added: usize,
    /// Repositories left out by selective sync.
    pub excluded: usize,
    /// Known repositories gone from the primary, queued to be emptied.
    pub gone: usize,
}

pub fn scan(node: &Node) -> Result<Scan> {
    let primary =
        node.primary.as_ref().ok_or_else(|| Error::Usage("backfill needs replication.primary_api_url".into()))?;
    let selection = node.config.replication.selection();
    let catalog = primary.catalog()?;
    let listed: HashSet<&str> = catalog.iter().map(String::as_str).collect();
    let included: Vec<String> =
        catalog.iter().filter(|n| registry::valid_repository(n) && selection.includes(n)).cloned().collect();
    let added = node.store.add_repositories(&included)?;
    let excluded = node.store.apply_selection(|n| selection.includes(n))?;
    let mut gone = 0;
    for name in node.store.repository_names()? {
        if listed.contains(name.as_str()) || !selection.includes(&name) || !registry::valid_repository(&name) {
            continue;
        }
        // Absent from the catalog and unknown to the primary: deleted there.
        if primary.tags(&name)?.is_none() && node.local.tags(&name)?.is_some_and(|t| !t.is_empty()) {
            node.store.request_full_sync(&name)?;
            gone += 1;
        }
    }
    let scan = Scan { included: included.len(), added, excluded, gone };
    log::info!(
        "catalog of {}: {} repositories to replicate ({} new), {} excluded by selective sync, {} gone from the primary",
        primary.url(),
        scan.included,
        scan.added,
        scan.excluded,
        scan.gone
    );
    Ok(scan)
}

/// The daemon's backfill thread: a scan at start and every interval.
pub fn run(node: &Node) {
    let interval = Duration::from_secs(node.config.replication.backfill_interval_seconds);
    while !node.quitting() {
        if let Err(e) = scan(node) {
            log::warn!("backfill scan failed: {e}; next try in {}s", interval.as_secs().min(60));
            sleep_unless_quitting(node, interval.min(Duration::from_secs(60)));
            continue;
        }
        sleep_unless_quitting(node, interval);
    }
}

fn sleep_unless_quitting(node: &Node, d: Duration) {
    let end = Instant::now() + d;
    while !node.quitting() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `georeg backfill`: one scan, then a full sync of every repository not
/// synced yet (failed ones too, whatever their retry time), on up to
/// `replication.workers` threads, with a live progress line on stderr.
/// Returns the repositories that failed, with their reasons.
pub fn pass(node: &Node) -> Result<Vec<(String, String)>> {
    let scan = scan(node)?;
    eprintln!(
        "catalog: {} repositories to replicate ({} new), {} excluded, {} gone from the primary",
        scan.included, scan.added, scan.excluded, scan.gone
    );
    let todo = &node.store.unsynced_repositories()?;
    let replicator = node.replicator()?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let bytes_at_start = node.stats.bytes_copied.load(Ordering::Relaxed);
    let finished = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers = node.config.replication.workers.min(todo.len());
        for i in 0..workers {
            let (replicator, todo, next, done, failures) = (&replicator, &todo, &next, &done, &failures);
            let spawned = std::thread::Builder::new().name(format!("sync-{i}")).spawn_scoped(s, move || {
                while let Some(name) = todo.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if let Err(e) = replicator.sync(name) {
                        let reason = match e {
                            Error::Sync { source, .. } => source.to_string(),
                            other => other.to_string(),
                        };
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), reason));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot start a sync thread: {e}");
            }
        }
        let (done, failures, finished, total) = (&done, &failures, &finished, todo.len());
        s.spawn(move || {
            let tty = std::io::stderr().is_terminal();
            let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
            let mut last = Instant::now();
            while finished.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                let failed = failures.lock().map(|f| f.len()).unwrap_or(0);
                let copied = node.stats.bytes_copied.load(Ordering::Relaxed) - bytes_at_start;
                let line = progress_line(done.load(Ordering::SeqCst), total, failed, copied, started.elapsed());
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
        });
        while done.load(Ordering::SeqCst) < todo.len() && !node.quitting() {
            std::thread::sleep(Duration::from_millis(50));
        }
        finished.store(1, Ordering::SeqCst);
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    let copied = node.stats.bytes_copied.load(Ordering::Relaxed) - bytes_at_start;
    let line = progress_line(done.load(Ordering::SeqCst), todo.len(), failures.len(), copied, started.elapsed());
    if std::io::stderr().is_terminal() {
        eprintln!("\r{line}\x1b[K");
    } else {
        eprintln!("{line}");
    }
    Ok(failures)
}

/// `backfill: 12/30 repositories (1 failed), 145.2 MB copied at 48.1 MB/s, ETA 0:12`
pub fn progress_line(done: usize, total: usize, failed: usize, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = bytes as f64 / secs;
    let eta = if done >= total {
        "done".to_string()
    } else if done == 0 {
        "ETA unknown".to_string()
    } else {
        let left = secs / done as f64 * (total - done) as f64;
        format!("ETA {}:{:02}", left as u64 / 60, left as u64 % 60)
    };
    let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
    format!(
        "backfill: {done}/{total} repositories{failed}, {} copied at {}/s, {eta}",
        human_bytes(bytes),
        human_bytes(rate as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_reads_well() {
        let line = progress_line(12, 30, 1, 145_200_000, Duration::from_secs(3));
        assert_eq!(line, "backfill: 12/30 repositories (1 failed), 145.2 MB copied at 48.4 MB/s, ETA 0:04");
        assert!(progress_line(0, 30, 0, 0, Duration::from_secs(1)).ends_with("ETA unknown"));
        assert!(progress_line(30, 30, 0, 0, Duration::from_secs(1)).ends_with("done"));
    }
}
