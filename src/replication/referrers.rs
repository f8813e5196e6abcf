//! OCI 1.1 referrers: signatures, SBOMs and attestations pushed by digest
//! with a `subject`, which no tag reaches. On a primary that serves the
//! referrers API (zot, Harbor, newer registries), a full sync asks it for
//! the referrers of every manifest the repository's tags hold, and of
//! those in turn (a signature of an SBOM), and copies what the secondary
//! lacks with the engine (the replicator asks the primary; the engine
//! only copies). Where the primary has no such API (distribution 2.8),
//! referrers travel under their fallback tags (`sha256-HEX...`), as any
//! tag does. A secondary that serves the API indexes `subject` itself:
//! nothing more.

use std::collections::HashSet;

use super::engine::Seen;
use super::replicator::Replicator;
use super::report::Report;
use crate::error::{Error, Result};
use crate::registry::Digest;

/// More referrers than this in one repository are refused rather than
/// followed (a loop or a hostile registry).
const MAX_REFERRERS: usize = 100_000;

impl Replicator<'_> {
    /// Copies the referrers of `subjects`, transitively, that the secondary
    /// lacks. Does nothing (one request) when the primary has no referrers
    /// API.
    pub(super) fn copy_referrers(
        &self,
        repo: &str,
        subjects: impl IntoIterator<Item = Digest>,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        let mut todo: Vec<Digest> = subjects.into_iter().collect();
        let mut visited = HashSet::new();
        while let Some(subject) = todo.pop() {
            if !visited.insert(subject.clone()) {
                continue;
            }
            if visited.len() > MAX_REFERRERS {
                return Err(Error::Manifest {
                    repository: repo.into(),
                    reference: subject.to_string(),
                    message: format!("more than {MAX_REFERRERS} referrers: refusing to follow further"),
                });
            }
            self.engine.shutdown.check()?;
            let Some(referrers) = self.primary.referrers(repo, &subject)? else {
                return Ok(()); // no referrers API: fallback tags carry them
            };
            for referrer in referrers {
                if !seen.manifests.contains(&referrer)
                    && self.engine.secondary.manifest_digest(repo, referrer.as_str())?.is_none()
                {
                    let m = self.engine.source_manifest(repo, &referrer)?;
                    self.engine.copy_by_digest(repo, &referrer, &m, seen, report, 0)?;
                    report.referrers_copied += 1;
                    log::debug!("{repo}@{referrer} copied (a referrer of {subject})");
                }
                seen.manifests.insert(referrer.clone());
                todo.push(referrer);
            }
        }
        Ok(())
    }
}
