//! Verification: proves that a secondary repository matches the primary.
//!
//! The checksum of a repository is SHA-256 over its tags sorted by name,
//! one "name digest\n" line each (as Geo computes it). It is computed
//! independently on each registry, through its API, never from georeg's
//! own records, so a tag changed behind georeg's back is caught. With
//! `--blobs`, every blob the secondary's manifests reference is also read
//! back and its digest checked.

use std::collections::{BTreeMap, BTreeSet};

use super::replicator::Replicator;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::registry::digest::{Digest, VerifyingReader};
use crate::registry::{manifest, Client};
use crate::shutdown::Shutdown;
use crate::store::{Kept, Verification};

/// How long a verification that could not reach a registry waits before
/// it is tried again.
pub const VERIFY_RETRY_SECONDS: u64 = 300;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The checksums match; `unsupported` tags the secondary refuses (and
    /// georeg recorded so) were left out on the primary's side, and `kept`
    /// tags whose deletion is held back or cancelled on the secondary's.
    Match {
        checksum: String,
        unsupported: usize,
        kept: usize,
        /// The secondary lists no tags: it was read by the primary's tag
        /// names, and a tag only it holds cannot be seen.
        unlisted: bool,
    },
    Mismatch {
        primary: String,
        secondary: String,
        first_difference: String,
    },
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Match { checksum, unsupported, kept, unlisted } => {
                let mut text = format!("verified, checksum {checksum}");
                if *unlisted {
                    text.push_str(" (the secondary lists no tags: read by the primary's; tags only it holds unseen)");
                }
                if *unsupported > 0 {
                    text.push_str(&format!(
                        " ({unsupported} tags the secondary refuses left out: see unsupported_tags)"
                    ));
                }
                if *kept > 0 {
                    text.push_str(&format!(
                        " ({kept} tags whose deletion is held back or cancelled left out: see georeg deletions)"
                    ));
                }
                text
            }
            Outcome::Mismatch { primary, secondary, first_difference } => {
                format!(
                    "checksum mismatch: primary {primary}, secondary {secondary}; first difference: {first_difference}"
                )
            }
        }
    }
}

pub fn checksum(tags: &BTreeMap<String, Digest>) -> String {
    let mut text = String::new();
    for (tag, digest) in tags {
        text.push_str(tag);
        text.push(' ');
        text.push_str(digest.as_str());
        text.push('\n');
    }
    Digest::sha256_of(text.as_bytes()).to_string()
}

/// The first tag, in name order, whose digest differs between the two.
pub fn first_difference(primary: &BTreeMap<String, Digest>, secondary: &BTreeMap<String, Digest>) -> Option<String> {
    let names: BTreeSet<&String> = primary.keys().chain(secondary.keys()).collect();
    names.into_iter().find(|n| primary.get(*n) != secondary.get(*n)).map(|n| {
        let show = |d: Option<&Digest>| d.map(|d| d.to_string()).unwrap_or_else(|| "missing".into());
        format!("tag {n}: primary {}, secondary {}", show(primary.get(n)), show(secondary.get(n)))
    })
}

/// Compares the repository's checksum on both registries. `unsupported`:
/// tags the secondary is known to refuse, with the primary digest it
/// refused; while the primary still has that digest and the secondary
/// lacks the tag, they are an expected difference, not a mismatch. `kept`:
/// deletions held back or cancelled; a tag they cover that the secondary
/// still has and the primary lacks is expected too, as is a tag an
/// operator put back to the digest an overwrite left.
pub fn compare(
    primary: &Client,
    secondary: &Client,
    repo: &str,
    unsupported: &[(String, String)],
    kept: &Kept,
) -> Result<Outcome> {
    let mut p = primary.tag_digests(repo)?;
    if p.is_empty() && !primary.lists_tags() {
        return Err(primary.unlisted(repo));
    }
    let mut s = secondary.tag_digests_among(repo, p.keys())?;
    let mut left_out = 0;
    for (tag, digest) in unsupported {
        if p.get(tag).is_some_and(|d| d.as_str() == digest) && !s.contains_key(tag) {
            p.remove(tag);
            left_out += 1;
        }
    }
    let before = s.len();
    s.retain(|tag, digest| p.contains_key(tag) || !kept.covers(tag, digest.as_str()));
    let kept_out = before - s.len();
    // A tag an operator put back reads as the primary has it, while the
    // primary keeps it where it moved it.
    kept.unpin(&mut s);
    let (mut pc, mut sc) = (checksum(&p), checksum(&s));
    let mut difference = first_difference(&p, &s);
    if let Some((on_primary, on_secondary)) = referrer_lines(primary, secondary, repo, &p)? {
        // Referrers count too, where the primary can list them.
        pc = checksum_with(&p, &on_primary);
        sc = checksum_with(&s, &on_secondary);
        if difference.is_none() {
            difference =
                on_primary.iter().find(|l| !on_secondary.contains(l)).map(|l| format!("{l}: secondary missing"));
        }
    }
    Ok(match difference {
        None => {
            Outcome::Match { checksum: pc, unsupported: left_out, kept: kept_out, unlisted: !secondary.lists_tags() }
        }
        Some(first_difference) => Outcome::Mismatch { primary: pc, secondary: sc, first_difference },
    })
}

