//! `/metrics` in the Prometheus text exposition format. Gauges come from the
//! state file (the same numbers as the dashboard); counters and the sync
//! duration histogram count since the process started, as Prometheus
//! counters do. docs/monitoring.md lists every metric.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::format::unix_seconds;
use crate::health::stats::{Stats, SYNC_BUCKETS};
use crate::health::Status;

use super::exposition::{label_value, metric, one};
use super::node_metrics::node_metrics;

pub fn render(status: &Status, stats: &Stats) -> String {
    let mut out = String::new();
    let secondary = status.node.role == crate::config::Role::Secondary;
    metric(
        &mut out,
        "georeg_build_info",
        "gauge",
        "Always 1; the labels say which georeg this is.",
        &[(
            format!("{{version=\"{}\",role=\"{}\"}}", label_value(&status.node.version), status.node.role.as_str()),
            1.0,
        )],
    );
    metric(&mut out, "georeg_healthy", "gauge", "1 when this node reports no problem.", &one(u8::from(status.healthy)));
    metric(
        &mut out,
        "georeg_ready",
        "gauge",
        "1 when this node can serve: its daemon runs and its registry answered the last check (/-/readiness).",
        &one(u8::from(status.ready)),
    );
    let refused: Vec<(String, f64)> = ["secret", "malformed", "too_large"]
        .iter()
        .map(|reason| {
            let n = stats.notifications_refused.lock().unwrap_or_else(|p| p.into_inner()).get(reason).copied();
            (format!("{{reason=\"{reason}\"}}"), n.unwrap_or(0) as f64)
        })
        .collect();
    metric(
        &mut out,
        "georeg_notifications_refused_total",
        "counter",
        "Notifications refused, by reason: a wrong or missing secret, a malformed envelope, one too large.",
        &refused,
    );
    let e = &status.events;
    metric(
        &mut out,
        "georeg_events_received_total",
        "counter",
        "Registry events stored (notifications, or read from the primary's log).",
        &one(stats.events_received.load(Ordering::Relaxed) as f64),
    );
    metric(
        &mut out,
        "georeg_last_event_id",
        "gauge",
        "Newest event id (from the primary, on a secondary).",
        &one(e.last_event_id as f64),
    );
    metric(&mut out, "georeg_events_stored", "gauge", "Events in the state file.", &one(e.stored as f64));
    if secondary {
        secondary_metrics(&mut out, status, stats);
        reconcile_metrics(&mut out, status, stats);
    }
    if let Some(nodes) = &status.nodes {
        node_metrics(&mut out, nodes);
    }
    process_metrics(&mut out, stats);
    out
}

/// Reconciliation: how recently every repository was compared, the last
/// pass, and what passes found.
fn reconcile_metrics(out: &mut String, status: &Status, stats: &Stats) {
    let Some(c) = &status.reconcile else { return };
    metric(
        out,
        "georeg_reconcile_never_compared_repositories",
        "gauge",
        "Replicated repositories never compared with the primary.",
        &one(c.never as f64),
    );
    metric(
        out,
        "georeg_reconcile_outside_window_repositories",
        "gauge",
        "Replicated repositories last compared longer ago than replication.reconcile_interval_seconds.",
        &one(c.outside_window as f64),
    );
    if let Some(p) = &c.last_pass {
        metric(
            out,
            "georeg_reconcile_last_pass_age_seconds",
            "gauge",
            "Seconds since the last reconciliation pass ended.",
            &one(p.age_seconds as f64),
        );
        metric(
            out,
            "georeg_reconcile_last_pass_duration_seconds",
            "gauge",
            "How long the last reconciliation pass took.",
            &one(p.seconds as f64),
        );
        metric(
            out,
            "georeg_reconcile_last_pass_requests",
            "gauge",
            "Requests the last pass sent to the primary registry and the primary georeg.",
            &one(p.requests as f64),
        );
    }
    let found: Vec<(String, f64)> = stats
        .reconcile_differences
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(kind, n)| (format!("{{kind=\"{}\"}}", label_value(kind)), *n as f64))
        .collect();
    metric(
        out,
        "georeg_reconcile_differences_total",
        "counter",
        "Differences reconciliation found (and queued a full sync for), by kind.",
        &found,
    );
    metric(
        out,
        "georeg_writes_on_secondary_total",
        "counter",
        "Pushes and deletes made straight on this node's registry (its notifications), put back by a full sync.",
        &one(stats.writes_on_secondary.load(Ordering::Relaxed) as f64),
    );
}

