//! `georeg backfill`: one scan of the primary's catalog, then a full sync
//! of every repository not synced yet (failed ones too, whatever their
//! retry time), on up to `replication.workers` threads, with a live
//! progress line on stderr. Exit 1 listing the failures.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Node;
use crate::error::Result;
use crate::health::human_bytes;
use crate::replication::{backfill, pool};

pub fn run(node: &Node) -> Result<ExitCode> {
    let failures = pass(node)?;
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} repositories failed:", failures.len());
    for (name, why) in &failures {
        println!("{name}: FAILED: {why}");
    }
    println!("they are retried by `georeg serve` with backoff, or run `georeg backfill` again after fixing the cause");
    Ok(ExitCode::from(1))
}

/// One pass; returns the repositories that failed, with their reasons.
fn pass(node: &Node) -> Result<Vec<(String, String)>> {
    let replicator = node.replicator()?;
    let scan = backfill::scan(&replicator, &node.config.replication.selection())?;
    eprintln!(
        "catalog: {} repositories to replicate ({} new), {} excluded, {} gone from the primary",
        scan.included, scan.added, scan.excluded, scan.gone
    );
    let todo = node.store.unsynced_repositories()?;
    let done = AtomicUsize::new(0);
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
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                if tty {
                    eprint!("\r{}\x1b[K", line());
                } else {
                    eprintln!("{}", line());
                }
                let _ = std::io::stderr().flush();
            }
        });
        let result = pool::each(&todo, node.config.replication.workers, "sync", |name| {
            if let Err(e) = replicator.sync(name) {
                failures.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), e.reason()));
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
        finished.store(true, Ordering::SeqCst);
        result
    })?;
    if tty {
        eprintln!("\r{}\x1b[K", line());
    } else {
        eprintln!("{}", line());
    }
    Ok(failures.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// `backfill: 12/30 repositories (1 failed), 145.2 MB copied at 48.1 MB/s, ETA 0:12`
fn progress_line(done: usize, total: usize, failed: usize, bytes: u64, elapsed: Duration) -> String {
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
