//! Referrers in a bundle: signatures, SBOMs and attestations pushed by
//! digest with a `subject`, which no tag reaches. On a primary that serves
//! the OCI referrers API, the export asks it for the referrers of every
//! manifest the repository's tags name, and of those in turn (a signature
//! of an SBOM), as a full sync does (`replication::referrers`): each goes
//! into the description after its subject, and its manifest and what it
//! references into the tar when the secondary lacks them. Where the
//! primary has no such API (distribution 2.8), referrers travel under
//! their fallback tags (`sha256-HEX...`), as any tag does.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::contents::Referrer;
use super::export::{Exporter, Repo, Walk};
use super::tarfile::Writer;
use crate::error::{Error, Result};
use crate::registry::Digest;

/// More referrers than this in one repository are refused rather than
/// followed (a loop, or a hostile registry), as a sync refuses them.
pub const MAX_REFERRERS: usize = 100_000;

impl Exporter<'_> {
    /// Lists the referrers of `subjects` (and theirs) in the repository's
    /// entry, in the order an import puts them, and carries those the
    /// secondary lacks. One request, and nothing listed, when the primary
    /// has no referrers API.
    pub(super) fn carry_referrers(
        &self,
        r: &mut Repo,
        subjects: Vec<Digest>,
        writer: &mut Writer,
        walk: &mut Walk,
    ) -> Result<()> {
        // Sorted, each once: the same primary gives the same bundle.
        let mut todo: VecDeque<Digest> = subjects.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let mut visited = HashSet::new();
        while let Some(subject) = todo.pop_front() {
            if !visited.insert(subject.clone()) {
                continue;
            }
            self.shutdown.check()?;
            let Some(listed) = self.primary.referrers(r.name, &subject)? else {
                return Ok(()); // no referrers API: fallback tags carry them
            };
            for referrer in listed.into_iter().collect::<BTreeSet<_>>() {
                if r.entry.referrers.len() >= MAX_REFERRERS {
                    return Err(Error::Manifest {
                        repository: r.name.into(),
                        reference: subject.to_string(),
                        message: format!(
                            "the primary {} lists more than {MAX_REFERRERS} referrers in the repository: refusing \
                             to follow further (a loop, or a registry to look at); export the other repositories \
                             by naming them",
                            self.primary.url()
                        ),
                    });
                }
                r.entry.referrers.push(Referrer { subject: subject.to_string(), digest: referrer.to_string() });
                let held = r.held.is_some_and(|h| h.manifests.contains(referrer.as_str()));
                if !held && !r.walked.contains(&referrer) {
                    let m = self.manifest(r.name, &referrer)?;
                    self.carry(r, m, writer, walk, 0)?;
                }
                todo.push_back(referrer);
            }
        }
        Ok(())
    }
}
