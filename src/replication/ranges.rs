//! [`Ranges`]: the chunks of one large blob read from the source over
//! several streams at once, and handed to the copy in order.
//!
//! The copy (`chunks.rs`) takes chunk after chunk, hashes it and sends it
//! to the secondary's upload, exactly as it does from one stream. Helper
//! threads read the chunks after the one it is waiting for, each with a
//! `Range` request of its own, so that the link to the primary carries
//! several streams and the download goes on while the secondary takes the
//! previous chunk. Blobs still land one after another, each in order.
//!
//! Memory is bounded for the whole process: every chunk holds a share of
//! [`AHEAD_BYTES`] from its read until the copy has sent it, and a helper
//! that finds none free waits. The chunk the copy needs next never waits
//! for a share: when no helper has claimed it, the copy reads it itself,
//! with a share if one is free and without one otherwise, so a copy always
//! makes progress whatever the others hold. At most `AHEAD_BYTES`, plus a
//! chunk for each copy running, are in memory; sent chunks' buffers are
//! reused.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};

/// The most bytes of chunks read in ranges that all the copies of a
/// process hold together with a share (two chunks of the default 8 MiB;
/// each copy may hold one more without a share, see the module's notes).
pub(super) const AHEAD_BYTES: u64 = 16 << 20;

/// How long a helper waits before looking again for a chunk to read.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The chunks of every copy of the process.
pub(super) static AHEAD: Budget = Budget::new(AHEAD_BYTES);

/// A bound on the bytes of chunks held, and the buffers of chunks sent,
/// kept for the next reads while any copy runs: a chunk's memory is then
/// allocated once, not once per chunk in whichever thread read it (the
/// allocator keeps an arena per thread, and freed chunks scattered over
/// them held more memory than the chunks themselves).
pub(super) struct Budget {
    held: Mutex<u64>,
    limit: u64,
    buffers: Mutex<Buffers>,
}

struct Buffers {
    spare: Vec<Vec<u8>>,
    /// Copies running; the spare buffers go when the last one ends.
    users: usize,
}

impl Budget {
    pub(super) const fn new(limit: u64) -> Budget {
        Budget { held: Mutex::new(0), limit, buffers: Mutex::new(Buffers { spare: Vec::new(), users: 0 }) }
    }

    /// Takes `len` bytes, when they are free (or nothing is held at all,
    /// so that a chunk larger than the budget still gets one).
    fn take(&self, len: u64) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if *held > 0 && *held + len > self.limit {
            return false;
        }
        *held += len;
        true
    }

    fn give(&self, len: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held = held.saturating_sub(len);
    }

    fn buffers(&self) -> MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn buffer(&self) -> Vec<u8> {
        self.buffers().spare.pop().unwrap_or_default()
    }

    fn keep(&self, buffer: Vec<u8>) {
        let mut buffers = self.buffers();
        // Never more than the budget's chunks and one per copy running.
        if buffers.users > 0 && buffers.spare.len() < 2 + buffers.users * 2 {
            buffers.spare.push(buffer);
        }
    }

    fn enter(&self) {
        self.buffers().users += 1;
    }

    fn leave(&self) {
        let mut buffers = self.buffers();
        buffers.users = buffers.users.saturating_sub(1);
        if buffers.users == 0 {
            buffers.spare = Vec::new();
        }
    }
}

/// One blob's chunks `[i * chunk, (i + 1) * chunk)`, up to `size`.
pub(super) struct Ranges<'f> {
    chunk: u64,
    size: u64,
    /// How many chunks past the copy's a helper may read.
    window: u64,
    read: &'f Read<'f>,
    budget: &'f Budget,
    state: Mutex<State<'f>>,
    changed: Condvar,
}

/// Reads the range `[start, end)` into the buffer, replacing what it held.
pub(super) type Read<'f> = dyn Fn(u64, u64, &mut Vec<u8>) -> Result<()> + Sync + 'f;

/// A chunk handed to the copy; [`Ranges::recycle`] it once sent. Its
/// share of the budget comes back when it is dropped, however the copy
/// ends.
pub(super) struct Chunk<'f> {
    pub(super) bytes: Vec<u8>,
    /// Bytes of the budget it holds (0: read without a share).
    share: u64,
    budget: &'f Budget,
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        self.budget.give(self.share);
    }
}

struct State<'f> {
    /// The chunk the copy takes next.
    next: u64,
    /// Chunks below this are claimed: read, being read, or taken.
    claimed: u64,
    /// Chunks read ahead, not taken yet.
    done: BTreeMap<u64, Result<Chunk<'f>>>,
    /// Set when the copy ends, well or not: helpers stop.
    stopped: bool,
}

impl<'f> Ranges<'f> {
    /// The chunks from the one holding byte `from` on, read with `read`.
    /// Every chunk holds a share of `budget` from its read until it is
    /// recycled, except one the copy reads itself when none is free.
    pub(super) fn new(
        size: u64,
        chunk: u64,
        from: u64,
        streams: usize,
        read: &'f Read<'f>,
        budget: &'f Budget,
    ) -> Ranges<'f> {
        let first = from / chunk;
        let state = State { next: first, claimed: first, done: BTreeMap::new(), stopped: false };
        budget.enter();
        Ranges { chunk, size, window: streams as u64, read, budget, state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State<'f>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bounds(&self, i: u64) -> (u64, u64) {
        (i * self.chunk, ((i + 1) * self.chunk).min(self.size))
    }

