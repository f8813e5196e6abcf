//! `georeg inventory --output FILE`: on an air-gapped secondary, writes
//! what its registry holds, read through the registry API and signed with
//! the shared key, for `georeg export --inventory` on the other side. It
//! only reads (the registry, and the state file for the last bundle
//! imported), so it runs beside `georeg serve`. Exit 0 when written; 1
//! when the registry could not be read; 130 when interrupted.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use super::node::Node;
use super::owner::INTERRUPTED;
use crate::bundle::inventory::{self, Inventory, Progress, FORMAT};
use crate::bundle::signed;
use crate::error::{Error, Result};
use crate::registry::token::random_hex;

pub fn run(node: &Node, output: &Path) -> Result<ExitCode> {
    let head = Inventory {
        format: FORMAT.into(),
        id: random_hex(16),
        node: node.config.node_name.clone(),
        registry: node.config.registry.url.clone(),
        primary: node.config.replication.primary_api_url.clone(),
        created_at: crate::bundle::now_text(),
        last_bundle: node.reader.read(|s| s.bundle_status())?.0.map(|b| b.id),
        repositories: Vec::new(),
    };
    let progress = Progress::default();
    let line = || {
        format!(
            "inventory: {}/{} repositories read, {} tags",
            progress.done.load(Ordering::Relaxed),
            progress.repositories.load(Ordering::Relaxed),
            progress.tags.load(Ordering::Relaxed)
        )
    };
    let workers = node.config.replication.workers;
    let taken =
        crate::progress::while_running(line, || inventory::take(&node.local, head, workers, &node.shutdown, &progress));
    let inventory = match taken {
        Ok(i) => i,
        Err(Error::Interrupted) => {
            eprintln!("georeg: interrupted: no inventory was written");
            return Ok(ExitCode::from(INTERRUPTED));
        }
        Err(e) => return Err(e),
    };
    let bytes = signed::seal(node.signer()?, &inventory).map_err(|message| Error::Bundle {
        file: output.display().to_string(),
        message,
        refused: false,
    })?;
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, &bytes).map_err(|e| Error::Io { path: partial.clone().into(), source: e })?;
    std::fs::rename(&partial, output).map_err(|e| Error::Io { path: output.to_path_buf(), source: e })?;
    let r = &inventory.repositories;
    println!(
        "inventory {} of {}: {} repositories, {} tags, {} manifests, {} blobs, as {} holds them; written to {} \
         (signed with the shared key)",
        inventory.id,
        inventory.node,
        r.len(),
        r.iter().map(|h| h.tags.len()).sum::<usize>(),
        r.iter().map(|h| h.manifests.len()).sum::<usize>(),
        r.iter().map(|h| h.blobs.len()).sum::<usize>(),
        inventory.registry,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
