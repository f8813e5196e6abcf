//! Drills: proof that the secondary can serve what it holds, the day it
//! has to. Verification compares tags and digests; a drill pulls a random
//! sample of tags from the secondary registry as a client would, with a
//! pull-only token: the manifest by tag, every child manifest by digest,
//! every blob read in full with its size and digest checked, and the
//! referrers of each manifest (through the referrers API, or their
//! fallback tags `sha256-HEX...` where the registry has none). A blob whose
//! stored bytes rotted, or that storage lost, is found here and nowhere
//! else.
//!
//! The result goes to the state file (`drills`, and a row per failing tag
//! in `drill_failures`); each failing repository is queued for a full
//! sync, which copies the failing blob or manifest again (`repair`). The
//! daemon drills every `replication.drill_interval_seconds`; `georeg drill`
//! runs one now. A drill only reads the secondary registry, so it needs no
//! claim on any repository.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::verify::read_back;
use crate::error::{Error, Result};
use crate::registry::manifest::{self, Manifest};
use crate::registry::{Client, Digest};
use crate::shutdown::Shutdown;
use crate::store::{Damage, DrillFailure, DrillRecord, DrillTag, Queue};

/// Manifests one tag may lead to (children and referrers), at most.
const MAX_MANIFESTS_PER_TAG: usize = 10_000;
/// How long the daemon waits before it looks again when nothing is synced
/// yet, or a drill could not run.
const RETRY: Duration = Duration::from_secs(60);

/// What a drill reads and where it records.
pub struct Drill<'a> {
    /// The secondary registry, with pull-only tokens, as a client has.
    pub secondary: &'a Client,
    pub store: &'a Queue,
    pub shutdown: &'a Shutdown,
}

/// One tag pulled: what it took, and what failed.
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    pub repository: String,
    pub tag: String,
    pub manifests: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub failure: Option<DrillFailure>,
}

/// What a tag's pull found wrong: its kind, the failing digest, why.
type Failure = (Damage, String, String);

