//! The prefetcher: one thread of `georeg serve` on a secondary that learns
//! of blob pushes (notified by the primary registry directly, or told by
//! the georeg it follows), landing those blobs (`prefetch.rs`) while the
//! client pushes the rest of its image.
//! Each blob goes the engine's way (mounted when the secondary holds it
//! elsewhere, else streamed from the primary with its digest checked);
//! the sync of its manifest records it. A blob above
//! `replication.chunk_size` is left to its sync, which copies it in
//! recorded chunks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::blobs::Plan;
use super::engine::Engine;
use super::prefetch::{Hint, Prefetch};
use crate::config::selective::Selection;
use crate::shutdown::Shutdown;

/// Runs until a stop request. `budget_seconds` bounds each blob's copy as
/// `replication.sync_budget_seconds` bounds a sync. Each blob landed is
/// told to `landed` (a relay passes it on to its own followers).
pub fn run(prefetch: &Prefetch, engine: &Engine, selection: &Selection, budget_seconds: u64, landed: &dyn Fn(&Hint)) {
    while let Some(mut landing) = prefetch.next_landing(engine.shutdown) {
        if worth_it(engine, selection, &landing.hint) && land(engine, &landing.hint, budget_seconds) {
            landing.landed();
            landed(&landing.hint);
        }
    }
}

/// A blob the sync of its manifest would copy, of a size copied in one go.
fn worth_it(engine: &Engine, selection: &Selection, hint: &Hint) -> bool {
    hint.size > 0 && !engine.chunked(&hint.blob()) && selection.includes(&hint.repository)
}

/// Lands one blob; true when the secondary now holds it in the
/// repository. Nothing is recorded: the sync of its manifest records it
/// (a push abandoned before its manifest leaves no trace in the state
/// file, and the registry's garbage collection takes the blob).
fn land(engine: &Engine, hint: &Hint, budget_seconds: u64) -> bool {
    let _budget = Shutdown::budget(budget_seconds);
    let repo = hint.repository.as_str();
    let blob = hint.blob();
    let progress = AtomicU64::new(0);
    let landed = engine.plan_blob(repo, &blob).and_then(|plan| match plan {
        Plan::Copy { location, body } => engine.copy_blob(repo, &blob, &location, body, &progress).map(|()| true),
        Plan::Present { .. } => Ok(true),
        // Another copy's upload in chunks, which its sync resumes.
        Plan::Resume(..) => Ok(false),
    });
    match landed {
        Ok(landed) => {
            if landed {
                engine.stats.blobs_ahead.fetch_add(1, Ordering::Relaxed);
                log::debug!("{repo}: blob {} landed ahead of its manifest", hint.digest);
            }
            landed
        }
        Err(e) => {
            log::debug!("{repo}: blob {} not copied ahead ({e}); the sync of its manifest copies it", hint.digest);
            false
        }
    }
}
