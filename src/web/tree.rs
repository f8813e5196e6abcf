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
             {} failing</div>\
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
}