impl Drill<'_> {
    /// Pulls up to `sample` tags, calling `each` after every tag; records
    /// the drill (unless there was nothing to pull) and queues a full sync
    /// of every repository with a failing tag. An error only when the state file fails or georeg stops: a
    /// secondary that cannot be reached is a failed drill, recorded.
    pub fn run(&self, sample: usize, trigger: &'static str, mut each: impl FnMut(&Pulled)) -> Result<DrillRecord> {
        let started = Instant::now();
        let tags = self.store.drill_sample(sample)?;
        let mut record = DrillRecord { trigger, ..DrillRecord::default() };
        if tags.is_empty() {
            return Ok(record); // nothing synced yet: no drill to record
        }
        let mut blobs_read: HashSet<(String, Digest)> = HashSet::new();
        let mut tag_lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut to_resync = std::collections::BTreeSet::new();
        for t in &tags {
            self.shutdown.check()?;
            let mut pulled = Pulled { repository: t.repository.clone(), tag: t.tag.clone(), ..Pulled::default() };
            let outcome = self.pull(t, &mut pulled, &mut blobs_read, &mut tag_lists);
            record.tags += 1;
            let unreachable = match outcome {
                Ok(None) => false,
                Ok(Some((kind, digest, message))) => {
                    pulled.failure = Some(self.failure(t, kind, digest, message));
                    to_resync.insert(t.repository.clone());
                    false
                }
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) if e.is_state_file() => return Err(e),
                Err(e) => {
                    // The registry is down or answers nonsense: the drill
                    // fails, but no repository is to blame for it.
                    pulled.failure = Some(self.failure(t, Damage::Unreachable, t.digest.clone(), e.to_string()));
                    true
                }
            };
            record.manifests += pulled.manifests;
            record.blobs += pulled.blobs;
            record.bytes += pulled.bytes;
            each(&pulled);
            if let Some(f) = pulled.failure {
                record.failures.push(f);
            }
            if unreachable {
                break;
            }
        }
        record.seconds = started.elapsed().as_secs();
        self.store.record_drill(&record)?;
        for repo in &to_resync {
            self.store.request_full_sync(repo)?;
        }
        Ok(record)
    }

    fn failure(&self, t: &DrillTag, kind: Damage, digest: String, message: String) -> DrillFailure {
        DrillFailure { repository: t.repository.clone(), tag: t.tag.clone(), kind, digest, message }
    }

    /// Pulls one tag; `Ok(Some(..))` names the first thing that failed.
    fn pull(
        &self,
        t: &DrillTag,
        pulled: &mut Pulled,
        blobs_read: &mut HashSet<(String, Digest)>,
        tag_lists: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<Option<Failure>> {
        let (repo, url) = (t.repository.as_str(), self.secondary.url());
        let top = match self.manifest(repo, &t.tag)? {
            Ok(m) => m,
            Err(why) if why.starts_with("is missing") => {
                let message =
                    format!("tag {} {why} from the secondary {url} (georeg placed it at {})", t.tag, t.digest);
                return Ok(Some((Damage::Tag, t.digest.clone(), message)));
            }
            Err(why) => {
                return Ok(Some((Damage::Manifest, t.digest.clone(), format!("manifest {repo}:{} {why}", t.tag))))
            }
        };
        let mut visited: HashSet<Digest> = HashSet::from([top.digest.clone()]);
        let mut todo = vec![top];
        while let Some(m) = todo.pop() {
            pulled.manifests += 1;
            let refs = match manifest::references(&m.bytes) {
                Ok(refs) => refs,
                Err(why) => {
                    return Ok(Some((Damage::Manifest, m.digest.to_string(), format!("manifest {} {why}", m.digest))))
                }
            };
            for child in &refs.manifests {
                if visited.len() < MAX_MANIFESTS_PER_TAG && visited.insert(child.clone()) {
                    match self.manifest(repo, child.as_str())? {
                        Ok(c) => todo.push(c),
                        Err(why) => {
                            return Ok(Some((
                                Damage::Manifest,
                                child.to_string(),
                                format!("child manifest {child} {why}"),
                            )))
                        }
                    }
                }
            }
            for blob in &refs.blobs {
                self.shutdown.check()?;
                if !blobs_read.insert((repo.to_string(), blob.digest.clone())) {
                    continue;
                }
                match read_back(self.secondary, repo, &blob.digest, blob.size, self.shutdown)? {
                    Ok(bytes) => {
                        pulled.blobs += 1;
                        pulled.bytes += bytes;
                    }
                    Err(why) => {
                        let message = format!("blob {} on the secondary {url} {why}", blob.digest);
                        return Ok(Some((Damage::Blob, blob.digest.to_string(), message)));
                    }
                }
            }
            if manifest::is_schema1(&m.media_type, &m.bytes) {
                continue; // no subject, no referrers
            }
            for reference in self.referrers(repo, &m.digest, tag_lists)? {
                if visited.len() >= MAX_MANIFESTS_PER_TAG {
                    break;
                }
                match self.manifest(repo, &reference)? {
                    Ok(r) if visited.insert(r.digest.clone()) => todo.push(r),
                    Ok(_) => {}
                    Err(why) => {
                        return Ok(Some((Damage::Manifest, reference.clone(), format!("referrer {reference} {why}"))))
                    }
                }
            }
        }
        Ok(None)
    }

    /// A manifest by tag or digest, its bytes checked: `Ok(Err(why))` when
    /// it is missing or damaged; an error when the registry cannot be
    /// reached or georeg is stopping.
    fn manifest(&self, repo: &str, reference: &str) -> Result<std::result::Result<Manifest, String>> {
        match self.secondary.manifest(repo, reference) {
            Ok(Some(m)) => Ok(Ok(m)),
            Ok(None) => Ok(Err("is missing (404 MANIFEST_UNKNOWN)".into())),
            Err(e @ (Error::Transport { .. } | Error::Interrupted)) => Err(e),
            Err(Error::Manifest { message, .. }) => Ok(Err(message)),
            Err(e) => Ok(Err(format!("could not be read ({e})"))),
        }
    }

    /// References to the referrers of `digest`: digests from the
    /// registry's referrers API, or, where it has none, the fallback tags
    /// `sha256-HEX...` the repository holds.
    fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        tag_lists: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<String>> {
        if let Some(found) = self.secondary.referrers(repo, digest)? {
            return Ok(found.into_iter().map(|d| d.to_string()).collect());
        }
        if !tag_lists.contains_key(repo) {
            tag_lists.insert(repo.to_string(), self.secondary.tags(repo)?.unwrap_or_default());
        }
        let prefix = format!("sha256-{}", digest.as_str().trim_start_matches("sha256:"));
        Ok(tag_lists[repo].iter().filter(|t| t.starts_with(&prefix)).cloned().collect())
    }
}

/// The daemon's drill thread: a drill whenever the last one is
/// `interval` old (at start too, once anything is synced), until shutdown.
pub fn run(d: &Drill, interval: Duration, sample: usize) {
    loop {
        let wait = match d.store.last_drill_age() {
            Ok(Some(age)) if (age as u64) < interval.as_secs() => Duration::from_secs(interval.as_secs() - age as u64),
            Ok(_) => match d.store.drill_sample(1) {
                Ok(tags) if tags.is_empty() => RETRY.min(interval),
                Ok(_) => {
                    drill_now(d, sample);
                    interval
                }
                Err(e) => {
                    log::warn!("cannot pick tags for a drill from the state file: {e}");
                    RETRY
                }
            },
            Err(e) => {
                log::warn!("cannot read the last drill from the state file: {e}");
                RETRY
            }
        };
        if !d.shutdown.sleep(wait) {
            return;
        }
    }
}

fn drill_now(d: &Drill, sample: usize) {
    match d.run(sample, "schedule", |_| {}) {
        Ok(r) if r.failures.is_empty() => log::info!(
            "drill: {} tags pulled from the secondary {} ({} manifests, {} blobs, {}) in {}s: all whole",
            r.tags,
            d.secondary.url(),
            r.manifests,
            r.blobs,
            crate::format::human_bytes(r.bytes),
            r.seconds
        ),
        Ok(r) => {
            for f in &r.failures {
                log::error!(
                    "drill: {}:{} cannot be pulled whole: {}; full sync queued",
                    f.repository,
                    f.tag,
                    f.message
                );
            }
            log::error!("drill: {} of {} tags failed", r.failures.len(), r.tags);
        }
        Err(Error::Interrupted) => {}
        Err(e) => log::warn!("drill failed: {e}"),
    }
}
