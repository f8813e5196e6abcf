//! `georeg-bundle.json` ([`Contents`]): a bundle's identity, what the
//! secondary must hold afterwards and every file the tar carries, with the
//! checks a bundle passes before anything is imported ([`Checks`],
//! `refusal`), and the names of the files inside the tar. An export writes
//! it whole; an import reads it item by item (`description`).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::format::printable;
use crate::registry::{valid_repository, valid_tag, Digest};

/// The `format` of `georeg-bundle.json` this georeg writes and reads.
/// 2: the signature covers the description's bytes, repositories are in
/// name order. 3: repositories list their referrers; a georeg reading only
/// format 2 would import such a bundle without them, so it refuses it.
pub const FORMAT: &str = "georeg-bundle/3";

/// The formats this georeg reads: its own, and format 2 (no referrers).
pub const READS: [&str; 2] = [FORMAT, "georeg-bundle/2"];

/// The files of the OCI image layout, and the description, inside the tar.
pub const LAYOUT: &str = "oci-layout";
pub const INDEX: &str = "index.json";
pub const DESCRIPTION: &str = "georeg-bundle.json";

/// Where the OCI image layout keeps a blob or manifest.
pub fn blob_path(digest: &Digest) -> String {
    let (algorithm, hex) = digest.as_str().split_once(':').unwrap_or(("sha256", digest.as_str()));
    format!("blobs/{algorithm}/{hex}")
}

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
    /// Every repository exported, in name order, with every tag the
    /// primary had and its digest, whether or not the bundle carries its
    /// contents.
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
    /// Manifests the primary lists only through its referrers API
    /// (signatures, SBOMs: no tag reaches them), each after its subject:
    /// an import puts them by digest in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// A manifest whose `subject` is another manifest of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    pub subject: String,
    pub digest: String,
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

/// The description but its lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format: String,
    pub id: String,
    pub primary: String,
    pub created_at: String,
    pub georeg_version: String,
    pub inventory: Option<Basis>,
}

impl Contents {
    /// The description but its lists.
    pub fn header(&self) -> Header {
        Header {
            format: self.format.clone(),
            id: self.id.clone(),
            primary: self.primary.clone(),
            created_at: self.created_at.clone(),
            georeg_version: self.georeg_version.clone(),
            inventory: self.inventory.clone(),
        }
    }
}

/// One element of the description's lists, in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Repository(RepositoryEntry),
    Deletion(Deletion),
    File(FileEntry),
}

/// What a signature cannot vouch for: that every name, tag, digest and
/// path is one georeg itself would write, and each repository named once
/// (in name order, so that a pass needs to remember only the last one).
#[derive(Default)]
pub struct Checks {
    last: Option<String>,
}

impl Checks {
    pub fn header(h: &Header) -> Result<(), String> {
        if !READS.contains(&h.format.as_str()) {
            return Err(format!(
                "is of format {:?}; this georeg reads {} (export it with the same georeg version)",
                printable(&h.format),
                READS.join(" and ")
            ));
        }
        if h.created_at.len() != 24 || !h.created_at.ends_with('Z') || !h.created_at.is_ascii() {
            return Err(format!("has no valid export time ({:?})", printable(&h.created_at)));
        }
        if h.id.is_empty() || h.id.len() > 64 || !h.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("has no valid id ({:?})", printable(&h.id)));
        }
        Ok(())
    }

    pub fn item(&mut self, item: &Item) -> Result<(), String> {
        match item {
            Item::Repository(r) => self.repository(r),
            Item::Deletion(d) => {
                if !valid_repository(&d.repository) || d.tags.iter().any(|t| !valid_tag(t)) {
                    return Err(format!("deletes from {:?} names no registry accepts", printable(&d.repository)));
                }
                Ok(())
            }
            Item::File(f) => {
                let digest = Digest::parse(&f.digest).map_err(|e| format!("{}: {e}", printable(&f.path)))?;
                if f.path != LAYOUT && f.path != INDEX && f.path != blob_path(&digest) {
                    return Err(format!("lists the file {:?} under a name that is not its digest", printable(&f.path)));
                }
                Ok(())
            }
        }
    }

    fn repository(&mut self, r: &RepositoryEntry) -> Result<(), String> {
        if !valid_repository(&r.name) {
            return Err(format!("names the repository {:?}, in a form no registry accepts", printable(&r.name)));
        }
        if self.last.as_deref().is_some_and(|last| last >= r.name.as_str()) {
            return Err(format!("names the repository {} twice, or out of order", r.name));
        }
        for (tag, digest) in &r.tags {
            if !valid_tag(tag) {
                return Err(format!("names the tag {:?} of {}, which no registry accepts", printable(tag), r.name));
            }
            Digest::parse(digest).map_err(|e| format!("{}:{tag}: {}", r.name, printable(&e)))?;
        }
        for m in &r.mounts {
            Digest::parse(&m.digest).map_err(|e| format!("{}: {}", r.name, printable(&e)))?;
            if !valid_repository(&m.from) {
                return Err(format!("{}: mounts from {:?}, not a repository name", r.name, printable(&m.from)));
            }
        }
        for referrer in &r.referrers {
            for digest in [&referrer.subject, &referrer.digest] {
                Digest::parse(digest).map_err(|e| format!("{}: a referrer: {}", r.name, printable(&e)))?;
            }
        }
        self.last = Some(r.name.clone());
        Ok(())
    }
}

