//! The shapes other tools lose: OCI referrers with a `subject`, zstd and
//! Helm layers, foreign layers, BuildKit's registry cache and signed Docker
//! schema 1, built as the tools that make them do.

use serde_json::json;

use super::oci::{config, descriptor, finish, random_bytes, sha256, Image, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// An OCI 1.1 artifact (a signature, an SBOM...) whose `subject` is
/// `subject`: reached by no tag, only through the referrers API or a
/// fallback tag.
pub fn referrer(seed: u64, subject: &Image, artifact_type: &str) -> Image {
    let empty = b"{}".to_vec();
    let payload = random_bytes(seed * 17 + 3, 700);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty),
        "layers": [descriptor("application/octet-stream", &payload)],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.manifest.len()},
    });
    finish(value, OCI_MANIFEST, vec![empty, payload], vec![])
}

/// An OCI manifest with a config and layers of the given media types (zstd,
/// zstd:chunked, a Helm chart...), and annotations on the layers.
pub fn oci_shaped(seed: u64, config_type: &str, layer_type: &str, annotations: serde_json::Value) -> Image {
    let cfg = serde_json::to_vec(&json!({"seed": seed})).unwrap();
    let layer = random_bytes(seed * 19 + 5, 1500);
    let mut layer_descriptor = descriptor(layer_type, &layer);
    if !annotations.is_null() {
        layer_descriptor["annotations"] = annotations;
    }
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, &cfg),
        "layers": [layer_descriptor],
    });
    finish(value, OCI_MANIFEST, vec![cfg, layer], vec![])
}

/// A Docker image with a foreign (non-distributable) layer: the registry
/// holds only its descriptor, the bytes live at its URL.
pub fn with_foreign_layer(seed: u64) -> Image {
    let cfg = config(seed, "amd64");
    let local = random_bytes(seed * 23 + 1, 1200);
    let value = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &cfg),
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 5_000_000,
             "digest": format!("sha256:{}", "ab".repeat(32)), "urls": ["https://example.invalid/layer.tar.gz"]},
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &local),
        ],
    });
    finish(value, DOCKER_MANIFEST, vec![cfg, local], vec![])
}

/// A BuildKit registry cache (`--cache-to type=registry`): an OCI index
/// whose entries are blobs, a layer and the cache config, not manifests.
pub fn buildkit_cache(seed: u64) -> Image {
    let layer = random_bytes(seed * 11 + 1, 5000);
    let cache_config = serde_json::to_vec(&json!({"layers": [{"blob": sha256(&layer)}], "seed": seed})).unwrap();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer),
            descriptor("application/vnd.buildkit.cacheconfig.v0", &cache_config),
        ],
    });
    finish(value, OCI_INDEX, vec![layer, cache_config], vec![])
}

pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A Docker schema 1 image, signed as libtrust signs (a JWS with the
/// payload's `formatLength` and `formatTail`, RS256, the key as a JWK).
/// Its digest is that of the payload, the manifest without signatures.
pub fn schema1_image(seed: u64, repo: &str, tag: &str) -> Image {
    use georeg::registry::encoding::base64url;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::signature::{SignatureEncoding, Signer as _};
    use rsa::traits::PublicKeyParts;
    let layer = random_bytes(seed * 13 + 1, 2000);
    let v1 = serde_json::json!({"id": format!("{:064x}", seed), "created": "2020-01-01T00:00:00Z", "architecture": "amd64", "os": "linux"});
    let manifest = json!({
        "schemaVersion": 1,
        "name": repo,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(&layer)}],
        "history": [{"v1Compatibility": v1.to_string()}],
    });
    let payload = serde_json::to_string_pretty(&manifest).unwrap().replace("  ", "   ");
    let format_length = payload.rfind("\n}").unwrap();
    let tail = &payload[format_length..];
    let protected = base64url(
        json!({"formatLength": format_length, "formatTail": base64url(tail.as_bytes()), "time": "2020-01-01T00:00:00Z"})
            .to_string()
            .as_bytes(),
    );
    let pem = std::fs::read_to_string(&super::keys().pkcs1).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).unwrap();
    let public = key.to_public_key();
    let kid = georeg::registry::token::libtrust_key_id(public.to_public_key_der().unwrap().as_bytes());
    let signing = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let signature = signing.sign(format!("{protected}.{}", base64url(payload.as_bytes())).as_bytes());
    let jws = json!([{
        "header": {
            "jwk": {"kty": "RSA", "kid": kid, "n": base64url(&public.n().to_bytes_be()), "e": base64url(&public.e().to_bytes_be())},
            "alg": "RS256",
        },
        "signature": base64url(&signature.to_bytes()),
        "protected": protected,
    }]);
    let signed = format!("{},\n   \"signatures\": {}{tail}", &payload[..format_length], jws);
    Image {
        digest: sha256(payload.as_bytes()),
        manifest: signed.into_bytes(),
        media_type: SCHEMA1_SIGNED.into(),
        blobs: vec![layer],
        children: vec![],
    }
}
