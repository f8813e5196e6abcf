//! The copy engine: makes one repository of the secondary registry hold
//! exactly the tags of the primary, through the registry API only.
//!
//! For each tag whose digest differs, the primary's manifest is fetched raw;
//! the children of an index or manifest list are copied first, by digest,
//! then every blob (mounted from another repository when georeg knows one
//! that holds it, else streamed from the primary with its digest checked on
//! the way), then the tag, with the primary's exact bytes so the digest
//! comes out identical. Tags the primary no longer has are removed without
//! touching sibling tags that share their digest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Replicator;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry::manifest::{self, Manifest};
use crate::registry::{self, Digest};
use crate::shutdown::Shutdown;
use crate::store::{Event, Job};

/// Index nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 4;

/// How long recording a job's outcome is retried, and the first wait.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);
const RECORD_FIRST_WAIT: Duration = Duration::from_secs(1);

/// What one sync of one repository did.
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
    /// Removals held back (`replication.delete_delay_hours`), and removals
    /// an operator cancelled (kept on the secondary).
    pub removals_held: u64,
    pub removals_kept: u64,
    /// Blobs and manifests a drill found damaged, copied again and read back whole.
    pub repaired: u64,
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
        if self.removals_held > 0 {
            write!(f, "; {} removals held (replication.delete_delay_hours)", self.removals_held)?;
        }
        if self.removals_kept > 0 {
            write!(f, "; {} removals cancelled by an operator, kept", self.removals_kept)?;
        }
        if self.repaired > 0 {
            write!(f, "; {} damaged blobs or manifests repaired", self.repaired)?;
        }
        Ok(())
    }
}

/// What the secondary repository is known to hold during one sync.
#[derive(Default)]
pub(super) struct Seen {
    pub manifests: HashSet<Digest>,
    pub blobs: HashSet<Digest>,
    /// Bytes copied by this sync so far (shown on the dashboard).
    pub progress: Arc<AtomicU64>,
}

