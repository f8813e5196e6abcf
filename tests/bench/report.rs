//! The results: one markdown report with the machine, every figure, every
//! ratio, and each target marked met or not met. Nothing here asserts on a
//! timing: the benchmark reports, it does not judge a run by its numbers.

use std::fmt::Write as _;
use std::time::Duration;

/// One tool's run of one scenario.
pub struct Row {
    pub scenario: String,
    pub tool: String,
    pub wall: Duration,
    /// Blob bytes moved.
    pub bytes: u64,
    /// Images (tags) made present or checked.
    pub images: u64,
    pub rss_kib: Option<u64>,
    pub requests: Option<u64>,
    /// CPU seconds of the tool, the primary and the secondary registry.
    pub cpu: Option<crate::lab::Cpu>,
    /// How georeg compares with this row, filled in by the scenario.
    pub versus: String,
    pub note: String,
    /// Bytes that crossed an emulated WAN link: (downstream, upstream).
    pub link: Option<(u64, u64)>,
}

impl Row {
    pub fn new(scenario: &str, tool: &str, wall: Duration, bytes: u64, images: u64) -> Row {
        Row {
            scenario: scenario.into(),
            tool: tool.into(),
            wall,
            bytes,
            images,
            rss_kib: None,
            requests: None,
            cpu: None,
            versus: String::new(),
            note: String::new(),
            link: None,
        }
    }

    pub fn link(mut self, down: u64, up: u64) -> Row {
        self.link = Some((down, up));
        self
    }

    pub fn rss(mut self, kib: u64) -> Row {
        self.rss_kib = (kib > 0).then_some(kib);
        self
    }

    pub fn requests(mut self, n: u64) -> Row {
        self.requests = Some(n);
        self
    }

