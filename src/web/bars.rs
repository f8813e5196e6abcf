//! The dashboard's stacked bars: a node's repositories by sync state and
//! by verification state, each with its legend of counts and percentages.

use std::fmt::Write;

use crate::format::percent;

/// One stacked bar and its legend. `parts`: (label, count, css class).
fn bar(parts: &[(&str, i64, &str)], total: i64) -> String {
    let mut out = String::from("<div class=\"bar\">");
    for (label, n, class) in parts {
        if *n > 0 && !class.is_empty() {
            let _ = write!(
                out,
                "<span class=\"{class}\" style=\"width:{:.2}%\" title=\"{label}\"></span>",
                percent(*n, total)
            );
        }
    }
    out.push_str("</div><div class=\"legend\">");
    for (label, n, class) in parts {
        let dot = if class.is_empty() { String::new() } else { format!("<span class=\"dot {class}\"></span>") };
        let _ = write!(out, "{dot}{label} <b>{n}</b> ({:.1}%) ", percent(*n, total));
    }
    let _ = write!(out, "<span class=\"dot\"></span>Total <b>{total}</b></div>");
    out
}

pub fn sync_bar(r: &crate::store::Counts) -> String {
    bar(
        &[
            ("Synced", r.synced, "ok"),
            ("Failed", r.failed, "bad"),
            ("Queued", r.pending, "wait"),
            ("Syncing", r.started, "run"),
        ],
        r.total,
    )
}

pub fn verification_bar(r: &crate::store::Counts) -> String {
    bar(
        &[
            ("Verified", r.verified, "ok"),
            ("Failed", r.verification_failed, "bad"),
            ("Pending", r.verification_pending, "wait"),
        ],
        r.total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_counts_and_percentages() {
        let html = bar(&[("Synced", 3, "ok"), ("Failed", 1, "bad")], 4);
        assert!(
            html.contains("width:75.00%")
                && html.contains("Synced <b>3</b> (75.0%)")
                && html.contains("Total <b>4</b>")
        );
        assert!(!bar(&[("Synced", 0, "ok")], 0).contains("NaN"));
    }
}