    /// Reads chunk `i` into a spare buffer (the lock is not held).
    fn read_chunk(&self, i: u64, bytes: Vec<u8>, share: u64) -> Result<Chunk<'f>> {
        let (start, end) = self.bounds(i);
        let mut chunk = Chunk { bytes, share, budget: self.budget };
        (self.read)(start, end, &mut chunk.bytes)?;
        Ok(chunk)
    }

    /// A helper's loop: reads chunks ahead of the copy until they are all
    /// claimed, the copy stops, or `go_on` says no more (the source turned
    /// out to ignore ranges: the copy reads the rest itself).
    pub(super) fn help(&self, go_on: impl Fn() -> bool) {
        loop {
            let mut state = self.lock();
            let (i, share) = loop {
                if state.stopped || state.claimed * self.chunk >= self.size || !go_on() {
                    return;
                }
                let i = state.claimed;
                let (start, end) = self.bounds(i);
                if i < state.next + self.window && self.budget.take(end - start) {
                    state.claimed += 1;
                    break (i, end - start);
                }
                state = self.changed.wait_timeout(state, LOOK_AGAIN).unwrap_or_else(|e| e.into_inner()).0;
            };
            drop(state);
            let read = self.read_chunk(i, self.budget.buffer(), share);
            let mut state = self.lock();
            if state.stopped {
                return; // dropped, its share given back
            }
            state.done.insert(i, read);
            self.changed.notify_all();
        }
    }

    /// The next chunk, in order: read ahead by a helper, waited for while
    /// one reads it, or read here when none has claimed it.
    pub(super) fn take(&self) -> Result<Chunk<'f>> {
        let mut state = self.lock();
        loop {
            let i = state.next;
            if i * self.chunk >= self.size {
                return Err(Error::Usage("internal: a chunk past the blob's end was asked for".into()));
            }
            if let Some(read) = state.done.remove(&i) {
                state.next += 1;
                self.changed.notify_all();
                return read;
            }
            if state.claimed == i {
                state.claimed += 1;
                state.next += 1;
                drop(state);
                let (start, end) = self.bounds(i);
                let share = if self.budget.take(end - start) { end - start } else { 0 };
                let read = self.read_chunk(i, self.budget.buffer(), share);
                self.changed.notify_all();
                return read;
            }
            // A helper reads it; its read ends by its own deadlines.
            state = self.changed.wait_timeout(state, LOOK_AGAIN).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Gives back a chunk the copy has sent: its share, and its buffer for
    /// the next read.
    pub(super) fn recycle(&self, mut chunk: Chunk<'f>) {
        self.budget.keep(std::mem::take(&mut chunk.bytes));
        drop(chunk);
        self.changed.notify_all();
    }

    /// Ends the helpers' work and gives back what was read ahead and not
    /// taken (an error or a stop ended the copy).
    pub(super) fn stop(&self) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        state.stopped = true;
        state.done.clear();
        self.budget.leave();
        self.changed.notify_all();
    }
}

impl Drop for Ranges<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn blob(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn chunks_arrive_in_order_whoever_reads_them() {
        let data = blob(10_000);
        let reads = AtomicUsize::new(0);
        let read = |s: u64, e: u64, buf: &mut Vec<u8>| -> Result<()> {
            reads.fetch_add(1, Ordering::Relaxed);
            // Later chunks answer sooner, so helpers finish out of order.
            std::thread::sleep(Duration::from_millis(20 - (s / 1000).min(19)));
            buf.clear();
            buf.extend_from_slice(&data[s as usize..e as usize]);
            Ok(())
        };
        for from in [0, 3000] {
            reads.store(0, Ordering::Relaxed);
            let budget = Budget::new(2500);
            let ranges = Ranges::new(10_000, 1000, from, 4, &read, &budget);
            let got = std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| ranges.help(|| true));
                }
                let mut got = Vec::new();
                while (got.len() as u64) < 10_000 - from {
                    let chunk = ranges.take().unwrap();
                    got.extend_from_slice(&chunk.bytes);
                    ranges.recycle(chunk);
                }
                ranges.stop();
                got
            });
            assert_eq!(got, data[from as usize..], "from {from}");
            assert_eq!(reads.load(Ordering::Relaxed) as u64, (10_000 - from) / 1000, "each chunk read once");
            assert_eq!(*budget.held.lock().unwrap(), 0, "every share given back");
        }
    }

    #[test]
    fn a_failed_range_is_the_copys_error_and_shares_come_back() {
        let data = blob(8_000);
        let read = |s: u64, e: u64, buf: &mut Vec<u8>| -> Result<()> {
            match s {
                2000 => Err(Error::Transport { url: "r".into(), message: "cut".into() }),
                _ => {
                    *buf = data[s as usize..e as usize].to_vec();
                    Ok(())
                }
            }
        };
        let budget = Budget::new(1 << 20);
        let ranges = Ranges::new(8_000, 1000, 0, 4, &read, &budget);
        let outcome = std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| ranges.help(|| true));
            }
            let outcome = (0..3).map(|_| ranges.take().map(|c| c.bytes.len())).collect::<Vec<_>>();
            ranges.stop();
            outcome
        });
        assert!(matches!(outcome[..], [Ok(1000), Ok(1000), Err(Error::Transport { .. })]), "{outcome:?}");
        assert_eq!(*budget.held.lock().unwrap(), 0, "every share given back");
    }
}
