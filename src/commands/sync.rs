//! `georeg sync REPO...`: a full sync of the named repositories now, one
//! result line each; exit 1 if any failed, 130 when interrupted. While
//! `georeg serve` runs, it asks the daemon for the syncs and follows them.

use std::process::ExitCode;
use std::time::Instant;

use super::node::Node;
use super::owner::{each_repository, follow, recover, Followed, Owner, Tally};
use crate::error::{Error, Result};
use crate::registry;
use crate::store::lock::{Lock, Locker};

pub fn run(node: &Node, repositories: &[String]) -> Result<ExitCode> {
    if let Some(bad) = repositories.iter().find(|r| !registry::valid_repository(r)) {
        return Err(Error::Usage(format!("{bad:?} is not a valid repository name")));
    }
    let tally = match Owner::take(node, Locker::Sync)? {
        Owner::Itself(_lock) => sync_here(node, repositories)?,
        Owner::Daemon(holder) => {
            for repo in repositories {
                node.queue.request_priority_sync(repo)?;
            }
            match follow(
                node,
                &holder,
                repositories,
                |p| p.sync_outcome().map(|r| r.map(|report| format!("synced: {report}"))),
                |_, _| {},
            )? {
                Followed::Done(tally) => tally,
                Followed::DaemonGone { mut tally, left } => {
                    let _lock = Lock::acquire(&node.config.state_file, Locker::Sync)?;
                    recover(node)?;
                    let rest = sync_here(node, &left)?;
                    tally.failed += rest.failed;
                    tally.interrupted += rest.interrupted;
                    tally.total += rest.total;
                    tally
                }
            }
        }
    };
    Ok(tally.exit("failed"))
}

/// The syncs, done by this process (it holds the lock).
fn sync_here(node: &Node, repositories: &[String]) -> Result<Tally> {
    let replicator = node.replicator()?;
    each_repository(node, repositories, "sync", |repo| {
        let started = Instant::now();
        let report = replicator.sync(repo)?;
        Ok(Ok(format!("synced in {:.1}s: {report}", started.elapsed().as_secs_f64())))
    })
}
