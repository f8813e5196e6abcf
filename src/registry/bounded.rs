//! [`Bounded`]: a response body read within bounds, whatever the registry
//! does. The agent's read timeout only catches a registry that sends
//! nothing; one that sends a byte every few seconds would hold a worker
//! for ever. So every body read from a registry also
//!
//! - ends on a stop request, or once the thread's time budget is spent
//!   (`replication.sync_budget_seconds`), checked before every read;
//! - fails when fewer than `min_rate` bytes arrived in a window of
//!   `stall` (`replication.min_rate`, `replication.stall_seconds`);
//! - and, for a whole answer (a manifest, a tag list, a catalog page), must
//!   end by a deadline that grows with its declared size: `stall` plus the
//!   size at `min_rate`.
//!
//! A blob download ([`super::download`]) resumes after a slow window as
//! after a stall; anything else fails with [`Error::TooSlow`], and the
//! repository is tried again with backoff.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

/// The bounds on reads from one registry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The window of the rate check, and the fixed part of a deadline.
    pub stall: Duration,
    /// Bytes per second below which a read is stalled (0: no check).
    pub min_rate: u64,
    /// The most tags one repository may have (`replication.max_tags`).
    pub max_tags: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { stall: Duration::from_secs(30), min_rate: 16 << 10, max_tags: 1_000_000 }
    }
}

impl Limits {
    /// The deadline of a whole answer of `bytes`.
    pub fn deadline(&self, bytes: u64) -> Duration {
        match bytes.checked_div(self.min_rate) {
            Some(secs) => self.stall + Duration::from_secs(secs),
            None => self.stall + Duration::from_secs(3600),
        }
    }
}