/// What only a secondary has: repositories, copies, the cursor.
fn secondary_metrics(out: &mut String, status: &Status, stats: &Stats) {
    let r = &status.repositories;
    let gauges: [(&str, &str, i64); 10] = [
        ("georeg_container_repositories", "Container repositories to replicate (selective sync applied).", r.total),
        ("georeg_container_repositories_synced", "Container repositories synced.", r.synced),
        ("georeg_container_repositories_failed", "Container repositories whose last sync failed.", r.failed),
        ("georeg_container_repositories_pending", "Container repositories queued for sync.", r.pending),
        ("georeg_container_repositories_started", "Container repositories being synced now.", r.started),
        ("georeg_container_repositories_verified", "Container repositories whose checksums matched.", r.verified),
        (
            "georeg_container_repositories_verification_failed",
            "Container repositories whose checksums differed.",
            r.verification_failed,
        ),
        (
            "georeg_container_repositories_verification_pending",
            "Container repositories waiting for verification.",
            r.verification_pending,
        ),
        (
            "georeg_tags_unsupported",
            "Tags the secondary registry refuses to hold (Docker schema 1 where it does not accept it).",
            r.unsupported_tags,
        ),
        (
            "georeg_container_repositories_failing_seconds",
            "How long the repository failing longest has been failing (0: none is).",
            status.failing.seconds,
        ),
    ];
    for (name, help, value) in gauges {
        metric(out, name, "gauge", help, &one(value as f64));
    }
    let counters = [
        ("georeg_events_processed_total", "Events applied to the secondary registry.", &stats.events_processed),
        ("georeg_copied_bytes_total", "Blob bytes copied from the primary to the secondary.", &stats.bytes_copied),
        ("georeg_copied_blobs_total", "Blobs copied from the primary.", &stats.blobs_copied),
        (
            "georeg_mounted_blobs_total",
            "Blobs mounted from another repository of the secondary instead of copied.",
            &stats.blobs_mounted,
        ),
        (
            "georeg_blobs_landed_ahead_total",
            "Blobs landed on the secondary ahead of their manifest, on the primary registry's notices of blob pushes.",
            &stats.blobs_ahead,
        ),
        (
            "georeg_download_resumes_total",
            "Blob downloads from the primary continued with a Range request after a break or stall.",
            &stats.download_resumes,
        ),
        (
            "georeg_blob_resumes_total",
            "Chunked blob copies taken up where the secondary's upload stood after a restart.",
            &stats.blob_resumes,
        ),
        ("georeg_syncs_total", "Repository syncs that succeeded.", &stats.syncs_succeeded),
        ("georeg_sync_failures_total", "Repository syncs that failed.", &stats.syncs_failed),
    ];
    for (name, help, counter) in counters {
        metric(out, name, "counter", help, &one(counter.load(Ordering::Relaxed) as f64));
    }
    let h = stats.durations();
    let mut samples = Vec::new();
    let mut cumulative = 0;
    for (i, bound) in SYNC_BUCKETS.iter().enumerate() {
        cumulative += h.counts[i];
        samples.push((format!("_bucket{{le=\"{bound}\"}}"), cumulative as f64));
    }
    samples.push(("_bucket{le=\"+Inf\"}".to_string(), h.count as f64));
    samples.push(("_sum".to_string(), h.sum));
    samples.push(("_count".to_string(), h.count as f64));
    let _ = writeln!(out, "# HELP georeg_sync_duration_seconds How long repository syncs took.");
    let _ = writeln!(out, "# TYPE georeg_sync_duration_seconds histogram");
    for (suffix, value) in samples {
        let _ = writeln!(out, "georeg_sync_duration_seconds{suffix} {value}");
    }
    let e = &status.events;
    metric(
        out,
        "georeg_cursor_last_event_id",
        "gauge",
        "Last event id read and queued by this secondary.",
        &one(e.cursor_last_event_id.unwrap_or(0) as f64),
    );
    metric(
        out,
        "georeg_cursor_lag_seconds",
        "gauge",
        "Age of the oldest event not yet applied, leaving out failing repositories.",
        &one(e.lag_seconds as f64),
    );
    let stamp = |at: &Option<String>| at.as_deref().and_then(unix_seconds).unwrap_or(0) as f64;
    metric(
        out,
        "georeg_last_backfill_timestamp_seconds",
        "gauge",
        "When this process last finished a scan of the primary's catalog (0: not yet).",
        &one(stats.last_backfill.load(Ordering::Relaxed) as f64),
    );
    metric(
        out,
        "georeg_last_verification_timestamp_seconds",
        "gauge",
        "When a repository was last verified (0: never).",
        &one(stamp(&status.last_verified_at)),
    );
    metric(
        out,
        "georeg_last_sync_timestamp_seconds",
        "gauge",
        "When a repository last finished syncing (0: never).",
        &one(stamp(&status.last_sync_at)),
    );
    dr_metrics(out, status);
}