/// The repository's referrers as checksum lines (`referrer SUBJECT
/// DIGEST`), sorted: all the primary lists (walked from its tags'
/// manifests, transitively), and those of them the secondary holds.
/// `None` when the primary has no referrers API.
fn referrer_lines(
    primary: &Client,
    secondary: &Client,
    repo: &str,
    tags: &BTreeMap<String, Digest>,
) -> Result<Option<(Vec<String>, Vec<String>)>> {
    let mut todo: Vec<Digest> = tags.values().cloned().collect();
    let mut visited = BTreeSet::new();
    let (mut on_primary, mut on_secondary) = (Vec::new(), Vec::new());
    while let Some(subject) = todo.pop() {
        if !visited.insert(subject.clone()) || visited.len() > 100_000 {
            continue;
        }
        let Some(referrers) = primary.referrers(repo, &subject)? else { return Ok(None) };
        for r in referrers {
            let line = format!("referrer {subject} {r}");
            if secondary.manifest_digest(repo, r.as_str())?.is_some() {
                on_secondary.push(line.clone());
            }
            on_primary.push(line);
            todo.push(r);
        }
    }
    on_primary.sort();
    on_secondary.sort();
    Ok(Some((on_primary, on_secondary)))
}

/// The checksum over the tags and then the referrer lines (sorted).
pub fn checksum_with(tags: &BTreeMap<String, Digest>, referrers: &[String]) -> String {
    let mut text = String::new();
    for (tag, digest) in tags {
        text.push_str(&format!("{tag} {digest}\n"));
    }
    for line in referrers {
        text.push_str(line);
        text.push('\n');
    }
    Digest::sha256_of(text.as_bytes()).to_string()
}

/// Reads back every blob the secondary's tags reference and checks its
/// digest; on a secondary that lists no tags, those of `known` (the tags
/// georeg left there). Returns (blobs, bytes) checked.
pub fn check_blobs(secondary: &Client, repo: &str, known: &[String], shutdown: &Shutdown) -> Result<(u64, u64)> {
    let mut manifests: Vec<String> = match secondary.tags(repo)? {
        None if !secondary.lists_tags() => known.to_vec(),
        listed => listed.unwrap_or_default(),
    };
    let mut seen_manifests = BTreeSet::new();
    let mut seen_blobs = BTreeSet::new();
    let (mut blobs, mut bytes) = (0, 0);
    while let Some(reference) = manifests.pop() {
        if !seen_manifests.insert(reference.clone()) {
            continue;
        }
        let Some(m) = secondary.manifest(repo, &reference)? else { continue };
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: repo.into(),
            reference: reference.clone(),
            message,
        })?;
        manifests.extend(refs.manifests.iter().map(|d| d.to_string()));
        for blob in refs.blobs {
            shutdown.check()?;
            if !seen_blobs.insert(blob.digest.clone()) {
                continue;
            }
            match read_back(secondary, repo, &blob.digest, blob.size, shutdown)? {
                Ok(read) => bytes += read,
                Err(why) => {
                    return Err(Error::Manifest {
                        repository: repo.into(),
                        reference: blob.digest.to_string(),
                        message: format!(
                            "blob on the secondary {} {why}; delete it from the secondary's storage and resync",
                            secondary.url()
                        ),
                    })
                }
            }
            blobs += 1;
        }
    }
    Ok((blobs, bytes))
}

