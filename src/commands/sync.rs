//! `georeg sync REPO...`: a full sync of the named repositories now, in the
//! foreground, one result line each; exit 1 if any failed.

use std::process::ExitCode;
use std::time::Instant;

use super::{each_repository, Node};
use crate::error::Result;

pub fn run(node: &Node, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let failed = each_repository(node, repositories, "sync", |repo| {
        let started = Instant::now();
        match replicator.sync(repo) {
            Ok(report) => Ok(format!("synced in {:.1}s: {report}", started.elapsed().as_secs_f64())),
            Err(e) => Err(e.reason()),
        }
    })?;
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed; see the lines above", repositories.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