/// Disaster recovery: deletions held back, the burst alarm, failover
/// readiness and drills.
fn dr_metrics(out: &mut String, status: &Status) {
    let stamp = |at: Option<&str>| at.and_then(unix_seconds).unwrap_or(0) as f64;
    let (d, drill) = (&status.deletions, &status.drill);
    let failover = status.failover.as_ref();
    let losses = failover.map(|f| f.findings.iter().filter(|x| x.loss).count()).unwrap_or(0);
    let last = drill.last.as_ref();
    let bundle = status.last_bundle.as_ref();
    let gauges: [(&str, &str, f64); 13] = [
        ("georeg_deletions_held", "Deletions held back (replication.delete_delay_hours).", d.held as f64),
        ("georeg_deletions_held_tags", "Tags the held deletions would take off the secondary.", d.held_tags as f64),
        ("georeg_deletions_cancelled", "Deletions an operator cancelled: kept on the secondary.", d.cancelled as f64),
        (
            "georeg_deletions_next_apply_timestamp_seconds",
            "When the next held deletion applies (0: none is held).",
            stamp(d.next_applies_at.as_deref()),
        ),
        (
            "georeg_deletion_burst",
            "1 while a burst of deletions (replication.delete_burst_share) awaits an operator's decision.",
            f64::from(u8::from(d.burst.is_some())),
        ),
        (
            "georeg_failover_ready",
            "1 when nothing would be lost if the primary vanished now (georeg failover-check).",
            f64::from(u8::from(failover.is_some_and(|f| f.ready))),
        ),
        ("georeg_failover_losses", "Findings of georeg failover-check that would lose data.", losses as f64),
        (
            "georeg_drill_last_success_timestamp_seconds",
            "When the last drill that pulled every sampled tag whole ended (0: never).",
            stamp(drill.last_success_at.as_deref()),
        ),
        (
            "georeg_drill_last_timestamp_seconds",
            "When the last drill ended (0: never).",
            stamp(last.map(|l| l.finished_at.as_str())),
        ),
        (
            "georeg_drill_failures",
            "Tags the last drill could not pull whole.",
            last.map(|l| l.failures).unwrap_or(0) as f64,
        ),
        (
            "georeg_drill_unrepaired",
            "Failures found by drills that no resync has repaired yet.",
            drill.unrepaired as f64,
        ),
        (
            "georeg_bundle_last_export_timestamp_seconds",
            "When the last transfer bundle imported was exported: how old this node's copy of the primary is (0: none).",
            stamp(bundle.map(|b| b.created_at.as_str())),
        ),
        (
            "georeg_bundle_last_import_timestamp_seconds",
            "When the last transfer bundle was imported (0: none).",
            stamp(bundle.and_then(|b| b.imported_at.as_deref())),
        ),
    ];
    for (name, help, value) in gauges {
        metric(out, name, "gauge", help, &one(value));
    }
}

