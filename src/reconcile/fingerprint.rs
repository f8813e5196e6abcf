//! A repository's fingerprint: SHA-256 over its tags sorted by name, one
//! `name digest\n` line each, read through the registry's API. It is the
//! verification checksum, so a fingerprint and a checksum of the same tags
//! are the same string. On a secondary, what differs from the primary on
//! purpose (a deletion held back or cancelled, a tag the secondary refuses)
//! is taken out of it first, so that the two fingerprints are equal
//! exactly when nothing is left to do.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::registry::{Client, Digest};
use crate::store::Kept;

/// The fingerprint of a tag -> digest map.
pub fn of(tags: &BTreeMap<String, Digest>) -> String {
    let mut text = String::new();
    for (tag, digest) in tags {
        text.push_str(tag);
        text.push(' ');
        text.push_str(digest.as_str());
        text.push('\n');
    }
    Digest::sha256_of(text.as_bytes()).to_string()
}

/// The secondary's tags as the primary should have them: tags whose
/// deletion is held back or cancelled are left out (backup tags of held
/// overwrites too), tags an operator put back are shown where the primary
/// moved them, and tags the secondary refuses are put in at the digest
/// the primary had.
pub fn as_expected(
    mut tags: BTreeMap<String, Digest>,
    kept: &Kept,
    unsupported: &[(String, String)],
) -> BTreeMap<String, Digest> {
    tags.retain(|tag, digest| !kept.covers(tag, digest.as_str()));
    kept.unpin(&mut tags);
    for (tag, digest) in unsupported {
        if let (false, Ok(d)) = (tags.contains_key(tag), Digest::parse(digest)) {
            tags.insert(tag.clone(), d);
        }
    }
    tags
}

/// Reads a repository's tags and their digests from `registry`: `None`
/// when the registry does not know the repository. Returns the requests
/// it took too (one listing, one HEAD per tag).
pub fn read(registry: &Client, repo: &str) -> Result<(Option<BTreeMap<String, Digest>>, u64)> {
    let Some(listed) = registry.tags(repo)? else { return Ok((None, 1)) };
    let mut tags = BTreeMap::new();
    let mut requests = 1;
    for tag in listed.into_iter().filter(|t| crate::registry::valid_tag(t)) {
        requests += 1;
        if let Some(d) = registry.manifest_digest(repo, &tag)? {
            tags.insert(tag, d);
        }
    }
    Ok((Some(tags), requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_fingerprint_is_the_verification_checksum_and_expected_differences_are_taken_out() {
        let primary: BTreeMap<String, Digest> = [("v1".to_string(), d('a')), ("v2".to_string(), d('b'))].into();
        assert_eq!(of(&primary), crate::replication::verify::checksum(&primary));
        // The secondary still holds v0 (its deletion is held back) and
        // lacks v2 (a schema 1 tag it refuses).
        let secondary: BTreeMap<String, Digest> = [("v0".to_string(), d('c')), ("v1".to_string(), d('a'))].into();
        let mut kept = Kept::default();
        kept.tags.insert("v0".into(), Some(d('c').to_string()));
        let unsupported = [("v2".to_string(), d('b').to_string())];
        assert_ne!(of(&secondary), of(&primary));
        assert_eq!(of(&as_expected(secondary, &kept, &unsupported)), of(&primary));
    }
}