    pub fn cpu(mut self, cpu: crate::lab::Cpu) -> Row {
        self.cpu = Some(cpu);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn images_per_s(&self) -> f64 {
        self.images as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Latency samples of one kind, with an optional rate.
pub struct Latency {
    pub what: String,
    pub samples: Vec<Duration>,
    pub rate: Option<String>,
    pub rss_kib: Option<u64>,
    pub note: String,
}

impl Latency {
    pub fn percentile(&self, q: f64) -> Duration {
        percentile(&self.samples, q)
    }
}

/// Nearest-rank percentile; zero of no samples.
pub fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// A table of its own (the scale scenario's): a title, a header and rows
/// of cells; the first column is left-aligned, the others right-aligned.
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Report {
    pub title: String,
    pub machine: Vec<(String, String)>,
    pub rows: Vec<Row>,
    /// The WAN scenario's rows: a table of their own, with the bytes over the link.
    pub wan_rows: Vec<Row>,
    pub latencies: Vec<Latency>,
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    /// The largest share of CPU other work took right before each scenario.
    pub noise: Vec<(String, f64)>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn target(&mut self, what: &str, measured: String, met: bool) {
        self.targets.push(Target { what: what.into(), measured, met });
    }

    pub fn noise(&mut self, scenario: &str, busy: f64) {
        match self.noise.iter_mut().find(|(s, _)| s == scenario) {
            Some((_, b)) => *b = b.max(busy),
            None => self.noise.push((scenario.to_string(), busy)),
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "### {}\n", self.title);
        for (k, v) in &self.machine {
            let _ = writeln!(md, "- {k}: {v}");
        }
        md.push('\n');
        if !self.rows.is_empty() {
            md.push_str(
                "| scenario | tool | wall | MB/s | images/s | peak RSS | registry requests | CPU s: tool + primary + secondary | georeg compared |\n",
            );
            md.push_str("|---|---|--:|--:|--:|--:|--:|--:|---|\n");
            table(&mut md, &self.rows, false);
        }
        if !self.wan_rows.is_empty() {
            if !self.rows.is_empty() {
                md.push('\n');
            }
            md.push_str(
                "| WAN scenario | tool | wall | MB/s | images/s | MB over the link: down / up | peak RSS | registry requests | CPU s: tool + primary + secondary | georeg compared |\n",
            );
            md.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|---|\n");
            table(&mut md, &self.wan_rows, true);
        }
        if !self.latencies.is_empty() {
            md.push_str("\n| measure | n | p50 | p99 | max | rate | peak RSS |\n|---|--:|--:|--:|--:|--:|--:|\n");
            for l in &self.latencies {
                let what = if l.note.is_empty() { l.what.clone() } else { format!("{} ({})", l.what, l.note) };
                let _ = writeln!(
                    md,
                    "| {what} | {} | {} | {} | {} | {} | {} |",
                    thousands(l.samples.len() as u64),
                    millis(l.percentile(0.50)),
                    millis(l.percentile(0.99)),
                    millis(l.percentile(1.0)),
                    l.rate.as_deref().unwrap_or("-"),
                    l.rss_kib.map(|k| format!("{:.1} MB", k as f64 * 1024.0 / 1e6)).unwrap_or_else(|| "-".into()),
                );
            }
        }
        for t in &self.tables {
            let _ = writeln!(md, "\n{}\n", t.title);
            let _ = writeln!(md, "| {} |", t.header.join(" | "));
            let align: Vec<&str> = (0..t.header.len()).map(|i| if i == 0 { "---" } else { "--:" }).collect();
            let _ = writeln!(md, "|{}|", align.join("|"));
            for row in &t.rows {
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
        }
        if !self.targets.is_empty() {
            md.push_str("\n| target | measured | |\n|---|---|---|\n");
            for t in &self.targets {
                let status = if t.met { "met" } else { "**not met**" };
                let _ = writeln!(md, "| {} | {} | {status} |", t.what, t.measured);
            }
        }
        let noisy: Vec<String> = self
            .noise
            .iter()
            .filter(|(_, busy)| *busy > 0.10)
            .map(|(s, busy)| format!("{s} {:.0} %", busy * 100.0))
            .collect();
        if !self.notes.is_empty() || !noisy.is_empty() {
            md.push('\n');
        }
        if !noisy.is_empty() {
            let _ = writeln!(
                md,
                "- other work kept the machine's CPUs busy right before some measurements, adding noise to them: {}",
                noisy.join(", ")
            );
        }
        if !self.notes.is_empty() {
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

/// Table lines for `rows`, the scenario named once per group; with `link`,
/// the bytes over the emulated link after images/s.
fn table(md: &mut String, rows: &[Row], link: bool) {
    let mut last = "";
    for r in rows {
        let scenario = if r.scenario == last { "" } else { r.scenario.as_str() };
        last = &r.scenario;
        let tool = if r.note.is_empty() { r.tool.clone() } else { format!("{} ({})", r.tool, r.note) };
        let over = match (link, r.link) {
            (false, _) => String::new(),
            (true, Some((down, up))) => format!(" {:.1} / {:.2} |", down as f64 / 1e6, up as f64 / 1e6),
            (true, None) => " - |".into(),
        };
        let _ = writeln!(
            md,
            "| {scenario} | {tool} | {} | {} | {} |{over} {} | {} | {} | {} |",
            seconds(r.wall),
            if r.bytes > 0 { format!("{:.1}", r.mb_per_s()) } else { "-".into() },
            if r.images > 0 { format!("{:.1}", r.images_per_s()) } else { "-".into() },
            r.rss_kib.map(|k| format!("{:.1} MB", k as f64 * 1024.0 / 1e6)).unwrap_or_else(|| "-".into()),
            r.requests.map(thousands).unwrap_or_else(|| "-".into()),
            r.cpu
                .map(|c| format!("{:.1} + {:.1} + {:.1}", c.tool, c.primary, c.secondary))
                .unwrap_or_else(|| "-".into()),
            if r.versus.is_empty() { "-" } else { &r.versus },
        );
    }
}

pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
