//! What a repository's comparison with the primary expects to differ
//! ([`Kept`]): deletions held back or cancelled, the backup tags of
//! overwrites held back, and tags an operator put back (pins).

use std::collections::{BTreeMap, BTreeSet};

use super::handles::Queue;
use super::overwrites::backup_tag;
use crate::error::Result;
use crate::registry::Digest;

/// Differences from the primary a repository's verification expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// Tags only the secondary has, with the digest they had (deletions
    /// held back or cancelled, and the backup tags of overwrites held).
    pub tags: BTreeMap<String, Option<String>>,
    /// Manifests whose deletion is held back or cancelled.
    pub manifests: BTreeSet<String>,
    /// Tags an operator put back: tag -> (the digest the secondary keeps,
    /// the digest the primary had when it moved the tag).
    pub pinned: BTreeMap<String, (String, String)>,
}

impl Kept {
    /// Whether `tag` at `digest`, on the secondary but not on the primary,
    /// is an expected difference.
    pub fn covers(&self, tag: &str, digest: &str) -> bool {
        self.tags.get(tag).is_some_and(|d| d.as_deref().is_none_or(|d| d == digest)) || self.manifests.contains(digest)
    }

    /// Whether `tag` at `digest` on the secondary, at `primary` on the
    /// primary, is a tag an operator put back: expected while the primary
    /// has it where it moved it when the overwrite was cancelled.
    pub fn pinned_at(&self, tag: &str, digest: &str, primary: Option<&str>) -> bool {
        self.pinned.get(tag).is_some_and(|(kept, moved_to)| kept == digest && primary == Some(moved_to.as_str()))
    }

    /// Pinned tags as the primary has them, for a comparison of digests:
    /// the secondary's `tags` with each tag an operator put back shown at
    /// the digest the primary moved it to.
    pub fn unpin(&self, tags: &mut BTreeMap<String, Digest>) {
        for (tag, (kept, moved_to)) in &self.pinned {
            if tags.get(tag).is_some_and(|d| d.as_str() == kept) {
                if let Ok(d) = Digest::parse(moved_to) {
                    tags.insert(tag.clone(), d);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.manifests.is_empty() && self.pinned.is_empty()
    }
}

impl Queue {
    /// What the repository's comparison with the primary expects to differ.
    pub fn kept_deletions(&self, repository: &str) -> Result<Kept> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT h.kind, h.tag, h.digest, h.state, h.replaced_by FROM deletions h
             JOIN repositories r ON r.id = h.repository_id
             WHERE r.name = ?1 AND h.state IN ('held', 'applying', 'cancelled')",
        )?;
        let mut kept = Kept::default();
        let rows = stmt.query_map([repository], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            match row? {
                (kind, Some(tag), Some(digest), state, Some(moved_to)) if kind == "overwrite" => {
                    if state == "cancelled" {
                        kept.pinned.insert(tag, (digest, moved_to));
                    } else if let Ok(d) = Digest::parse(&digest) {
                        kept.tags.insert(backup_tag(&d), Some(digest));
                    }
                }
                (kind, Some(tag), digest, _, _) if kind == "tag" => {
                    kept.tags.insert(tag, digest);
                }
                (kind, _, Some(digest), _, _) if kind == "manifest" => {
                    kept.manifests.insert(digest);
                }
                _ => {}
            }
        }
        Ok(kept)
    }
}
