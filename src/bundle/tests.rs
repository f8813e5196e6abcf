//! A bundle written and read back: the layout, the signed description,
//! reads at offsets, and each way a carried file can arrive damaged.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use super::contents::{blob_path, Contents, Item, RepositoryEntry, FORMAT};
use super::reader::Bundle;
use super::tarfile::{Tagged, Writer};
use crate::registry::digest::VerifyingReader;
use crate::registry::manifest::OCI_MANIFEST;
use crate::registry::token::{random_hex, Signer};
use crate::registry::{Digest, Manifest};
use crate::replication::source::Source;
use crate::shutdown::Shutdown;

fn signer() -> Signer {
    let key = rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../../tests/data/test-key-pkcs1.pem"));
    Signer::new(key.unwrap(), "gitlab-issuer")
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir() -> Dir {
    let d = std::env::temp_dir().join(format!("georeg-bundle-{}", random_hex(6)));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// One image: a manifest, its config and a 100 kB layer.
fn image() -> (Manifest, Vec<u8>, Vec<u8>) {
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let config = b"{\"architecture\":\"amd64\"}".to_vec();
    let (ld, cd) = (Digest::sha256_of(&layer), Digest::sha256_of(&config));
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.as_str(), "size": layer.len()}],
    }))
    .unwrap();
    let m = Manifest { digest: Digest::sha256_of(&bytes), media_type: OCI_MANIFEST.into(), bytes };
    (m, config, layer)
}

const MTIME: u64 = 1_700_000_000;

/// A bundle of [`image`].
fn write(path: &Path, signer: &Signer) -> (Manifest, Vec<u8>) {
    let (m, config, layer) = image();
    let written = AtomicU64::new(0);
    let mut w = Writer::create(path, MTIME, &written).unwrap();
    w.add_manifest(&m).unwrap();
    w.add_manifest(&m).unwrap();
    w.add_blob(&Digest::sha256_of(&config), config.len() as u64, &config[..]).unwrap();
    w.add_blob(&Digest::sha256_of(&layer), layer.len() as u64, &layer[..]).unwrap();
    finish(w, path, signer, &m);
    (m, layer)
}

fn finish(w: Writer, path: &Path, signer: &Signer, m: &Manifest) {
    let contents = Contents {
        format: FORMAT.into(),
        id: "b1".into(),
        primary: "http://primary.example".into(),
        created_at: super::contents::utc_text(MTIME * 1000),
        georeg_version: "0".into(),
        inventory: None,
        repositories: vec![RepositoryEntry {
            name: "g/app".into(),
            tags: [("v1".to_string(), m.digest.to_string())].into(),
            mounts: vec![],
            referrers: vec![],
        }],
        deletions: vec![],
        files: vec![],
    };
    let tagged = [Tagged { repository: "g/app".into(), tag: "v1".into(), digest: m.digest.clone() }];
    let done = w.finish(signer, contents, &tagged).unwrap();
    assert_eq!(done.bytes, std::fs::metadata(path).unwrap().len());
}

fn read_blob(b: &Bundle, digest: &Digest, size: u64, offset: u64) -> crate::error::Result<Vec<u8>> {
    let (shutdown, resumes) = (Shutdown::default(), AtomicU64::new(0));
    let mut out = Vec::new();
    b.blob("g/app", digest, size, offset, &shutdown, &resumes)?.read_to_end(&mut out).unwrap();
    Ok(out)
}

