//! `georeg sync REPO...`: a full sync of the named repositories now, in the
//! foreground, one result line each; exit 1 if any failed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::Node;
use crate::error::Result;
use crate::replication::pool;

pub fn run(node: &Node, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let failed = AtomicUsize::new(0);
    pool::each(repositories, node.config.replication.workers, "sync", |repo| {
        let started = Instant::now();
        match replicator.sync(repo) {
            Ok(report) => println!("{repo}: synced in {:.1}s: {report}", started.elapsed().as_secs_f64()),
            Err(e) => {
                failed.fetch_add(1, Ordering::SeqCst);
                println!("{repo}: FAILED: {}", e.reason());
            }
        }
    })?;
    let failed = failed.into_inner();
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed; see the lines above", repositories.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
