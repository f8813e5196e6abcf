//! A secondary's cursor over the primary georeg's event log: long-polls
//! the log after the last id it stored, stores each page and advances the
//! cursor in the same transaction, so a restart resumes exactly after the
//! last event stored and nothing is read twice or skipped. The blob pushes
//! a primary passes on with its pages are hints for the prefetcher, kept
//! in memory only (`prefetch.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::prefetch::{Hint, Prefetch};
use crate::health::Stats;
use crate::peer::{BlobMark, Page, PrimaryNode};
use crate::shutdown::Shutdown;
use crate::store::{Cursor, Event, Log};

const PAGE: usize = 500;
/// Long-poll length: short enough that shutdown is never held up long.
const WAIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An empty page answered faster than this came from a node too busy to
/// let this poll wait: the next poll waits out the rest of it.
const BUSY_ANSWER: Duration = Duration::from_secs(1);

/// The cursor thread, until shutdown. Blob pushes go to `prefetch`.
pub fn run(primary: &PrimaryNode, store: &Log, stats: &Stats, shutdown: &Shutdown, prefetch: &Prefetch) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error = String::new();
    let mut blobs = BlobMark::default();
    while !shutdown.requested() {
        let started = std::time::Instant::now();
        match poll(primary, store, stats, &mut blobs, prefetch) {
            Ok(read) => {
                if !last_error.is_empty() {
                    log::info!("reading the primary's event log at {} works again", primary.url());
                    last_error.clear();
                }
                backoff = Duration::from_secs(1);
                // A busy node answers an empty page at once rather than
                // hold a thread for this follower: ask again a little later.
                if read == 0 && started.elapsed() < BUSY_ANSWER {
                    shutdown.sleep(BUSY_ANSWER - started.elapsed());
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

/// One long poll; how many events and blob pushes the page held.
fn poll(
    primary: &PrimaryNode,
    store: &Log,
    stats: &Stats,
    blobs: &mut BlobMark,
    prefetch: &Prefetch,
) -> Result<usize, String> {
    let cursor = store.cursor().map_err(|e| e.to_string())?;
    let after = cursor.last_event_id;
    let page = primary.events_and_blobs(after, PAGE, WAIT, Some(blobs))?;
    if let Some(mark) = &page.blob_mark {
        *blobs = mark.clone();
    }
    prefetch.offer(page.blobs.iter().filter_map(|b| Hint::read(&b.repository, &b.digest, b.size)).collect());
    let chain = chain_of(&page);
    let looped = a_loop(primary, &chain);
    let behind = looped.clone().or_else(|| page.behind.clone());
    if (&chain, &behind) != (&cursor.upstream_chain, &cursor.upstream_behind) {
        store.record_upstream(&chain, behind.as_deref()).map_err(|e| e.to_string())?;
    }
    if let Some(message) = looped {
        return Err(message);
    }
    if let Some((message, restart_after)) = lost_place(&cursor, &page) {
        let queued = store.cursor_lost_place(&message, restart_after, &page.epoch).map_err(|e| e.to_string())?;
        log::warn!(
            "{message}: every repository ({queued}) is queued for a full comparison with the primary, which repairs \
             whatever those events would have"
        );
        return Ok(1);
    }
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
    let stored = store.record_followed(&valid, through, page.last_event_id, &page.epoch).map_err(|e| e.to_string())?;
    if stored > 0 {
        stats.events_received.fetch_add(stored as u64, Ordering::Relaxed);
        log::info!("stored {stored} event(s) from the primary's log (through id {through})");
    }
    Ok(page.events.len() + page.blobs.len())
}

/// The chain of nodes up to the primary as the page tells it: the node
/// that served it, then its own upstreams (empty from an older primary
/// that does not say).
pub fn chain_of(page: &Page) -> Vec<String> {
    if page.node.is_empty() {
        return Vec::new();
    }
    std::iter::once(page.node.clone()).chain(page.chain.iter().cloned()).collect()
}

/// Why following `primary` would make a loop, when this node is in the
/// chain it leads to: a node following itself through others.
pub fn a_loop(primary: &PrimaryNode, chain: &[String]) -> Option<String> {
    let me = primary.node_name();
    chain.iter().any(|n| n == me).then(|| {
        format!(
            "following {} makes a loop: its chain {} leads back to this node ({me}), so nothing is read from it; \
             point replication.primary_node_url at a node closer to the primary (or, if two nodes share the \
             node_name {me:?}, give each its own)",
            primary.url(),
            chain.join(" -> ")
        )
    })
}

/// Before the daemon starts: refuses to follow a node whose chain leads
/// back here. A node that does not answer yet is checked at run time.
pub fn refuse_loop(primary: &PrimaryNode) -> Result<(), String> {
    match primary.events(i64::MAX, 1, Duration::ZERO) {
        Ok(page) => a_loop(primary, &chain_of(&page)).map_or(Ok(()), Err),
        Err(e) => {
            log::info!("the node this one follows does not answer yet ({e}); its chain is checked once it does");
            Ok(())
        }
    }
}

/// Whether the cursor can still trust its place in the primary's log; if
/// not, why, and where to read from in the log the page came from.
fn lost_place(cursor: &Cursor, page: &Page) -> Option<(String, i64)> {
    let after = cursor.last_event_id;
    match cursor.primary_epoch.as_deref() {
        // A primary that does not say (an older georeg): nothing to check.
        _ if page.epoch.is_empty() => None,
        Some(known) if known != page.epoch => Some((
            format!(
                "the primary's event log is another one than before (epoch {} instead of {known}: its state file \
                 was rebuilt or restored); reading it from its start",
                page.epoch
            ),
            0,
        )),
        _ if after > page.last_event_id => Some((
            format!(
                "the primary's event log ends at id {} but this secondary had read up to {after} (its state file \
                 was restored from an older copy); reading it from there",
                page.last_event_id
            ),
            page.last_event_id,
        )),
        _ if page.oldest_event_id > after + 1 => Some((
            format!(
                "events {} to {} were pruned from the primary's log before this secondary read them",
                after + 1,
                page.oldest_event_id - 1
            ),
            page.oldest_event_id - 1,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(after: i64, epoch: Option<&str>) -> Cursor {
        Cursor { last_event_id: after, primary_epoch: epoch.map(String::from), ..Cursor::default() }
    }

    fn page(oldest: i64, last: i64, epoch: &str) -> Page {
        Page {
            events: vec![],
            last_event_id: last,
            oldest_event_id: oldest,
            epoch: epoch.into(),
            node: "primary".into(),
            chain: vec![],
            behind: None,
            blobs: vec![],
            blob_mark: None,
        }
    }

    #[test]
    fn a_chain_that_leads_back_here_is_a_loop() {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let signer = std::sync::Arc::new(crate::registry::token::Signer::new(key, "iss"));
        let me = PrimaryNode::new("http://relay.example.com:5050/", ureq::agent(), signer, "site-a");
        let mut from_relay = page(1, 9, "e");
        from_relay.node = "relay".into();
        from_relay.chain = vec!["primary".into()];
        assert_eq!(chain_of(&from_relay), ["relay", "primary"]);
        assert_eq!(a_loop(&me, &chain_of(&from_relay)), None);
        from_relay.chain = vec!["site-a".into(), "primary".into()];
        let why = a_loop(&me, &chain_of(&from_relay)).unwrap();
        assert!(why.contains("relay -> site-a -> primary leads back to this node (site-a)"), "{why}");
        assert!(why.contains("replication.primary_node_url"), "{why}");
        from_relay.node = String::new();
        assert!(chain_of(&from_relay).is_empty(), "an older primary names no chain");
    }

    #[test]
    fn a_cursor_knows_when_it_cannot_trust_its_place() {
        assert_eq!(lost_place(&cursor(10, Some("a")), &page(1, 20, "a")), None);
        assert_eq!(lost_place(&cursor(0, None), &page(1, 20, "a")), None, "a new secondary reads from the start");
        assert_eq!(lost_place(&cursor(10, Some("a")), &page(11, 20, "a")), None, "pruned only what it read");
        let (why, at) = lost_place(&cursor(10, Some("a")), &page(15, 20, "a")).unwrap();
        assert!(why.contains("events 11 to 14 were pruned"), "{why}");
        assert_eq!(at, 14);
        let (why, at) = lost_place(&cursor(10, Some("a")), &page(1, 20, "b")).unwrap();
        assert!(why.contains("another one") && at == 0, "{why}");
        let (why, at) = lost_place(&cursor(30, Some("a")), &page(1, 20, "a")).unwrap();
        assert!(why.contains("ends at id 20") && at == 20, "{why}");
        assert_eq!(lost_place(&cursor(10, Some("a")), &page(15, 20, "")), None, "an older primary says nothing");
    }
}
