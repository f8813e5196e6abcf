//! The engine's deletion of one tag from the secondary (the primary, or
//! the bundle, no longer has it), without touching sibling tags that
//! share its digest. Whether to remove it now is decided above the engine
//! (`held.rs`). distribution 2.8 can delete manifests only
//! by digest, which drops every tag pointing at them; so the tag is first
//! re-pointed at a tombstone manifest of its own, and the tombstone is
//! deleted by digest. Registries that delete tags by name (distribution v3,
//! GitLab) are asked to do that first.

use super::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::manifest::{self, Manifest};
use crate::registry::Digest;
use crate::store::Action;

/// `{}`, the OCI empty descriptor's content; config of tag tombstones.
const EMPTY_JSON: &[u8] = b"{}";

impl Engine<'_> {
    /// Takes `tag` off the secondary registry, leaving sibling tags that
    /// share its digest in place; records nothing. Distribution 2.8 can
    /// only delete manifests by digest, which drops every tag pointing at
    /// them; so the tag is first re-pointed at a tombstone manifest of its
    /// own, and the tombstone is deleted by digest.
    pub(super) fn untag(&self, repo: &str, tag: &str) -> Result<()> {
        // The tombstone below can only be deleted where deletes are on:
        // find out first, and leave the tag as it is otherwise.
        if !self.secondary.deletes_enabled(repo)? {
            return Err(Error::Registry {
                request: format!("DELETE {}/v2/{repo}/manifests/...", self.secondary.url()),
                status: 405,
                code: "UNSUPPORTED".into(),
                message: format!(
                    "the secondary registry does not delete manifests, so {repo}:{tag}, gone from the primary, \
                     was left as it is: set storage.delete.enabled: true in its config.yml"
                ),
            });
        }
        if !self.secondary.delete_tag(repo, tag)? {
            let empty = Digest::sha256_of(EMPTY_JSON);
            if self.secondary.blob_size(repo, &empty)?.is_none() {
                self.secondary.push_blob_bytes(repo, &empty, EMPTY_JSON)?;
            }
            let tombstone = tombstone(repo, tag, &empty);
            self.secondary.put_manifest(repo, tag, &tombstone)?;
            self.secondary.delete_manifest(repo, &tombstone.digest)?;
        }
        Ok(())
    }

    /// Removes one tag from the secondary, as the primary did: recorded,
    /// and logged for this node's followers.
    pub(super) fn remove_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.untag(repo, tag)?;
        self.store.remove_tag(repo, tag)?;
        self.store.log_applied(repo, Action::Delete, Some(tag), None, None)?;
        log::debug!("{repo}:{tag} removed (gone from the primary)");
        Ok(())
    }
}

/// A manifest unique to (repository, tag, moment): deleting it by digest
/// can only ever remove that one tag.
fn tombstone(repo: &str, tag: &str, empty: &Digest) -> Manifest {
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.as_str(), "size": EMPTY_JSON.len()},
        "layers": [],
        "annotations": {
            "io.georeg.tombstone": format!("{repo}:{tag}"),
            "io.georeg.nonce": crate::registry::token::random_hex(16),
        }
    });
    let bytes = body.to_string().into_bytes();
    Manifest { digest: Digest::sha256_of(&bytes), media_type: manifest::OCI_MANIFEST.into(), bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_unique_valid_manifests() {
        let empty = Digest::sha256_of(EMPTY_JSON);
        let a = tombstone("g/app", "v1", &empty);
        let b = tombstone("g/app", "v1", &empty);
        assert_ne!(a.digest, b.digest);
        let refs = manifest::references(&a.bytes).unwrap();
        assert_eq!(refs.blobs, vec![manifest::BlobRef { digest: empty, size: 2 }]);
    }
}
