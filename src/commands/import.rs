//! `georeg import FILE.tar [--force-primary] [--force-older]`: applies a
//! transfer bundle to this node's registry, one repository after another
//! (so that a blob several repositories share is copied once and mounted
//! for the others), each as a full sync reading from the bundle, with a
//! progress line. It takes the state file's lock: an import writes to the
//! registry and the state file as syncs do, so it refuses to run beside
//! `georeg serve`. Run again after a crash or Ctrl-C, it goes on with the
//! repositories left, and what is already there is not copied again.
//! Exit 0 when every repository was imported; 1 when any failed; 2 when
//! the bundle is refused; 130 when interrupted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::node::Node;
use super::owner::{recover, Tally};
use crate::bundle::reader::Bundle;
use crate::bundle::{refusal, Contents};
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry::Digest;
use crate::replication::import::Mountable;
use crate::store::lock::{Lock, Locker};
use crate::store::NewBundle;

/// One repository to import: its tags, and blobs to mount.
struct Work {
    name: String,
    tags: BTreeMap<String, Digest>,
    mounts: Vec<Mountable>,
    /// Gone from the primary: its tags are removed.
    gone: bool,
}

pub fn run(node: &Node, file: &Path, force_primary: bool, force_older: bool) -> Result<ExitCode> {
    let _lock = match Lock::try_acquire(&node.config.state_file, Locker::Import)? {
        Ok(lock) => lock,
        Err(holder) => {
            return Err(Error::InUse {
                state_file: node.config.state_file.clone(),
                holder: holder.to_string(),
                hint: "an import writes to the registry and the state file as syncs do: stop it for the import \
                       (systemctl stop georeg), and start it again afterwards"
                    .into(),
            })
        }
    };
    recover(node)?;
    let primary_url = node.config.primary_api_url()?;
    let bundle = Bundle::open(file, &node.signer)?.reading_missing_from(&node.local);
    let c = &bundle.contents;
    let newest = node.queue.newest_bundle(&c.id)?;
    let newest_key = newest.as_ref().map(|b| (b.id.as_str(), b.created_at.as_str(), b.imported_at.is_some()));
    if let Some(why) = refusal(c, primary_url, newest_key, force_primary, force_older) {
        return Err(Error::Bundle {
            file: file.display().to_string(),
            message: format!("refused: {why}"),
            refused: true,
        });
    }
    let forced = [(force_primary, "--force-primary"), (force_older, "--force-older")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| *flag)
        .collect::<Vec<_>>()
        .join(" ");
    let (work, excluded) = plan(node, c);
    let done = node.queue.begin_bundle(&NewBundle {
        id: &c.id,
        primary_url: &c.primary,
        created_at: &c.created_at,
        inventory_id: c.inventory.as_ref().map(|i| i.id.as_str()),
        file: &file.display().to_string(),
        repositories: work.len(),
        forced: (!forced.is_empty()).then_some(forced.as_str()),
    })?;
    eprintln!(
        "bundle {} exported from {} at {}: {} repositories, {} of blobs ({}){}{}",
        c.id,
        c.primary,
        c.created_at,
        work.len(),
        human_bytes(c.blob_bytes()),
        match &c.inventory {
            Some(i) => format!("incremental to inventory {} taken at {}", i.id, i.created_at),
            None => "a full bundle".into(),
        },
        if excluded > 0 { format!("; {excluded} left out by selective sync") } else { String::new() },
        if done.is_empty() { String::new() } else { format!("; resuming: {} imported by an earlier run", done.len()) }
    );
    let importer = node.importer(&bundle);
    let (imported, failed, interrupted) = (AtomicUsize::new(done.len()), AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    let copied_before = node.stats.bytes_copied.load(Ordering::Relaxed);
    let line = || {
        format!(
            "import: {}/{} repositories{}, {} of {} copied at {}/s",
            imported.load(Ordering::Relaxed),
            work.len(),
            match failed.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!(" ({n} failed)"),
            },
            human_bytes(node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before),
            human_bytes(c.blob_bytes()),
            human_bytes(
                ((node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before) as f64
                    / started.elapsed().as_secs_f64().max(0.001)) as u64
            )
        )
    };
    let (mut copied, mut mounted, mut present) = (0, 0, 0);
    crate::progress::while_running(line, || -> Result<()> {
        for w in work.iter().filter(|w| !done.contains(&w.name)) {
            if node.shutdown.requested() {
                interrupted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if w.gone && node.local.tags(&w.name)?.unwrap_or_default().is_empty() {
                println!("{}: gone from the primary, and the secondary holds none of its tags", w.name);
                node.queue.bundle_repository_imported(&c.id, &w.name)?;
                imported.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match importer.import(&w.name, &w.tags, &w.mounts) {
                Ok(report) => {
                    node.queue.bundle_repository_imported(&c.id, &w.name)?;
                    imported.fetch_add(1, Ordering::Relaxed);
                    (copied, mounted, present) =
                        (copied + report.blobs_copied, mounted + report.blobs_mounted, present + report.blobs_present);
                    println!("{}: {}: {report}", w.name, if w.gone { "gone from the primary" } else { "imported" });
                }
                Err(Error::Interrupted) => {
                    interrupted.fetch_add(1, Ordering::Relaxed);
                    println!("{}: interrupted; run the same import again to finish", w.name);
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    println!("{}: FAILED: {}", w.name, e.reason());
                }
            }
        }
        Ok(())
    })?;
    let tally = Tally { failed: failed.into_inner(), interrupted: interrupted.into_inner(), total: work.len() };
    let bytes = node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before;
    let report = format!(
        "{} repositories; this run copied {copied} blobs ({}), mounted {mounted}, found {present} present, in {:.1}s",
        work.len(),
        human_bytes(bytes),
        started.elapsed().as_secs_f64()
    );
    if tally.failed == 0 && tally.interrupted == 0 {
        node.queue.finish_bundle(&c.id, &report)?;
        println!("bundle {} imported: {report}", c.id);
    } else {
        println!("bundle {} not imported completely: {report}; run the same import again to finish", c.id);
    }
    Ok(tally.exit("failed"))
}

/// What the bundle asks of this node: its repositories (selective sync
/// applied), then those gone from the primary; and how many were left out.
fn plan(node: &Node, c: &Contents) -> (Vec<Work>, usize) {
    let selection = node.config.replication.selection();
    let mut work = Vec::new();
    let mut excluded = 0;
    for r in &c.repositories {
        if !selection.includes(&r.name) {
            excluded += 1;
            continue;
        }
        let mounts = r
            .mounts
            .iter()
            .filter_map(|m| {
                let digest = Digest::parse(&m.digest).ok()?;
                Some(Mountable { digest, size: m.size, from: m.from.clone() })
            })
            .collect();
        work.push(Work { name: r.name.clone(), tags: Contents::tags(r), mounts, gone: false });
    }
    let named: Vec<&str> = c.repositories.iter().map(|r| r.name.as_str()).collect();
    for d in c.gone().filter(|d| !named.contains(&d.repository.as_str())) {
        if selection.includes(&d.repository) {
            work.push(Work { name: d.repository.clone(), tags: BTreeMap::new(), mounts: Vec::new(), gone: true });
        } else {
            excluded += 1;
        }
    }
    (work, excluded)
}
