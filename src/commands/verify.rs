//! `georeg verify [--blobs] [REPO...]`: verifies the repositories (default:
//! every one the primary's catalog or the state file knows, selective sync
//! applied) now, one result line each; exit 1 if any failed.

use std::process::ExitCode;

use super::{each_repository, Node};
use crate::error::{Error, Result};
use crate::registry;
use crate::replication::verify::Outcome;

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
    let failed = each_repository(node, &names, "verify", |repo| {
        match node.store.claim_verification(repo).and_then(|v| replicator.verify(&v, blobs)) {
            Ok(o @ Outcome::Match { .. }) => Ok(o.describe()),
            Ok(o) => Err(format!("{}; resync queued", o.describe())),
            Err(e) => Err(e.reason()),
        }
    })?;
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed verification", names.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