/// Why a bounded read stopped, carried inside the `io::Error` so that the
/// caller can turn it back into the right [`Error`].
#[derive(Debug)]
pub enum Cut {
    Stop,
    Budget(u64),
    Slow(String),
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Stop => write!(f, "georeg is shutting down"),
            Cut::Budget(seconds) => write!(f, "{}", Error::OverBudget { seconds: *seconds }),
            Cut::Slow(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Cut {}

pub struct Bounded<R> {
    inner: R,
    limits: Limits,
    stop: Shutdown,
    /// The end of the whole read (None: a blob, only the rate counts).
    deadline: Option<(Instant, Duration)>,
    window_start: Instant,
    window_bytes: u64,
}

impl<R: Read> Bounded<R> {
    /// A body that must arrive whole within `limits.deadline(bytes)`.
    pub fn whole(inner: R, limits: Limits, stop: &Shutdown, bytes: u64) -> Bounded<R> {
        let limit = limits.deadline(bytes);
        Bounded { deadline: Some((Instant::now() + limit, limit)), ..Bounded::streaming(inner, limits, stop) }
    }

    /// A body of any length that must keep to the minimum rate.
    pub fn streaming(inner: R, limits: Limits, stop: &Shutdown) -> Bounded<R> {
        Bounded { inner, limits, stop: stop.clone(), deadline: None, window_start: Instant::now(), window_bytes: 0 }
    }

    fn cut(&self) -> Option<Cut> {
        if self.stop.requested() {
            return Some(Cut::Stop);
        }
        if let Err(Error::OverBudget { seconds }) = Shutdown::check_budget() {
            return Some(Cut::Budget(seconds));
        }
        if let Some((end, limit)) = self.deadline {
            if Instant::now() >= end {
                return Some(Cut::Slow(format!("the answer did not arrive whole within {}s", limit.as_secs())));
            }
        }
        None
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(cut) = self.cut() {
            return Err(io::Error::other(cut));
        }
        let n = self.inner.read(buf)?;
        self.window_bytes += n as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= self.limits.stall {
            let wanted = self.limits.min_rate as f64 * elapsed.as_secs_f64();
            if (self.window_bytes as f64) < wanted && n > 0 {
                return Err(io::Error::other(Cut::Slow(format!(
                    "{} bytes in {}s, below the minimum rate of {} bytes/s",
                    self.window_bytes,
                    elapsed.as_secs(),
                    self.limits.min_rate
                ))));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

/// A read error as georeg's error: a stop is [`Error::Interrupted`], a spent
/// budget [`Error::OverBudget`], a slow answer [`Error::TooSlow`], anything
/// else a transport failure of `url` while `doing`.
pub fn error(e: io::Error, url: &str, doing: &str) -> Error {
    match e.downcast::<Cut>() {
        Ok(Cut::Stop) => Error::Interrupted,
        Ok(Cut::Budget(seconds)) => Error::OverBudget { seconds },
        Ok(Cut::Slow(message)) => Error::TooSlow { url: url.to_string(), message: format!("{doing}: {message}") },
        Err(e) => Error::Transport { url: url.to_string(), message: format!("{doing}: {e}") },
    }
}

/// Whether `e` is a bounded read's stop or spent budget, which no resume helps.
pub fn is_final(e: &io::Error) -> bool {
    matches!(e.get_ref().and_then(|inner| inner.downcast_ref::<Cut>()), Some(Cut::Stop | Cut::Budget(_)))
}

/// Reads a whole answer of at most `max` bytes within its deadline.
pub fn read_whole(
    resp: ureq::Response,
    limits: Limits,
    stop: &Shutdown,
    max: u64,
    url: &str,
    doing: &str,
) -> Result<Vec<u8>> {
    let declared: Option<u64> = resp.header("Content-Length").and_then(|l| l.trim().parse().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        return Err(Error::Registry {
            request: format!("GET {url}"),
            status: resp.status(),
            code: String::new(),
            message: format!("{doing}: the answer is {len} bytes, more than the {max} georeg reads"),
        });
    }
    let mut body = Vec::new();
    Bounded::whole(resp.into_reader(), limits, stop, declared.unwrap_or(max))
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| error(e, url, doing))?;
    if body.len() as u64 > max {
        return Err(Error::Registry {
            request: format!("GET {url}"),
            status: 200,
            code: String::new(),
            message: format!("{doing}: the answer is more than the {max} bytes georeg reads"),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives one byte per call, after `pause`.
    struct Trickle {
        pause: Duration,
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.pause);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    fn limits(stall_ms: u64, min_rate: u64) -> Limits {
        Limits { stall: Duration::from_millis(stall_ms), min_rate, max_tags: 10 }
    }

    #[test]
    fn a_trickle_fails_below_the_minimum_rate() {
        let stop = Shutdown::default();
        let mut r =
            Bounded::streaming(Trickle { pause: Duration::from_millis(20), left: 1000 }, limits(100, 1000), &stop);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let e = error(e, "http://r/v2/a/blobs/x", "reading the blob");
        assert!(matches!(&e, Error::TooSlow { message, .. } if message.contains("below the minimum rate")), "{e}");
    }

    #[test]
    fn a_whole_answer_has_a_deadline() {
        let stop = Shutdown::default();
        // Fast enough for the rate check, too slow for the deadline.
        let mut r = Bounded::whole(Trickle { pause: Duration::from_millis(10), left: 1000 }, limits(50, 20), &stop, 1);
        let e = error(io::copy(&mut r, &mut io::sink()).unwrap_err(), "u", "reading the tag list");
        assert!(matches!(&e, Error::TooSlow { message, .. } if message.contains("did not arrive whole")), "{e}");
    }

    #[test]
    fn a_stop_or_a_spent_budget_ends_the_read() {
        let stop = Shutdown::default();
        let mut r = Bounded::streaming(Trickle { pause: Duration::ZERO, left: 10 }, Limits::default(), &stop);
        stop.request();
        let e = r.read(&mut [0; 4]).unwrap_err();
        assert!(is_final(&e));
        assert!(matches!(error(e, "u", "x"), Error::Interrupted));
        let stop = Shutdown::default();
        let _budget = Shutdown::budget(0);
        let mut r = Bounded::streaming(Trickle { pause: Duration::ZERO, left: 10 }, Limits::default(), &stop);
        assert!(matches!(error(r.read(&mut [0; 4]).unwrap_err(), "u", "x"), Error::OverBudget { .. }));
    }

    #[test]
    fn a_steady_read_passes() {
        let stop = Shutdown::default();
        let mut r = Bounded::whole(Trickle { pause: Duration::from_millis(1), left: 200 }, limits(50, 100), &stop, 200);
        assert_eq!(io::copy(&mut r, &mut io::sink()).unwrap(), 200);
    }
}
