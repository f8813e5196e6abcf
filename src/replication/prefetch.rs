//! [`Prefetch`]: the blobs the primary registry says were just pushed,
//! copied while the client is still pushing the rest of its image, so
//! that when the manifest's notification comes only the manifest is left
//! to put. Distribution notifies each blob as its upload completes, before
//! the manifest that references it is pushed.
//!
//! This is a shortcut, never the record: nothing here is stored, a hint
//! that is dropped (a full queue, a restart, a failed copy) only means the
//! sync of the manifest copies that blob itself, as it always did. What
//! it keeps is the rule that a repository's blobs land one at a time: the
//! prefetcher (`prefetcher.rs`, one thread) copies one blob at a time, a
//! sync's blobs wait for the blob the prefetcher is landing in the same
//! repository (`hold`), and the prefetcher leaves alone a repository
//! whose blobs a sync is landing.
//!
//! The HTTP handler offers hints; replication takes them. Nothing of it
//! is in the state file, so the architecture's other rule (events arrive
//! as rows) still holds for everything that must survive.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::registry::manifest::BlobRef;
use crate::registry::{self, Digest};
use crate::shutdown::Shutdown;

/// Hints waiting, at most: a burst beyond it is left to the syncs.
const QUEUE_MAX: usize = 1024;
/// Blobs the prefetcher landed that a sync has not used yet, at most.
const LANDED_MAX: usize = 4096;
/// How long a landed blob saves its sync the request that would confirm
/// it: long enough for the client to push the manifest, short enough that
/// the secondary's garbage collection is unlikely to have run since (and
/// the registry refuses a manifest whose blob is gone, so the sync fails
/// and is retried the long way, never succeeds wrongly).
const LANDED_FOR: Duration = Duration::from_secs(60);
/// How often a wait looks at the stop request.
const TICK: Duration = Duration::from_millis(100);

/// A blob the primary registry notified as pushed (or a relay landed).
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub repository: String,
    pub digest: Digest,
    pub size: u64,
}

impl Hint {
    /// A hint from what a notification or a page said, when it names a
    /// repository and a digest the registry's grammar accepts; otherwise
    /// nothing (it was never more than a hint).
    pub fn read(repository: &str, digest: &str, size: u64) -> Option<Hint> {
        let digest = Digest::parse(digest).ok()?;
        registry::valid_repository(repository).then(|| Hint { repository: repository.to_string(), digest, size })
    }

    /// The blob, as the engine copies it.
    pub fn blob(&self) -> BlobRef {
        BlobRef { digest: self.digest.clone(), size: self.size }
    }
}

/// The queue of hints and who is landing blobs where.
#[derive(Default)]
pub struct Prefetch {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Hint>,
    /// Repositories whose blobs a sync is landing, with how many syncs.
    syncing: HashMap<String, usize>,
    /// The repository the prefetcher is landing a blob in.
    copying: Option<String>,
    /// Blobs the prefetcher landed, not yet used by a sync.
    landed: HashMap<(String, Digest), Instant>,
    /// Hints dropped because the queue was full, not yet logged.
    dropped: u64,
}

/// A sync landing a repository's blobs: the prefetcher leaves the
/// repository alone until it is dropped.
pub struct Held<'a> {
    prefetch: &'a Prefetch,
    repository: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut state = self.prefetch.lock();
        if let Some(n) = state.syncing.get_mut(&self.repository) {
            *n -= 1;
            if *n == 0 {
                state.syncing.remove(&self.repository);
            }
        }
    }
}

/// A hint being landed: when dropped, its repository is free again, and
/// the blob counts as landed only if [`Landing::landed`] was called.
pub(super) struct Landing<'a> {
    prefetch: &'a Prefetch,
    pub(super) hint: Hint,
    landed: bool,
}

impl Landing<'_> {
    /// The blob is in the repository now, confirmed by the registry.
    pub(super) fn landed(&mut self) {
        self.landed = true;
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.prefetch.done(&self.hint, self.landed);
    }
}

