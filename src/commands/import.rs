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
use crate::bundle::contents::RepositoryEntry;
use crate::bundle::reader::Bundle;
use crate::bundle::{refusal, Contents, Item};
use crate::error::{Error, Result};
use crate::format::{human_bytes, printable};
use crate::registry::Digest;
use crate::replication::import::Mountable;
use crate::store::lock::{Lock, Locker};
use crate::store::NewBundle;

/// One repository to import: its tags, and blobs to mount.
struct Work {
    name: String,
    tags: BTreeMap<String, Digest>,
    mounts: Vec<Mountable>,
    /// (subject, referrer), in the order they are put.
    referrers: Vec<(Digest, Digest)>,
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
    let selection = node.config.replication.selection();
    let bundle = Bundle::open(file, node.signer()?, &selection)?.reading_missing_from(&node.local);
    let h = &bundle.header;
    let newest = node.queue.newest_bundle(&h.id)?;
    let newest_key = newest.as_ref().map(|b| (b.id.as_str(), b.created_at.as_str(), b.imported_at.is_some()));
    if let Some(why) = refusal(h, primary_url, newest_key, force_primary, force_older) {
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
    let (total, excluded) = (bundle.selected, bundle.excluded);
    let done = node.queue.begin_bundle(&NewBundle {
        id: &h.id,
        primary_url: &h.primary,
        created_at: &h.created_at,
        inventory_id: h.inventory.as_ref().map(|i| i.id.as_str()),
        file: &file.display().to_string(),
        repositories: total,
        forced: (!forced.is_empty()).then_some(forced.as_str()),
    })?;
    eprintln!(
        "bundle {} exported from {} at {}: {total} repositories, {} of blobs ({}){}{}",
        h.id,
        printable(&h.primary),
        h.created_at,
        human_bytes(bundle.blob_bytes),
        match &h.inventory {
            Some(i) => format!("incremental to inventory {} taken at {}", printable(&i.id), printable(&i.created_at)),
            None => "a full bundle".into(),
        },
        if excluded > 0 { format!("; {excluded} left out by selective sync") } else { String::new() },
        if done.is_empty() { String::new() } else { format!("; resuming: {} imported by an earlier run", done.len()) }
    );
    let importer = node.importer(&bundle, &h.id);
    let (imported, failed, interrupted) = (AtomicUsize::new(done.len()), AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    let copied_before = node.stats.bytes_copied.load(Ordering::Relaxed);
    let line = || {
        format!(
            "import: {}/{total} repositories{}, {} of {} copied at {}/s",
            imported.load(Ordering::Relaxed),
            match failed.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!(" ({n} failed)"),
            },
            human_bytes(node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before),
            human_bytes(bundle.blob_bytes),
            human_bytes(
                ((node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before) as f64
                    / started.elapsed().as_secs_f64().max(0.001)) as u64
            )
        )
    };
    let (mut copied, mut mounted, mut present) = (0, 0, 0);
    let mut one = |w: Work| -> Result<()> {
        if node.shutdown.requested() {
            interrupted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if w.gone && node.local.tags(&w.name)?.unwrap_or_default().is_empty() {
            println!("{}: gone from the primary, and the secondary holds none of its tags", w.name);
            node.queue.bundle_repository_imported(&h.id, &w.name)?;
            imported.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match importer.import(&w.name, &w.tags, &w.mounts, &w.referrers) {
            Ok(report) => {
                node.queue.bundle_repository_imported(&h.id, &w.name)?;
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
        Ok(())
    };
    // The description is read again, one repository at a time: only the
    // one being imported is held.
    crate::progress::while_running(line, || -> Result<()> {
        bundle.each(|item| match item {
            Item::Repository(r) if selection.includes(&r.name) && !done.contains(&r.name) => one(Work::of(r)),
            _ => Ok(()),
        })?;
        for name in bundle.gone.iter().filter(|n| selection.includes(n) && !done.contains(*n)) {
            let (tags, mounts, referrers) = (BTreeMap::new(), Vec::new(), Vec::new());
            one(Work { name: name.clone(), tags, mounts, referrers, gone: true })?;
        }
        Ok(())
    })?;
    let tally = Tally { failed: failed.into_inner(), interrupted: interrupted.into_inner(), total };
    let bytes = node.stats.bytes_copied.load(Ordering::Relaxed) - copied_before;
    let report = format!(
        "{total} repositories; this run copied {copied} blobs ({}), mounted {mounted}, found {present} present, in \
         {:.1}s",
        human_bytes(bytes),
        started.elapsed().as_secs_f64()
    );
    if tally.failed == 0 && tally.interrupted == 0 {
        node.queue.finish_bundle(&h.id, &report)?;
        println!("bundle {} imported: {report}", h.id);
    } else {
        println!("bundle {} not imported completely: {report}; run the same import again to finish", h.id);
    }
    Ok(tally.exit("failed"))
}

impl Work {
    /// One repository of the description, to import.
    fn of(r: RepositoryEntry) -> Work {
        let mounts = r
            .mounts
            .iter()
            .filter_map(|m| {
                let digest = Digest::parse(&m.digest).ok()?;
                Some(Mountable { digest, size: m.size, from: m.from.clone() })
            })
            .collect();
        Work { tags: Contents::tags(&r), referrers: Contents::referrers(&r), name: r.name, mounts, gone: false }
    }
}
