//! The dashboard's tree of nodes: on the primary, every secondary that
//! reports to it, and under each relay the nodes that follow it, as far
//! down as they go, each with its health and its hop's lag; on a relay, the
//! nodes that follow it. And the chain a secondary follows, up to the
//! primary.

use std::fmt::Write;

use super::bars::{sync_bar, verification_bar};
use super::html::escape;
use crate::health::snapshot::NodeStatus;
use crate::health::Status;

/// Deeper than this, a tree is not drawn (a report cannot nest forever).
const MAX_DEPTH: usize = 8;

/// The section listing the nodes that report to this one, with theirs.
pub fn section(s: &Status, title: &str) -> String {
    let mut out = format!("<section><h2>{}</h2>", escape(title));
    let nodes = s.nodes.clone().unwrap_or_default();
    if nodes.is_empty() {
        out.push_str(
            "<p class=\"muted\">No node has reported yet. Nodes report every 60 s once they follow this one \
             (replication.primary_node_url).</p>",
        );
    }
    for n in &nodes {
        let _ = write!(
            out,
            "<h3>{} <span class=\"badge {}\">{}</span> <span class=\"msg\">{}</span></h3>\
             <div class=\"legend\">{} · georeg {} · last report {} s ago · last event ID processed {} · lag {} s · \
             {} failing</div><div class=\"legend\">{}</div>\
             <div class=\"legend\">Synchronization</div>{}<div class=\"legend\">Verification</div>{}",
            escape(&n.name),
            n.health.as_str(),
            n.health.as_str(),
            escape(n.message.as_deref().unwrap_or("")),
            match &n.dashboard {
                Some(url) => format!("<a href=\"{0}\">{0}</a>", escape(url)),
                None => escape(if n.listen.is_empty() { "address not reported" } else { &n.listen }),
            },
            escape(if n.version.is_empty() { "?" } else { &n.version }),
            n.age_seconds,
            n.events.cursor_last_event_id.unwrap_or(0),
            n.events.lag_seconds,
            n.failing,
            failover_and_deletions(n),
            sync_bar(&n.repositories),
            verification_bar(&n.repositories),
        );
        if !n.followers.is_empty() {
            let _ = write!(out, "<div class=\"legend\">Nodes following {}</div>", escape(&n.name));
            out.push_str(&followers(&n.followers, 1));
        }
    }
    out.push_str("</section>");
    out
}

/// `Failover: ready · 2 deletions held (next 2026-...)`, as the node
/// reported them: what failover to it would lose, and what it holds back.
fn failover_and_deletions(n: &NodeStatus) -> String {
    let failover = match &n.failover {
        None => "Failover: not assessed".to_string(),
        Some(f) if f.ready => "Failover: <span class=\"badge synced\">ready</span>".to_string(),
        Some(f) => {
            let losses: Vec<String> =
                f.findings.iter().filter(|x| x.loss).map(|x| format!("{}: {}", x.check, x.message)).collect();
            format!(
                "Failover: <span class=\"badge failed\">not ready</span> <span class=\"msg\">{}</span>",
                escape(&losses.join("; "))
            )
        }
    };
    let d = &n.deletions;
    let held = match (d.held, &d.next_applies_at) {
        (0, _) => "no deletions held".to_string(),
        (held, Some(next)) => {
            format!("{} held, the next applies at {next}", crate::format::count(held as u64, "deletion", "deletions"))
        }
        (held, None) => format!("{} held", crate::format::count(held as u64, "deletion", "deletions")),
    };
    let burst =
        d.burst.as_ref().map(|b| format!(" · <span class=\"badge failed\">{}</span>", escape(b))).unwrap_or_default();
    format!("{failover} · {}{burst}", escape(&held))
}

