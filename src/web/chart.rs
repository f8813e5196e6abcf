//! The dashboard's chart of the last 24 hours: the lag and the copy
//! throughput, from the samples the report thread keeps in the state file,
//! drawn as inline SVG (no script, no external asset).

use std::fmt::Write;

use crate::format::human_bytes;
use crate::store::Sample;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 120.0;
const DAY: f64 = 86_400.0;

/// One panel: a line of `values` (seconds ago, value) scaled to its peak.
fn panel(title: &str, points: &[(f64, f64)], label: impl Fn(f64) -> String, class: &str) -> String {
    let peak = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let scale = if peak > 0.0 { peak } else { 1.0 };
    let mut line = String::new();
    for (ago, value) in points {
        let x = WIDTH * (1.0 - ago / DAY);
        let y = HEIGHT - 4.0 - (HEIGHT - 8.0) * value / scale;
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    let half = HEIGHT / 2.0;
    format!(
        "<h3>{title} <span class=\"muted\">(peak {peak_label})</span></h3>\
         <div class=\"axis\"><div class=\"y\"><span>{peak_label}</span><span>{half_label}</span><span>0</span></div>\
         <svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"{title}\"><rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" class=\"chart-bg\"/>\
         <line x1=\"0\" y1=\"{half}\" x2=\"{WIDTH}\" y2=\"{half}\" class=\"grid-line\" vector-effect=\"non-scaling-stroke\"/>\
         <polyline points=\"{line}\" class=\"{class}\" fill=\"none\" vector-effect=\"non-scaling-stroke\"/></svg></div>\
         <div class=\"x\"><span>24 h ago</span><span>18 h ago</span><span>12 h ago</span><span>6 h ago</span>\
         <span>now</span></div>",
        peak_label = label(peak),
        half_label = label(peak / 2.0),
    )
}

/// The section: lag, then throughput (bytes copied between samples).
pub fn last_day(samples: &[Sample]) -> String {
    if samples.len() < 2 {
        return "<section><h2>Last 24 hours</h2><p class=\"muted\">The chart fills in as georeg runs (one sample per \
                report interval).</p></section>"
            .into();
    }
    let lag: Vec<(f64, f64)> = samples.iter().map(|s| (s.ago_seconds as f64, s.lag_seconds as f64)).collect();
    let rate: Vec<(f64, f64)> = samples
        .windows(2)
        .map(|w| {
            let seconds = (w[0].ago_seconds - w[1].ago_seconds).max(1) as f64;
            // A restart starts the counter again: no negative throughput.
            let bytes = (w[1].copied_bytes - w[0].copied_bytes).max(0) as f64;
            (w[1].ago_seconds as f64, bytes / seconds)
        })
        .collect();
    format!(
        "<section><h2>Last 24 hours</h2>{}{}</section>",
        panel("Lag (seconds behind the primary)", &lag, |v| format!("{v:.0} s"), "line-lag"),
        panel("Copy throughput (bytes per second)", &rate, |v| format!("{}/s", human_bytes(v as u64)), "line-rate"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_scaled_to_their_peak() {
        let samples = vec![
            Sample { ago_seconds: 86_400, lag_seconds: 0, copied_bytes: 0 },
            Sample { ago_seconds: 43_200, lag_seconds: 10, copied_bytes: 1_000_000 },
            Sample { ago_seconds: 0, lag_seconds: 5, copied_bytes: 0 },
        ];
        let svg = last_day(&samples);
        assert!(svg.contains("<svg") && svg.contains("peak 10 s") && !svg.contains("NaN"), "{svg}");
        assert!(svg.contains("0.0,116.0") && svg.contains("500.0,4.0"), "{svg}");
        assert!(last_day(&samples[..1]).contains("fills in"));
    }
}
