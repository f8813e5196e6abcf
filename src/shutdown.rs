//! The process's stop request: set once by SIGTERM or SIGINT, read by every
//! loop, every sleep and every read from a registry, so that georeg stops
//! within seconds wherever it is. A read the kernel holds (a registry that
//! sends nothing) cannot look at the flag: past [`FORCED_EXIT`] after the
//! request the process exits anyway, as a kill -9 would end it, which the
//! state file survives (what was in progress resumes at the next start).
//!
//! A thread's work may also have a time budget ([`Shutdown::budget`]): the
//! same checks then end it once the budget is spent, so that one
//! repository cannot hold a worker for ever.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a sleeping thread looks at the flag.
const TICK: Duration = Duration::from_millis(100);

/// How long after a stop request the process exits, whatever its threads
/// are waiting on.
pub const FORCED_EXIT: Duration = Duration::from_secs(15);

thread_local! {
    /// The end of this thread's budget, and the budget in seconds.
    static BUDGET: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// This thread's time budget, until dropped.
#[must_use]
pub struct Budget(());

impl Drop for Budget {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(None));
    }
}

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
        let flag = self.0.clone();
        std::thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                }
                std::thread::sleep(FORCED_EXIT);
                log::error!(
                    "still stopping {}s after the stop request (a read from a registry that sends nothing): exiting \
                     now; what was in progress resumes at the next start",
                    FORCED_EXIT.as_secs()
                );
                std::process::exit(130);
            })
            .map_err(|e| Error::Io { path: "stop watchdog thread".into(), source: e })?;
        Ok(())
    }

    /// Gives this thread's work `seconds` from now: [`Shutdown::check`]
    /// and every read from a registry on this thread fail with
    /// [`Error::OverBudget`] past it, until the returned guard drops.
    pub fn budget(seconds: u64) -> Budget {
        BUDGET.with(|b| b.set(Some((Instant::now() + Duration::from_secs(seconds), seconds))));
        Budget(())
    }

    /// This thread's budget, to carry into a helper thread: its end and
    /// its length in seconds.
    pub fn current_budget() -> Option<(Instant, u64)> {
        BUDGET.with(Cell::get)
    }

    /// Takes up, in a helper thread, the budget another thread has
    /// ([`Shutdown::current_budget`]): it ends when that one does.
    pub fn budget_until(end: Instant, seconds: u64) -> Budget {
        BUDGET.with(|b| b.set(Some((end, seconds))));
        Budget(())
    }

    /// `Err(OverBudget)` once this thread's budget is spent.
    pub fn check_budget() -> Result<()> {
        match BUDGET.with(Cell::get) {
            Some((end, seconds)) if Instant::now() >= end => Err(Error::OverBudget { seconds }),
            _ => Ok(()),
        }
    }

    /// Requests a stop, as a signal does.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once a stop was requested, `Err(OverBudget)` once
    /// this thread's budget is spent: for `?` between steps.
    pub fn check(&self) -> Result<()> {
        if self.requested() {
            Err(Error::Interrupted)
        } else {
            Shutdown::check_budget()
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
    fn a_helper_thread_takes_up_the_budget_of_the_thread_it_helps() {
        let _budget = Shutdown::budget(0);
        let carried = Shutdown::current_budget();
        let over = std::thread::spawn(move || {
            assert!(Shutdown::check_budget().is_ok(), "a new thread has no budget of its own");
            let _b = carried.map(|(end, seconds)| Shutdown::budget_until(end, seconds));
            Shutdown::check_budget().is_err()
        });
        assert!(over.join().unwrap(), "the helper's reads end when the sync's budget does");
    }

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

    #[test]
    fn a_spent_budget_fails_the_checks_of_its_thread_only() {
        let s = Shutdown::default();
        {
            let _budget = Shutdown::budget(0);
            assert!(matches!(s.check(), Err(Error::OverBudget { seconds: 0 })));
            let other = s.clone();
            assert!(std::thread::spawn(move || other.check().is_ok()).join().unwrap());
        }
        assert!(s.check().is_ok(), "the budget ends with its guard");
        let _budget = Shutdown::budget(3600);
        assert!(s.check().is_ok());
    }
}