/// The nodes following a relay, one line each, their own below them.
fn followers(nodes: &[NodeStatus], depth: usize) -> String {
    if depth > MAX_DEPTH {
        return "<p class=\"muted\">(deeper nodes not shown)</p>".into();
    }
    let mut out = String::from("<ul class=\"tree\">");
    for n in nodes {
        let _ = write!(
            out,
            "<li><b>{}</b> <span class=\"badge {}\">{}</span> lag {} s · last event ID processed {} · {}/{} synced · \
             last report {} s ago <span class=\"msg\">{}</span>{}</li>",
            escape(&n.name),
            n.health.as_str(),
            n.health.as_str(),
            n.events.lag_seconds,
            n.events.cursor_last_event_id.unwrap_or(0),
            n.repositories.synced,
            n.repositories.total,
            n.age_seconds,
            escape(n.message.as_deref().unwrap_or("")),
            if n.followers.is_empty() { String::new() } else { followers(&n.followers, depth + 1) },
        );
    }
    out.push_str("</ul>");
    out
}

/// ` · chain: relay → primary`, when this node follows a georeg that said.
pub fn chain(s: &Status) -> String {
    if s.node.chain.is_empty() {
        return String::new();
    }
    format!(" · chain: {} → {}", escape(&s.node.name), escape(&s.node.chain.join(" → ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::snapshot::NodeHealth;

    fn counts() -> serde_json::Value {
        serde_json::to_value(crate::store::Counts::default()).unwrap()
    }

    fn node(name: &str, lag: i64, followers: Vec<NodeStatus>) -> NodeStatus {
        let mut n: NodeStatus = serde_json::from_value(serde_json::json!({
            "name": name, "health": "healthy", "message": null, "reported_at": "2026-12-06T00:00:00Z",
            "age_seconds": 12, "repositories": counts(), "events": {"last_event_id": 9, "cursor_last_event_id": 7,
            "lag_seconds": lag}
        }))
        .unwrap();
        n.followers = followers;
        n
    }

    #[test]
    fn the_tree_shows_each_hop_with_its_lag_and_escapes_names() {
        let hop = node("<hop>", 4, vec![]);
        let relay = node("relay", 2, vec![hop]);
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "node": {"name": "primary", "role": "primary", "version": "1", "replication_enabled": false},
            "healthy": true, "repositories": counts(), "events": {"last_event_id": 9, "lag_seconds": 0}
        }))
        .unwrap();
        status.nodes = Some(vec![relay]);
        let html = section(&status, "Secondary nodes");
        assert!(html.contains("<h3>relay <span class=\"badge healthy\">"), "{html}");
        assert!(html.contains("Nodes following relay"), "{html}");
        assert!(html.contains("<li><b>&lt;hop&gt;</b>") && html.contains("lag 4 s"), "{html}");
        assert_eq!(status.nodes.as_ref().unwrap()[0].health, NodeHealth::Healthy);
    }

    #[test]
    fn a_chain_reads_from_this_node_up_to_the_primary() {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "node": {"name": "hop", "role": "secondary", "version": "1", "replication_enabled": true},
            "healthy": true, "repositories": counts(), "events": {"last_event_id": 9, "lag_seconds": 0}
        }))
        .unwrap();
        assert_eq!(chain(&status), "");
        status.node.chain = vec!["relay".into(), "primary".into()];
        assert_eq!(chain(&status), " · chain: hop → relay → primary");
    }

    #[test]
    fn each_node_shows_what_failover_to_it_would_lose_and_what_it_holds_back() {
        let mut n = node("site", 1, vec![]);
        assert!(failover_and_deletions(&n).contains("Failover: not assessed · no deletions held"));
        n.failover = serde_json::from_value(serde_json::json!({"ready": false, "oldest_unapplied_seconds": 0,
            "recent_lag_seconds": 0, "findings": [
                {"check": "failing", "loss": true, "count": 1, "message": "1 repository <failing>"},
                {"check": "held_deletions", "loss": false, "count": 2, "message": "a note"}]}))
        .unwrap();
        n.deletions.held = 2;
        n.deletions.next_applies_at = Some("2026-12-08T00:00:00Z".into());
        n.deletions.burst = Some("burst of deletions".into());
        let line = failover_and_deletions(&n);
        assert!(
            line.contains("not ready</span> <span class=\"msg\">failing: 1 repository &lt;failing&gt;</span>"),
            "{line}"
        );
        assert!(!line.contains("a note"), "notes are not losses: {line}");
        assert!(line.contains("2 deletions held, the next applies at 2026-12-08T00:00:00Z"), "{line}");
        assert!(line.contains("burst of deletions"), "{line}");
    }
}
