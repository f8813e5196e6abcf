//! [`Pushed`]: the last blobs a node's followers may land ahead of their
//! manifests, numbered, for the long polls of its event log to carry
//! (`web::event_log`): on a primary georeg, the blob pushes its registry
//! notified; on a relay, the blobs its prefetcher landed in its own
//! registry (which its followers read). Memory only and bounded: a
//! follower that falls more than [`KEPT`] behind, or reads across a
//! restart (another epoch), misses some, and copies those blobs with
//! their manifests.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::prefetch::Hint;
use crate::peer::{BlobMark, PushedBlob};

/// Blob pushes kept for followers.
pub const KEPT: usize = 1024;
/// Blob pushes one page carries, at most.
const PAGE: usize = 256;

pub struct Pushed {
    state: Mutex<Ring>,
}

struct Ring {
    epoch: String,
    /// The number of the newest push (0: none yet).
    last: u64,
    kept: VecDeque<(u64, PushedBlob)>,
}

impl Default for Pushed {
    fn default() -> Pushed {
        let epoch = crate::registry::token::random_hex(8);
        Pushed { state: Mutex::new(Ring { epoch, last: 0, kept: VecDeque::new() }) }
    }
}

impl Pushed {
    /// Numbers and keeps the blob pushes of a notification.
    pub fn add(&self, hints: &[Hint]) {
        let mut ring = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for h in hints {
            ring.last += 1;
            let blob = PushedBlob { repository: h.repository.clone(), digest: h.digest.to_string(), size: h.size };
            let n = ring.last;
            ring.kept.push_back((n, blob));
            if ring.kept.len() > KEPT {
                ring.kept.pop_front();
            }
        }
    }

    /// A follower's mark as this process reads it: the same, or, for a
    /// follower with no mark or one from another process, where the pushes
    /// stand now, so that it never lands old pushes.
    pub fn place(&self, mark: &BlobMark) -> BlobMark {
        let ring = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if mark.epoch == ring.epoch && mark.through <= ring.last {
            mark.clone()
        } else {
            BlobMark { epoch: ring.epoch.clone(), through: ring.last }
        }
    }

    /// The pushes after `mark` (placed by [`Pushed::place`]), and the mark
    /// after them.
    pub fn after(&self, mark: &BlobMark) -> (Vec<PushedBlob>, BlobMark) {
        let ring = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if mark.epoch != ring.epoch {
            return (Vec::new(), BlobMark { epoch: ring.epoch.clone(), through: ring.last });
        }
        let newer: Vec<&(u64, PushedBlob)> = ring.kept.iter().filter(|(n, _)| *n > mark.through).take(PAGE).collect();
        let through = newer.last().map_or(ring.last, |(n, _)| *n);
        let blobs = newer.into_iter().map(|(_, b)| b.clone()).collect();
        (blobs, BlobMark { epoch: ring.epoch.clone(), through })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Digest;

    fn hint(n: u64) -> Hint {
        Hint { repository: format!("r/{n}"), digest: Digest::sha256_of(&n.to_be_bytes()), size: n }
    }

    #[test]
    fn a_follower_reads_each_push_once_from_its_mark_and_none_from_before_it_came() {
        let p = Pushed::default();
        p.add(&[hint(1), hint(2)]);
        let mark = p.place(&BlobMark::default());
        assert_eq!(mark.through, 2, "a new follower is placed, not given old pushes");
        // What comes while its first poll waits is its.
        p.add(&[hint(3)]);
        let (blobs, mark) = p.after(&mark);
        assert_eq!(blobs.iter().map(|b| b.size).collect::<Vec<_>>(), [3]);
        assert_eq!(mark.through, 3);
        let (blobs, same) = p.after(&mark);
        assert!(blobs.is_empty() && same == mark);
        assert_eq!(p.place(&mark), mark);
        let other = BlobMark { epoch: "another process".into(), through: 1 };
        assert_eq!(p.place(&other), mark);
        let ahead = BlobMark { epoch: mark.epoch.clone(), through: 99 };
        assert_eq!(p.place(&ahead), mark, "a mark past the last push is placed again");
    }

    #[test]
    fn pages_are_bounded_and_a_follower_too_far_behind_misses_the_oldest() {
        let p = Pushed::default();
        let start = p.place(&BlobMark::default());
        p.add(&(1..=(KEPT as u64 + 10)).map(hint).collect::<Vec<_>>());
        let (blobs, mark) = p.after(&start);
        assert_eq!(blobs.len(), PAGE);
        assert_eq!(blobs[0].size, 11, "the ten oldest were not kept");
        assert_eq!(mark.through, 10 + PAGE as u64);
        let (blobs, _) = p.after(&mark);
        assert_eq!(blobs[0].size, 11 + PAGE as u64);
    }
}
