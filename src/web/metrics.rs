//! `/metrics` in the Prometheus text exposition format. Gauges come from the
//! state file (the same numbers as the dashboard); counters and the sync
//! duration histogram count since the process started, as Prometheus
//! counters do. README lists every metric.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::health::stats::{Stats, SYNC_BUCKETS};
use crate::health::Status;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn one(value: impl Into<f64>) -> Vec<(String, f64)> {
    vec![(String::new(), value.into())]
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(status: &Status, stats: &Stats) -> String {
    let mut out = String::new();
    let r = &status.repositories;
    let gauges: [(&str, &str, i64); 9] = [
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
    ];
    for (name, help, value) in gauges {
        metric(&mut out, name, "gauge", help, &one(value as f64));
    }
    let counters = [
        (
            "georeg_events_received_total",
            "Registry events stored (notifications, or read from the primary's log).",
            &stats.events_received,
        ),
        ("georeg_events_processed_total", "Events applied to the secondary registry.", &stats.events_processed),
        ("georeg_bytes_copied_total", "Blob bytes copied from the primary to the secondary.", &stats.bytes_copied),
        ("georeg_blobs_copied_total", "Blobs copied from the primary.", &stats.blobs_copied),
        (
            "georeg_blobs_mounted_total",
            "Blobs mounted from another repository of the secondary instead of copied.",
            &stats.blobs_mounted,
        ),
        ("georeg_syncs_total", "Repository syncs that succeeded.", &stats.syncs_succeeded),
        ("georeg_sync_failures_total", "Repository syncs that failed.", &stats.syncs_failed),
    ];
    for (name, help, counter) in counters {
        metric(&mut out, name, "counter", help, &one(counter.load(Ordering::Relaxed) as f64));
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
        &mut out,
        "georeg_last_event_id",
        "gauge",
        "Newest event id (from the primary, on a secondary).",
        &one(e.last_event_id as f64),
    );
    metric(
        &mut out,
        "georeg_cursor_last_event_id",
        "gauge",
        "Last event id read and queued by this secondary.",
        &one(e.cursor_last_event_id.unwrap_or(0) as f64),
    );
    metric(
        &mut out,
        "georeg_cursor_lag_seconds",
        "gauge",
        "Seconds since the oldest event not yet applied to the secondary was received.",
        &one(e.lag_seconds as f64),
    );
    metric(&mut out, "georeg_events_stored", "gauge", "Events in the state file.", &one(e.stored as f64));
    if status.node.role == "secondary" {
        metric(
            &mut out,
            "georeg_container_repositories_failing_seconds",
            "gauge",
            "How long the repository failing longest has been failing (0: none is).",
            &one(status.failing.seconds as f64),
        );
    }
    metric(&mut out, "georeg_healthy", "gauge", "1 when this node reports no problem.", &one(u8::from(status.healthy)));
    if let Some(nodes) = &status.nodes {
        let healthy: Vec<(String, f64)> = nodes
            .iter()
            .map(|n| (format!("{{node=\"{}\"}}", label_value(&n.name)), f64::from(u8::from(n.health == "healthy"))))
            .collect();
        metric(
            &mut out,
            "georeg_node_healthy",
            "gauge",
            "1 when the secondary's last report was healthy and recent.",
            &healthy,
        );
        let age: Vec<(String, f64)> =
            nodes.iter().map(|n| (format!("{{node=\"{}\"}}", label_value(&n.name)), n.age_seconds as f64)).collect();
        metric(&mut out, "georeg_node_report_age_seconds", "gauge", "Seconds since the secondary last reported.", &age);
        let lag: Vec<(String, f64)> = nodes
            .iter()
            .map(|n| (format!("{{node=\"{}\"}}", label_value(&n.name)), n.events.lag_seconds as f64))
            .collect();
        metric(&mut out, "georeg_node_lag_seconds", "gauge", "The secondary's reported event lag.", &lag);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::status::{EventsStatus, NodeInfo, NodeStatus};

    #[test]
    fn renders_every_family_with_help_and_type() {
        let stats = Stats::default();
        let _ = stats.begin("a");
        stats.end("a", true);
        let status = Status {
            node: NodeInfo::default(),
            healthy: true,
            health_message: None,
            repositories: Default::default(),
            events: EventsStatus::default(),
            oldest_unsynced: None,
            copying: vec![],
            recent_failures: vec![],
            nodes: Some(vec![NodeStatus {
                name: "se\"c".into(),
                health: "healthy".into(),
                message: None,
                reported_at: String::new(),
                age_seconds: 3,
                repositories: Default::default(),
                events: Default::default(),
            }]),
            failing: Default::default(),
            daemon: None,
            last_sync_at: None,
            last_event_at: None,
        };
        let text = render(&status, &stats);
        assert!(text.contains("georeg_sync_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("georeg_node_healthy{node=\"se\\\"c\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
