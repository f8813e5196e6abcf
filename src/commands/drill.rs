//! `georeg drill [--sample N]`: pulls a random sample of tags from the
//! secondary registry now, as a client would (manifest by tag, every child
//! and blob read in full and hashed, referrers included); one line per
//! tag, recorded in the state file like the daemon's drills. A failing
//! tag queues a full sync of its repository, which copies what failed
//! again. Only reads the secondary, so it runs beside `georeg serve`.

use std::process::ExitCode;

use super::node::Node;
use super::owner::INTERRUPTED;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::store::lock::current_holder;

pub fn run(node: &Node, sample: Option<usize>) -> Result<ExitCode> {
    node.config.primary_api_url()?;
    let sample = sample.unwrap_or(node.config.replication.drill_sample);
    let drill = node.drill();
    let started = std::time::Instant::now();
    let record = match drill.run(sample, "command", |p| match &p.failure {
        None => println!(
            "{}:{}: {} manifests, {} blobs ({}) pulled and hashed: whole",
            p.repository,
            p.tag,
            p.manifests,
            p.blobs,
            human_bytes(p.bytes)
        ),
        Some(f) => println!("{}:{}: FAILED: {}", p.repository, p.tag, f.message),
    }) {
        Ok(record) => record,
        Err(Error::Interrupted) => {
            eprintln!("georeg: drill interrupted; nothing recorded");
            return Ok(ExitCode::from(INTERRUPTED));
        }
        Err(e) => return Err(e),
    };
    if record.tags == 0 {
        println!("nothing to drill: no tag of a synced repository in the state file yet (run georeg backfill)");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "drill: {} tags, {} manifests, {} blobs ({}) pulled from the secondary {} in {:.1}s; {} failed",
        record.tags,
        record.manifests,
        record.blobs,
        human_bytes(record.bytes),
        node.local_reader.url(),
        started.elapsed().as_secs_f64(),
        record.failures.len()
    );
    if record.failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let repositories: std::collections::BTreeSet<&str> = record
        .failures
        .iter()
        .filter(|f| f.kind != crate::store::Damage::Unreachable)
        .map(|f| f.repository.as_str())
        .collect();
    if !repositories.is_empty() {
        let names: Vec<&str> = repositories.into_iter().collect();
        eprintln!(
            "georeg: full sync queued for {}: {}",
            names.join(", "),
            if current_holder(&node.config.state_file).is_some() {
                "the georeg process that owns the state file does it".to_string()
            } else {
                format!("georeg serve does it, or run `georeg sync {}` now", names.join(" "))
            }
        );
    }
    Ok(ExitCode::from(1))
}
