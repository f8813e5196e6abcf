//! Process-wide counters and live activity: what `/metrics` and the
//! dashboard show beyond the state file. Lost on restart by design; the
//! state file holds everything that must survive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Upper bounds (seconds) of the sync duration histogram's buckets.
pub const SYNC_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

pub struct Stats {
    /// When this process started (Unix seconds), for process_start_time_seconds.
    pub started_at: u64,
    /// When this process last finished a catalog scan (Unix seconds; 0: not yet).
    pub last_backfill: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub blobs_copied: AtomicU64,
    pub blobs_mounted: AtomicU64,
    /// Blobs landed ahead of their manifest, on the registry's notices of
    /// blob pushes (`replication::prefetcher`).
    pub blobs_ahead: AtomicU64,
    /// Blob downloads continued with a Range request after a break or stall.
    pub download_resumes: AtomicU64,
    /// Chunked blob copies taken up after a restart.
    pub blob_resumes: AtomicU64,
    pub events_received: AtomicU64,
    pub events_processed: AtomicU64,
    pub syncs_succeeded: AtomicU64,
    pub syncs_failed: AtomicU64,
    /// Differences reconciliation found, by kind (`tags differ`...).
    pub reconcile_differences: Mutex<BTreeMap<String, u64>>,
    /// Notifications refused, by reason (`secret`, `malformed`, `too large`).
    pub notifications_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Writes made straight on this node's registry (its own notifications).
    pub writes_on_secondary: AtomicU64,
    durations: Mutex<Histogram>,
    activity: Mutex<BTreeMap<String, Activity>>,
}

/// A sync in progress: which repository, since when, bytes so far.
#[derive(Clone)]
pub struct Activity {
    pub started: Instant,
    pub bytes: Arc<AtomicU64>,
}

/// A sync in progress, for display.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Copying {
    pub repository: String,
    pub seconds: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
}

#[derive(Default, Clone)]
pub struct Histogram {
    /// Count per bucket of SYNC_BUCKETS (not cumulative), plus +Inf last.
    pub counts: [u64; SYNC_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Stats {
    /// Counts what a reconciliation pass found.
    pub fn record_reconcile(&self, pass: &crate::store::PassRecord, _took: std::time::Duration) {
        let mut found = self.reconcile_differences.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, n) in &pass.differences {
            *found.entry(kind.clone()).or_default() += n;
        }
    }

    /// Counts a refused notification.
    pub fn notification_refused(&self, reason: &'static str) {
        *self.notifications_refused.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }
}

impl Default for Stats {
    fn default() -> Stats {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Stats {
            started_at: now,
            last_backfill: AtomicU64::new(0),
            bytes_copied: AtomicU64::default(),
            blobs_copied: AtomicU64::default(),
            blobs_mounted: AtomicU64::default(),
            blobs_ahead: AtomicU64::default(),
            download_resumes: AtomicU64::default(),
            blob_resumes: AtomicU64::default(),
            events_received: AtomicU64::default(),
            events_processed: AtomicU64::default(),
            syncs_succeeded: AtomicU64::default(),
            syncs_failed: AtomicU64::default(),
            reconcile_differences: Mutex::default(),
            notifications_refused: Mutex::default(),
            writes_on_secondary: AtomicU64::new(0),
            durations: Mutex::default(),
            activity: Mutex::default(),
        }
    }
}

impl Stats {
    /// Registers a sync as running; the returned counter takes its bytes.
    pub fn begin(&self, repository: &str) -> Arc<AtomicU64> {
        let bytes = Arc::new(AtomicU64::new(0));
        let activity = Activity { started: Instant::now(), bytes: bytes.clone() };
        self.activity.lock().unwrap_or_else(|p| p.into_inner()).insert(repository.to_string(), activity);
        bytes
    }

    /// Ends a sync: it leaves the activity list and enters the histogram.
    pub fn end(&self, repository: &str, succeeded: bool) {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner()).remove(repository);
        if let Some(a) = activity {
            let secs = a.started.elapsed().as_secs_f64();
            let mut h = self.durations.lock().unwrap_or_else(|p| p.into_inner());
            let bucket = SYNC_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(SYNC_BUCKETS.len());
            h.counts[bucket] += 1;
            h.sum += secs;
            h.count += 1;
        }
        let counter = if succeeded { &self.syncs_succeeded } else { &self.syncs_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn copying(&self) -> Vec<Copying> {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity
            .iter()
            .map(|(repository, a)| {
                let seconds = a.started.elapsed().as_secs_f64();
                let bytes = a.bytes.load(Ordering::Relaxed);
                Copying {
                    repository: repository.clone(),
                    seconds,
                    bytes,
                    bytes_per_second: bytes as f64 / seconds.max(0.001),
                }
            })
            .collect()
    }

    pub fn durations(&self) -> Histogram {
        self.durations.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_and_histogram() {
        let stats = Stats::default();
        let bytes = stats.begin("a");
        bytes.fetch_add(100, Ordering::Relaxed);
        let c = stats.copying();
        assert_eq!((c.len(), c[0].repository.as_str(), c[0].bytes), (1, "a", 100));
        stats.end("a", true);
        assert!(stats.copying().is_empty());
        let h = stats.durations();
        assert_eq!((h.count, h.counts[0]), (1, 1));
        assert_eq!(stats.syncs_succeeded.load(Ordering::Relaxed), 1);
    }
}