/// Reads a blob back in full, as a client would, checking its size and
/// digest: `Ok(Ok(bytes))` when it is whole, `Ok(Err(why))` when the
/// registry lacks it or returns other bytes; an error when the registry
/// cannot be reached or georeg is stopping. `size` 0: ask the registry
/// (schema 1 names layers without sizes).
pub fn read_back(
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    shutdown: &Shutdown,
) -> Result<std::result::Result<u64, String>> {
    let size = match size {
        0 => match client.blob_size(repo, digest)? {
            Some(size) => size,
            None => return Ok(Err("is missing (404 BLOB_UNKNOWN)".into())),
        },
        size => size,
    };
    let body = match client.download(repo, digest, size, 0, shutdown) {
        Ok(body) => body,
        Err(e @ (Error::Transport { .. } | Error::Interrupted)) => return Err(e),
        Err(e) => return Ok(Err(format!("could not be read ({e})"))),
    };
    let mut reader = VerifyingReader::new(Stoppable { inner: body, shutdown }, digest.clone(), size);
    let copied = std::io::copy(&mut reader, &mut std::io::sink());
    shutdown.check()?;
    Ok(match (copied, reader.failure.take()) {
        (_, Some(why)) => Err(why),
        (Err(e), None) => Err(format!("could not be read ({e})")),
        (Ok(_), None) => Ok(reader.bytes_read()),
    })
}

/// A blob being read back that stops when georeg is asked to, so that a
/// large one does not hold the process past its stop deadline.
struct Stoppable<'a, R> {
    inner: R,
    shutdown: &'a Shutdown,
}

impl<R: std::io::Read> std::io::Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.shutdown.requested() {
            return Err(std::io::Error::other("georeg is shutting down"));
        }
        self.inner.read(buf)
    }
}

impl Replicator<'_> {
    /// Verifies a claimed repository and records the outcome: a mismatch
    /// queues a full sync; an error (a registry down) is retried later.
    /// With `v.blobs`, a match is also proved blob by blob.
    pub fn verify(&self, v: &Verification) -> Result<Outcome> {
        let unsupported = self.engine.store.unsupported_tags(&v.name)?;
        let kept = self.engine.store.kept_deletions(&v.name)?;
        let result = compare(self.primary, self.engine.secondary, &v.name, &unsupported, &kept).and_then(|outcome| {
            if v.blobs && matches!(outcome, Outcome::Match { .. }) {
                let recorded = self.engine.store.tags(&v.name)?.into_iter().map(|(tag, _)| tag).collect::<Vec<_>>();
                let (n, size) = check_blobs(self.engine.secondary, &v.name, &recorded, self.engine.shutdown)?;
                log::info!(
                    "{}: {n} blobs ({}) read back from the secondary and their digests checked",
                    v.name,
                    human_bytes(size)
                );
            }
            Ok(outcome)
        });
        let store = self.engine.store;
        match result {
            Ok(Outcome::Match { checksum, unsupported, kept, unlisted }) => {
                store.verification_succeeded(v, &checksum)?;
                Ok(Outcome::Match { checksum, unsupported, kept, unlisted })
            }
            Ok(outcome) => {
                store.verification_failed(v, &outcome.describe(), true)?;
                Ok(outcome)
            }
            Err(Error::Interrupted) => {
                store.release_verification(v)?;
                Err(Error::Interrupted)
            }
            Err(e) if e.is_finding() => {
                store.verification_failed(v, &format!("could not verify: {e}"), true)?;
                Err(e)
            }
            // A registry that cannot be read proves nothing: the previous
            // verification stands, and this one is tried again.
            Err(e) => {
                store.verification_deferred(v, &format!("could not verify: {e}"), VERIFY_RETRY_SECONDS)?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn checksum_is_over_sorted_name_digest_lines() {
        let tags: BTreeMap<String, Digest> = [("v2".to_string(), d('b')), ("v1".to_string(), d('a'))].into();
        let text = format!("v1 {}\nv2 {}\n", d('a'), d('b'));
        assert_eq!(checksum(&tags), Digest::sha256_of(text.as_bytes()).to_string());
        assert_eq!(checksum(&BTreeMap::new()), Digest::sha256_of(b"").to_string());
    }

    #[test]
    fn first_difference_names_the_tag() {
        let p: BTreeMap<String, Digest> =
            [("a".to_string(), d('1')), ("b".to_string(), d('2')), ("c".to_string(), d('3'))].into();
        let mut s = p.clone();
        assert_eq!(first_difference(&p, &s), None);
        s.insert("c".into(), d('9'));
        s.remove("b");
        let diff = first_difference(&p, &s).unwrap();
        assert!(diff.starts_with("tag b: primary sha256:2222") && diff.ends_with("secondary missing"), "{diff}");
        s.insert("b".into(), d('2'));
        s.insert("0extra".into(), d('5'));
        assert!(first_difference(&p, &s).unwrap().starts_with("tag 0extra: primary missing"));
    }
}
