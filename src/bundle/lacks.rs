//! What an air-gapped secondary lacks: its inventory compared with the
//! primary, repository by repository, without writing a bundle (`georeg
//! export --inventory FILE --dry-run`). The same walk an incremental export
//! makes, reading the primary only: each tag's digest by HEAD, and the
//! manifests the secondary does not hold, to size the blobs a bundle would
//! carry (those another of its repositories holds would be mounted, not
//! carried). Referrers are not counted.

use std::collections::{BTreeMap, BTreeSet};

use super::inventory::{HeldSets, Index};
use crate::error::{Error, Result};
use crate::registry::{manifest, valid_tag, Client, Digest};
use crate::shutdown::Shutdown;

/// Index nesting deeper than this is not followed (as in an export).
const MAX_DEPTH: usize = 4;

/// What one repository of the secondary lacks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lack {
    pub repository: String,
    /// The primary no longer has the repository: every tag goes.
    pub gone: bool,
    /// Tags the secondary does not have, has at another digest, and has
    /// that the primary no longer does.
    pub missing: Vec<String>,
    pub moved: Vec<String>,
    pub removed: Vec<String>,
    /// Manifests and blobs a bundle would carry, the blobs' bytes, and
    /// blobs it would mount from the secondary's other repositories.
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub mounts: usize,
}

impl Lack {
    pub fn is_empty(&self) -> bool {
        !self.gone && self.missing.is_empty() && self.moved.is_empty() && self.removed.is_empty()
    }
}

/// Compares one repository of the inventory (`index`) with the primary.
pub fn compare(primary: &Client, index: &Index, repo: &str, shutdown: &Shutdown) -> Result<Lack> {
    let held = index.repository(repo);
    let empty = HeldSets::default();
    let h = held.unwrap_or(&empty);
    let mut lack = Lack { repository: repo.to_string(), ..Lack::default() };
    let Some(listed) = primary.tags(repo)? else {
        // A repository the secondary still lists with no tag left lacks nothing.
        lack.gone = !h.tags.is_empty();
        lack.removed = h.tags.keys().cloned().collect();
        return Ok(lack);
    };
    let mut walk = Walk { primary, repo, held: h, seen: BTreeSet::new(), blobs: BTreeMap::new() };
    let mut on_primary = BTreeSet::new();
    for tag in listed.into_iter().filter(|t| valid_tag(t)) {
        shutdown.check()?;
        let Some(digest) = primary.manifest_digest(repo, &tag)? else { continue };
        on_primary.insert(tag.clone());
        match h.tags.get(&tag) {
            Some(there) if there == digest.as_str() => continue,
            Some(_) => lack.moved.push(tag),
            None => lack.missing.push(tag),
        }
        walk.manifest(&digest, 0, &mut lack, shutdown)?;
    }
    lack.removed = h.tags.keys().filter(|t| !on_primary.contains(*t)).cloned().collect();
    for (digest, size) in walk.blobs {
        if index.holder(&digest, repo).is_some() {
            lack.mounts += 1;
        } else {
            lack.blobs += 1;
            lack.bytes += size;
        }
    }
    Ok(lack)
}

struct Walk<'a> {
    primary: &'a Client,
    repo: &'a str,
    held: &'a HeldSets,
    seen: BTreeSet<Digest>,
    /// Blobs the secondary's repository lacks, with their sizes.
    blobs: BTreeMap<Digest, u64>,
}

impl Walk<'_> {
    fn manifest(&mut self, digest: &Digest, depth: usize, lack: &mut Lack, shutdown: &Shutdown) -> Result<()> {
        if depth > MAX_DEPTH || self.held.manifests.contains(digest.as_str()) || !self.seen.insert(digest.clone()) {
            return Ok(());
        }
        shutdown.check()?;
        let Some(m) = self.primary.manifest(self.repo, digest.as_str())? else { return Ok(()) };
        lack.manifests += 1;
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: self.repo.into(),
            reference: digest.to_string(),
            message,
        })?;
        for blob in refs.blobs {
            if !self.held.blobs.contains(blob.digest.as_str()) {
                self.blobs.insert(blob.digest, blob.size);
            }
        }
        for child in refs.manifests {
            self.manifest(&child, depth + 1, lack, shutdown)?;
        }
        Ok(())
    }
}

/// `app: lacks 2 tags (v3, v4), 1 tag at another digest (latest), 1 tag to
/// remove (old); a bundle carries 3 manifests and 5 blobs (12.3 MB), and
/// mounts 2 blobs from its other repositories`.
pub fn line(l: &Lack) -> String {
    let names = |tags: &[String]| {
        let shown: Vec<&str> = tags.iter().take(5).map(String::as_str).collect();
        match tags.len().saturating_sub(5) {
            0 => shown.join(", "),
            more => format!("{} and {more} more", shown.join(", ")),
        }
    };
    if l.gone {
        return format!(
            "{}: the primary no longer has it: {} to remove",
            l.repository,
            crate::format::count(l.removed.len() as u64, "tag", "tags")
        );
    }
    let mut parts = Vec::new();
    if !l.missing.is_empty() {
        parts.push(format!(
            "{} missing ({})",
            crate::format::count(l.missing.len() as u64, "tag", "tags"),
            names(&l.missing)
        ));
    }
    if !l.moved.is_empty() {
        parts.push(format!(
            "{} at another digest ({})",
            crate::format::count(l.moved.len() as u64, "tag", "tags"),
            names(&l.moved)
        ));
    }
    if !l.removed.is_empty() {
        parts.push(format!(
            "{} to remove ({})",
            crate::format::count(l.removed.len() as u64, "tag", "tags"),
            names(&l.removed)
        ));
    }
    let mut text = format!("{}: {}", l.repository, parts.join(", "));
    if l.manifests > 0 {
        text.push_str(&format!(
            "; a bundle carries {} and {} ({})",
            crate::format::count(l.manifests as u64, "manifest", "manifests"),
            crate::format::count(l.blobs as u64, "blob", "blobs"),
            crate::format::human_bytes(l.bytes)
        ));
        if l.mounts > 0 {
            text.push_str(&format!(
                ", and mounts {} from its other repositories",
                crate::format::count(l.mounts as u64, "blob", "blobs")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_what_is_missing_moved_and_removed() {
        let l = Lack {
            repository: "app".into(),
            missing: (1..=7).map(|i| format!("v{i}")).collect(),
            moved: vec!["latest".into()],
            removed: vec!["old".into()],
            manifests: 3,
            blobs: 5,
            bytes: 12_300_000,
            mounts: 2,
            ..Lack::default()
        };
        assert_eq!(
            line(&l),
            "app: 7 tags missing (v1, v2, v3, v4, v5 and 2 more), 1 tag at another digest (latest), 1 tag to remove \
             (old); a bundle carries 3 manifests and 5 blobs (12.3 MB), and mounts 2 blobs from its other repositories"
        );
        let gone =
            Lack { repository: "g".into(), gone: true, removed: vec!["a".into(), "b".into()], ..Lack::default() };
        assert_eq!(line(&gone), "g: the primary no longer has it: 2 tags to remove");
        assert!(Lack::default().is_empty() && !gone.is_empty());
    }
}
