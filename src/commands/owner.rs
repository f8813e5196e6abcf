//! Who does a foreground command's work. `georeg sync`, `backfill` and
//! `verify` take the state file's lock and work themselves; while a
//! `georeg serve` holds it, they hand their work to it through the state
//! file (a priority resync or verification) and follow it to the end, so
//! that one repository never has two owners. Either way they stop on
//! SIGINT or SIGTERM, hand back what they hold, and exit 130.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::node::Node;
use crate::error::{Error, Result};
use crate::replication::pool;
use crate::store::lock::{Holder, Lock, Locker};
use crate::store::Progress;

/// How often a follower looks at the state file.
const POLL: Duration = Duration::from_millis(250);
/// The exit code of a command stopped by SIGINT or SIGTERM (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// How a foreground command works.
pub enum Owner {
    /// It holds the lock and works itself.
    Itself(Lock),
    /// `georeg serve` holds the lock and does the work.
    Daemon(Holder),
}

impl Owner {
    /// Takes the state file's lock for `command`, recovering what a process
    /// that died left `started`, or finds the daemon that holds it. Another
    /// foreground command holding it is an error: it would not see work
    /// handed to it.
    pub fn take(node: &Node, command: Locker) -> Result<Owner> {
        match Lock::try_acquire(&node.config.state_file, command)? {
            Ok(lock) => {
                recover(node)?;
                Ok(Owner::Itself(lock))
            }
            Err(holder) if holder.command == Some(Locker::Serve) => {
                eprintln!(
                    "georeg: {holder} owns {}: it does this work, and this command follows it",
                    node.config.state_file.display()
                );
                Ok(Owner::Daemon(holder))
            }
            Err(holder) => Err(Error::InUse {
                state_file: node.config.state_file.clone(),
                holder: holder.to_string(),
                hint: "wait for it to finish, or stop it".into(),
            }),
        }
    }
}

/// Puts back what a process that died left `started` (run holding the lock).
pub fn recover(node: &Node) -> Result<()> {
    let recovered = node.queue.recover_started()?;
    if recovered > 0 {
        log::warn!(
            "{recovered} repositories were left mid-sync by a georeg process that stopped without handing them \
             back; queued again"
        );
    }
    Ok(())
}

/// How many of a command's repositories failed, and whether it was stopped.
#[derive(Debug, Default)]
pub struct Tally {
    pub failed: usize,
    pub interrupted: usize,
    pub total: usize,
}

impl Tally {
    /// The exit code: 130 when stopped by a signal, 1 when anything
    /// failed, else 0; with one summary line on stderr.
    pub fn exit(&self, what: &str) -> ExitCode {
        if self.interrupted > 0 {
            eprintln!(
                "georeg: interrupted: {} of {} repositories done ({} failed); the rest were handed back and \
                 resume at the next run",
                self.total - self.interrupted,
                self.total,
                self.failed
            );
            ExitCode::from(INTERRUPTED)
        } else if self.failed > 0 {
            eprintln!("georeg: {} of {} repositories {what}; see the lines above", self.failed, self.total);
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Runs `each` over the repositories on up to `replication.workers`
/// threads, printing one line per repository (`REPO: what it did`,
/// `REPO: FAILED: why`, or that it was interrupted). `each` returns
/// `Ok(Err(why))` for a failure that is an outcome, not an error. After a stop request
/// no repository is started.
pub fn each_repository(
    node: &Node,
    repositories: &[String],
    thread_name: &str,
    each: impl Fn(&str) -> Result<std::result::Result<String, String>> + Sync,
) -> Result<Tally> {
    let (failed, interrupted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    pool::each(repositories, node.config.replication.workers, thread_name, |repo| {
        if node.shutdown.requested() {
            interrupted.fetch_add(1, Ordering::SeqCst);
            return;
        }
        match each(repo) {
            Ok(Ok(done)) => println!("{repo}: {done}"),
            Ok(Err(why)) => {
                failed.fetch_add(1, Ordering::SeqCst);
                println!("{repo}: FAILED: {why}");
            }
            Err(Error::Interrupted) => {
                interrupted.fetch_add(1, Ordering::SeqCst);
                println!("{repo}: interrupted; handed back, it resumes at the next run");
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::SeqCst);
                println!("{repo}: FAILED: {}", e.reason());
            }
        }
    })?;
    Ok(Tally { failed: failed.into_inner(), interrupted: interrupted.into_inner(), total: repositories.len() })
}

/// How following the daemon ended.
pub enum Followed {
    /// Every repository has its outcome.
    Done(Tally),
    /// The daemon stopped holding the state file before it finished: the
    /// caller may take over the repositories left.
    DaemonGone { tally: Tally, left: Vec<String> },
}

/// Follows work handed to the daemon until every repository in `names`
/// has an outcome (`outcome` reads it from a row's progress), printing a
/// line for each as `each_repository` does. `tick` is called about every
/// second with how many are done, for a progress line.
pub fn follow(
    node: &Node,
    holder: &Holder,
    names: &[String],
    outcome: impl Fn(&Progress) -> Option<std::result::Result<String, String>>,
    mut tick: impl FnMut(usize, usize),
) -> Result<Followed> {
    let started = Instant::now();
    let mut left: Vec<String> = names.to_vec();
    let mut tally = Tally { total: names.len(), ..Tally::default() };
    let mut last_tick = Instant::now();
    while !left.is_empty() {
        if node.shutdown.requested() {
            tally.interrupted = left.len();
            eprintln!("georeg: stopped following; {holder} carries on with {} repositories", left.len());
            return Ok(Followed::Done(tally));
        }
        let mut still = Vec::new();
        for name in left {
            match node.queue.progress(&name)?.as_ref().and_then(&outcome) {
                Some(Ok(done)) => {
                    println!("{name}: {done} (by {holder}, {:.1}s after the request)", started.elapsed().as_secs_f64())
                }
                Some(Err(why)) => {
                    tally.failed += 1;
                    println!("{name}: FAILED: {why}");
                }
                None => still.push(name),
            }
        }
        left = still;
        if last_tick.elapsed() >= Duration::from_secs(1) {
            tick(names.len() - left.len(), tally.failed);
            last_tick = Instant::now();
        }
        if !left.is_empty() && crate::store::lock::current_holder(&node.config.state_file).is_none() {
            eprintln!("georeg: {holder} stopped before finishing; this command takes over {} repositories", left.len());
            tally.total -= left.len();
            return Ok(Followed::DaemonGone { tally, left });
        }
        node.shutdown.sleep(POLL);
    }
    tick(names.len(), tally.failed);
    Ok(Followed::Done(tally))
}
