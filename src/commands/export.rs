//! `georeg export --output FILE.tar [--inventory FILE] [REPO...]`: writes
//! a transfer bundle for an air-gapped secondary, on a host that reaches
//! the primary registry, with that secondary's configuration. It reads the
//! primary with pull-only tokens, never contacts `registry.url`, and needs
//! no state file. Exit 0 with the bundle complete; 1 when anything failed;
//! 130 when interrupted. An export that did not finish leaves no bundle,
//! but `FILE.partial` and `FILE.resume`: the same command run again goes
//! on from where it stopped (`bundle::resume`), and other arguments start
//! over, saying so.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::owner::INTERRUPTED;
use crate::bundle::export::{Exported, Exporter, Progress};
use crate::bundle::inventory::{self, Inventory};
use crate::bundle::resume::{self, Arguments};
use crate::bundle::same_url;
use crate::bundle::tarfile::partial_path;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry;
use crate::shutdown::Shutdown;

pub fn run(config: &Config, output: &Path, inventory: Option<&Path>, named: &[String]) -> Result<ExitCode> {
    if let Some(bad) = named.iter().find(|r| !registry::valid_repository(r)) {
        return Err(Error::Usage(format!("{bad:?} is not a valid repository name")));
    }
    let primary_url = config.primary_api_url()?;
    let signer = super::node::load_signer(config)?;
    let shutdown = Shutdown::default();
    shutdown.on_signals()?;
    let primary = primary_reader(config, &signer, &shutdown)?;
    let inventory_file = inventory;
    let inventory = inventory.map(|path| load_inventory(path, &signer, primary_url)).transpose()?;
    let selection = config.replication.selection();
    let (repositories, gone) = if named.is_empty() {
        let catalog: Vec<String> = primary.catalog()?.into_iter().filter(|n| selection.includes(n)).collect();
        let gone = match &inventory {
            Some(i) => i
                .repositories
                .iter()
                .map(|h| h.name.clone())
                .filter(|n| selection.includes(n) && !catalog.contains(n))
                .collect(),
            None => Vec::new(),
        };
        (catalog, gone)
    } else {
        (named.to_vec(), Vec::new())
    };
    let arguments = Arguments {
        primary: primary_url.to_string(),
        named: named.to_vec(),
        selection: selection.describe(),
        inventory: match (&inventory, inventory_file) {
            (Some(i), Some(path)) => {
                let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
                Some(format!("{} ({})", i.id, registry::Digest::sha256_of(&bytes)))
            }
            _ => None,
        },
        georeg_version: env!("CARGO_PKG_VERSION").into(),
    };
    let epoch = resume::source_date_epoch()?;
    let (mut start, said) = resume::plan(output, &arguments, &repositories, &gone, epoch);
    if let Some(said) = said {
        eprintln!("{said}");
    }
    let progress = Progress::default();
    let exporter =
        Exporter { primary: &primary, primary_url, signer: &signer, shutdown: &shutdown, progress: &progress };
    let started = Instant::now();
    let partial = partial_path(output);
    let summary = loop {
        let result = crate::progress::while_running(
            || progress_line(&progress, started),
            || exporter.export(output, &start, &repositories, inventory.as_ref(), &gone),
        );
        match result {
            Ok(Exported::Done(summary)) => break summary,
            Ok(Exported::Changed(how)) => {
                eprintln!(
                    "{}: {how}, since the interrupted export began at {}: starting over",
                    partial.display(),
                    start.created_at
                );
                start = start.again(epoch);
            }
            Err(Error::Interrupted) => {
                eprintln!(
                    "georeg: interrupted: no bundle was written; {} keeps what was: run the same command again to go \
                     on from there",
                    partial.display()
                );
                return Ok(ExitCode::from(INTERRUPTED));
            }
            Err(e) => {
                if partial.exists() {
                    eprintln!(
                        "georeg: the export stopped; {} and {} keep what it wrote: once the cause is fixed, run the \
                         same command again to go on from there (or delete them)",
                        partial.display(),
                        resume::journal_path(output).display()
                    );
                }
                return Err(e);
            }
        }
    };
    println!(
        "bundle {}: {} repositories, {} tags{}; {} manifests and {} blobs ({}) carried{}{}",
        summary.id,
        summary.repositories,
        summary.tags,
        match summary.referrers {
            0 => String::new(),
            n => format!(", {}", crate::format::count(n as u64, "referrer", "referrers")),
        },
        summary.manifests,
        summary.blobs,
        human_bytes(summary.blob_bytes),
        match &inventory {
            Some(i) => format!(
                "; incremental to inventory {} of {} ({} blobs left to mount from its other repositories)",
                i.id, i.node, summary.mounts
            ),
            None => "; a full bundle".into(),
        },
        if summary.deleted_tags + summary.gone > 0 {
            format!(
                "; {} and {} to remove",
                crate::format::count(summary.deleted_tags as u64, "tag", "tags"),
                crate::format::count(summary.gone as u64, "repository", "repositories")
            )
        } else {
            String::new()
        }
    );
    println!(
        "wrote {} ({}) in {:.1}s; sha256 {} (in {}.sha256, for sha256sum -c after carrying it)",
        summary.written.path.display(),
        human_bytes(summary.written.bytes),
        started.elapsed().as_secs_f64(),
        summary.written.sha256,
        summary.written.path.display()
    );
    if summary.kept > 0 {
        println!(
            "kept {} that the interrupted export had written; the rest was read from the primary",
            human_bytes(summary.kept)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The primary registry, read with pull-only tokens this node signs, each
/// read bounded and stopped by `shutdown`.
fn primary_reader(
    config: &Config,
    signer: &std::sync::Arc<registry::token::Signer>,
    shutdown: &Shutdown,
) -> Result<registry::Client> {
    let tls = crate::tls::client_config(config.tls.ca_file.as_deref()).map_err(|why| config.bad("tls.ca_file", why))?;
    let stall = std::time::Duration::from_secs(config.replication.stall_seconds);
    let pacer = std::sync::Arc::new(crate::registry::pace::Pacer::new(
        config.replication.max_bytes_per_second,
        config.replication.max_requests_per_second,
    ));
    let Some(primary) =
        super::node::primary_client(config, Some(signer), registry::agent_timing_out(tls, stall), &pacer)
    else {
        return Err(config.bad("replication.primary_api_url", "is not set: export reads the primary registry"));
    };
    Ok(primary.bounded(super::node::read_limits(config), shutdown))
}

/// `georeg export --inventory FILE --dry-run [REPO...]`: what the
/// secondary whose inventory it is lacks, one line per repository, then
/// the totals; writes nothing. Exit 0 when it lacks nothing, 1 when it
/// lacks anything (or a repository could not be read), 130 when
/// interrupted.
pub fn lacks(config: &Config, inventory_file: &Path, named: &[String]) -> Result<ExitCode> {
    if let Some(bad) = named.iter().find(|r| !registry::valid_repository(r)) {
        return Err(Error::Usage(format!("{bad:?} is not a valid repository name")));
    }
    let primary_url = config.primary_api_url()?;
    let signer = super::node::load_signer(config)?;
    let shutdown = Shutdown::default();
    shutdown.on_signals()?;
    let primary = primary_reader(config, &signer, &shutdown)?;
    let inventory = load_inventory(inventory_file, &signer, primary_url)?;
    let index = inventory::Index::new(&inventory);
    let selection = config.replication.selection();
    let repositories: Vec<String> = if named.is_empty() {
        let mut names: std::collections::BTreeSet<String> =
            primary.catalog()?.into_iter().filter(|n| selection.includes(n)).collect();
        names.extend(inventory.repositories.iter().map(|h| h.name.clone()).filter(|n| selection.includes(n)));
        names.into_iter().collect()
    } else {
        named.to_vec()
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = repositories.len();
    let mut found = Vec::new();
    let compared = crate::progress::while_running(
        || format!("export --dry-run: {}/{total} repositories compared", done.load(Ordering::Relaxed)),
        || -> Result<()> {
            for repo in &repositories {
                let lack = crate::bundle::lacks::compare(&primary, &index, repo, &shutdown);
                done.fetch_add(1, Ordering::Relaxed);
                match lack {
                    Ok(l) if l.is_empty() => {}
                    Ok(l) => found.push(Ok(l)),
                    Err(Error::Interrupted) => return Err(Error::Interrupted),
                    Err(e) => found.push(Err(e.in_repository(repo))),
                }
            }
            Ok(())
        },
    );
    if let Err(Error::Interrupted) = compared {
        eprintln!("georeg: interrupted: {} of {total} repositories compared", done.load(Ordering::Relaxed));
        return Ok(ExitCode::from(INTERRUPTED));
    }
    compared?;
    let (mut tags, mut moved, mut removed, mut manifests, mut blobs, mut bytes, mut failed) = (0, 0, 0, 0, 0, 0u64, 0);
    for l in &found {
        match l {
            Ok(l) => {
                println!("{}", crate::bundle::lacks::line(l));
                (tags, moved, removed) = (tags + l.missing.len(), moved + l.moved.len(), removed + l.removed.len());
                (manifests, blobs, bytes) = (manifests + l.manifests, blobs + l.blobs, bytes + l.bytes);
            }
            Err(e) => {
                println!("FAILED: {e}");
                failed += 1;
            }
        }
    }
    let lacking = found.len() - failed;
    println!(
        "{node} lacks something in {lacking} of {total} repositories: {tags} tags missing, {moved} at another \
         digest, {removed} to remove; a bundle would carry {manifests} manifests and {blobs} blobs ({size}){fails}",
        node = inventory.node,
        size = human_bytes(bytes),
        fails = if failed > 0 { format!("; {failed} repositories could not be compared") } else { String::new() }
    );
    Ok(if found.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The inventory, its signature checked, when it is of a secondary of
/// this configuration's primary.
fn load_inventory(path: &Path, signer: &registry::token::Signer, primary_url: &str) -> Result<Inventory> {
    let i = inventory::load(path, signer)?;
    if let Some(theirs) = i.primary.as_deref().filter(|p| !same_url(p, primary_url)) {
        return Err(Error::Bundle {
            file: path.display().to_string(),
            message: format!(
                "is the inventory of a secondary of {theirs}, and this configuration exports from {primary_url} \
                 (replication.primary_api_url)"
            ),
            refused: true,
        });
    }
    eprintln!(
        "inventory {} of {} taken at {}: {} repositories{}",
        i.id,
        i.node,
        i.created_at,
        i.repositories.len(),
        i.last_bundle.as_deref().map(|b| format!(", after bundle {b}")).unwrap_or_default()
    );
    Ok(i)
}

/// `export: 12/30 repositories read` while walking, then
/// `export: 145.2 MB of 2.1 GB of blobs at 48.4 MB/s, ETA 0:40`.
fn progress_line(p: &Progress, started: Instant) -> String {
    let (walked, total) = (p.walked.load(Ordering::Relaxed), p.repositories.load(Ordering::Relaxed));
    let written = human_bytes(p.written.load(Ordering::Relaxed));
    if walked < total {
        return format!("export: {walked}/{total} repositories read, {written} written");
    }
    let (done, all) = (p.blob_bytes_done.load(Ordering::Relaxed), p.blob_bytes.load(Ordering::Relaxed));
    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
    let eta = match (all.saturating_sub(done), rate) {
        (0, _) => "done".to_string(),
        (_, r) if r < 1.0 => "ETA unknown yet".to_string(),
        (left, r) => {
            let secs = (left as f64 / r).ceil().max(1.0) as u64;
            format!("ETA {}:{:02}", secs / 60, secs % 60)
        }
    };
    format!(
        "export: {} of {} of blobs at {}/s, {eta}; {written} written",
        human_bytes(done),
        human_bytes(all),
        human_bytes(rate as u64)
    )
}
