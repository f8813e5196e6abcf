//! `georeg serve`: the HTTP server pool, the report thread, event pruning
//! and, on a secondary, the replication workers, the backfill scanner, the
//! drills, the prefetcher (blobs landed ahead of their manifest) and the
//! cursor over the primary georeg's log; all stopped cleanly
//! by SIGTERM or SIGINT.
//!
//! Shutdown: the signal sets the stop request; HTTP threads finish the
//! request in hand; a worker copying a blob stops reading it, cancels the
//! upload and hands its repository back as `pending`; so a restart resumes,
//! and nothing is left `started` (startup puts back anything a crash left
//! so).

use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

use super::node::Node;
use crate::config::Role;
use crate::error::{Error, Result};
use crate::replication::{backfill, cursor, pool, prefetcher, worker};
use crate::store::lock::Lock;
use crate::web::{front, server};

/// How long shutdown waits for threads before exiting anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(9);
/// How often `serve` checks that its state file is still there.
const STATE_FILE_CHECK: Duration = Duration::from_secs(2);
/// How often old events are pruned from the state file.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Drills kept in the state file (with any failure not yet repaired).
const DRILLS_KEPT: usize = 1000;

pub fn run(node: Node, _lock: Lock) -> Result<()> {
    node.shutdown.on_signals()?;
    super::owner::recover(&node)?;
    // Selective sync may have changed since the last start: rows already
    // known follow the configuration in force now.
    let selection = node.config.replication.selection();
    let excluded = node.queue.apply_selection(|name| selection.includes(name))?;
    if excluded > 0 {
        log::info!("{excluded} known repositories are left out by selective sync (replication.include/exclude)");
    }
    let listen = &node.config.listen;
    let listener = front::bind(&node.config)?;
    let scheme = listener.scheme();
    let front::Listener { server, front } = listener;
    let secondary = node.config.role == Role::Secondary;
    let replicating = secondary && node.config.replication.enabled;
    let replicator = if replicating { Some(node.replicator()?) } else { None };
    if let (Some(_), Some(upstream)) = (&replicator, &node.primary_node) {
        cursor::refuse_loop(upstream).map_err(|message| Error::Config {
            file: node.config.path.clone(),
            key: "replication.primary_node_url".into(),
            message,
        })?;
    }
    log::info!(
        "georeg {} serving on {scheme}://{listen} as {} node {:?}{}",
        env!("CARGO_PKG_VERSION"),
        if secondary { "secondary" } else { "primary" },
        node.config.node_name,
        match (&replicator, &node.config.replication.primary_node_url) {
            (None, _) if secondary => ", replication paused (replication.enabled = false)".to_string(),
            (None, _) => String::new(),
            (Some(_), Some(url)) => format!(", following the georeg at {url} (the primary, or a relay)"),
            (Some(_), None) if node.config.notifications.secret.is_some() => {
                ", receiving the primary registry's notifications directly".to_string()
            }
            (Some(_), None) => format!(
                ", without notifications (no notifications.secret_file, no replication.primary_node_url): \
                 changes on the primary reach this node by reconciliation alone, within \
                 replication.reconcile_interval_seconds ({} s)",
                node.config.replication.reconcile_interval_seconds
            ),
        }
    );

    let app = node.app();
    let reporter = node.reporter();
    let replication = &node.config.replication;
    let http = |_| server::serve_thread(&app, &server);
    let report = |_| reporter.run();
    let prune = |_| loop {
        prune_events(&node);
        if !node.shutdown.sleep(PRUNE_EVERY) {
            return;
        }
    };
    let run_front = |_| front.run(&node.shutdown);
    let sync = |_| {
        if let Some(r) = &replicator {
            worker::run(r, Duration::from_secs(replication.reverification_interval_seconds))
        }
    };
    let scan = |_| {
        if let Some(r) = &replicator {
            backfill::run(r, &replication.selection(), Duration::from_secs(replication.backfill_interval_seconds))
        }
    };
    let drill = node.drill();
    let drills = |_| {
        crate::replication::drill::run(
            &drill,
            Duration::from_secs(replication.drill_interval_seconds),
            replication.drill_sample,
        )
    };
    // Every node keeps its own registry's fingerprints (a primary serves
    // them to its followers); a replicating secondary reconciles.
    let keeper = node.keeper();
    let keep = |_| keeper.run();
    let reconciler = replicator.as_ref().map(|_| node.reconciler());
    let reconcile = |_| {
        if let Some(r) = &reconciler {
            r.run()
        }
    };
    let prefetching = replicator.is_some() && node.prefetching();
    let land_ahead = |_| {
        if let Some(r) = &replicator {
            // Landed here, so this node's own followers may land it too.
            let pass_on = |hint: &crate::replication::prefetch::Hint| {
                node.pushed.add(std::slice::from_ref(hint));
                node.log.appended.ring();
            };
            let selection = replication.selection();
            prefetcher::run(&node.prefetch, &r.engine, &selection, replication.sync_budget_seconds, &pass_on)
        }
    };
    let follow = |_| {
        if let (Some(_), Some(primary)) = (&replicator, &node.primary_node) {
            cursor::run(primary, &node.log, &node.stats, &node.shutdown, &node.prefetch)
        }
    };
    thread::scope(|s| -> Result<()> {
        let mut handles = pool::spawn(s, server::THREADS, "http", &http)?;
        handles.extend(pool::spawn(s, 1, "report", &report)?);
        handles.extend(pool::spawn(s, 1, "prune", &prune)?);
        handles.extend(pool::spawn(s, 1, "front", &run_front)?);
        if !secondary || replicating {
            handles.extend(pool::spawn(s, 1, "fingerprints", &keep)?);
        }
        if replicator.is_some() {
            handles.extend(pool::spawn(s, 1, "reconcile", &reconcile)?);
            handles.extend(pool::spawn(s, replication.workers, "sync", &sync)?);
            handles.extend(pool::spawn(s, 1, "backfill", &scan)?);
            if replication.drill_interval_seconds > 0 {
                handles.extend(pool::spawn(s, 1, "drill", &drills)?);
            }
            if node.primary_node.is_some() {
                handles.extend(pool::spawn(s, 1, "follow", &follow)?);
            }
            if prefetching {
                handles.extend(pool::spawn(s, 1, "prefetch", &land_ahead)?);
            }
        }
        let replaced = watch_state_file(&node);
        log::info!("shutting down");
        node.store.ring_all();
        front.wake();
        wait_or_exit(&handles);
        match replaced {
            Some(why) => Err(Error::StateFile { path: node.config.state_file.clone(), message: why }),
            None => Ok(()),
        }
    })?;
    log::info!("stopped");
    Ok(())
}

