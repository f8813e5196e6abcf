//! What a `georeg serve` log says of its reconciliation passes: one line
//! each when it ends (`reconciliation (fingerprints): 10001 of 10001
//! repositories equal to the primary in 0.4s, 1 requests to the primary`,
//! logged at debug level when it found nothing, so the scenario runs the
//! node with `georeg::reconcile=debug`), stamped to the millisecond.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One pass as its line tells it.
#[derive(Clone, Debug, Default)]
pub struct PassLine {
    /// When the line was written (the pass's end), milliseconds since the epoch.
    pub end_ms: i64,
    /// `fingerprints` or `direct`.
    pub mode: String,
    pub compared: u64,
    pub repositories: u64,
    /// As the line rounds it (0.1 s).
    pub seconds: f64,
    pub requests: u64,
    /// `; found 100 tags differ` and the like, or empty.
    pub found: String,
}

/// Every pass line of the log so far.
pub fn passes(log: &Path) -> Vec<PassLine> {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(parse).collect()
}

/// Waits (polling, up to `timeout`) until the log holds more than `seen`
/// pass lines; returns the first new one.
pub fn next_pass(log: &Path, seen: usize, timeout: Duration) -> PassLine {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = passes(log).into_iter().nth(seen) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no reconciliation pass ended within {timeout:?} in {}:\n{}",
            log.display(),
            tail(log, 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a log, for a failure message.
pub fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `[2026-11-30T12:34:56.789Z DEBUG] reconciliation (fingerprints): A of B
/// repositories equal to the primary in S.Ss, N requests to the primary[; found ...]`
fn parse(line: &str) -> Option<PassLine> {
    let (stamp, rest) = line.strip_prefix('[')?.split_once(']')?;
    let rest = rest.trim().strip_prefix("reconciliation (")?;
    let (mode, rest) = rest.split_once("): ")?;
    let (compared, rest) = rest.split_once(" of ")?;
    let (repositories, rest) = rest.split_once(" repositories equal to the primary in ")?;
    let (seconds, rest) = rest.split_once("s, ")?;
    let (requests, found) = rest.split_once(" requests to the primary")?;
    Some(PassLine {
        end_ms: epoch_ms(stamp.split_whitespace().next()?)?,
        mode: mode.to_string(),
        compared: compared.trim().parse().ok()?,
        repositories: repositories.trim().parse().ok()?,
        seconds: seconds.trim().parse().ok()?,
        requests: requests.trim().parse().ok()?,
        found: found.trim_start_matches("; found ").trim().to_string(),
    })
}

/// `2026-11-30T12:34:56.789Z` in milliseconds since the epoch.
fn epoch_ms(stamp: &str) -> Option<i64> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = format!("{millis:0<3}")[..3].parse().ok()?;
    Some((days_from_civil(y, m, day) * 86400 + h * 3600 + min * 60 + s) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A `SystemTime` in milliseconds since the epoch.
pub fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    ms(SystemTime::now())
}
