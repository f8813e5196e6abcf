//! `/metrics` on a primary (and a relay): a gauge per node that reports
//! in, and under each relay per node that follows it, labelled with the
//! relay (`via`).

use super::exposition::{label_value, metric};

/// On a primary (and a relay): the nodes that report in, and under each
/// relay the nodes that follow it, labelled with the relay (`via`).
pub(super) fn node_metrics(out: &mut String, nodes: &[crate::health::snapshot::NodeStatus]) {
    let mut tree = Vec::new();
    flatten(nodes, None, &mut tree);
    let by_node = |f: &dyn Fn(&crate::health::snapshot::NodeStatus) -> f64| -> Vec<(String, f64)> {
        tree.iter()
            .map(|(n, via)| {
                let via = via.map(|v| format!(",via=\"{}\"", label_value(v))).unwrap_or_default();
                (format!("{{node=\"{}\"{via}}}", label_value(&n.name)), f(n))
            })
            .collect()
    };
    metric(
        out,
        "georeg_node_healthy",
        "gauge",
        "1 when the secondary's last report was healthy and recent.",
        &by_node(&|n| f64::from(u8::from(n.health == crate::health::snapshot::NodeHealth::Healthy))),
    );
    metric(
        out,
        "georeg_node_report_age_seconds",
        "gauge",
        "Seconds since the secondary last reported.",
        &by_node(&|n| n.age_seconds as f64),
    );
    metric(
        out,
        "georeg_node_lag_seconds",
        "gauge",
        "The secondary's reported event lag.",
        &by_node(&|n| n.events.lag_seconds as f64),
    );
    metric(
        out,
        "georeg_node_failover_ready",
        "gauge",
        "1 when the secondary reported that failover to it would lose nothing.",
        &by_node(&|n| f64::from(u8::from(n.failover.as_ref().is_some_and(|f| f.ready)))),
    );
    metric(
        out,
        "georeg_node_deletions_held",
        "gauge",
        "Deletions the secondary reported holding back (replication.delete_delay_hours).",
        &by_node(&|n| n.deletions.held as f64),
    );
}

/// Every node of the tree with the relay it reports through (none for
/// this node's own followers), at most a few levels deep.
fn flatten<'a>(
    nodes: &'a [crate::health::snapshot::NodeStatus],
    via: Option<&'a str>,
    out: &mut Vec<(&'a crate::health::snapshot::NodeStatus, Option<&'a str>)>,
) {
    for n in nodes {
        out.push((n, via));
        if out.len() < 10_000 {
            flatten(&n.followers, Some(&n.name), out);
        }
    }
}
