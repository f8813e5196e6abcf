//! The inventory: what an air-gapped secondary's registry holds
//! (repositories, tags and their digests, the manifests and blobs each
//! repository holds), read through the registry API, never from georeg's
//! own records, and signed so that the export on the other side of the
//! gap can trust it. An export with an inventory carries only what it
//! lacks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::signed::{self, Document};
use crate::error::{Error, Result};
use crate::registry::{manifest, Client, Digest};
use crate::replication::pool;
use crate::shutdown::Shutdown;

/// 2: the signature covers the file's bytes.
pub const FORMAT: &str = "georeg-inventory/2";

/// A repository reaching more manifests than this is not walked further:
/// a bound on what a registry's word makes georeg hold in memory.
const MAX_MANIFESTS_PER_REPOSITORY: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub format: String,
    pub id: String,
    /// The secondary's `node_name` and its registry.
    pub node: String,
    pub registry: String,
    /// The primary it replicates (`replication.primary_api_url`).
    pub primary: Option<String>,
    pub created_at: String,
    /// The last bundle this secondary finished importing, when taken.
    pub last_bundle: Option<String>,
    pub repositories: Vec<Held>,
}

/// What one repository of the secondary holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// Every manifest its tags reach (indexes and their children).
    pub manifests: Vec<String>,
    /// Every blob those manifests reference.
    pub blobs: Vec<String>,
}

impl Document for Inventory {
    const KIND: &'static str = "georeg-inventory";
    const KEY: &'static str = "inventory";
    const AGAIN: &'static str = "take the inventory again with this georeg version (georeg inventory)";
    fn id(&self) -> &str {
        &self.id
    }
}

/// How far taking an inventory got, for a progress line.
#[derive(Default)]
pub struct Progress {
    pub repositories: AtomicUsize,
    pub done: AtomicUsize,
    pub tags: AtomicUsize,
}

/// Reads what `registry` holds, `workers` repositories at a time.
pub fn take(
    registry: &Client,
    head: Inventory,
    workers: usize,
    shutdown: &Shutdown,
    progress: &Progress,
) -> Result<Inventory> {
    let names = registry.catalog()?;
    progress.repositories.store(names.len(), Ordering::Relaxed);
    let held: Mutex<Vec<Held>> = Mutex::new(Vec::with_capacity(names.len()));
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    pool::each(&names, workers, "inventory", |name| {
        if shutdown.requested() || failure.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        match holding(registry, name, shutdown) {
            Ok(h) => {
                progress.tags.fetch_add(h.tags.len(), Ordering::Relaxed);
                held.lock().unwrap_or_else(|p| p.into_inner()).push(h);
            }
            Err(e) => *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.in_repository(name)),
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    })?;
    shutdown.check()?;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut repositories = held.into_inner().unwrap_or_else(|p| p.into_inner());
    repositories.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Inventory { repositories, ..head })
}

/// One repository: its tags, and the manifests and blobs they reach.
fn holding(registry: &Client, name: &str, shutdown: &Shutdown) -> Result<Held> {
    let tags = registry.tag_digests(name)?;
    let mut todo: Vec<Digest> = tags.values().cloned().collect();
    let (mut manifests, mut blobs) = (BTreeSet::new(), BTreeSet::new());
    while let Some(digest) = todo.pop() {
        shutdown.check()?;
        if manifests.contains(digest.as_str()) || manifests.len() >= MAX_MANIFESTS_PER_REPOSITORY {
            continue;
        }
        // Deleted since the listing: not held, then.
        let Some(m) = registry.manifest(name, digest.as_str())? else { continue };
        let refs = manifest::references(&m.bytes).map_err(|message| Error::Manifest {
            repository: name.into(),
            reference: digest.to_string(),
            message,
        })?;
        todo.extend(refs.manifests);
        blobs.extend(refs.blobs.into_iter().map(|b| b.digest.to_string()));
        manifests.insert(digest.to_string());
    }
    Ok(Held {
        name: name.to_string(),
        tags: tags.into_iter().map(|(t, d)| (t, d.to_string())).collect(),
        manifests: manifests.into_iter().collect(),
        blobs: blobs.into_iter().collect(),
    })
}

/// An inventory file larger than this is refused unread. It lists every
/// manifest and blob of the secondary (some 75 bytes each), and an export
/// holds it whole: the host that exports reads it, not the air-gapped one.
const MAX_INVENTORY_BYTES: u64 = 1 << 30;

