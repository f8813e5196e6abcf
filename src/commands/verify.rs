//! `georeg verify [--blobs] [REPO...]`: verifies the repositories (default:
//! every one the primary's catalog or the state file knows, selective sync
//! applied) now, one result line each; exit 1 if any failed, 130 when
//! interrupted. While `georeg serve` runs, it asks the daemon for the
//! verifications and follows them.
//!
//! `georeg verify --bundle FILE.tar`: on an air-gapped secondary, compares
//! the registry with what a transfer bundle says (every tag and digest of
//! each repository it names; no tags where the primary deleted the
//! repository), without the primary. It records the outcomes as
//! verifications when it can take the state file, and only prints them
//! beside a running `georeg serve`. Exit 1 when any differs; 2 when the
//! bundle is refused (as `import` refuses it). It reads the description
//! one repository at a time and verifies them [`BATCH`] at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use super::node::Node;
use super::owner::{each_repository, follow, recover, Followed, Owner, Tally};
use crate::bundle::reader::Bundle;
use crate::bundle::{Contents, Item};
use crate::error::{Error, Result};
use crate::format::printable;
use crate::registry::{self, Digest};
use crate::replication::verify::{check_blobs, checksum, checksum_with, first_difference, Outcome};
use crate::store::lock::{Lock, Locker};

