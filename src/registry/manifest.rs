//! What a manifest references: child manifests (for an index or manifest
//! list) and blobs (config, layers, artifact `blobs`). The copy engine walks
//! this graph; it never rewrites a manifest, it pushes the primary's bytes.

use serde::Deserialize;

use super::digest::Digest;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub(crate) const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Whether an index entry of this media type is a manifest (copied as one)
/// rather than a blob. BuildKit's registry cache lists its layers and its
/// cache config (`application/vnd.buildkit.cacheconfig.v0`) in an OCI
/// index: those are blobs, and asking for them as manifests fails. An
/// entry without a media type is taken for a manifest, as registries do.
pub(crate) fn is_manifest_type(media_type: &str) -> bool {
    media_type.is_empty()
        || [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_LIST, OCI_ARTIFACT, SCHEMA1, SCHEMA1_SIGNED]
            .contains(&media_type)
}

/// The Accept header for manifest requests. Without the list types, a
/// registry answers a manifest list fetched by tag with its linux/amd64
/// child, and digests no longer match.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

/// Registries refuse manifests over 4 MiB; anything larger is not one.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    /// Foreign (non-distributable) layers live at these URLs, not in the registry.
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    /// Schema 1's layers.
    #[serde(default)]
    fs_layers: Vec<FsLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

/// A manifest as fetched: its exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// A blob a manifest needs in the repository before it can be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// Everything a manifest references that must exist before it is pushed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct References {
    /// Child manifests of an index or manifest list, by digest.
    pub manifests: Vec<Digest>,
    /// Config, layers and artifact blobs, minus foreign layers.
    pub blobs: Vec<BlobRef>,
}

/// The media type of a manifest: the registry's Content-Type when it is a
/// manifest type, else the `mediaType` field, else inferred from the shape.
pub(crate) fn media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    if let Some(ct) = content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
        if ct.starts_with("application/vnd.") {
            return ct.to_string();
        }
    }
    match serde_json::from_slice::<Raw>(bytes) {
        Ok(Raw { media_type: Some(m), .. }) => m,
        Ok(raw) if !raw.manifests.is_empty() => OCI_INDEX.into(),
        _ => OCI_MANIFEST.into(),
    }
}

/// The bytes a manifest's digest is taken over: all of them, except for a
/// signed Docker schema 1 manifest, whose digest is that of its payload,
/// the manifest without its signatures, which the JWS header rebuilds
/// (`formatLength` bytes, then `formatTail`). distribution signs schema 1
/// manifests anew on every GET, so their bytes differ from one read to the
/// next while the payload, and the digest, stay.
pub fn digested_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    schema1_payload(bytes).map(std::borrow::Cow::Owned).unwrap_or(std::borrow::Cow::Borrowed(bytes))
}

fn schema1_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Signed {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        signatures: Vec<Signature>,
    }
    #[derive(Deserialize)]
    struct Signature {
        protected: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Protected {
        format_length: usize,
        format_tail: String,
    }
    let signed: Signed = serde_json::from_slice(bytes).ok()?;
    if signed.schema_version != 1 {
        return None;
    }
    let protected = super::encoding::base64_decode(&signed.signatures.first()?.protected)?;
    let header: Protected = serde_json::from_slice(&protected).ok()?;
    let tail = super::encoding::base64_decode(&header.format_tail)?;
    let mut payload = bytes.get(..header.format_length)?.to_vec();
    payload.extend_from_slice(&tail);
    Some(payload)
}

/// Whether the manifest is Docker schema 1 (signed or not).
pub(crate) fn is_schema1(media_type: &str, bytes: &[u8]) -> bool {
    media_type == SCHEMA1
        || media_type == SCHEMA1_SIGNED
        || serde_json::from_slice::<Raw>(bytes).is_ok_and(|r| r.schema_version == Some(1))
}

