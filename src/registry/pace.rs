//! Pacing what georeg asks of the primary registry, shared by every
//! worker: a cap on the bytes read per second (`replication.max_bandwidth`)
//! and on the requests sent per second
//! (`replication.max_requests_per_second`), so that replication never
//! floods a link other traffic shares. Both are token buckets that start
//! empty (no burst above the cap) and sleep the caller until its share is
//! due.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit: `rate` units per second.
struct Bucket {
    rate: f64,
    /// Units that may be taken now (negative: owed).
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket { rate, tokens: 0.0, last: Instant::now() }
    }

    /// Takes `n` units; returns how long the caller must wait for them.
    fn take(&mut self, n: f64) -> Duration {
        let now = Instant::now();
        // At most one second's worth saved up: no long bursts after a pause.
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The caps on one registry; unlimited by default.
#[derive(Default)]
pub struct Pacer {
    bytes: Option<Mutex<Bucket>>,
    requests: Option<Mutex<Bucket>>,
}

impl Pacer {
    pub fn new(bytes_per_second: Option<u64>, requests_per_second: Option<f64>) -> Pacer {
        Pacer {
            bytes: bytes_per_second.filter(|r| *r > 0).map(|r| Mutex::new(Bucket::new(r as f64))),
            requests: requests_per_second.filter(|r| *r > 0.0).map(|r| Mutex::new(Bucket::new(r))),
        }
    }

    /// Waits until `n` more bytes may be read.
    pub fn bytes(&self, n: usize) {
        wait(&self.bytes, n as f64);
    }

    /// Waits until one more request may be sent.
    pub fn request(&self) {
        wait(&self.requests, 1.0);
    }
}

fn wait(bucket: &Option<Mutex<Bucket>>, n: f64) {
    let Some(bucket) = bucket else { return };
    let delay = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(n);
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
}

/// A reader whose bytes are paced.
pub struct Paced<R> {
    pub inner: R,
    pub pacer: std::sync::Arc<Pacer>,
}

impl<R: std::io::Read> std::io::Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small reads keep the pace even and the sleeps short.
        let len = buf.len().min(64 * 1024);
        let n = self.inner.read(&mut buf[..len])?;
        self.pacer.bytes(n);
        Ok(n)
    }
}

/// A rate such as `"40MB/s"`, `"500KiB/s"` or `"1GB"` in bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match parse_size(t.strip_suffix("/s").unwrap_or(t)) {
        Ok(0) => Err(format!("{text:?} is no rate at all")),
        Ok(rate) => Ok(rate),
        Err(e) if e.contains("unknown unit") => Err(e),
        Err(_) => Err(format!("{text:?} is not a rate like \"40MB/s\"")),
    }
}

/// An amount of bytes with its unit: `"8MiB"`, `"64MB"`, `"0"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size like \"8MiB\""))?;
    let factor = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Mbit" | "Mb" => 1e6 / 8.0,
        "Gbit" | "Gb" => 1e9 / 8.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB, Mbit, Gbit)")),
    };
    Ok((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        assert_eq!(parse_rate("40MB/s"), Ok(40_000_000));
        assert_eq!(parse_rate("500KiB/s"), Ok(512_000));
        assert_eq!(parse_rate("200Mbit/s"), Ok(25_000_000));
        assert_eq!(parse_rate("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("big").is_err());
        assert!(parse_rate("fast").is_err() && parse_rate("10 parsecs").is_err() && parse_rate("0MB/s").is_err());
    }

    #[test]
    fn a_bucket_holds_the_rate_without_a_first_burst() {
        let pacer = Pacer::new(Some(1_000_000), None);
        let started = Instant::now();
        for _ in 0..5 {
            pacer.bytes(100_000);
        }
        // 500 kB at 1 MB/s: half a second, none of it free.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        Pacer::default().bytes(usize::MAX / 2); // unlimited: no wait
    }
}
