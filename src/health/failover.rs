//! Disaster-recovery readiness: what would be lost if the primary vanished
//! now (`georeg failover-check`, the `failover` object of the status, and
//! `georeg_failover_ready`), and the lines `georeg status` prints about
//! held deletions, drills and failover.
//!
//! Each finding is a loss (the secondary lacks something, or has not
//! proved it holds it: failover is not ready) or a note (worth knowing,
//! nothing lost: deletions held back, no drill yet).

use super::snapshot::{Failover, Finding, Status};
use crate::config::Config;
use crate::error::Result;
use crate::format::count;
use crate::store::Snapshot;

/// Assesses a secondary's readiness from the state file and the rest of
/// its status (everything but `failover`).
pub fn assess(config: &Config, store: &Snapshot, s: &Status) -> Result<Failover> {
    let r = store.readiness(config.replication.reverification_interval_seconds)?;
    let mut found = Vec::new();
    let mut add = |check: &str, loss: bool, count: i64, message: String| {
        if count > 0 {
            found.push(Finding { check: check.into(), loss, count, message });
        }
    };
    let example = |c: &crate::store::Counted| match (&c.example, &c.detail) {
        (Some(e), Some(d)) => format!(": {e} ({d})"),
        (Some(e), None) => format!(": {e}"),
        _ => String::new(),
    };
    let e = &r.unapplied_events;
    add(
        "unapplied_events",
        true,
        e.count,
        format!(
            "{} events received but not applied to the secondary, the oldest {} s old ({})",
            e.count,
            r.oldest_unapplied_seconds,
            e.example.as_deref().unwrap_or("")
        ),
    );
    if config.replication.primary_node_url.is_some() {
        let unread = (s.events.last_event_id - s.events.cursor_last_event_id.unwrap_or(0)).max(0);
        add(
            "unread_events",
            true,
            unread,
            format!(
                "{unread} events in the log of the georeg it follows not read yet (read up to {}, the log at {})",
                s.events.cursor_last_event_id.unwrap_or(0),
                s.events.last_event_id
            ),
        );
    }
    // Following a relay: what the relay lacks of the primary, this node
    // lacks too. (Promoting this node while the primary stands is never
    // the question; losing both the primary and the relay is.)
    if let Some(behind) = store.cursor()?.upstream_behind.filter(|_| s.node.chain.len() > 1) {
        add(
            "upstream_behind",
            true,
            1,
            format!(
                "the relay this node follows ({}) is behind the primary, so this node may lack what it lacks: {behind}",
                s.node.chain.join(" -> ")
            ),
        );
    }
    add(
        "not_synced",
        true,
        r.not_synced.count,
        format!("{} not synced{}", repositories(r.not_synced.count), example(&r.not_synced)),
    );
    let f = &s.failing;
    add(
        "failing",
        true,
        f.repositories,
        format!(
            "{} failing: {} since {}: {}",
            repositories(f.repositories),
            f.oldest.as_deref().unwrap_or(""),
            f.since.as_deref().unwrap_or(""),
            f.reason.as_deref().unwrap_or("")
        ),
    );
    // Readiness is earned by comparison: notifications may have been lost.
    if let Some(c) = &s.reconcile {
        if let Some(why) = &s.reconcile_blocked {
            add(
                "never_compared",
                true,
                c.repositories.max(1),
                format!("{} never compared with the primary: {why}", repositories(c.repositories)),
            );
        }
        if c.listed_seconds_ago.is_none_or(|age| age > c.window_seconds) {
            add(
                "not_listed",
                true,
                1,
                match c.listed_seconds_ago {
                    None => "the primary's list of repositories was never read (no catalog scan, no reconciliation \
                             pass): repositories new there may be unknown here"
                        .to_string(),
                    Some(age) => format!(
                        "the primary's list of repositories was last read {age} s ago, longer than \
                         replication.reconcile_interval_seconds ({} s)",
                        c.window_seconds
                    ),
                },
            );
        }
        add(
            "never_compared",
            true,
            if s.reconcile_blocked.is_some() { 0 } else { c.never },
            format!(
                "{} never compared with the primary (reconciliation compares each within \
                 replication.reconcile_interval_seconds, {} s; a follower compares through the primary georeg)",
                repositories(c.never),
                c.window_seconds
            ),
        );
        add(
            "not_compared",
            true,
            c.outside_window,
            format!(
                "{} last compared with the primary longer ago than replication.reconcile_interval_seconds \
                 ({} s); the oldest: {} at {}",
                repositories(c.outside_window),
                c.window_seconds,
                c.oldest.as_deref().unwrap_or(""),
                c.oldest_at.as_deref().unwrap_or("")
            ),
        );
    }
    let unsupported = s.repositories.unsupported_tags;
    add(
        "unsupported_tags",
        true,
        unsupported,
        format!("{unsupported} tags the secondary refuses (Docker schema 1): see the unsupported_tags table"),
    );
    add(
        "unverified",
        true,
        r.unverified.count,
        format!(
            "{} not verified since their last full sync{}",
            repositories(r.unverified.count),
            example(&r.unverified)
        ),
    );
    add(
        "verification_failed",
        true,
        r.verification_failed.count,
        format!(
            "{} whose last verification failed{}",
            repositories(r.verification_failed.count),
            example(&r.verification_failed)
        ),
    );
    add(
        "verification_stale",
        true,
        r.verification_stale.count,
        format!(
            "{} verified longer ago than replication.reverification_interval_seconds{}",
            repositories(r.verification_stale.count),
            example(&r.verification_stale)
        ),
    );
    if let Some(last) = s.drill.last.as_ref().filter(|d| d.failures > 0) {
        add(
            "drill_failed",
            true,
            last.failures,
            format!(
                "the last drill ({}) could not pull {} of {} tags whole; first: {}",
                last.finished_at,
                last.failures,
                last.tags,
                last.first_failure.as_deref().unwrap_or("")
            ),
        );
    }
    add(
        "drill_unrepaired",
        true,
        s.drill.unrepaired,
        format!(
            "{} failures found by drills are not repaired yet (a full sync of their repository is queued)",
            s.drill.unrepaired
        ),
    );
    let d = &s.deletions;
    add(
        "held_deletions",
        false,
        d.held,
        format!(
            "{} deletions held back: {} tags the primary no longer has are still on the secondary; the next applies \
             at {} (georeg deletions)",
            d.held,
            d.held_tags,
            d.next_applies_at.as_deref().unwrap_or("")
        ),
    );
    add(
        "cancelled_deletions",
        false,
        d.cancelled,
        format!("{} deletions cancelled: the secondary keeps what the primary lost", d.cancelled),
    );
    add(
        "excluded",
        false,
        r.excluded,
        format!("{} left out by selective sync are not on the secondary", repositories(r.excluded)),
    );
    if s.drill.last.is_none() {
        add("no_drill", false, 1, "no drill has pulled from the secondary yet (georeg drill)".into());
    }
    if s.daemon.is_none() {
        add("no_daemon", false, 1, "no georeg serve owns the state file: nothing replicates now".into());
    }
    if let Some(e) = &s.events.cursor_error {
        add("cursor_error", false, 1, format!("cannot read the primary georeg's event log: {e}"));
    }
    add(
        "recent_lag",
        false,
        r.recent_lag_seconds,
        format!("push-to-pullable lag over the last hour: at most {} s", r.recent_lag_seconds),
    );
    Ok(Failover {
        ready: !found.iter().any(|f| f.loss),
        oldest_comparison_at: s.reconcile.as_ref().and_then(|c| c.oldest_at.clone()),
        findings: found,
        oldest_unapplied_seconds: r.oldest_unapplied_seconds,
        recent_lag_seconds: r.recent_lag_seconds,
    })
}

