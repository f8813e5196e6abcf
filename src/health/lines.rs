//! The status as people read it: the lines of `georeg status`, and the
//! one-line summaries (a chunked upload, a bundle, a reconciliation pass)
//! the dashboard shares with them.

use super::failover;
use super::snapshot::Status;
use crate::config::Role;
use crate::format::{human_age, human_bytes, percent};
use crate::store::{BundleRow, UploadRow};

/// Where a chunked copy stands: `app sha256:1234abcd 150.0 MB of 300.0 MB
/// (resumed at 134.2 MB), 2026-11-30T10:00:00Z`.
pub fn upload_line(u: &UploadRow) -> String {
    let short = u.digest.get(..15).unwrap_or(&u.digest);
    format!(
        "{} {short} {} of {}{}, updated {}",
        u.repository,
        human_bytes(u.bytes_done),
        human_bytes(u.size),
        u.resumed_from.map(|at| format!(" (resumed at {})", human_bytes(at))).unwrap_or_default(),
        u.updated_at
    )
}

/// The last bundle imported, in one line: `3f2a... from URL, exported AT
/// (3 h ago), imported AT`.
pub fn bundle_line(b: &BundleRow) -> String {
    format!(
        "{} from {}, exported {} ({} ago), imported {}",
        b.id,
        b.primary_url,
        b.created_at,
        human_age(b.age_seconds),
        b.imported_at.as_deref().unwrap_or("not yet")
    )
}

/// `georeg status` without --json: a few lines an operator reads at a glance.
/// Where comparison with the primary stands, in one line.
pub fn reconcile_line(c: &crate::store::Comparison, blocked: Option<&str>) -> String {
    let mut line = match (blocked, c.never, c.outside_window) {
        (Some(why), _, _) => format!("nothing compared yet: {why}"),
        (None, 0, 0) => format!(
            "every repository ({}) compared with the primary within {} s{}",
            c.repositories,
            c.window_seconds,
            c.oldest_at.as_deref().map(|at| format!(", the oldest at {at}")).unwrap_or_default()
        ),
        (None, never, outside) => format!(
            "{never} repositories never compared, {outside} not within {} s (replication.reconcile_interval_seconds)",
            c.window_seconds
        ),
    };
    if let Some(p) = &c.last_pass {
        let found: Vec<String> = p.differences.iter().map(|(k, n)| format!("{n} {k}")).collect();
        line.push_str(&format!(
            "; last pass ({}) {} s ago: {} compared in {} s, {} requests to the primary, {}",
            p.mode,
            p.age_seconds,
            p.compared,
            p.seconds,
            p.requests,
            if found.is_empty() { "nothing differed".to_string() } else { format!("found {}", found.join(", ")) }
        ));
    }
    line
}