/// Until a stop request, checks every few seconds that the state file is
/// still the one this process opened (same device and inode). Deleted or
/// replaced under it, notifications would be acknowledged into a file
/// nobody will read: the daemon stops, and says why (exit 2).
fn watch_state_file(node: &Node) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let path = &node.config.state_file;
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
    let opened = std::fs::metadata(path).map(identity).ok();
    while node.shutdown.sleep(STATE_FILE_CHECK) {
        let now = std::fs::metadata(path).map(identity);
        let why = match now {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted while georeg serve ran",
            Ok(now) if Some(now) != opened => "was replaced by another file while georeg serve ran",
            _ => continue,
        };
        let why = format!(
            "{why}: georeg stops rather than acknowledge notifications into a file nobody will read; put the \
             right file back (or restore it from a backup) and start georeg again"
        );
        log::error!("state file {}: {why}", path.display());
        node.shutdown.request();
        return Some(why);
    }
    None
}

/// Waits for the threads to finish, up to the stop deadline; past it,
/// exits the process, naming the threads still busy (their work is in the
/// state file and resumes at the next start).
fn wait_or_exit(handles: &[ScopedJoinHandle<'_, ()>]) {
    let deadline = Instant::now() + STOP_DEADLINE;
    while handles.iter().any(|h| !h.is_finished()) {
        if Instant::now() > deadline {
            let busy: Vec<String> = handles
                .iter()
                .filter(|h| !h.is_finished())
                .filter_map(|h| h.thread().name().map(String::from))
                .collect();
            log::warn!("exiting with threads still busy: {}; their work resumes at next start", busy.join(", "));
            std::process::exit(0);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Keeps the event log from growing forever: events older than
/// `event_retention_days` go, on a secondary once applied, on a primary
/// once every secondary reporting in has read them (and past
/// `event_retention_max_days` regardless).
fn prune_events(node: &Node) {
    let days = node.config.event_retention_days;
    let max_days = node.config.event_retention_max_days;
    match node.store.prune_events(days, max_days, node.config.role == Role::Secondary) {
        Ok(0) => {}
        Ok(n) => log::info!("pruned {n} events older than {days} days from the state file"),
        Err(e) => log::warn!("cannot prune old events: {e}"),
    }
    // What this node applied, once its followers have read it.
    match node.store.prune_applied(days, max_days) {
        Ok(0) => {}
        Ok(n) => log::info!("pruned {n} applied changes older than {days} days from the log followers read"),
        Err(e) => log::warn!("cannot prune the log of applied changes: {e}"),
    }
    // Deletions done with, kept as long as events are; the last drills.
    if let Err(e) = node.store.prune_deletions(days).and_then(|_| node.store.prune_drills(DRILLS_KEPT)) {
        log::warn!("cannot prune old deletions and drills: {e}");
    }
}
