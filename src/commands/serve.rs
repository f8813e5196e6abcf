//! `georeg serve`: the HTTP server pool, the replication workers and, on a
//! secondary following a primary georeg, the cursor thread; all stopped
//! cleanly by SIGTERM or SIGINT.
//!
//! Shutdown: the signal sets the quit flag; HTTP threads finish the request
//! in hand; a worker copying a blob stops reading it, cancels the upload
//! and hands its repository back as `pending`; so a restart resumes, and
//! nothing is left `started` (startup puts back anything a crash left so).

use std::thread;
use std::time::{Duration, Instant};

use crate::config::Role;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::{backfill, follow, https, report, server, worker};

/// Fixed pool of HTTP threads. Each secondary's long poll holds one on a
/// primary for up to a few seconds; notifications take milliseconds.
pub const HTTP_THREADS: usize = 16;
/// How long shutdown waits for threads before exiting anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(9);

pub fn serve(node: Node) -> Result<()> {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, node.quit.clone())
            .map_err(|e| Error::Io { path: "signal handler".into(), source: e })?;
    }
    node.config.check_admin_exposure()?;
    let recovered = node.store.recover_started()?;
    if recovered > 0 {
        log::info!("{recovered} repositories were mid-sync when georeg last stopped; queued again");
    }
    let listen = &node.config.listen;
    let listener = https::bind(&node.config)?;
    let scheme = listener.scheme();
    let https::Listener { server, front } = listener;
    let secondary = node.config.role == Role::Secondary;
    let replicating = secondary && node.config.replication.enabled;
    let replicator = if replicating { Some(node.replicator()?) } else { None };
    log::info!(
        "georeg {} serving on {scheme}://{listen} as {} node {:?}{}",
        env!("CARGO_PKG_VERSION"),
        if secondary { "secondary" } else { "primary" },
        node.config.node_name,
        match (&replicator, &node.config.replication.primary_node_url) {
            (None, _) if secondary => ", replication paused (replication.enabled = false)".to_string(),
            (None, _) => String::new(),
            (Some(_), Some(url)) => format!(", following the primary georeg at {url}"),
            (Some(_), None) => ", receiving the primary registry's notifications directly".to_string(),
        }
    );

    thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        let spawn_err = |e: std::io::Error| Error::Io { path: "thread".into(), source: e };
        for i in 0..HTTP_THREADS {
            let (node, server) = (&node, &server);
            handles.push(
                thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn_scoped(s, move || server::serve_thread(node, server))
                    .map_err(spawn_err)?,
            );
        }
        {
            let node = &node;
            handles.push(
                thread::Builder::new()
                    .name("report".into())
                    .spawn_scoped(s, move || report::run(node))
                    .map_err(spawn_err)?,
            );
        }
        if let Some(front) = front {
            let quit = &node.quit;
            handles.push(
                thread::Builder::new()
                    .name("https".into())
                    .spawn_scoped(s, move || front.run(quit))
                    .map_err(spawn_err)?,
            );
        }
        if let Some(replicator) = &replicator {
            for i in 0..node.config.replication.workers {
                let node = &node;
                handles.push(
                    thread::Builder::new()
                        .name(format!("sync-{i}"))
                        .spawn_scoped(s, move || worker::run(node, replicator))
                        .map_err(spawn_err)?,
                );
            }
            let node_ref = &node;
            handles.push(
                thread::Builder::new()
                    .name("backfill".into())
                    .spawn_scoped(s, move || backfill::run(node_ref))
                    .map_err(spawn_err)?,
            );
            if let Some(url) = &node.config.replication.primary_node_url {
                let node = &node;
                handles.push(
                    thread::Builder::new()
                        .name("follow".into())
                        .spawn_scoped(s, move || follow::run(node, url))
                        .map_err(spawn_err)?,
                );
            }
        }
        while !node.quitting() {
            thread::sleep(Duration::from_millis(100));
        }
        log::info!("shutting down");
        node.store.work.ring();
        node.store.log.ring();
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
        Ok(())
    })?;
    log::info!("stopped");
    Ok(())
}
