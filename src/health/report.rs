//! Health checks and node reports. Every `replication.report_interval_seconds`
//! (60 s by default) a node checks that its registries answer; a secondary
//! following a primary georeg then POSTs its status there
//! (`/api/v1/nodes/status`, JWT-authenticated like the event log), so the
//! primary's dashboard shows every secondary. Once an hour it also prunes
//! events older than `event_retention_days` from the state file.

use std::time::{Duration, Instant};

use crate::config::Role;
use crate::node::Node;
use crate::server::NODE_STATUS_PATH;
use crate::status;

pub fn run(node: &Node) {
    let interval = Duration::from_secs(node.config.replication.report_interval_seconds);
    let mut last_error = String::new();
    let mut next_prune = Instant::now();
    while !node.quitting() {
        if Instant::now() >= next_prune {
            prune(node);
            next_prune = Instant::now() + Duration::from_secs(3600);
        }
        let problem = check(node);
        *node.health_problem.lock().unwrap_or_else(|p| p.into_inner()) = problem.clone();
        if let Some(url) =
            node.config.replication.primary_node_url.as_deref().filter(|_| node.config.role == Role::Secondary)
        {
            match send(node, url, problem) {
                Ok(()) if !last_error.is_empty() => {
                    log::info!("reporting status to the primary georeg at {url} works again");
                    last_error.clear();
                }
                Ok(()) => {}
                Err(e) if e != last_error => {
                    log::warn!("{e}");
                    last_error = e;
                }
                Err(_) => {}
            }
        }
        let next = Instant::now() + interval;
        while !node.quitting() && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Keeps the event log from growing forever (hourly).
fn prune(node: &Node) {
    let days = node.config.event_retention_days;
    match node.store.prune_events(days, node.config.role == Role::Secondary) {
        Ok(0) => {}
        Ok(n) => log::info!("pruned {n} events older than {days} days from the state file"),
        Err(e) => log::warn!("cannot prune old events: {e}"),
    }
}

/// What keeps this node from working, if anything.
fn check(node: &Node) -> Option<String> {
    let mut problems = Vec::new();
    if let Err(e) = node.local.ping() {
        problems.push(format!("own registry: {e}"));
    }
    if let Some(primary) = node.primary.as_ref().filter(|_| node.config.role == Role::Secondary) {
        if let Err(e) = primary.ping() {
            problems.push(format!("primary registry: {e}"));
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(problems.join("; "))
    }
}

fn send(node: &Node, url: &str, problem: Option<String>) -> Result<(), String> {
    let status = status::collect(&node.config, &node.store, Some(&node.stats), problem).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&status).map_err(|e| e.to_string())?;
    let target = format!("{url}{NODE_STATUS_PATH}");
    let result = node
        .agent
        .post(&target)
        .set("Authorization", &format!("Bearer {}", node.node_token()))
        .set("Content-Type", "application/json")
        .send_bytes(&body);
    match result {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "the primary georeg at {target} refused the status report: {code} {}",
            r.into_string().unwrap_or_default().trim()
        )),
        Err(e) => Err(format!("cannot report status to the primary georeg at {target}: {e}")),
    }
}