pub fn run(node: &Node, blobs: bool, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let names = if repositories.is_empty() {
        let selection = node.config.replication.selection();
        let listed = match replicator.primary.catalog() {
            Ok(listed) => listed,
            // A primary that refuses its catalog: the repositories the
            // configuration names, and those this node knows.
            Err(e @ Error::Registry { .. }) if !replicator.repositories.is_empty() => {
                eprintln!(
                    "catalog: {} refuses its catalog ({e}): verifying replication.repositories and the \
                     repositories this node knows",
                    replicator.primary.url()
                );
                replicator.repositories.to_vec()
            }
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = listed.into_iter().filter(|n| selection.includes(n)).collect();
        names.extend(node.queue.repository_names()?.into_iter().filter(|n| selection.includes(n)));
        names.sort();
        names.dedup();
        names
    } else {
        repositories.to_vec()
    };
    if let Some(bad) = names.iter().find(|n| !registry::valid_repository(n)) {
        return Err(Error::Usage(format!("{bad:?} is not a valid repository name")));
    }
    let tally = match Owner::take(node, Locker::Verify)? {
        Owner::Itself(_lock) => verify_here(node, &names, blobs)?,
        Owner::Daemon(holder) => {
            for name in &names {
                node.queue.request_verification(name, blobs)?;
            }
            let outcome = |p: &crate::store::Progress| {
                p.verification_outcome().map(|r| {
                    r.map(|checksum| format!("verified, checksum {checksum}"))
                        .map_err(|why| format!("{why}; resync queued"))
                })
            };
            match follow(node, &holder, &names, outcome, |_, _| {})? {
                Followed::Done(tally) => tally,
                Followed::DaemonGone { mut tally, left } => {
                    let _lock = Lock::acquire(&node.config.state_file, Locker::Verify)?;
                    recover(node)?;
                    let rest = verify_here(node, &left, blobs)?;
                    tally.failed += rest.failed;
                    tally.interrupted += rest.interrupted;
                    tally.total += rest.total;
                    tally
                }
            }
        }
    };
    Ok(tally.exit("failed verification"))
}

/// The verifications, done by this process (it holds the lock).
fn verify_here(node: &Node, names: &[String], blobs: bool) -> Result<Tally> {
    let replicator = node.replicator()?;
    each_repository(node, names, "verify", |repo| {
        let v = node.queue.claim_verification(repo, blobs)?;
        Ok(match replicator.verify(&v)? {
            o @ Outcome::Match { .. } => Ok(o.describe()),
            o => Err(format!("{}; resync queued", o.describe())),
        })
    })
}

/// Repositories verified at a time against a bundle: what is held of
/// its description while they are (the rest is read as it comes).
const BATCH: usize = 256;

/// `georeg verify --bundle FILE.tar [--blobs] [REPO...]`.
pub fn against_bundle(node: &Node, file: &Path, blobs: bool, repositories: &[String]) -> Result<ExitCode> {
    let selection = node.config.replication.selection();
    let bundle = Bundle::open(file, node.signer()?, &selection)?;
    let h = &bundle.header;
    // What the secondary must hold: the bundle's tags, and nothing of the
    // repositories gone from the primary.
    let wanted =
        |name: &str| selection.includes(name) && (repositories.is_empty() || repositories.iter().any(|r| r == name));
    let mut count = bundle.selected;
    if !repositories.is_empty() {
        let mut unknown: BTreeSet<&str> = repositories.iter().map(String::as_str).collect();
        unknown.retain(|r| !(bundle.gone.contains(*r) && selection.includes(r)));
        bundle.each(|item| {
            if let Item::Repository(r) = item {
                if selection.includes(&r.name) {
                    unknown.remove(r.name.as_str());
                }
            }
            Ok(())
        })?;
        if let Some(unknown) = unknown.first() {
            return Err(Error::Usage(format!("{unknown:?} is not a repository of bundle {}", h.id)));
        }
        count = repositories.iter().collect::<BTreeSet<_>>().len();
    }
    let lock = match Lock::try_acquire(&node.config.state_file, Locker::Verify)? {
        Ok(lock) => {
            recover(node)?;
            Some(lock)
        }
        Err(holder) => {
            eprintln!("georeg: {holder} owns the state file: the outcomes are printed, not recorded");
            None
        }
    };
    eprintln!(
        "bundle {} exported from {} at {}: verifying {count} repositories",
        h.id,
        printable(&h.primary),
        h.created_at
    );
    let verify = |expected: &BTreeMap<String, Wanted>| {
        let names: Vec<String> = expected.keys().cloned().collect();
        each_repository(node, &names, "verify", |repo| {
            let want = &expected[repo];
            let record = lock.is_some() && !bundle.gone.contains(repo);
            let v = if record { Some(node.queue.claim_verification(repo, blobs)?) } else { None };
            let outcome = compare(node, repo, want, blobs);
            let store = &node.queue;
            match (&outcome, &v) {
                (Ok(Outcome::Match { checksum, .. }), Some(v)) => store.verification_succeeded(v, checksum)?,
                (Ok(o), Some(v)) => store.verification_failed(v, &o.describe(), false)?,
                (Err(Error::Interrupted), Some(v)) => store.release_verification(v)?,
                (Err(e), Some(v)) if e.is_finding() => {
                    store.verification_failed(v, &format!("could not verify: {e}"), false)?
                }
                (Err(e), Some(v)) => store.verification_deferred(
                    v,
                    &format!("could not verify: {e}"),
                    crate::replication::verify::VERIFY_RETRY_SECONDS,
                )?,
                (_, None) => {}
            }
            let kept_out = |kept: usize| match kept {
                0 => String::new(),
                n => format!(" ({n} tags whose deletion is held back or cancelled left out: see georeg deletions)"),
            };
            Ok(match outcome? {
                Outcome::Match { checksum, kept, .. } if want.referrers.is_empty() => {
                    Ok(format!("holds what the bundle says, checksum {checksum}{}", kept_out(kept)))
                }
                Outcome::Match { checksum, kept, .. } => Ok(format!(
                    "holds what the bundle says ({} and {}), checksum {checksum}{}",
                    crate::format::count(want.tags.len() as u64, "tag", "tags"),
                    crate::format::count(want.referrers.len() as u64, "referrer", "referrers"),
                    kept_out(kept)
                )),
                o => Err(o.describe()),
            })
        })
    };
    let mut tally = Tally { failed: 0, interrupted: 0, total: 0 };
    let mut add = |t: Tally| {
        tally.failed += t.failed;
        tally.interrupted += t.interrupted;
        tally.total += t.total;
    };
    let mut batch = BTreeMap::new();
    bundle.each(|item| {
        if let Item::Repository(r) = item {
            if wanted(&r.name) {
                let referrers = Contents::referrers(&r);
                batch.insert(r.name.clone(), Wanted { tags: Contents::tags(&r), referrers });
                if batch.len() >= BATCH {
                    add(verify(&batch)?);
                    batch.clear();
                }
            }
        }
        Ok(())
    })?;
    for name in bundle.gone.iter().filter(|n| wanted(n)) {
        batch.insert(name.clone(), Wanted::default());
    }
    add(verify(&batch)?);
    Ok(tally.exit("differ from the bundle"))
}

/// What the bundle says a repository holds.
#[derive(Default)]
struct Wanted {
    tags: BTreeMap<String, Digest>,
    /// (subject, referrer).
    referrers: Vec<(Digest, Digest)>,
}

/// The repository on this node's registry against the bundle's tags and
/// referrers: the checksum a verification against the primary computes
/// (tags, then `referrer SUBJECT DIGEST` lines).
fn compare(node: &Node, repo: &str, want: &Wanted, blobs: bool) -> Result<Outcome> {
    let mut got = node.local.tag_digests_among(repo, want.tags.keys())?;
    // Deletions and overwrites held back or cancelled differ on purpose,
    // as in a verification against the primary.
    let kept = node.queue.kept_deletions(repo)?;
    let listed = got.len();
    got.retain(|tag, digest| want.tags.contains_key(tag) || !kept.covers(tag, digest.as_str()));
    let kept_out = listed - got.len();
    kept.unpin(&mut got);
    let (mut lines, mut held) = (Vec::new(), Vec::new());
    for (subject, referrer) in &want.referrers {
        node.shutdown.check()?;
        let line = format!("referrer {subject} {referrer}");
        if node.local.manifest_digest(repo, referrer.as_str())?.is_some() {
            held.push(line.clone());
        }
        lines.push(line);
    }
    lines.sort();
    held.sort();
    let (w, g) = match lines.is_empty() {
        true => (checksum(&want.tags), checksum(&got)),
        false => (checksum_with(&want.tags, &lines), checksum_with(&got, &held)),
    };
    // "primary": the primary as the bundle has it, when it was exported.
    let difference = first_difference(&want.tags, &got)
        .or_else(|| lines.iter().find(|l| !held.contains(l)).map(|l| format!("{l}: secondary missing")));
    if let Some(first_difference) = difference {
        return Ok(Outcome::Mismatch { primary: format!("{w} (in the bundle)"), secondary: g, first_difference });
    }
    if blobs {
        let known: Vec<String> = want.tags.keys().cloned().collect();
        let (n, bytes) = check_blobs(&node.local, repo, &known, &node.shutdown)?;
        log::info!("{repo}: {n} blobs ({}) read back and their digests checked", crate::format::human_bytes(bytes));
    }
    Ok(Outcome::Match { checksum: w, unsupported: 0, kept: kept_out, unlisted: !node.local.lists_tags() })
}