impl Replicator<'_> {
    /// Syncs one repository now, in the foreground (`georeg sync`): a full
    /// comparison of every tag, recorded in the state file like any job.
    pub fn sync(&self, repo: &str) -> Result<Report> {
        if !registry::valid_repository(repo) {
            return Err(Error::Usage(format!("{repo:?} is not a valid repository name")));
        }
        let job = self.store.claim_for_full_sync(repo)?;
        self.run(&job)
    }

    /// Does a claimed job (a full sync, or the repository's new events) and
    /// records the outcome: synced, failed with its reason and next retry,
    /// or handed back untouched when interrupted by shutdown.
    pub fn run(&self, job: &Job) -> Result<Report> {
        let mut report = Report::default();
        let progress = self.stats.begin(&job.name);
        let result = self.store.events_for(job).and_then(|events| {
            if job.full {
                // What a drill found damaged is copied again first.
                self.repair(&job.name, &progress, &mut report)?;
                // Distribution notifies before it writes the tag link, so
                // the listing may miss a tag an event just announced: the
                // events naming tags the listing did not show still apply.
                let listed = self.sync_tags(&job.name, &progress, &mut report)?;
                let rest: Vec<Event> =
                    events.iter().filter(|e| e.tag.as_ref().is_some_and(|t| !listed.contains(t))).cloned().collect();
                self.apply_events(&job.name, &rest, Some(&listed), &progress, &mut report)?;
            } else {
                self.apply_events(&job.name, &events, None, &progress, &mut report)?;
            }
            self.apply_due_removals(&job.name, &mut report)?;
            if job.full {
                self.store.drill_failures_repaired(&job.name)?;
            }
            Ok(events.len() as u64)
        });
        self.check_burst(&job.name, &report);
        self.stats.end(&job.name, result.is_ok());
        match result {
            Ok(applied) => {
                self.record(&job.name, "synced", || self.store.finish_job(job, &report.to_string()))?;
                self.stats.events_processed.fetch_add(applied, Ordering::Relaxed);
                Ok(report)
            }
            Err(Error::Interrupted) => {
                self.record(&job.name, "handed back", || self.store.release_job(job))?;
                Err(Error::Interrupted)
            }
            Err(e) => {
                self.record(&job.name, "failed", || self.store.fail_job(job, &e.reason()))?;
                Err(e.in_repository(&job.name))
            }
        }
    }

    /// Records a job's outcome in the state file, retrying while another
    /// connection holds it busy or locked past the busy timeout: a row left
    /// `started` would be claimed by nobody until the next start. Any other
    /// failure (disk full, a corrupt file) is not going away by waiting,
    /// and fails at once. Gives up on shutdown, or after about ten minutes;
    /// either way the next start of georeg recovers the row.
    pub(super) fn record(&self, repo: &str, outcome: &str, write: impl Fn() -> Result<()>) -> Result<()> {
        record_patiently(self.shutdown, RECORD_PATIENCE, RECORD_FIRST_WAIT, repo, outcome, write)
    }

    /// Makes one manifest, by digest, present on the secondary exactly when
    /// the primary has it. Deleting it on the secondary drops the tags that
    /// pointed at it, as deleting it on the primary did.
    pub(super) fn sync_digest(&self, repo: &str, digest: &Digest, seen: &mut Seen, report: &mut Report) -> Result<()> {
        let on_primary = self.primary.manifest_digest(repo, digest.as_str())?.is_some();
        let on_secondary = self.secondary.manifest_digest(repo, digest.as_str())?.is_some();
        if on_primary && !on_secondary {
            let m = self.primary_manifest(repo, digest)?;
            self.copy_contents(repo, &m, seen, report, 0)?;
            self.secondary.put_manifest(repo, digest.as_str(), &m)?;
            seen.manifests.insert(digest.clone());
            report.manifests_copied += 1;
        } else if !on_primary && on_secondary {
            self.delete_or_hold_manifest(repo, digest, report)?;
        }
        if on_primary {
            self.store.manifest_back(repo, digest)?;
        }
        Ok(())
    }

    /// Compares every tag; returns the tags the primary listed.
    pub(super) fn sync_tags(
        &self,
        repo: &str,
        progress: &Arc<AtomicU64>,
        report: &mut Report,
    ) -> Result<BTreeSet<String>> {
        let present = self.secondary.tag_digests(repo)?;
        let mut wanted = BTreeMap::new();
        let mut seen =
            Seen { manifests: present.values().cloned().collect(), progress: progress.clone(), ..Seen::default() };
        let mut failures = TagFailures::default();
        let listed = self.primary.valid_tags(repo)?;
        // A primary with no tag left lost the repository, not a tag.
        let cause = if listed.is_empty() { super::held::REPOSITORY_EMPTIED } else { super::held::TAG_REMOVED };
        for tag in listed {
            self.shutdown.check()?;
            // A tag the secondary holds is compared by digest (HEAD); one it
            // lacks is read at once (GET), its digest checked, and copied.
            let copied = match present.get(&tag) {
                Some(there) => match self.primary.manifest_digest(repo, &tag)? {
                    None => continue, // deleted since the listing
                    Some(digest) if &digest == there => {
                        self.store.set_tag(repo, &tag, &digest)?;
                        report.tags_unchanged += 1;
                        wanted.insert(tag, digest);
                        continue;
                    }
                    Some(digest) => {
                        wanted.insert(tag.clone(), digest.clone());
                        self.copy_tag(repo, &tag, &digest, &mut seen, report)
                    }
                },
                None => match self.primary.manifest(repo, &tag)? {
                    None => continue,
                    Some(m) => {
                        wanted.insert(tag.clone(), m.digest.clone());
                        self.copy_manifest(repo, &tag, m, &mut seen, report)
                    }
                },
            };
            failures.record(repo, &tag, copied)?;
        }
        if failures.is_empty() {
            self.copy_referrers(repo, wanted.values().cloned(), &mut seen, report)?;
        }
        for (tag, digest) in present.iter().filter(|(t, _)| !wanted.contains_key(*t)) {
            self.shutdown.check()?;
            self.remove_or_hold_tag(repo, tag, Some(digest), cause, report)?;
        }
        failures.into_result(repo).map(|()| wanted.into_keys().collect())
    }

    fn copy_tag(&self, repo: &str, tag: &str, digest: &Digest, seen: &mut Seen, report: &mut Report) -> Result<()> {
        let m = self.primary_manifest(repo, digest)?;
        self.copy_manifest(repo, tag, m, seen, report)
    }

    /// Copies what the primary's manifest `m` references, then puts it under `tag`.
    pub(super) fn copy_manifest(
        &self,
        repo: &str,
        tag: &str,
        m: Manifest,
        seen: &mut Seen,
        report: &mut Report,
    ) -> Result<()> {
        self.copy_contents(repo, &m, seen, report, 0)?;
        match self.secondary.put_manifest(repo, tag, &m) {
            Ok(()) => {}
            // A secondary without compatibility.schema1.enabled refuses
            // schema 1 (distribution 2.8: 500 UNKNOWN, "manifest schema v1
            // unsupported" in its log only): the tag is recorded as
            // unsupported there, counted and shown, and the repository's
            // other tags go on. Every full sync tries it again, so a
            // passing error clears by itself.
            Err(e @ Error::Registry { status: 400 | 415 | 500, .. })
                if manifest::is_schema1(&m.media_type, &m.bytes) =>
            {
                let reason = format!(
                    "the secondary registry refuses Docker schema 1 manifests ({e}): set \
                     compatibility.schema1.enabled: true in its config.yml to replicate this tag"
                );
                log::warn!("{repo}:{tag}: {reason}");
                self.store.set_unsupported(repo, tag, &m.digest, &reason)?;
                report.tags_unsupported += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.store.set_tag(repo, tag, &m.digest)?;
        report.tags_copied += 1;
        log::debug!("{repo}:{tag} -> {} copied", m.digest);
        seen.manifests.insert(m.digest);
        Ok(())
    }

    pub(super) fn primary_manifest(&self, repo: &str, digest: &Digest) -> Result<Manifest> {
        self.source.manifest(repo, digest)?.ok_or_else(|| Error::Manifest {
            repository: repo.into(),
            reference: digest.to_string(),
            message: format!("disappeared from {} during the sync; the next sync retries", self.source.describe()),
        })
    }

    /// Makes sure everything `m` references exists in the secondary repository.
    pub(super) fn copy_contents(
        &self,
        repo: &str,
        m: &Manifest,
        seen: &mut Seen,
        report: &mut Report,
        depth: usize,
    ) -> Result<()> {
        if seen.manifests.contains(&m.digest) {
            return Ok(()); // the registry only accepted it with everything it references
        }
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: repo.into(),
            reference: m.digest.to_string(),
            message,
        })?;
        for child in &refs.manifests {
            if seen.manifests.contains(child) {
                continue;
            }
            if self.secondary.manifest_digest(repo, child.as_str())?.is_none() {
                if depth >= MAX_DEPTH {
                    return Err(Error::Manifest {
                        repository: repo.into(),
                        reference: m.digest.to_string(),
                        message: format!("indexes nest more than {MAX_DEPTH} deep"),
                    });
                }
                let child_manifest = self.primary_manifest(repo, child)?;
                self.copy_contents(repo, &child_manifest, seen, report, depth + 1)?;
                self.secondary.put_manifest(repo, child.as_str(), &child_manifest)?;
                report.manifests_copied += 1;
            }
            seen.manifests.insert(child.clone());
        }
        for blob in &refs.blobs {
            self.shutdown.check()?;
            self.ensure_blob(repo, blob, seen, report)?;
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
                Err(Error::Manifest {
                    repository: repo.into(),
                    reference: "*".into(),
                    message: format!("{n} tags failed; first: {first}"),
                })
            }
        }
    }
}