/// Parses a manifest's references. Fails on JSON that is not a manifest.
pub(crate) fn references(bytes: &[u8]) -> Result<References, String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("is not valid manifest JSON: {e}"))?;
    if raw.schema_version == Some(1) {
        // Schema 1: the layers are `fsLayers[].blobSum`, sizes unknown.
        let mut refs = References::default();
        for layer in raw.fs_layers {
            let digest = Digest::parse(&layer.blob_sum).map_err(|e| format!("references {e}"))?;
            if !refs.blobs.iter().any(|b| b.digest == digest) {
                refs.blobs.push(BlobRef { digest, size: 0 });
            }
        }
        return Ok(refs);
    }
    let parse = |d: &Descriptor| Digest::parse(&d.digest).map_err(|e| format!("references {e}"));
    let mut refs = References::default();
    let (children, blob_entries): (Vec<&Descriptor>, Vec<&Descriptor>) =
        raw.manifests.iter().partition(|d| is_manifest_type(&d.media_type));
    for child in children {
        refs.manifests.push(parse(child)?);
    }
    for blob in raw.config.iter().chain(&raw.layers).chain(&raw.blobs).chain(blob_entries) {
        if !blob.urls.is_empty() {
            continue; // foreign layer: the registry does not hold its bytes
        }
        let digest = parse(blob)?;
        if !refs.blobs.iter().any(|b| b.digest == digest) {
            refs.blobs.push(BlobRef { digest, size: blob.size });
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_lists_config_and_layers_and_skips_foreign_layers() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d('a'), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d('b'), "size": 20},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d('c'), "size": 30, "urls": ["https://example.com/layer"]},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d('b'), "size": 20}
            ]
        });
        let refs = references(m.to_string().as_bytes()).unwrap();
        assert!(refs.manifests.is_empty());
        let digests: Vec<&str> = refs.blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(digests, vec![d('a'), d('b')]);
        assert_eq!(refs.blobs[1].size, 20);
    }

    #[test]
    fn index_lists_children_and_artifact_lists_blobs() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d('1'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": d('2'), "size": 1}
            ]
        });
        let refs = references(index.to_string().as_bytes()).unwrap();
        assert_eq!(refs.manifests, vec![Digest::parse(&d('1')).unwrap(), Digest::parse(&d('2')).unwrap()]);
        assert_eq!(media_type(None, index.to_string().as_bytes()), OCI_INDEX);

        let artifact = serde_json::json!({"mediaType": OCI_ARTIFACT, "artifactType": "x", "blobs": [{"mediaType": "x", "digest": d('3'), "size": 5}]});
        let refs = references(artifact.to_string().as_bytes()).unwrap();
        assert_eq!(refs.blobs.len(), 1);
    }

    #[test]
    fn media_type_prefers_the_registry_content_type() {
        assert_eq!(
            media_type(Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"), b"{}"),
            DOCKER_MANIFEST
        );
        assert_eq!(media_type(Some("application/json"), b"{\"schemaVersion\":2}"), OCI_MANIFEST);
    }

    #[test]
    fn schema1_is_digested_over_its_payload_and_lists_its_layers() {
        let payload = format!(
            "{{\n   \"schemaVersion\": 1,\n   \"fsLayers\": [{{\"blobSum\": \"{}\"}}, {{\"blobSum\": \"{}\"}}]\n}}",
            d('a'),
            d('a')
        );
        let format_length = payload.len() - 2;
        let protected = crate::registry::encoding::base64url(
            format!(
                "{{\"formatLength\":{format_length},\"formatTail\":\"{}\",\"time\":\"2026-01-01T00:00:00Z\"}}",
                crate::registry::encoding::base64url(b"\n}")
            )
            .as_bytes(),
        );
        let signed = format!(
            "{},\n   \"signatures\": [{{\"protected\": \"{protected}\", \"signature\": \"sig\"}}]\n}}",
            &payload[..format_length]
        );
        assert_eq!(&*digested_bytes(signed.as_bytes()), payload.as_bytes());
        assert!(is_schema1(SCHEMA1_SIGNED, signed.as_bytes()) && is_schema1("", signed.as_bytes()));
        let refs = references(signed.as_bytes()).unwrap();
        assert_eq!(refs.blobs, vec![BlobRef { digest: Digest::parse(&d('a')).unwrap(), size: 0 }]);
        // Anything else is digested whole.
        assert_eq!(&*digested_bytes(b"{\"schemaVersion\":2}"), b"{\"schemaVersion\":2}");
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(references(br#"{"schemaVersion":2,"layers":[{"digest":"sha256:xyz","size":1}]}"#).is_err());
        assert!(references(b"not json").is_err());
    }

    #[test]
    fn index_entries_that_are_not_manifests_are_blobs() {
        // The shape of a BuildKit registry cache.
        let cache = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d('1'), "size": 10},
                {"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": d('2'), "size": 20},
                {"mediaType": OCI_MANIFEST, "digest": d('3'), "size": 30},
            ]
        });
        let refs = references(cache.to_string().as_bytes()).unwrap();
        assert_eq!(refs.manifests, vec![Digest::parse(&d('3')).unwrap()]);
        let blobs: Vec<(String, u64)> = refs.blobs.iter().map(|b| (b.digest.to_string(), b.size)).collect();
        assert_eq!(blobs, vec![(d('1'), 10), (d('2'), 20)]);
    }
}