/// `georeg failover-check`: one line per finding, then the verdict.
pub fn lines(f: &Failover) -> Vec<String> {
    let mut out: Vec<String> = f
        .findings
        .iter()
        .map(|x| format!("{} {}: {}", if x.loss { "LOSS" } else { "note" }, x.check, x.message))
        .collect();
    out.push(if f.ready {
        "ready: nothing would be lost if the primary vanished now".into()
    } else {
        let losses = f.findings.iter().filter(|x| x.loss).count();
        format!(
            "NOT READY: {} above would lose data if the primary vanished now",
            count(losses as u64, "finding", "findings")
        )
    });
    out
}

/// What `georeg status` says about held deletions, drills and failover.
pub fn status_lines(s: &Status) -> String {
    let mut out = String::new();
    let d = &s.deletions;
    let delay_hours = d.delay_hours;
    if delay_hours > 0 || d.held > 0 || d.cancelled > 0 {
        out.push_str(&format!(
            "deletions: {} held ({} tags){}, {} cancelled; replication.delete_delay_hours = {delay_hours}\n",
            d.held,
            d.held_tags,
            d.next_applies_at.as_ref().map(|at| format!(", the next applies at {at}")).unwrap_or_default(),
            d.cancelled
        ));
    }
    out.push_str(&match &s.drill.last {
        None => "last drill: none yet\n".to_string(),
        Some(l) if l.failures == 0 => format!(
            "last drill: {}, {} tags, {} blobs ({}) pulled whole\n",
            l.finished_at,
            l.tags,
            l.blobs,
            crate::format::human_bytes(l.bytes.max(0) as u64)
        ),
        Some(l) => format!(
            "last drill: {}, FAILED for {} of {} tags; first failing digest {}: {}\n",
            l.finished_at,
            l.failures,
            l.tags,
            l.first_failing_digest.as_deref().unwrap_or(""),
            l.first_failure.as_deref().unwrap_or("")
        ),
    });
    if let Some(f) = &s.failover {
        out.push_str(&if f.ready {
            "failover: ready, nothing would be lost\n".to_string()
        } else {
            let losses = f.findings.iter().filter(|x| x.loss).count();
            format!("failover: NOT READY, {losses} findings (georeg failover-check lists them)\n")
        });
    }
    out
}

/// `1 repository`, `3 repositories`.
fn repositories<N: TryInto<u64>>(n: N) -> String {
    count(n.try_into().unwrap_or(0), "repository", "repositories")
}
