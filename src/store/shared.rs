//! What every handle on one state file shares: the writer's connection
//! (behind a mutex held only for short statements, never across an HTTP
//! call), the notifications waiting for the next group commit, the two
//! bells, and the selective sync applied to repositories events make
//! known. Only `store` reaches the connection; callers get handles
//! (`handles.rs`) that offer the methods their side may use.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use super::event::NewEvent;
use crate::config::selective::Selection;

/// The current time as stored in the state file.
pub(super) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

pub(crate) struct Shared {
    conn: Mutex<Connection>,
    /// Notifications waiting for the connection: while any is, other
    /// writers wait at this gate, so that a notification waits for the
    /// one statement in progress, not for every writer that asks after it
    /// (the mutex is not fair: a scan that lets go and takes it again
    /// at once could keep it for many turns).
    urgent: Gate,
    /// Notifications waiting for the next group commit, and the outcomes
    /// of committed ones until their callers collect them.
    pub(super) batch: Mutex<Batch>,
    /// Rung when a repository may have become claimable.
    pub(crate) work: Bell,
    /// Rung when events were appended (wakes long polls of the log).
    pub(crate) appended: Bell,
    /// Selective sync, applied to repositories events make known.
    selection: Mutex<Selection>,
    /// How many repositories that overran their budget may sync at once.
    slow_share: std::sync::atomic::AtomicUsize,
}

impl Shared {
    pub(super) fn new(conn: Connection) -> Shared {
        Shared {
            conn: Mutex::new(conn),
            urgent: Gate::default(),
            batch: Mutex::default(),
            work: Bell::default(),
            appended: Bell::default(),
            selection: Mutex::default(),
            slow_share: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.urgent.pass();
        self.lock()
    }

    /// The connection ahead of every [`Shared::conn`] asked for meanwhile:
    /// for the commit of notifications, which a registry waits on.
    pub(super) fn conn_first(&self) -> MutexGuard<'_, Connection> {
        let _waiting = self.urgent.enter();
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Statements are atomic, so a panic while holding the lock leaves no
        // half-written state behind and a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set_selection(&self, selection: Selection) {
        *self.selection.lock().unwrap_or_else(|p| p.into_inner()) = selection;
    }

    pub(super) fn set_slow_share(&self, n: usize) {
        self.slow_share.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn slow_share(&self) -> usize {
        self.slow_share.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn selection(&self) -> Selection {
        self.selection.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Notifications waiting for the next group commit (see `events.rs`),
/// and the outcomes of committed ones, by ticket.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) next_ticket: u64,
    pub(super) queued: Vec<Queued>,
    pub(super) done: std::collections::HashMap<u64, std::result::Result<usize, String>>,
}

pub(super) struct Queued {
    pub(super) ticket: u64,
    pub(super) events: Vec<NewEvent>,
    pub(super) schedule: bool,
}

/// How many urgent callers wait for the connection; the others wait here
/// until none does.
#[derive(Default)]
struct Gate {
    waiting: Mutex<usize>,
    clear: Condvar,
}

impl Gate {
    fn pass(&self) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: an urgent caller leaves as soon as it has the
        // connection; the timeout only guards against a lost wakeup.
        let _ = self.clear.wait_timeout_while(waiting, Duration::from_secs(1), |n| *n > 0);
    }

    fn enter(&self) -> Entered<'_> {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Entered(self)
    }
}

/// An urgent caller's place at the gate, given up when it has the
/// connection (or unwinds).
struct Entered<'a>(&'a Gate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.waiting.lock().unwrap_or_else(|p| p.into_inner());
        *waiting -= 1;
        if *waiting == 0 {
            self.0.clear.notify_all();
        }
    }
}

/// A doorbell: waiters sleep until it rings or their timeout passes.
#[derive(Default)]
pub(crate) struct Bell {
    rings: Mutex<u64>,
    cv: Condvar,
}

impl Bell {
    pub(crate) fn ring(&self) {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }

    /// The ring count, to pass to [`Bell::wait`] so no ring is missed
    /// between checking the tables and going to sleep.
    pub(crate) fn count(&self) -> u64 {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps until the bell rang after `seen`, or `timeout` passed.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.cv.wait_timeout_while(guard, timeout, |rings| *rings == seen);
    }
}

/// Exponential backoff for the `count`-th consecutive failure: 10 s, 20 s,
/// 40 s... capped at one hour, scaled by `jitter` (0.8 to 1.2) so that
/// repositories failing together do not retry in lockstep.
pub(super) fn retry_delay(count: u32, jitter: f64) -> Duration {
    let base = 10u64.saturating_mul(1u64 << count.saturating_sub(1).min(16)).min(3600);
    Duration::from_secs((base as f64 * jitter).round() as u64)
}

pub(super) fn jitter() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(1, 1.0).as_secs(), 10);
        assert_eq!(retry_delay(2, 1.0).as_secs(), 20);
        assert_eq!(retry_delay(5, 1.0).as_secs(), 160);
        assert_eq!(retry_delay(50, 1.0).as_secs(), 3600);
        assert_eq!(retry_delay(50, 1.2).as_secs(), 4320);
    }

    #[test]
    fn a_notification_takes_the_connection_before_writers_that_asked_after_it() {
        let shared = std::sync::Arc::new(Shared::new(Connection::open_in_memory().unwrap()));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let held = shared.lock();
        let urgent = {
            let (shared, order) = (shared.clone(), order.clone());
            std::thread::spawn(move || {
                let _conn = shared.conn_first();
                order.lock().unwrap().push("notification");
            })
        };
        while *shared.urgent.waiting.lock().unwrap() == 0 {
            assert!(std::time::Instant::now() < deadline, "the notification never asked");
            std::thread::yield_now();
        }
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (shared, order, asked) = (shared.clone(), order.clone(), asked.clone());
            std::thread::spawn(move || {
                asked.store(true, std::sync::atomic::Ordering::SeqCst);
                let _conn = shared.conn();
                order.lock().unwrap().push("scan");
            })
        };
        while !asked.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the writer never asked");
            std::thread::yield_now();
        }
        drop(held);
        urgent.join().unwrap();
        writer.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["notification", "scan"]);
        assert_eq!(*shared.urgent.waiting.lock().unwrap(), 0);
    }

    #[test]
    fn bell_wakes_a_waiter() {
        let bell = std::sync::Arc::new(Bell::default());
        let seen = bell.count();
        let b = bell.clone();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            b.wait(seen, Duration::from_secs(10));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        bell.ring();
        assert!(t.join().unwrap() < Duration::from_secs(5));
        // A ring before the wait is not missed.
        let seen = bell.count();
        bell.ring();
        bell.wait(seen, Duration::from_secs(10));
    }
}
