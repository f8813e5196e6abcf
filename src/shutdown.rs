//! The process's stop request: set once by SIGTERM or SIGINT, read by every
//! loop, every sleep and every blob stream, so that georeg stops within
//! seconds wherever it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a sleeping thread looks at the flag.
const TICK: Duration = Duration::from_millis(100);

/// Cloning shares the flag.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Sets the flag on SIGTERM and SIGINT.
    pub fn on_signals(&self) -> Result<()> {
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, self.0.clone())
                .map_err(|e| Error::Io { path: "signal handler".into(), source: e })?;
        }
        Ok(())
    }

    /// Requests a stop, as a signal does (tests).
    #[cfg(test)]
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once a stop was requested: for `?` between steps.
    pub fn check(&self) -> Result<()> {
        if self.requested() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sleeps for `d`, or less when a stop is requested meanwhile; returns
    /// false in that case.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.requested() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(TICK));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_early_on_a_stop_request() {
        let s = Shutdown::default();
        assert!(s.sleep(Duration::from_millis(1)));
        assert!(s.check().is_ok());
        let other = s.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            (other.sleep(Duration::from_secs(30)), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        s.request();
        let (slept, took) = t.join().unwrap();
        assert!(!slept && took < Duration::from_secs(5));
        assert!(matches!(s.check(), Err(Error::Interrupted)));
    }
}