/// [`Replicator::record`], with its patience and first wait as arguments.
fn record_patiently(
    shutdown: &Shutdown,
    patience: Duration,
    first_wait: Duration,
    repo: &str,
    outcome: &str,
    write: impl Fn() -> Result<()>,
) -> Result<()> {
    let mut wait = first_wait;
    let mut waited = Duration::ZERO;
    loop {
        match write() {
            Err(e) if e.is_busy() && waited < patience && !shutdown.requested() => {
                log::error!(
                    "{repo}: cannot record that it {outcome} in the state file: {e}; retrying in {}s",
                    wait.as_secs()
                );
                shutdown.sleep(wait);
                waited += wait;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            Err(e) if e.is_state_file() => {
                let given_up = if e.is_busy() { "gave up recording" } else { "cannot record" };
                log::error!(
                    "{repo}: {given_up} that it {outcome}: {e}; it stays 'started' until georeg next starts and \
                     recovers it"
                );
                return Err(e);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn busy() -> Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None).into()
    }

    fn full() -> Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None).into()
    }

    /// Runs `record_patiently` over `answers`, one per attempt; returns
    /// the outcome and how many attempts were made.
    fn attempts(answers: Vec<fn() -> Result<()>>) -> (Result<()>, usize) {
        let calls = Cell::new(0);
        let shutdown = Shutdown::default();
        let ms = Duration::from_millis(1);
        let outcome = record_patiently(&shutdown, 10 * ms, ms, "app", "synced", || {
            let n = calls.get();
            calls.set(n + 1);
            answers.get(n).map_or_else(|| Err(busy()), |answer| answer())
        });
        (outcome, calls.get())
    }

    #[test]
    fn recording_retries_while_busy_only() {
        let (outcome, calls) = attempts(vec![|| Err(busy()), || Err(busy()), || Ok(())]);
        assert!(outcome.is_ok() && calls == 3, "busy twice, then recorded: {outcome:?} after {calls}");
        let (outcome, calls) = attempts(vec![|| Err(full())]);
        assert!(outcome.is_err_and(|e| !e.is_busy()) && calls == 1, "a full disk fails at once");
        let (outcome, calls) = attempts(vec![|| Err(Error::ClaimLost { repository: "app".into() })]);
        assert!(matches!(outcome, Err(Error::ClaimLost { .. })) && calls == 1);
        // Busy for ever: gives up once the patience (10 ms) is spent.
        let (outcome, calls) = attempts(vec![]);
        assert!(outcome.is_err_and(|e| e.is_busy()) && (2..10).contains(&calls), "{calls}");
    }
}
