//! A secondary's cursor over the primary georeg's event log: long-polls
//! `GET /api/v1/events?after=CURSOR`, stores each page and advances the
//! cursor in the same transaction, so a restart resumes exactly after the
//! last event stored and nothing is read twice or skipped.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use crate::events::valid_followed;
use crate::node::Node;
use crate::server::EVENTS_PATH;
use crate::store::Event;

const PAGE: usize = 500;
/// Long-poll length: short enough that shutdown is never held up long.
const WAIT_SECONDS: u64 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Page {
    events: Vec<Event>,
    last_event_id: i64,
}

pub fn run(node: &Node, primary_node_url: &str) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error = String::new();
    while !node.quitting() {
        match poll(node, primary_node_url) {
            Ok(full_page) => {
                if !last_error.is_empty() {
                    log::info!("reading the primary's event log at {primary_node_url} works again");
                    last_error.clear();
                }
                backoff = Duration::from_secs(1);
                if full_page {
                    continue;
                }
            }
            Err(message) => {
                if message != last_error {
                    log::warn!("{message}; retrying with backoff");
                    last_error = message.clone();
                }
                if let Err(e) = node.store.cursor_failed(&message) {
                    log::error!("{e}");
                }
                sleep_unless_quitting(node, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One long poll; true when the page was full (more is waiting).
fn poll(node: &Node, base: &str) -> Result<bool, String> {
    let after = node.store.cursor().map_err(|e| e.to_string())?.last_event_id;
    let url = format!("{base}{EVENTS_PATH}?after={after}&limit={PAGE}&wait={WAIT_SECONDS}");
    let resp = node
        .agent
        .get(&url)
        .set("Authorization", &format!("Bearer {}", node.node_token()))
        .timeout(Duration::from_secs(WAIT_SECONDS + 30))
        .call();
    let page: Page = match resp {
        Ok(r) => serde_json::from_reader(r.into_reader().take(64 << 20))
            .map_err(|e| format!("reading the event log from {url}: {e}"))?,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            let hint = if code == 401 { " (do both nodes use the same gitlab-registry.key and issuer?)" } else { "" };
            return Err(format!("the primary georeg at {url} answered {code}: {}{hint}", body.trim()));
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(format!("cannot reach the primary georeg at {url}: {}", crate::registry::transport_message(&t)))
        }
    };
    let through = page.events.last().map(|e| e.id).unwrap_or(after);
    let valid: Vec<Event> = page.events.iter().filter(|e| valid_followed(e)).cloned().collect();
    let stored = node.store.record_followed(&valid, through, page.last_event_id).map_err(|e| e.to_string())?;
    if stored > 0 {
        node.stats.events_received.fetch_add(stored as u64, std::sync::atomic::Ordering::Relaxed);
        log::info!("stored {stored} event(s) from the primary's log (through id {through})");
    }
    Ok(page.events.len() >= PAGE)
}

fn sleep_unless_quitting(node: &Node, d: Duration) {
    let end = std::time::Instant::now() + d;
    while !node.quitting() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}