pub fn text(s: &Status) -> String {
    let r = &s.repositories;
    let mut out = format!(
        "{} ({} node, georeg {})\nhealth: {}\n",
        s.node.name,
        s.node.role.as_str(),
        s.node.version,
        if s.healthy {
            "healthy".to_string()
        } else {
            format!("unhealthy: {}", s.health_message.clone().unwrap_or_default())
        }
    );
    if !s.ready {
        out.push_str(&format!("ready: no, {}\n", s.ready_message.clone().unwrap_or_default()));
    }
    for a in &s.alarms {
        out.push_str(&format!(
            "alarm: {} ({} times since {}, the last {} s ago{}): {}\n",
            a.name,
            a.count,
            a.first_at,
            a.age_seconds,
            a.source.as_deref().map(|s| format!(", from {s}")).unwrap_or_default(),
            a.message
        ));
    }
    out.push_str(&match &s.daemon {
        Some(holder) => format!("daemon: {holder} owns the state file\n"),
        None => "daemon: not running (no georeg process owns the state file)\n".to_string(),
    });
    out.push_str(&format!("last event: {}\n", s.last_event_at.as_deref().unwrap_or("none received yet")));
    if s.node.role == Role::Secondary {
        out.push_str(&format!("last sync: {}\n", s.last_sync_at.as_deref().unwrap_or("never synced")));
        if let Some(b) = &s.last_bundle {
            out.push_str(&format!("last bundle: {}\n", bundle_line(b)));
        }
        if let Some(b) = &s.unfinished_bundle {
            out.push_str(&format!(
                "bundle import not finished: {} (begun {}): run georeg import {} again\n",
                b.id, b.started_at, b.file
            ));
        }
        if let Some(oldest) = &s.failing.oldest {
            out.push_str(&format!(
                "failing: {}; {oldest} since {} ({} min): {}\n",
                crate::format::count(s.failing.repositories as u64, "repository", "repositories"),
                s.failing.since.as_deref().unwrap_or(""),
                s.failing.seconds / 60,
                s.failing.reason.as_deref().unwrap_or("")
            ));
        }
        out.push_str(&format!(
            "replication: {}\n",
            if s.node.replication_enabled { "enabled" } else { "paused (replication.enabled = false)" }
        ));
        out.push_str(&format!(
            "repositories: {} total, {} synced ({:.1}%), {} failed, {} queued, {} syncing\n",
            r.total,
            r.synced,
            percent(r.synced, r.total),
            r.failed,
            r.pending,
            r.started
        ));
        if r.unsupported_tags > 0 {
            out.push_str(&format!(
                "unsupported: {} tags the secondary refuses (Docker schema 1): see the unsupported_tags table\n",
                r.unsupported_tags
            ));
        }
        if let Some(c) = &s.reconcile {
            out.push_str(&format!("reconciliation: {}\n", reconcile_line(c, s.reconcile_blocked.as_deref())));
        }
        out.push_str(&format!(
            "verification: {} verified ({:.1}%), {} failed, {} pending\n",
            r.verified,
            percent(r.verified, r.total),
            r.verification_failed,
            r.verification_pending
        ));
        out.push_str(&format!(
            "events: last from primary {}, last processed {}, lag {}s\n",
            s.events.last_event_id,
            s.events.cursor_last_event_id.unwrap_or(0),
            s.events.lag_seconds
        ));
        if let Some(gap) = &s.events.cursor_gap {
            out.push_str(&format!("event log: lost its place at {gap}\n"));
        }
        if !s.node.chain.is_empty() {
            out.push_str(&format!("chain: {} -> {}\n", s.node.name, s.node.chain.join(" -> ")));
        }
        if let Some(o) = &s.oldest_unsynced {
            out.push_str(&format!("oldest unsynced: {} (since {})\n", o.repository, o.since));
        }
        for u in &s.uploads {
            out.push_str(&format!("large blob: {}\n", upload_line(u)));
        }
        out.push_str(&failover::status_lines(s));
        for f in &s.recent_failures {
            out.push_str(&format!("failed: {}: {}\n", f.name, f.last_sync_failure.clone().unwrap_or_default()));
        }
    } else {
        out.push_str(&format!(
            "event log: {} events, last id {}, {:.1}/min over 10 min\n",
            s.events.stored, s.events.last_event_id, s.events.per_minute
        ));
    }
    followers(&mut out, s.nodes.as_deref().unwrap_or_default(), 0);
    out
}

/// One line per node that reports to this one (a primary's secondaries, a
/// relay's followers), theirs indented below them.
fn followers(out: &mut String, nodes: &[super::snapshot::NodeStatus], depth: usize) {
    for n in nodes {
        out.push_str(&format!(
            "{}{} {}: {}{}, {}/{} synced, lag {}s, reported {}\n",
            "  ".repeat(depth),
            if depth == 0 { "follower" } else { "its follower" },
            n.name,
            n.health.as_str(),
            n.message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default(),
            n.repositories.synced,
            n.repositories.total,
            n.events.lag_seconds,
            n.reported_at
        ));
        if depth < 8 {
            followers(out, &n.followers, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_line_says_how_old_the_copy_is() {
        let b = BundleRow {
            id: "3f2a".into(),
            primary_url: "https://p.example".into(),
            created_at: "2026-11-30T07:00:00.000Z".into(),
            inventory_id: None,
            file: "/media/b.tar".into(),
            repositories: 3,
            started_at: "2026-11-30T09:00:00Z".into(),
            imported_at: Some("2026-11-30T09:05:00Z".into()),
            report: None,
            age_seconds: 3 * 3600 + 5,
        };
        assert_eq!(
            bundle_line(&b),
            "3f2a from https://p.example, exported 2026-11-30T07:00:00.000Z (3 h ago), imported 2026-11-30T09:05:00Z"
        );
    }

    #[test]
    fn an_upload_line_says_where_the_copy_stands_and_where_it_resumed() {
        let u = UploadRow {
            repository: "app".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 300_000_000,
            bytes_done: 150_994_944,
            resumed_from: Some(134_217_728),
            updated_at: "2026-11-30T10:00:00Z".into(),
        };
        assert_eq!(
            upload_line(&u),
            "app sha256:abababab 151.0 MB of 300.0 MB (resumed at 134.2 MB), updated 2026-11-30T10:00:00Z"
        );
    }
}