impl Contents {
    /// [`Checks`] over the whole description.
    pub fn check(&self) -> Result<(), String> {
        Checks::header(&self.header())?;
        let mut checks = Checks::default();
        let items = self.repositories.iter().cloned().map(Item::Repository);
        let items = items.chain(self.deletions.iter().cloned().map(Item::Deletion));
        for item in items.chain(self.files.iter().cloned().map(Item::File)) {
            checks.item(&item)?;
        }
        Ok(())
    }

    /// The repository's referrers, (subject, referrer), parsed (checked
    /// by [`Checks`]), in the order an import puts them.
    pub fn referrers(entry: &RepositoryEntry) -> Vec<(Digest, Digest)> {
        let parse = |r: &Referrer| Some((Digest::parse(&r.subject).ok()?, Digest::parse(&r.digest).ok()?));
        entry.referrers.iter().filter_map(parse).collect()
    }

    /// The repository's tags with their digests parsed (checked by
    /// [`Checks`]).
    pub fn tags(entry: &RepositoryEntry) -> BTreeMap<String, Digest> {
        entry.tags.iter().filter_map(|(t, d)| Digest::parse(d).ok().map(|d| (t.clone(), d))).collect()
    }
}

/// Why a bundle is refused by the secondary about to import it, and the
/// option that overrides the refusal; `None` when it is welcome.
/// `primary`: this node's `replication.primary_api_url`; `newest`: the
/// newest bundle it knows (id, export time, whether its import finished).
pub fn refusal(
    contents: &Header,
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
            printable(&contents.primary)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    pub(crate) fn contents() -> Contents {
        Contents {
            format: FORMAT.into(),
            id: "b1".into(),
            primary: "https://primary.example:5000".into(),
            created_at: "2026-11-30T10:00:00.000Z".into(),
            georeg_version: "0.1.0".into(),
            inventory: None,
            repositories: vec![RepositoryEntry {
                name: "group/app".into(),
                tags: [("v1".to_string(), d('a'))].into(),
                mounts: vec![],
                referrers: vec![Referrer { subject: d('a'), digest: d('b') }],
            }],
            deletions: vec![],
            files: vec![FileEntry {
                path: format!("blobs/sha256/{}", "a".repeat(64)),
                digest: d('a'),
                size: 10,
                media_type: Some(crate::registry::manifest::OCI_MANIFEST.into()),
            }],
        }
    }

    #[test]
    fn times_read_as_the_state_file_writes_them() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_text(1_795_999_999_123), "2026-11-30T00:53:19.123Z");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29T00:00:00.000Z", "a leap day");
        // Text order is time order, as the refusal of older bundles needs.
        assert!(utc_text(1_795_999_999_123) < utc_text(1_795_999_999_124));
        assert!(now_text().len() == 24 && now_text().ends_with('Z'));
    }

    #[test]
    fn contents_are_checked_for_names_digests_and_paths() {
        assert_eq!(contents().check(), Ok(()));
        let mut c = contents();
        c.format = "georeg-bundle/9".into();
        assert!(c.check().unwrap_err().contains("format"));
        let mut c = contents();
        c.repositories[0].tags.insert("bad tag".into(), d('a'));
        assert!(c.check().unwrap_err().contains("bad tag"));
        let mut c = contents();
        c.repositories[0].name = "../etc".into();
        assert!(c.check().is_err());
        let mut c = contents();
        c.files[0].path = "blobs/sha256/../../x".into();
        assert!(c.check().unwrap_err().contains("not its digest"));
        let mut c = contents();
        c.repositories[0].referrers[0].digest = "sha256:zz".into();
        assert!(c.check().unwrap_err().contains("a referrer"));
        let mut c = contents();
        c.format = "georeg-bundle/2".into();
        assert_eq!(c.check(), Ok(()), "bundles of format 2 still import");
        let mut c = contents();
        c.repositories.push(c.repositories[0].clone());
        assert!(c.check().unwrap_err().contains("twice"));
        let mut c = contents();
        c.id = "b1\u{1b}[2J".into();
        let why = c.check().unwrap_err();
        assert!(why.contains("id") && !why.contains('\u{1b}'), "{why}");
        assert_eq!(Contents::tags(&contents().repositories[0]).len(), 1);
    }

    #[test]
    fn another_primary_and_older_bundles_are_refused_unless_forced() {
        let c = contents().header();
        assert_eq!(refusal(&c, "https://PRIMARY.example:5000/", None, false, false), None);
        let why = refusal(&c, "https://other.example", None, false, false).unwrap();
        assert!(why.contains("https://primary.example:5000") && why.contains("--force-primary"), "{why}");
        assert_eq!(refusal(&c, "https://other.example", None, true, false), None);
        let newer = Some(("b2", "2026-11-30T10:00:00.001Z", true));
        let why = refusal(&c, &c.primary, newer, false, false).unwrap();
        assert!(why.contains("before bundle b2") && why.contains("--force-older"), "{why}");
        assert_eq!(refusal(&c, &c.primary, newer, false, true), None);
        // The same export time (the bundle itself, imported again) is not older.
        assert_eq!(refusal(&c, &c.primary, Some(("b1", &c.created_at, true)), false, false), None);
    }
}
