//! The foreground commands: `sync`, `backfill`, `verify` and `token`. Each
//! prints one result line per repository on stdout and returns the exit
//! code: 0 when everything succeeded, 1 when anything failed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::Store;
use crate::token::Scope;
use crate::{backfill, registry, status, verify};

fn reason(e: &Error) -> String {
    match e {
        Error::Sync { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Runs `each` over `items` on up to `workers` named threads.
fn parallel<T: Sync>(items: &[T], workers: usize, prefix: &str, each: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..workers.min(items.len()).max(1) {
            let (next, each) = (&next, &each);
            let spawned = std::thread::Builder::new().name(format!("{prefix}-{i}")).spawn_scoped(s, move || {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) {
                    each(item);
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot start a thread: {e}");
            }
        }
    });
}

/// `georeg sync REPO...`
pub fn sync(node: &Node, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let failed = AtomicUsize::new(0);
    parallel(repositories, node.config.replication.workers, "sync", |repo| {
        let started = Instant::now();
        match replicator.sync(repo) {
            Ok(report) => println!("{repo}: synced in {:.1}s: {report}", started.elapsed().as_secs_f64()),
            Err(e) => {
                failed.fetch_add(1, Ordering::SeqCst);
                println!("{repo}: FAILED: {}", reason(&e));
            }
        }
    });
    let failed = failed.into_inner();
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed; see the lines above", repositories.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `georeg backfill`
pub fn backfill(node: &Node) -> Result<ExitCode> {
    let failures = backfill::pass(node)?;
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

/// `georeg verify [--blobs] [REPO...]`
pub fn verify(node: &Node, blobs: bool, repositories: &[String]) -> Result<ExitCode> {
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
    let failed = Mutex::new(0usize);
    parallel(&names, node.config.replication.workers, "verify", |repo| {
        let outcome = node
            .store
            .claim_verification(repo)
            .and_then(|v| verify::run(&node.store, replicator.primary, replicator.secondary, &v, blobs, &node.quit));
        match outcome {
            Ok(o @ verify::Outcome::Match { .. }) => println!("{repo}: {}", o.describe()),
            Ok(o) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                println!("{repo}: FAILED: {}; resync queued", o.describe());
            }
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                println!("{repo}: FAILED: {}", reason(&e));
            }
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed verification", names.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `georeg status [--json]`: straight from the state file, so it works
/// while the daemon is stopped (and without reading the key).
pub fn status(config: &Config, json: bool) -> Result<ExitCode> {
    let store = Store::open(&config.state_file)?;
    let status = status::collect(config, &store, None, None)?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| Error::Store { message: e.to_string() })?;
        println!("{text}");
    } else {
        print!("{}", status::text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// `georeg token --scope SCOPE...`
pub fn token(node: &Node, scopes: &[Scope]) -> Result<ExitCode> {
    let ttl = Duration::from_secs(node.config.registry.token_ttl_seconds);
    println!("{}", node.signer.sign(&node.config.registry.service, "georeg", ttl, scopes).text);
    Ok(ExitCode::SUCCESS)
}