/// The standard process metrics, from /proc/self.
fn process_metrics(out: &mut String, stats: &Stats) {
    // /proc reports CPU time in clock ticks of USER_HZ, 100 on Linux.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let cpu = (field(11) + field(12)) / TICKS;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let rss_pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    metric(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", &one(cpu));
    metric(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", &one(rss_pages * 4096.0));
    metric(out, "process_open_fds", "gauge", "Number of open file descriptors.", &one(fds as f64));
    metric(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        &one(stats.started_at as f64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::snapshot::{EventsStatus, NodeInfo, NodeStatus};
    use crate::store::Counts;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let stats = Stats::default();
        let _ = stats.begin("a");
        stats.end("a", true);
        let status = Status {
            node: NodeInfo { role: crate::config::Role::Secondary, version: "1.2.3".into(), ..NodeInfo::default() },
            healthy: true,
            health_message: None,
            ready: true,
            ready_message: None,
            reconcile: Some(Default::default()),
            reconcile_blocked: None,
            alarms: vec![],
            repositories: Default::default(),
            events: EventsStatus::default(),
            oldest_unsynced: None,
            copying: vec![],
            uploads: vec![],
            recent_failures: vec![],
            nodes: Some(vec![NodeStatus {
                name: "se\"c".into(),
                health: crate::health::snapshot::NodeHealth::Healthy,
                message: None,
                reported_at: String::new(),
                age_seconds: 3,
                repositories: Default::default(),
                events: Default::default(),
                version: "1.2.3".into(),
                listen: "127.0.0.1:5050".into(),
                dashboard: None,
                failing: 0,
                chain: vec![],
                followers: vec![serde_json::from_value(serde_json::json!({
                    "name": "hop", "health": "healthy", "message": null, "reported_at": "", "age_seconds": 1,
                    "repositories": Counts::default(), "events": {"last_event_id": 1, "lag_seconds": 4}
                }))
                .unwrap()],
                failover: Some(crate::health::snapshot::Failover { ready: true, ..Default::default() }),
                deletions: crate::store::DeletionSummary { held: 3, ..Default::default() },
            }]),
            failing: Default::default(),
            daemon: None,
            last_sync_at: None,
            last_event_at: None,
            last_verified_at: None,
            last_bundle: None,
            unfinished_bundle: None,
            deletions: Default::default(),
            drill: Default::default(),
            failover: Some(crate::health::snapshot::Failover { ready: true, ..Default::default() }),
        };
        let text = render(&status, &stats);
        assert!(text.contains("georeg_sync_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("georeg_node_healthy{node=\"se\\\"c\"} 1\n"));
        assert!(text.contains("georeg_node_lag_seconds{node=\"hop\",via=\"se\\\"c\"} 4\n"), "{text}");
        assert!(text.contains("georeg_node_failover_ready{node=\"se\\\"c\"} 1\n"), "{text}");
        assert!(text.contains("georeg_node_deletions_held{node=\"se\\\"c\"} 3\n"), "{text}");
        assert!(text.contains("georeg_node_failover_ready{node=\"hop\",via=\"se\\\"c\"} 0\n"), "{text}");
        assert!(text.contains("georeg_build_info{version=\"1.2.3\",role=\"secondary\"} 1\n"), "{text}");
        assert!(text.contains("\ngeoreg_failover_ready 1\n") && text.contains("\ngeoreg_drill_failures 0\n"), "{text}");
        for name in ["georeg_copied_bytes_total", "process_resident_memory_bytes", "process_start_time_seconds"] {
            assert!(text.contains(&format!("\n{name} ")), "{name}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }

    #[test]
    fn state_file_times_become_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-11-30T01:02:03Z"), Some(1_796_000_523));
        assert_eq!(unix_seconds("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(unix_seconds("garbage"), None);
    }
}
