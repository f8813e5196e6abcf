//! `georeg verify [--blobs] [REPO...]`: verifies the repositories (default:
//! every one the primary's catalog or the state file knows, selective sync
//! applied) now, one result line each; exit 1 if any failed, 130 when
//! interrupted. While `georeg serve` runs, it asks the daemon for the
//! verifications and follows them.

use std::process::ExitCode;

use super::owner::{each_repository, follow, recover, Followed, Owner, Tally};
use super::Node;
use crate::error::{Error, Result};
use crate::registry;
use crate::replication::verify::Outcome;
use crate::store::lock::Lock;

pub fn run(node: &Node, blobs: bool, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let names = if repositories.is_empty() {
        let selection = node.config.replication.selection();
        let mut names: Vec<String> =
            replicator.primary.catalog()?.into_iter().filter(|n| selection.includes(n)).collect();
        names.extend(node.store.repository_names()?.into_iter().filter(|n| selection.includes(n)));
        names.sort();
        names.dedup();
        names
    } else {
        repositories.to_vec()
    };
    if let Some(bad) = names.iter().find(|n| !registry::valid_repository(n)) {
        return Err(Error::Usage(format!("{bad:?} is not a valid repository name")));
    }
    let tally = match Owner::take(node, "verify")? {
        Owner::Itself(_lock) => verify_here(node, &names, blobs)?,
        Owner::Daemon(holder) => {
            for name in &names {
                node.store.request_verification(name, blobs)?;
            }
            let outcome = |p: &crate::store::Progress| {
                p.verification_outcome().map(|r| {
                    r.map(|checksum| format!("verified, checksum {checksum}"))
                        .map_err(|why| format!("{why}; resync queued"))
                })
            };
            match follow(node, &holder, &names, outcome, |_, _| {})? {
                Followed::Done(tally) => tally,
                Followed::DaemonGone { mut tally, left } => {
                    let _lock = Lock::acquire(&node.config.state_file, "verify")?;
                    recover(node)?;
                    let rest = verify_here(node, &left, blobs)?;
                    tally.failed += rest.failed;
                    tally.interrupted += rest.interrupted;
                    tally.total += rest.total;
                    tally
                }
            }
        }
    };
    Ok(tally.exit("failed verification"))
}

/// The verifications, done by this process (it holds the lock).
fn verify_here(node: &Node, names: &[String], blobs: bool) -> Result<Tally> {
    let replicator = node.replicator()?;
    each_repository(node, names, "verify", |repo| {
        let v = node.store.claim_verification(repo, blobs)?;
        Ok(match replicator.verify(&v)? {
            o @ Outcome::Match { .. } => Ok(o.describe()),
            o => Err(format!("{}; resync queued", o.describe())),
        })
    })
}
