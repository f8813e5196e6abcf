//! What one sync (or import) of one repository did ([`Report`]), and what
//! a failed tag means for its repository ([`TagFailures`]): what the copy
//! engine, the replicator and the job loop all write into.

use crate::error::{Error, Result};
use crate::format::human_bytes;

/// What one sync (or import) of one repository did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub tags_copied: u64,
    pub tags_unchanged: u64,
    pub tags_removed: u64,
    pub manifests_copied: u64,
    pub manifests_deleted: u64,
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub bytes_copied: u64,
    /// Tags the secondary refuses (schema 1 where it does not accept it).
    pub tags_unsupported: u64,
    /// Manifests reached through the primary's referrers API.
    pub referrers_copied: u64,
    /// Deletions held back (`replication.delete_delay_hours`), and deletions
    /// an operator cancelled (kept on the secondary).
    pub deletions_held: u64,
    pub deletions_kept: u64,
    /// Tags the primary moved (held back or not: the burst alarm counts
    /// them), and tags put back to their previous digest by an operator.
    pub tags_overwritten: u64,
    pub tags_restored: u64,
    /// Blobs and manifests a drill found damaged, copied again and read back whole.
    pub repaired: u64,
    /// Events the job applied, counted as processed once it is recorded synced.
    pub events_applied: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tags copied, {} unchanged, {} removed; {} blobs copied ({}), {} mounted, {} already present",
            self.tags_copied,
            self.tags_unchanged,
            self.tags_removed,
            self.blobs_copied,
            human_bytes(self.bytes_copied),
            self.blobs_mounted,
            self.blobs_present
        )?;
        if self.tags_unsupported > 0 {
            write!(f, "; {} tags unsupported by the secondary (schema 1)", self.tags_unsupported)?;
        }
        if self.referrers_copied > 0 {
            write!(f, "; {} referrers copied", self.referrers_copied)?;
        }
        if self.deletions_held > 0 {
            write!(f, "; {} deletions held (replication.delete_delay_hours)", self.deletions_held)?;
        }
        if self.deletions_kept > 0 {
            write!(f, "; {} deletions cancelled by an operator, kept", self.deletions_kept)?;
        }
        if self.tags_restored > 0 {
            write!(f, "; {} tags put back to their previous digest (overwrites cancelled)", self.tags_restored)?;
        }
        if self.repaired > 0 {
            write!(f, "; {} damaged blobs or manifests repaired", self.repaired)?;
        }
        Ok(())
    }
}

/// The tags of one repository that failed to copy. A repository is synced
/// only when every tag is, never with one missing; the others go on so
/// that one bad tag does not hold back the rest.
#[derive(Default)]
pub(super) struct TagFailures(Vec<Error>);

impl TagFailures {
    /// Keeps a tag's failure, or returns it at once when it says the
    /// registry or georeg itself is in trouble (nothing more can work).
    pub(super) fn record(&mut self, repo: &str, tag: &str, copied: Result<()>) -> Result<()> {
        match copied {
            Ok(()) => Ok(()),
            Err(e @ (Error::Interrupted | Error::Transport { .. })) => Err(e),
            Err(e) if e.is_state_file() => Err(e),
            // The worker logs the repository's failure, which names the
            // first tag's; the others are at debug.
            Err(e) => {
                log::debug!("{repo}:{tag}: {e}");
                self.0.push(e);
                Ok(())
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The repository's outcome: the one failure, or how many and the first.
    pub(super) fn into_result(mut self, repo: &str) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            n => {
                let first = self.0.remove(0);
                Err(Error::Repository { repository: repo.into(), message: format!("{n} tags failed; first: {first}") })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(tag: &str) -> Error {
        Error::Manifest { repository: "corp/app".into(), reference: tag.into(), message: "is broken".into() }
    }

    #[test]
    fn one_failed_tag_is_the_repository_failure() {
        let mut failures = TagFailures::default();
        failures.record("corp/app", "v1", Ok(())).unwrap();
        failures.record("corp/app", "v2", Err(bad("v2"))).unwrap();
        let e = failures.into_result("corp/app").unwrap_err().in_repository("corp/app");
        assert_eq!(e.to_string(), "sync corp/app failed: manifest corp/app:v2: is broken");
    }

    #[test]
    fn several_failed_tags_name_the_count_and_the_first() {
        let mut failures = TagFailures::default();
        assert!(failures.is_empty());
        for tag in ["v1", "v2", "v3"] {
            failures.record("corp/app", tag, Err(bad(tag))).unwrap();
        }
        let e = failures.into_result("corp/app").unwrap_err();
        assert_eq!(e.reason(), "3 tags failed; first: manifest corp/app:v1: is broken");
        assert_eq!(
            e.in_repository("corp/app").to_string(),
            "sync corp/app failed: 3 tags failed; first: manifest corp/app:v1: is broken"
        );
    }

    #[test]
    fn trouble_beyond_the_tag_stops_the_repository() {
        let mut failures = TagFailures::default();
        assert!(matches!(failures.record("corp/app", "v1", Err(Error::Interrupted)), Err(Error::Interrupted)));
        let store = Error::Store { message: "disk full".into() };
        assert!(matches!(failures.record("corp/app", "v1", Err(store)), Err(Error::Store { .. })));
        assert!(failures.into_result("corp/app").is_ok());
    }
}
