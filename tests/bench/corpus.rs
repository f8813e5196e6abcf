//! The corpora: OCI images whose layers are incompressible noise, written
//! to local files first (the ingest limit uploads those very files), then
//! pushed to a primary registry.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use crate::lab::pool;
use crate::support::oci::{sha256, write_noise, OCI_MANIFEST};
use crate::support::Api;

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob in a local file.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// A tag and its manifest, in a local file.
#[derive(Clone, Debug)]
pub struct Tagged {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub manifest: PathBuf,
    /// Config first, then layers.
    pub blobs: Vec<Blob>,
}

/// A repository: its distinct blobs and its tags.
#[derive(Clone, Debug)]
pub struct Repo {
    pub name: String,
    pub blobs: Vec<Blob>,
    pub tags: Vec<Tagged>,
}

/// An image to build: its tag and its layers as (noise seed, size).
pub struct ImagePlan {
    pub tag: String,
    pub layers: Vec<(u64, u64)>,
}

pub struct RepoPlan {
    pub name: String,
    pub images: Vec<ImagePlan>,
}

pub struct Corpus {
    pub repos: Vec<Repo>,
}

impl Corpus {
    /// Blob bytes a full copy moves (each distinct blob of each repository once).
    pub fn bytes(&self) -> u64 {
        self.repos.iter().flat_map(|r| &r.blobs).map(|b| b.size).sum()
    }

    pub fn images(&self) -> u64 {
        self.repos.iter().map(|r| r.tags.len() as u64).sum()
    }

    pub fn names(&self) -> Vec<String> {
        self.repos.iter().map(|r| r.name.clone()).collect()
    }
}

/// Writes every blob and manifest of the plans under `dir`.
pub fn build(dir: &Path, plans: &[RepoPlan], threads: usize) -> Corpus {
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let layers: Mutex<HashMap<(u64, u64), Blob>> = Mutex::default();
    let work: Vec<(usize, usize)> =
        plans.iter().enumerate().flat_map(|(r, p)| (0..p.images.len()).map(move |i| (r, i))).collect();
    let built: Mutex<Vec<(usize, usize, Tagged)>> = Mutex::default();
    pool(&work, threads, |&(r, i)| {
        let (repo, image) = (&plans[r].name, &plans[r].images[i]);
        let layer_blobs: Vec<Blob> = image
            .layers
            .iter()
            .map(|&(seed, size)| {
                if let Some(b) = layers.lock().unwrap().get(&(seed, size)) {
                    return b.clone();
                }
                let b = noise_file(dir, seed, size);
                layers.lock().unwrap().insert((seed, size), b.clone());
                b
            })
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"io.georeg.bench": format!("{repo}:{}", image.tag)}},
        }))
        .unwrap();
        let config = bytes_file(dir, &config);
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": layer_blobs.iter().map(|l| json!({"mediaType": LAYER_TYPE, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let digest = sha256(&manifest);
        let path = dir.join("manifests").join(&digest[7..]);
        std::fs::write(&path, &manifest).unwrap();
        let mut blobs = vec![config];
        blobs.extend(layer_blobs);
        let tagged = Tagged { tag: image.tag.clone(), digest, media_type: OCI_MANIFEST.into(), manifest: path, blobs };
        built.lock().unwrap().push((r, i, tagged));
    });
    let mut built = built.into_inner().unwrap();
    built.sort_by_key(|(r, i, _)| (*r, *i));
    let mut repos: Vec<Repo> =
        plans.iter().map(|p| Repo { name: p.name.clone(), blobs: vec![], tags: vec![] }).collect();
    for (r, _, tagged) in built {
        repos[r].tags.push(tagged);
    }
    for repo in &mut repos {
        let mut seen = BTreeSet::new();
        repo.blobs =
            repo.tags.iter().flat_map(|t| &t.blobs).filter(|b| seen.insert(b.digest.clone())).cloned().collect();
    }
    Corpus { repos }
}

/// Pushes the corpus: every blob, then every manifest.
pub fn push(api: &Api, corpus: &Corpus, threads: usize) {
    let blobs: Vec<(&str, &Blob)> =
        corpus.repos.iter().flat_map(|r| r.blobs.iter().map(move |b| (r.name.as_str(), b))).collect();
    pool(&blobs, threads, |(repo, blob)| push_blob(api, repo, blob));
    let tags: Vec<(&str, &Tagged)> =
        corpus.repos.iter().flat_map(|r| r.tags.iter().map(move |t| (r.name.as_str(), t))).collect();
    pool(&tags, threads, |(repo, tagged)| put_manifest(api, repo, tagged));
}

/// Pushes one image as a client would: its blobs, then its manifest.
pub fn push_image(api: &Api, repo: &str, tagged: &Tagged) {
    for blob in &tagged.blobs {
        push_blob(api, repo, blob);
    }
    put_manifest(api, repo, tagged);
}

pub fn push_blob(api: &Api, repo: &str, blob: &Blob) {
    let file = std::fs::File::open(&blob.path).unwrap();
    api.push_blob_from(repo, &blob.digest, blob.size, std::io::BufReader::with_capacity(1 << 20, file));
}

pub fn put_manifest(api: &Api, repo: &str, tagged: &Tagged) {
    api.put_manifest(repo, &tagged.tag, &tagged.media_type, &std::fs::read(&tagged.manifest).unwrap());
}

fn bytes_file(dir: &Path, data: &[u8]) -> Blob {
    let digest = sha256(data);
    let path = dir.join("blobs").join(&digest[7..]);
    std::fs::write(&path, data).unwrap();
    Blob { digest, size: data.len() as u64, path }
}

/// `size` bytes of noise from `seed`, written and hashed in one pass.
fn noise_file(dir: &Path, seed: u64, size: u64) -> Blob {
    let tmp = dir.join("blobs").join(format!("tmp-{seed}-{size}-{:?}", std::thread::current().id()));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    let digest = write_noise(seed, size, &mut out);
    out.flush().unwrap();
    drop(out);
    let path = dir.join("blobs").join(&digest[7..]);
    std::fs::rename(&tmp, &path).unwrap();
    Blob { digest, size, path }
}
