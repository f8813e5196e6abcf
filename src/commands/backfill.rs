//! `georeg backfill`: one scan of the primary's catalog, then a full sync
//! of every repository not synced yet (failed ones too, whatever their
//! retry time), on up to `replication.workers` threads, with a live
//! progress line on stderr. While `georeg serve` runs, it asks the daemon
//! for those syncs and follows them. Exit 0 only when every repository is
//! synced; 1 listing what is not; 130 when interrupted.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::node::Node;
use super::owner::{follow, recover, Followed, Owner, Tally};
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::replication::{backfill, pool};
use crate::store::lock::{Lock, Locker};

pub fn run(node: &Node) -> Result<ExitCode> {
    let owner = Owner::take(node, Locker::Backfill)?;
    let replicator = node.replicator()?;
    let scan = backfill::scan(&replicator, &node.config.replication.selection())?;
    eprintln!("{}", scan.summary(replicator.primary.url()));
    let todo = node.queue.unsynced_repositories()?;
    let (tally, mut failures) = match owner {
        Owner::Itself(_lock) => backfill_here(node, &todo)?,
        Owner::Daemon(holder) => {
            for name in &todo {
                node.queue.request_priority_sync(name)?;
            }
            let started = Instant::now();
            let tty = std::io::stderr().is_terminal();
            let mut last = Instant::now() - Duration::from_secs(60);
            let tick = |done: usize, failed: usize| {
                if tty || last.elapsed() >= Duration::from_secs(10) || done == todo.len() {
                    crate::progress::show(&progress_line(done, todo.len(), failed, 0, started.elapsed()));
                    last = Instant::now();
                }
            };
            let outcome =
                |p: &crate::store::Progress| p.sync_outcome().map(|r| r.map(|report| format!("synced: {report}")));
            let followed = follow(node, &holder, &todo, outcome, tick);
            crate::progress::end();
            match followed? {
                Followed::Done(tally) => (tally, Vec::new()),
                Followed::DaemonGone { mut tally, left } => {
                    let _lock = Lock::acquire(&node.config.state_file, Locker::Backfill)?;
                    recover(node)?;
                    let (rest, failures) = backfill_here(node, &left)?;
                    tally.failed += rest.failed;
                    tally.interrupted += rest.interrupted;
                    tally.total += rest.total;
                    (tally, failures)
                }
            }
        }
    };
    if tally.interrupted > 0 {
        return Ok(tally.exit("failed"));
    }
    // Exit 0 only when every repository to replicate is synced, whatever
    // this pass saw: nothing left queued, failed or mid-sync.
    let known: Vec<String> = failures.iter().map(|(name, _)| name.clone()).collect();
    for name in node.queue.unsynced_repositories()?.into_iter().filter(|n| !known.contains(n)) {
        let why =
            node.queue.progress(&name)?.and_then(|p| p.last_sync_failure).unwrap_or_else(|| "not synced yet".into());
        failures.push((name, why));
    }
    if failures.is_empty() && tally.failed == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if !failures.is_empty() {
        println!("{} failed:", crate::format::count(failures.len() as u64, "repository", "repositories"));
        for (name, why) in &failures {
            println!("{name}: FAILED: {why}");
        }
    }
    println!("they are retried by `georeg serve` with backoff, or run `georeg backfill` again after fixing the cause");
    Ok(ExitCode::from(1))
}

/// The syncs, done by this process (it holds the lock), with a progress
/// line; returns the tally and the failures with their reasons.
fn backfill_here(node: &Node, todo: &[String]) -> Result<(Tally, Vec<(String, String)>)> {
    let replicator = node.replicator()?;
    let done = AtomicUsize::new(0);
    let interrupted = AtomicUsize::new(0);
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let bytes_at_start = node.stats.bytes_copied.load(Ordering::Relaxed);
    let finished = AtomicBool::new(false);
    let started = Instant::now();
    let line = || {
        let failed = failures.lock().unwrap_or_else(|p| p.into_inner()).len();
        let copied = node.stats.bytes_copied.load(Ordering::Relaxed) - bytes_at_start;
        progress_line(done.load(Ordering::SeqCst), todo.len(), failed, copied, started.elapsed())
    };
    let tty = std::io::stderr().is_terminal();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
            let mut last = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= every {
                    last = Instant::now();
                    crate::progress::show(&line());
                }
            }
        });
        let result = pool::each(todo, node.config.replication.workers, "sync", |name| {
            if node.shutdown.requested() {
                interrupted.fetch_add(1, Ordering::SeqCst);
                return;
            }
            match replicator.sync(name) {
                Ok(_) => {
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Err(Error::Interrupted) => {
                    interrupted.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), e.reason()));
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        finished.store(true, Ordering::SeqCst);
        result
    })?;
    crate::progress::finish(&line());
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    let tally = Tally { failed: failures.len(), interrupted: interrupted.into_inner(), total: todo.len() };
    Ok((tally, failures))
}

/// `backfill: 12/30 repositories (1 failed), 145.2 MB copied at 48.1 MB/s, ETA 0:12`
fn progress_line(done: usize, total: usize, failed: usize, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = bytes as f64 / secs;
    // By repositories done so far: honest only once a few are, and never
    // "0:00" while any is left.
    let eta = if done >= total {
        "done".to_string()
    } else if done < 3 && done * 10 < total {
        "ETA unknown yet".to_string()
    } else {
        let left = (secs / done as f64 * (total - done) as f64).ceil().max(1.0) as u64;
        format!("ETA {}:{:02}", left / 60, left % 60)
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
        assert_eq!(line, "backfill: 12/30 repositories (1 failed), 145.2 MB copied at 48.4 MB/s, ETA 0:05");
        assert!(progress_line(0, 30, 0, 0, Duration::from_secs(1)).ends_with("ETA unknown yet"));
        assert!(progress_line(2, 300, 0, 0, Duration::from_secs(1)).ends_with("ETA unknown yet"));
        assert!(
            progress_line(290, 300, 0, 0, Duration::from_millis(10)).ends_with("ETA 0:01"),
            "never 0:00 with work left"
        );
        assert!(progress_line(30, 30, 0, 0, Duration::from_secs(1)).ends_with("done"));
    }
}