#[test]
fn a_bundle_reads_back_as_written_and_is_an_oci_layout() {
    let (d, s) = (dir(), signer());
    let path = d.0.join("b.tar");
    let (m, layer) = write(&path, &s);
    assert!(!d.0.join("b.tar.partial").exists());
    let sums = std::fs::read_to_string(d.0.join("b.tar.sha256")).unwrap();
    let whole = Digest::sha256_of(&std::fs::read(&path).unwrap());
    assert_eq!(sums, format!("{}  b.tar\n", whole.as_str().trim_start_matches("sha256:")));

    let b = Bundle::open(&path, &s, &Default::default()).unwrap();
    assert_eq!(b.header.id, "b1");
    let mut paths = Vec::new();
    b.each(|item| {
        if let Item::File(f) = item {
            paths.push(f.path);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(paths[0], "oci-layout");
    assert!(paths.contains(&"index.json".into()) && paths.contains(&blob_path(&m.digest)), "{paths:?}");
    assert_eq!(paths.len(), 5, "layout, manifest once, 2 blobs, index: {paths:?}");
    assert_eq!(b.blob_bytes, layer.len() as u64 + 24);

    let got = b.manifest("g/app", &m.digest).unwrap().unwrap();
    assert_eq!((got.bytes, got.media_type), (m.bytes.clone(), m.media_type.clone()));
    let ld = Digest::sha256_of(&layer);
    assert_eq!(read_blob(&b, &ld, layer.len() as u64, 0).unwrap(), layer);
    assert_eq!(
        read_blob(&b, &ld, layer.len() as u64, 99_000).unwrap(),
        layer[99_000..].to_vec(),
        "a read at an offset"
    );
    assert_eq!(b.blob_size("g/app", &ld).unwrap(), Some(layer.len() as u64));
    let e = read_blob(&b, &Digest::sha256_of(b"absent"), 6, 0).unwrap_err().to_string();
    assert!(e.contains("not in this bundle") && e.contains("g/app"), "{e}");
    assert!(read_blob(&b, &ld, 5, 0).unwrap_err().to_string().contains("manifest says 5"));
    assert!(b.manifest("g/app", &Digest::sha256_of(b"x")).unwrap_err().to_string().contains("not in this bundle"));

    // index.json names the tag, as OCI tools read it.
    let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let mut index = String::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            e.read_to_string(&mut index).unwrap();
        }
    }
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "g/app:v1");
    assert_eq!(index["manifests"][0]["digest"], m.digest.as_str());
}

/// Where a file's bytes begin in the tar.
fn offset_of(path: &Path, name: &str) -> u64 {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let found = archive.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().to_str() == Some(name));
    found.unwrap().raw_file_position()
}

#[test]
fn a_flipped_byte_in_a_blob_fails_its_digest_check_and_one_in_a_manifest_fails_at_once() {
    let (d, s) = (dir(), signer());
    let path = d.0.join("b.tar");
    let (m, layer) = write(&path, &s);
    let ld = Digest::sha256_of(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset_of(&path, &blob_path(&ld)) + 50_000) as usize] ^= 1;
    bytes[offset_of(&path, &blob_path(&m.digest)) as usize + 5] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let b = Bundle::open(&path, &s, &Default::default()).unwrap();
    let e = b.manifest("g/app", &m.digest).unwrap_err().to_string();
    assert!(e.contains(m.digest.as_str()) && e.contains("did not match its digest"), "{e}");
    // The engine reads blobs through a VerifyingReader: the read that would
    // complete the blob fails, so an upload never completes.
    let (shutdown, resumes) = (Shutdown::default(), AtomicU64::new(0));
    let body = b.blob("g/app", &ld, layer.len() as u64, 0, &shutdown, &resumes).unwrap();
    let mut r = VerifyingReader::new(body, ld.clone(), layer.len() as u64);
    assert!(std::io::copy(&mut r, &mut std::io::sink()).is_err());
    assert!(r.failure.unwrap().contains("did not match its digest"));
}