impl Prefetch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the blobs a notification named (the HTTP handler). Never
    /// waits: a full queue drops the newest, which their syncs copy.
    pub fn offer(&self, hints: Vec<Hint>) {
        if hints.is_empty() {
            return;
        }
        let mut state = self.lock();
        for hint in hints {
            if state.queue.len() >= QUEUE_MAX {
                state.dropped += 1;
            } else if !state.queue.contains(&hint) {
                state.queue.push_back(hint);
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Marks `repository`'s blobs as a sync's to land, once the blob the
    /// prefetcher is landing there (if any) has landed.
    pub fn hold(&self, repository: &str, shutdown: &Shutdown) -> Result<Held<'_>> {
        let mut state = self.lock();
        while state.copying.as_deref() == Some(repository) {
            shutdown.check()?;
            state = self.changed.wait_timeout(state, TICK).unwrap_or_else(|p| p.into_inner()).0;
        }
        *state.syncing.entry(repository.to_string()).or_default() += 1;
        Ok(Held { prefetch: self, repository: repository.to_string() })
    }

    /// True, once, when the prefetcher landed this blob in this repository
    /// moments ago: the sync counts it present without asking.
    pub fn take_landed(&self, repository: &str, digest: &Digest) -> bool {
        let mut state = self.lock();
        match state.landed.remove(&(repository.to_string(), digest.clone())) {
            Some(at) => at.elapsed() < LANDED_FOR,
            None => false,
        }
    }

    /// The next hint to copy, its repository marked as being landed in
    /// until the [`Landing`] is finished or dropped (so that a prefetcher
    /// that panics never leaves a sync waiting); `None` on a stop request.
    pub(super) fn next_landing(&self, shutdown: &Shutdown) -> Option<Landing<'_>> {
        self.next(shutdown).map(|hint| Landing { prefetch: self, hint, landed: false })
    }

    /// The next hint to copy, now marked as being landed; `None` on a stop
    /// request. Hints for a repository a sync is landing blobs in are
    /// dropped: that sync, or the one its manifest's event starts, copies
    /// them.
    fn next(&self, shutdown: &Shutdown) -> Option<Hint> {
        let mut state = self.lock();
        loop {
            if shutdown.requested() {
                return None;
            }
            if state.dropped > 0 {
                log::info!(
                    "{} pushed blobs not copied ahead (more than {QUEUE_MAX} waiting): the syncs of their \
                     manifests copy them",
                    state.dropped
                );
                state.dropped = 0;
            }
            while let Some(hint) = state.queue.pop_front() {
                if !state.syncing.contains_key(&hint.repository) {
                    state.copying = Some(hint.repository.clone());
                    return Some(hint);
                }
            }
            state = self.changed.wait_timeout(state, TICK).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The prefetcher is done with `hint`; `landed` when the blob is now
    /// in the repository, confirmed by the secondary registry.
    fn done(&self, hint: &Hint, landed: bool) {
        let mut state = self.lock();
        state.copying = None;
        if landed {
            if state.landed.len() >= LANDED_MAX {
                state.landed.retain(|_, at| at.elapsed() < LANDED_FOR);
            }
            if state.landed.len() < LANDED_MAX {
                state.landed.insert((hint.repository.clone(), hint.digest.clone()), Instant::now());
            }
        }
        drop(state);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(repo: &str, n: u8) -> Hint {
        let digest = Digest::sha256_of(&[n]);
        Hint { repository: repo.into(), digest, size: 1 }
    }

    #[test]
    fn a_sync_waits_for_the_blob_being_landed_in_its_repository_and_then_keeps_the_prefetcher_out() {
        let p = Prefetch::default();
        let stop = Shutdown::default();
        p.offer(vec![hint("a", 1), hint("a", 2), hint("b", 3)]);
        let first = p.next(&stop).unwrap();
        assert_eq!(first, hint("a", 1));
        std::thread::scope(|s| {
            let sync = s.spawn(|| {
                let held = p.hold("a", &stop).unwrap();
                // Landed before the sync got the repository: counted once.
                assert!(p.take_landed("a", &hint("a", 1).digest));
                assert!(!p.take_landed("a", &hint("a", 1).digest));
                held
            });
            std::thread::sleep(Duration::from_millis(30));
            assert!(!sync.is_finished(), "the sync waits while the prefetcher lands a blob of its repository");
            p.done(&first, true);
            let held = sync.join().unwrap();
            // a's other hint is dropped while the sync holds a.
            assert_eq!(p.next(&stop), Some(hint("b", 3)));
            p.done(&hint("b", 3), false);
            assert!(!p.take_landed("b", &hint("b", 3).digest), "a failed copy saves nothing");
            drop(held);
        });
        p.offer(vec![hint("a", 4)]);
        assert_eq!(p.next(&stop), Some(hint("a", 4)), "the repository is free again once the sync ends");
    }

    #[test]
    fn a_landing_dropped_by_a_panic_frees_its_repository() {
        let p = Prefetch::default();
        let stop = Shutdown::default();
        p.offer(vec![hint("a", 1)]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _landing = p.next_landing(&stop).unwrap();
            panic!("the copy panicked");
        }));
        assert!(outcome.is_err());
        assert!(p.lock().copying.is_none());
        drop(p.hold("a", &stop).unwrap());
        assert!(!p.take_landed("a", &hint("a", 1).digest));
    }

    #[test]
    fn a_full_queue_drops_hints_and_a_stop_request_ends_the_wait() {
        let p = Prefetch::default();
        let stop = Shutdown::default();
        p.offer((0..QUEUE_MAX + 10).map(|i| hint(&format!("r{i}"), (i % 250) as u8)).collect());
        assert_eq!(p.lock().queue.len(), QUEUE_MAX);
        assert_eq!(p.lock().dropped, 10);
        p.lock().queue.clear();
        stop.request();
        assert_eq!(p.next(&stop), None);
        p.lock().copying = Some("a".into());
        assert!(p.hold("a", &stop).is_err(), "a stop request ends a sync's wait");
    }
}