/// Reads an inventory file once its signature, checked with the shared
/// key over its bytes, says it is one a node of this deployment wrote.
pub fn load(path: &Path, signer: &crate::registry::token::Signer) -> Result<Inventory> {
    let bad = |message: String| Error::Bundle { file: path.display().to_string(), message, refused: true };
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_INVENTORY_BYTES {
        return Err(bad(format!(
            "is {size} bytes, more than the {MAX_INVENTORY_BYTES} an inventory may be: it is not one a georeg \
             node wrote; take the inventory again (georeg inventory on the secondary)"
        )));
    }
    let mut body = Vec::new();
    let statement = signed::unseal_to::<Inventory>(signer, file, size, &mut body).map_err(io)?.map_err(bad)?;
    let inventory: Inventory =
        serde_json::from_slice(&body).map_err(|e| bad(format!("is not a georeg inventory: {e}")))?;
    if inventory.format != FORMAT {
        return Err(bad(format!(
            "is of format {:?}; this georeg reads {FORMAT:?}",
            crate::format::printable(&inventory.format)
        )));
    }
    if statement.jti != inventory.id {
        return Err(bad("its signature is for another inventory than it holds".into()));
    }
    Ok(inventory)
}

/// An inventory as the export asks it: what a repository holds, and which
/// repository holds a blob.
pub struct Index {
    repositories: HashMap<String, HeldSets>,
    /// Blob -> one repository that holds it.
    blob_holder: HashMap<String, String>,
}

#[derive(Default)]
pub struct HeldSets {
    pub tags: BTreeMap<String, String>,
    pub manifests: HashSet<String>,
    pub blobs: HashSet<String>,
}

impl Index {
    pub fn new(inventory: &Inventory) -> Index {
        let mut blob_holder = HashMap::new();
        let mut repositories = HashMap::new();
        for h in &inventory.repositories {
            for b in &h.blobs {
                blob_holder.entry(b.clone()).or_insert_with(|| h.name.clone());
            }
            let sets = HeldSets {
                tags: h.tags.clone(),
                manifests: h.manifests.iter().cloned().collect(),
                blobs: h.blobs.iter().cloned().collect(),
            };
            repositories.insert(h.name.clone(), sets);
        }
        Index { repositories, blob_holder }
    }

    pub fn repository(&self, name: &str) -> Option<&HeldSets> {
        self.repositories.get(name)
    }

    /// A repository holding the blob, for one (`except`) that does not.
    pub fn holder(&self, digest: &Digest, except: &str) -> Option<&str> {
        self.blob_holder.get(digest.as_str()).map(String::as_str).filter(|h| *h != except)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn inventory() -> Inventory {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        Inventory {
            format: FORMAT.into(),
            id: "i1".into(),
            node: "secondary-1".into(),
            registry: "http://127.0.0.1:5000".into(),
            primary: Some("https://primary.example".into()),
            created_at: "2026-11-30T10:00:00.000Z".into(),
            last_bundle: None,
            repositories: vec![
                Held {
                    name: "a".into(),
                    tags: [("v1".to_string(), d('1'))].into(),
                    manifests: vec![d('1')],
                    blobs: vec![d('b'), d('c')],
                },
                Held { name: "b".into(), tags: BTreeMap::new(), manifests: vec![], blobs: vec![d('c')] },
            ],
        }
    }

    #[test]
    fn the_index_says_who_holds_what() {
        let i = Index::new(&inventory());
        let c = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
        let b = Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
        assert!(i.repository("a").unwrap().manifests.contains(&format!("sha256:{}", "1".repeat(64))));
        assert_eq!(i.holder(&b, "b"), Some("a"));
        assert_eq!(i.holder(&c, "b"), Some("a"), "the first repository holding it");
        assert_eq!(i.holder(&Digest::sha256_of(b"x"), "b"), None);
        assert!(i.repository("b").unwrap().tags.is_empty() && i.repository("c").is_none());
    }

    #[test]
    fn an_inventory_file_is_signed_and_checked() {
        let key = rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../../tests/data/test-key-pkcs1.pem"));
        let signer = crate::registry::token::Signer::new(key.unwrap(), "gitlab-issuer");
        let dir = std::env::temp_dir().join(format!("georeg-inventory-{}", crate::registry::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inventory.json");
        std::fs::write(&path, signed::seal(&signer, &inventory()).unwrap()).unwrap();
        assert_eq!(load(&path, &signer).unwrap(), inventory());
        let text = std::fs::read_to_string(&path).unwrap().replace("\"v1\"", "\"v2\"");
        std::fs::write(&path, text).unwrap();
        let e = load(&path, &signer).unwrap_err();
        assert!(e.to_string().contains("edited") && e.exit_code() == 2, "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