#[test]
fn a_bundle_cut_short_or_edited_is_refused_before_anything_is_read() {
    let (d, s) = (dir(), signer());
    let path = d.0.join("b.tar");
    write(&path, &s);
    let bytes = std::fs::read(&path).unwrap();
    // Cut inside the last file, the description: incomplete.
    std::fs::write(&path, &bytes[..bytes.len() - 3000]).unwrap();
    let e = Bundle::open(&path, &s, &Default::default()).err().unwrap();
    assert_eq!(e.exit_code(), 2, "{e}");
    let e = e.to_string();
    assert!(e.contains("georeg-bundle.json") || e.contains("cut short"), "{e}");
    // Cut before it: no description at all.
    let description = offset_of_in(&bytes, "georeg-bundle.json");
    std::fs::write(&path, &bytes[..description as usize - 512]).unwrap();
    let e = Bundle::open(&path, &s, &Default::default()).err().unwrap();
    assert_eq!(e.exit_code(), 2, "{e}");
    let e = e.to_string();
    assert!(e.contains("holds no georeg-bundle.json") && e.contains("did not finish"), "{e}");
    // The description edited: its signature no longer covers it.
    let mut edited = bytes.clone();
    let at = edited.windows(4).rposition(|w| w == b"\"v1\"").unwrap();
    edited[at + 2] = b'9';
    std::fs::write(&path, &edited).unwrap();
    let e = Bundle::open(&path, &s, &Default::default()).err().unwrap();
    assert!(e.to_string().contains("edited after") && e.exit_code() == 2, "{e}");
    // Signed with another key.
    std::fs::write(&path, &bytes).unwrap();
    let other = Signer::new(rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap(), "gitlab-issuer");
    let e = Bundle::open(&path, &other, &Default::default()).err().unwrap();
    assert!(e.to_string().contains("another key") && e.exit_code() == 2, "{e}");
}

fn offset_of_in(bytes: &[u8], name: &str) -> u64 {
    let mut archive = tar::Archive::new(bytes);
    let found = archive.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().to_str() == Some(name));
    found.unwrap().raw_file_position()
}

/// Reads `n` bytes of `data`, then fails: a link lost mid-blob.
struct Failing<'a>(&'a [u8], usize);
impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1 == 0 {
            return Err(std::io::Error::other("the link went away"));
        }
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        (self.0, self.1) = (&self.0[n..], self.1 - n);
        Ok(n)
    }
}

#[test]
fn an_export_that_does_not_finish_leaves_its_partial_file_and_a_rerun_writes_the_same_bytes() {
    let (d, s) = (dir(), signer());
    let clean = d.0.join("clean.tar");
    write(&clean, &s);
    let (m, config, layer) = image();
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));

    let path = d.0.join("b.tar");
    let written = AtomicU64::new(0);
    let mut w = Writer::create(&path, MTIME, &written).unwrap();
    w.add_manifest(&m).unwrap();
    w.add_blob(&cd, config.len() as u64, &config[..]).unwrap();
    // The layer's stream breaks half way: the export fails, no bundle.
    assert!(w.add_blob(&ld, layer.len() as u64, Failing(&layer, 50_000)).is_err());
    drop(w);
    assert!(d.0.join("b.tar.partial").exists() && !path.exists());

    // Run again: the manifest and config are kept, not read again; the
    // layer is written from where the last whole entry ends.
    let written = AtomicU64::new(0);
    let mut w = Writer::resume(&path, MTIME, &written).unwrap();
    w.add_manifest(&m).unwrap();
    assert!(w.holds_blob(&cd, config.len() as u64), "the config was whole");
    assert!(!w.holds_blob(&ld, layer.len() as u64), "the layer was not");
    assert_eq!(w.kept(), 512 * 2 + 512 * 2 + 512 * 2, "oci-layout, manifest and config, with their headers");
    w.add_blob(&ld, layer.len() as u64, &layer[..]).unwrap();
    finish(w, &path, &s, &m);
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&clean).unwrap(), "the bundle a clean export writes");
    let sums = std::fs::read_to_string(d.0.join("b.tar.sha256")).unwrap();
    assert_eq!(
        sums.split(' ').next(),
        std::fs::read_to_string(d.0.join("clean.tar.sha256")).unwrap().split(' ').next()
    );

    // A partial file of another export (another time) is written over.
    std::fs::rename(&path, d.0.join("b.tar.partial")).unwrap();
    let mut w = Writer::resume(&path, MTIME + 1, &written).unwrap();
    assert!(!w.holds_blob(&cd, config.len() as u64));
    w.add_manifest(&m).unwrap();
    assert_eq!(w.kept(), 0);
}
