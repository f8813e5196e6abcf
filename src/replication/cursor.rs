//! A secondary's cursor over the primary georeg's event log: long-polls
//! the log after the last id it stored, stores each page and advances the
//! cursor in the same transaction, so a restart resumes exactly after the
//! last event stored and nothing is read twice or skipped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::health::Stats;
use crate::peer::PrimaryNode;
use crate::shutdown::Shutdown;
use crate::store::{Event, Store};

const PAGE: usize = 500;
/// Long-poll length: short enough that shutdown is never held up long.
const WAIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The cursor thread, until shutdown.
pub fn run(primary: &PrimaryNode, store: &Store, stats: &Stats, shutdown: &Shutdown) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error = String::new();
    while !shutdown.requested() {
        match poll(primary, store, stats) {
            Ok(full_page) => {
                if !last_error.is_empty() {
                    log::info!("reading the primary's event log at {} works again", primary.url());
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
                if let Err(e) = store.cursor_failed(&message) {
                    log::error!("{e}");
                }
                shutdown.sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One long poll; true when the page was full (more is waiting).
fn poll(primary: &PrimaryNode, store: &Store, stats: &Stats) -> Result<bool, String> {
    let after = store.cursor().map_err(|e| e.to_string())?.last_event_id;
    let page = primary.events(after, PAGE, WAIT)?;
    let through = page.events.last().map(|e| e.id).unwrap_or(after);
    let valid: Vec<Event> = page
        .events
        .iter()
        .filter(|e| {
            let ok = e.is_valid();
            if !ok {
                log::warn!("skipping event {} from the primary's log: not a valid event", e.id);
            }
            ok
        })
        .cloned()
        .collect();
    let stored = store.record_followed(&valid, through, page.last_event_id).map_err(|e| e.to_string())?;
    if stored > 0 {
        stats.events_received.fetch_add(stored as u64, Ordering::Relaxed);
        log::info!("stored {stored} event(s) from the primary's log (through id {through})");
    }
    Ok(page.events.len() >= PAGE)
}
