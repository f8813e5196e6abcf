//! The prefetcher: one thread of `georeg serve` on a secondary notified by
//! the primary registry directly, landing the blobs the registry said were
//! pushed (`prefetch.rs`) while the client pushes the rest of its image.
//! Each blob goes the engine's way (mounted when the secondary holds it
//! elsewhere, else streamed from the primary with its digest checked) and
//! is recorded as any copied blob; nothing else is written. A blob above
//! `replication.chunk_size` is left to its sync, which copies it in
//! recorded chunks.

use super::engine::{Engine, Seen};
use super::prefetch::{Hint, Prefetch};
use super::report::Report;
use crate::config::selective::Selection;
use crate::registry::manifest::BlobRef;
use crate::shutdown::Shutdown;

/// Runs until a stop request. `budget_seconds` bounds each blob's copy as
/// `replication.sync_budget_seconds` bounds a sync.
pub fn run(prefetch: &Prefetch, engine: &Engine, selection: &Selection, budget_seconds: u64) {
    while let Some(hint) = prefetch.next(engine.shutdown) {
        let landed = worth_it(engine, selection, &hint) && land(engine, &hint, budget_seconds);
        prefetch.done(&hint, landed);
    }
}

/// A blob the sync of its manifest would copy, of a size copied in one go.
fn worth_it(engine: &Engine, selection: &Selection, hint: &Hint) -> bool {
    let blob = BlobRef { digest: hint.digest.clone(), size: hint.size };
    hint.size > 0 && !engine.chunked(&blob) && selection.includes(&hint.repository)
}

/// Lands one blob; true when the secondary now holds it in the repository.
fn land(engine: &Engine, hint: &Hint, budget_seconds: u64) -> bool {
    let _budget = Shutdown::budget(budget_seconds);
    let repo = hint.repository.as_str();
    let blob = BlobRef { digest: hint.digest.clone(), size: hint.size };
    let (mut seen, mut report) = (Seen::default(), Report::default());
    let landed =
        engine.plan_blob(repo, &blob).and_then(|plan| engine.land_blob(repo, &blob, plan, &mut seen, &mut report));
    match landed {
        Ok(()) => {
            log::debug!("{repo}: blob {} landed ahead of its manifest", hint.digest);
            true
        }
        Err(e) => {
            log::debug!("{repo}: blob {} not copied ahead ({e}); the sync of its manifest copies it", hint.digest);
            false
        }
    }
}
