//! Transfer bundles: replication across an air gap. A secondary that no
//! network path joins to the primary is kept identical by carrying files:
//!
//! 1. `georeg inventory` on the secondary writes what its registry holds
//!    (`inventory`), signed with the key pair all nodes share;
//! 2. `georeg export` on a host that reaches the primary writes one tar
//!    file (`tarfile`): an OCI image layout (`oci-layout`, `index.json`,
//!    `blobs/sha256/...`) plus `georeg-bundle.json`, which says what the
//!    secondary must hold afterwards ([`Contents`]); with an inventory,
//!    only what the secondary lacks travels (`export`);
//! 3. `georeg import` on the secondary applies it with the copy engine
//!    (`replication::import`), reading blobs and manifests from the tar
//!    (`tarfile::Bundle` is a `replication::source::Source`);
//! 4. `georeg verify --bundle` proves the secondary holds what it says.
//!
//! Documents that cross the gap carry a signature (`signed`): the shared
//! key vouches that they were written by a georeg node of this
//! deployment, and every file inside a bundle is named by its digest and
//! checked against it as it is read.

pub mod export;
pub mod inventory;
pub mod reader;
pub mod signed;
pub mod tarfile;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registry::{valid_repository, valid_tag, Digest};

/// The `format` of `georeg-bundle.json` this georeg writes and reads.
pub const FORMAT: &str = "georeg-bundle/1";

/// `georeg-bundle.json`: the bundle's identity and what the secondary must
/// hold once it is imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    pub format: String,
    /// Random at export; the state file of the secondary records it.
    pub id: String,
    /// The primary registry it was exported from
    /// (`replication.primary_api_url` of the exporting configuration).
    pub primary: String,
    /// When the export began reading the primary, `YYYY-MM-DDTHH:MM:SS.mmmZ`
    /// (milliseconds: two bundles exported within a second still order).
    pub created_at: String,
    pub georeg_version: String,
    /// The inventory this bundle is incremental to; `None`: a full bundle.
    pub inventory: Option<Basis>,
    /// Every repository exported, with every tag the primary had and its
    /// digest, whether or not the bundle carries its contents.
    pub repositories: Vec<RepositoryEntry>,
    /// Tags the secondary held (by the inventory) that the primary no
    /// longer has, and repositories gone from the primary altogether.
    pub deletions: Vec<Deletion>,
    /// Every file of the tar but this one, with its digest and size;
    /// manifests (under `blobs/`) also with their media type.
    pub files: Vec<FileEntry>,
}

/// The inventory an incremental bundle was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    pub id: String,
    pub node: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryEntry {
    pub name: String,
    /// Tag -> manifest digest, as the primary had them.
    pub tags: BTreeMap<String, String>,
    /// Blobs left out because the secondary held them in another of its
    /// repositories when the inventory was taken: mounted from there.
    #[serde(default)]
    pub mounts: Vec<MountHint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountHint {
    pub digest: String,
    pub size: u64,
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub repository: String,
    /// The tags the secondary held that the primary no longer has.
    pub tags: Vec<String>,
    /// The primary no longer has the repository at all.
    pub repository_gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Contents {
    /// Checks what a signature cannot: that every name, tag, digest and
    /// path is one georeg itself would write.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "is of format {:?}; this georeg reads {FORMAT:?} (export it with the same georeg version)",
                self.format
            ));
        }
        if self.created_at.len() < 20 || !self.created_at.ends_with('Z') {
            return Err(format!("has no valid export time ({:?})", self.created_at));
        }
        let mut names = BTreeSet::new();
        for r in &self.repositories {
            if !valid_repository(&r.name) || !names.insert(r.name.as_str()) {
                return Err(format!("names the repository {:?} twice or in a form no registry accepts", r.name));
            }
            for (tag, digest) in &r.tags {
                if !valid_tag(tag) {
                    return Err(format!("names the tag {:?} of {}, which no registry accepts", tag, r.name));
                }
                Digest::parse(digest).map_err(|e| format!("{}:{tag}: {e}", r.name))?;
            }
            for m in &r.mounts {
                Digest::parse(&m.digest).map_err(|e| format!("{}: {e}", r.name))?;
                if !valid_repository(&m.from) {
                    return Err(format!("{}: mounts from {:?}, not a repository name", r.name, m.from));
                }
            }
        }
        for d in &self.deletions {
            if !valid_repository(&d.repository) || d.tags.iter().any(|t| !valid_tag(t)) {
                return Err(format!("deletes from {:?} names no registry accepts", d.repository));
            }
        }
        let mut paths = BTreeSet::new();
        for f in &self.files {
            let digest = Digest::parse(&f.digest).map_err(|e| format!("{}: {e}", f.path))?;
            let well_named =
                f.path == tarfile::LAYOUT || f.path == tarfile::INDEX || f.path == tarfile::blob_path(&digest);
            if !well_named || !paths.insert(f.path.as_str()) {
                return Err(format!("lists the file {:?} twice, or under a name that is not its digest", f.path));
            }
        }
        Ok(())
    }

    /// The repository's tags with their digests parsed (checked by
    /// [`Contents::check`]).
    pub fn tags(entry: &RepositoryEntry) -> BTreeMap<String, Digest> {
        entry.tags.iter().filter_map(|(t, d)| Digest::parse(d).ok().map(|d| (t.clone(), d))).collect()
    }

    /// Repositories the primary no longer has (they are not among
    /// `repositories`): an import removes their tags.
    pub fn gone(&self) -> impl Iterator<Item = &Deletion> {
        self.deletions.iter().filter(|d| d.repository_gone)
    }

    /// The bytes of the blobs the bundle carries (manifests left out).
    pub fn blob_bytes(&self) -> u64 {
        self.files.iter().filter(|f| f.media_type.is_none() && f.path.starts_with("blobs/")).map(|f| f.size).sum()
    }
}

/// Why a bundle is refused by the secondary about to import it, and the
/// option that overrides the refusal; `None` when it is welcome.
/// `primary`: this node's `replication.primary_api_url`; `newest`: the
/// newest bundle it knows (id, export time, whether its import finished).
pub fn refusal(
    contents: &Contents,
    primary: &str,
    newest: Option<(&str, &str, bool)>,
    force_primary: bool,
    force_older: bool,
) -> Option<String> {
    if !same_url(&contents.primary, primary) && !force_primary {
        return Some(format!(
            "it was exported from the primary registry {}, and this secondary replicates {primary} \
             (replication.primary_api_url): importing it would mix two registries; pass --force-primary if \
             that is what you mean",
            contents.primary
        ));
    }
    if let Some((id, created_at, finished)) = newest {
        if contents.created_at.as_str() < created_at && !force_older {
            return Some(format!(
                "it was exported at {}, before bundle {id} (exported at {created_at}) that this secondary {} \
                 already: importing it would take the secondary back to an older state of the primary; import a \
                 newer bundle, or pass --force-older if that is what you mean",
                contents.created_at,
                if finished { "imported" } else { "began to import" }
            ));
        }
    }
    None
}

/// Whether two registry URLs are the same (scheme and host case aside,
/// trailing slashes ignored).
pub fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// Now, as bundles and inventories record time: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_text() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    utc_text(millis)
}

/// `millis` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_text(millis: u64) -> String {
    let secs = (millis / 1000) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis % 1000
    )
}
