//! The reconciliation loop a secondary runs, and what both kinds of pass
//! share: recording what a pass compared and found, and queueing a full
//! sync, with the kind of difference as its reason, for each repository
//! that differs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::selective::Selection;
use crate::error::Result;
use crate::health::Stats;
use crate::peer::PrimaryNode;
use crate::registry::Client;
use crate::shutdown::Shutdown;
use crate::store::{PassRecord, Queue, Reader};

/// What a reconciliation pass reads and writes.
pub(crate) struct Reconciler<'a> {
    /// The primary registry, pull-only and paced
    /// (`replication.max_requests_per_second`, `max_bandwidth`).
    pub primary: &'a Client,
    /// The primary georeg, when this node follows one: its fingerprints
    /// make a pass cheap across the WAN.
    pub primary_node: Option<&'a PrimaryNode>,
    /// This node's own registry, pull-only.
    pub secondary: &'a Client,
    pub queue: &'a Queue,
    pub reader: &'a Reader,
    pub selection: Selection,
    /// `replication.reconcile_interval_seconds`.
    pub window: Duration,
    pub stats: &'a Stats,
    pub shutdown: &'a Shutdown,
    /// The operator was told the primary's fingerprints are too old.
    pub stale_fingerprints_told: std::sync::atomic::AtomicBool,
}

/// A pass in progress: what it compared, found and queued.
pub(crate) struct Tally {
    pub record: PassRecord,
    /// Repositories found equal, with when (the older of the two reads).
    pub compared: Vec<(String, String)>,
}

impl Tally {
    pub fn new(mode: &'static str, started_at: String) -> Tally {
        Tally { record: PassRecord { mode, started_at, ..PassRecord::default() }, compared: Vec::new() }
    }

    pub fn equal(&mut self, name: &str, at: &str) {
        self.compared.push((name.to_string(), at.to_string()));
    }
}

impl Reconciler<'_> {
    /// Until shutdown: a pass, then the next, each spread over half the
    /// window (a pass through fingerprints costs little, and runs every
    /// quarter of the window).
    pub fn run(&self) {
        let mut failing = false;
        while !self.shutdown.requested() {
            let started = Instant::now();
            let result = match self.primary_node {
                Some(node) => self.pages_pass(node),
                None => self.direct_pass(),
            };
            let pause = match result {
                Ok(tally) => {
                    if failing {
                        log::info!("reconciliation works again");
                        failing = false;
                    }
                    if let Err(e) = self.conclude(tally, started.elapsed()) {
                        log::error!("reconciliation: cannot record the pass: {e}");
                    }
                    self.pause_after(started.elapsed())
                }
                Err(crate::error::Error::Interrupted) => return,
                Err(e) => {
                    if !failing {
                        log::warn!("reconciliation pass failed: {e}; trying again");
                        failing = true;
                    }
                    Duration::from_secs(10).min(self.window / 4)
                }
            };
            if !self.shutdown.sleep(pause) {
                return;
            }
        }
    }

    /// How long to wait before the next pass.
    fn pause_after(&self, took: Duration) -> Duration {
        let every = match self.primary_node {
            Some(_) => (self.window / 4).clamp(Duration::from_secs(2), Duration::from_secs(300)),
            None => Duration::from_secs(1),
        };
        if took > self.window {
            log::warn!(
                "a reconciliation pass took {}s, longer than replication.reconcile_interval_seconds ({}s): raise it, \
                 or max_requests_per_second",
                took.as_secs(),
                self.window.as_secs()
            );
        }
        every.saturating_sub(took)
    }

    /// Queues a full sync of `name` because of `kind`, counting it.
    pub fn differs(&self, tally: &mut Tally, name: &str, kind: &str) -> Result<()> {
        *tally.record.differences.entry(kind.to_string()).or_default() += 1;
        if !self.selection.includes(name) {
            return Ok(());
        }
        log::info!("{name}: differs from the primary ({kind}); a full sync is queued");
        self.queue.request_reconcile(name, &format!("reconcile: {kind}"))?;
        tally.record.queued += 1;
        Ok(())
    }

    /// A repository the primary has that this node never heard of.
    pub fn new_repository(&self, tally: &mut Tally, name: &str) -> Result<()> {
        if !self.selection.includes(name) || !crate::registry::valid_repository(name) {
            return Ok(());
        }
        *tally.record.differences.entry("new repository".to_string()).or_default() += 1;
        log::info!("{name}: new on the primary (no notification said so); queued");
        tally.record.queued += self.queue.add_repositories(&[name.to_string()])? as u64;
        Ok(())
    }

    fn conclude(&self, tally: Tally, took: Duration) -> Result<()> {
        let Tally { mut record, compared } = tally;
        record.compared = compared.len() as u64;
        self.queue.mark_compared(&compared)?;
        self.queue.record_pass(&record)?;
        let found: Vec<String> = record.differences.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let line = format!(
            "reconciliation ({}): {} of {} repositories equal to the primary in {:.1}s, {} requests to the primary{}",
            record.mode,
            record.compared,
            record.repositories,
            took.as_secs_f64(),
            record.requests,
            if found.is_empty() { String::new() } else { format!("; found {}", found.join(", ")) }
        );
        if found.is_empty() {
            log::debug!("{line}");
        } else {
            log::info!("{line}");
        }
        self.stats.record_reconcile(&record, took);
        Ok(())
    }
}

/// The kind of the first difference between the primary's tags and the
/// secondary's (as expected), for the reason of the sync it queues.
pub fn kind_of_difference(
    primary: &BTreeMap<String, crate::registry::Digest>,
    secondary: &BTreeMap<String, crate::registry::Digest>,
) -> &'static str {
    if primary.is_empty() && !secondary.is_empty() {
        return "gone from the primary";
    }
    let names: std::collections::BTreeSet<&String> = primary.keys().chain(secondary.keys()).collect();
    for name in names {
        match (primary.get(name), secondary.get(name)) {
            (Some(_), None) => return "tag missing on the secondary",
            (None, Some(_)) => return "tag only on the secondary",
            (Some(p), Some(s)) if p != s => return "tag re-pointed",
            _ => {}
        }
    }
    "tags differ"
}
