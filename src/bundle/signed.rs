//! Documents that cross the air gap, signed with the key pair every node
//! shares: an inventory (so that an export can trust what it says the
//! secondary holds) and a bundle's `georeg-bundle.json` (so that an import
//! can trust what it says the secondary must hold).
//!
//! The file is readable JSON, `{"signature": JWS, "<kind>": document}`.
//! The signature is a compact RS256 JWS (the shape of georeg's tokens)
//! whose payload names the document's kind, id and the SHA-256 of its
//! canonical form: the document serialized by georeg's own types, which
//! parsing and serializing again reproduce byte for byte. Unlike a token a
//! statement has no validity window: the clocks on the two sides of an air
//! gap are nobody's to keep in step, and the age rules of bundles are
//! their own (`bundle::refusal`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::registry::token::{now, Signer};
use crate::registry::Digest;

/// A document georeg signs.
pub trait Document: Serialize + DeserializeOwned {
    /// What it is: the statement's audience (`georeg-inventory`...).
    const KIND: &'static str;
    /// Its key in the file, beside `signature`.
    const KEY: &'static str;
    fn id(&self) -> &str;
}

/// What the signature says.
#[derive(Debug, Serialize, Deserialize)]
struct Statement {
    iss: String,
    aud: String,
    iat: u64,
    jti: String,
    sha256: String,
}

/// The document's canonical bytes, whose digest the signature covers.
fn canonical<D: Document>(doc: &D) -> Result<Vec<u8>, String> {
    serde_json::to_vec(doc).map_err(|e| format!("cannot be serialized: {e}"))
}

/// The file holding `doc` and its signature.
pub fn seal<D: Document>(signer: &Signer, doc: &D) -> Result<Vec<u8>, String> {
    let statement = Statement {
        iss: signer.issuer().to_string(),
        aud: D::KIND.to_string(),
        iat: now(),
        jti: doc.id().to_string(),
        sha256: Digest::sha256_of(&canonical(doc)?).to_string(),
    };
    let payload = serde_json::to_vec(&statement).map_err(|e| e.to_string())?;
    let mut file = serde_json::Map::new();
    file.insert("signature".into(), signer.sign_payload(&payload).into());
    file.insert(D::KEY.into(), serde_json::to_value(doc).map_err(|e| e.to_string())?);
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The document in `bytes`, once its signature verifies with the shared
/// key and covers exactly what the file says; else why not.
pub fn unseal<D: Document>(signer: &Signer, bytes: &[u8]) -> Result<D, String> {
    #[derive(Deserialize)]
    struct File {
        signature: Option<String>,
        #[serde(flatten)]
        rest: serde_json::Map<String, serde_json::Value>,
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| format!("is not a georeg {}: {e}", D::KIND))?;
    let (Some(signature), Some(value)) = (file.signature, file.rest.get(D::KEY)) else {
        return Err(format!("is not a georeg {} (no \"signature\" and \"{}\")", D::KIND, D::KEY));
    };
    let doc: D = serde_json::from_value(value.clone()).map_err(|e| format!("is not a georeg {}: {e}", D::KIND))?;
    let payload = signer.verified_payload(&signature).map_err(|why| {
        format!("its signature is not valid: {why} (signed with another key than registry.key_file, or edited)")
    })?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| format!("its signature holds no statement: {e}"))?;
    if statement.aud != D::KIND {
        return Err(format!("its signature is for a {}, not a {}", statement.aud, D::KIND));
    }
    if statement.iss != signer.issuer() {
        return Err(format!(
            "it was signed by issuer {:?}, and this node's registry.issuer is {:?}",
            statement.iss,
            signer.issuer()
        ));
    }
    if statement.sha256 != Digest::sha256_of(&canonical(&doc)?).to_string() || statement.jti != doc.id() {
        return Err("its contents differ from what was signed: it was edited after it was written (or written by \
                    another georeg version)"
            .into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Contents;

    fn signer() -> Signer {
        let key = rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../../tests/data/test-key-pkcs1.pem"));
        Signer::new(key.unwrap(), "gitlab-issuer")
    }

    #[test]
    fn a_sealed_document_reads_back_and_any_change_is_caught() {
        let s = signer();
        let doc = crate::bundle::contents::tests::contents();
        let bytes = seal(&s, &doc).unwrap();
        assert_eq!(unseal::<Contents>(&s, &bytes).unwrap(), doc);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"signature\"") && text.contains("\"bundle\""), "readable JSON: {text}");

        let edited = text.replace("group/app", "group/evil");
        assert!(unseal::<Contents>(&s, edited.as_bytes()).unwrap_err().contains("edited after"));
        let other = Signer::new(rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap(), "gitlab-issuer");
        assert!(unseal::<Contents>(&other, &bytes).unwrap_err().contains("another key"));
        let issuer = Signer::new(
            rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(include_str!("../../tests/data/test-key-pkcs1.pem"))
                .unwrap(),
            "someone-else",
        );
        assert!(unseal::<Contents>(&issuer, &bytes).unwrap_err().contains("issuer"));
        assert!(unseal::<Contents>(&s, b"{}").unwrap_err().contains("not a georeg"));
        // An inventory's signature does not pass for a bundle's.
        let inventory = crate::bundle::inventory::tests::inventory();
        let sealed = seal(&s, &inventory).unwrap();
        let swapped = String::from_utf8(sealed).unwrap().replace("\"inventory\"", "\"bundle\"");
        assert!(unseal::<Contents>(&s, swapped.as_bytes()).is_err());
    }
}
