//! The dashboard's disaster-recovery section, on a secondary: failover
//! readiness and what would be lost, reconciliation (how recently every
//! repository was compared, the last pass and what it found), alarms,
//! deletions held back (how many, when the next applies, the burst alarm),
//! and the last drill.

use std::fmt::Write;

use super::html::escape;
use crate::format::human_bytes;
use crate::health::Status;

fn kv(label: &str, value: &str) -> String {
    format!("<div class=\"kv\"><div>{}</div><div>{}</div></div>", escape(label), value)
}

/// The section, as HTML.
pub fn section(s: &Status) -> String {
    let (d, drill) = (&s.deletions, &s.drill);
    let failover = match &s.failover {
        Some(f) if f.ready => "<span class=\"badge synced\">Ready</span>".to_string(),
        Some(_) => "<span class=\"badge failed\">Not ready</span>".to_string(),
        None => "<span class=\"muted\">-</span>".to_string(),
    };
    let last_drill = match &drill.last {
        None => "<span class=\"muted\">never</span>".to_string(),
        Some(l) if l.failures == 0 => {
            format!(
                "<span class=\"badge synced\">Passed</span> <span class=\"muted\">{}</span>",
                super::html::when(Some(&l.finished_at), "")
            )
        }
        Some(l) => format!(
            "<span class=\"badge failed\">{} of {} failed</span> <span class=\"muted\">{}</span>",
            l.failures,
            l.tags,
            super::html::when(Some(&l.finished_at), "")
        ),
    };
    let mut body = format!(
        "<section><h2>Disaster recovery</h2><div class=\"grid\">{}{}{}{}</div>",
        kv("Failover", &failover),
        kv(
            &format!("Deletions held ({} h delay)", d.delay_hours),
            &format!("{} <span class=\"muted\">({} tags)</span>", d.held, d.held_tags)
        ),
        kv("Next deletion applies", &super::html::when(d.next_applies_at.as_deref(), "none held")),
        kv("Last drill", &last_drill),
    );
    if let Some(c) = &s.reconcile {
        let _ = write!(
            body,
            "<p><strong>Reconciliation:</strong> {}</p>",
            escape(&crate::health::lines::reconcile_line(c, s.reconcile_blocked.as_deref()))
        );
    }
    for a in &s.alarms {
        let _ = write!(
            body,
            "<p class=\"msg\">Alarm: {} ({} times since {}{}): {}</p>",
            escape(&a.name),
            a.count,
            super::html::when(Some(&a.first_at), ""),
            a.source.as_deref().map(|s| format!(", from {}", escape(s))).unwrap_or_default(),
            escape(&a.message)
        );
    }
    if let Some(burst) = &d.burst {
        let _ = write!(
            body,
            "<p class=\"msg\">{}: review them with <code>georeg deletions</code>, then --apply or --cancel.</p>",
            escape(burst)
        );
    }
    if d.cancelled > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">{} deletions cancelled: the secondary keeps what the primary lost.</p>",
            d.cancelled
        );
    }
    if let Some(l) = drill.last.as_ref() {
        let _ = write!(
            body,
            "<p class=\"muted\">Last drill: {} tags, {} manifests and {} blobs ({}) pulled from the secondary and \
             hashed{}.</p>",
            l.tags,
            l.manifests,
            l.blobs,
            human_bytes(l.bytes.max(0) as u64),
            l.first_failure
                .as_ref()
                .map(|f| format!("; first failure: <span class=\"msg\">{}</span>", escape(f)))
                .unwrap_or_default()
        );
    }
    if let Some(f) = s.failover.as_ref().filter(|f| !f.findings.is_empty()) {
        body.push_str("<table><tr><th>Failover finding</th><th>What</th></tr>");
        for x in &f.findings {
            let _ = write!(
                body,
                "<tr><td><span class=\"badge {}\">{}</span> {}</td><td class=\"reason\">{}</td></tr>",
                if x.loss { "failed" } else { "pending" },
                if x.loss { "loss" } else { "note" },
                escape(&x.check),
                escape(&x.message)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::snapshot::{Failover, Finding};
    use crate::store::DrillRow;

    #[test]
    fn shows_readiness_held_deletions_the_burst_and_the_last_drill() {
        let mut s: Status = serde_json::from_str(
            r#"{"node":{"name":"s","role":"secondary","version":"1","replication_enabled":true},"healthy":true}"#,
        )
        .unwrap();
        s.deletions.held = 3;
        s.deletions.held_tags = 4;
        s.deletions.delay_hours = 24;
        s.deletions.burst = Some("burst of deletions: 10 of 12 tags of app".into());
        s.drill.last = Some(DrillRow {
            tags: 5,
            failures: 1,
            first_failure: Some("app:v1: blob <x>".into()),
            ..DrillRow::default()
        });
        s.failover = Some(Failover {
            ready: false,
            findings: vec![Finding {
                check: "failing".into(),
                loss: true,
                count: 1,
                message: "1 repository failing".into(),
            }],
            ..Failover::default()
        });
        let html = section(&s);
        for want in [
            "Not ready",
            "Deletions held (24 h delay)",
            "3 <span",
            "burst of deletions: 10 of 12 tags of app",
            "1 of 5 failed",
            "blob &lt;x&gt;",
            "1 repository failing",
        ] {
            assert!(html.contains(want), "{want}: {html}");
        }
    }
}
