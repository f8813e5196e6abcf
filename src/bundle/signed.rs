//! Documents that cross the air gap, signed with the key pair every node
//! shares: an inventory (so that an export can trust what it says the
//! secondary holds) and a bundle's `georeg-bundle.json` (so that an import
//! can trust what it says the secondary must hold).
//!
//! The file is readable JSON laid out so that its signature is checked
//! before a byte of the document is parsed:
//!
//! ```text
//! {"signature":"JWS","<kind>":
//! DOCUMENT
//! }
//! ```
//!
//! The signature is a compact RS256 JWS (the shape of georeg's tokens)
//! whose payload names the document's kind, id, size and the SHA-256 of
//! its exact bytes. A reader takes the head (at most [`MAX_HEAD_BYTES`]),
//! verifies the signature, checks that the file's size is the one signed,
//! and hashes the document as it copies it; only a copy whose digest
//! matches is ever parsed. Whoever can put a file on the transfer medium
//! without the key makes georeg read a few kilobytes, never parse
//! megabytes of JSON. (Format 1 signed a re-serialization of the parsed
//! document, so the whole file was parsed first: those files are refused,
//! naming what to do.) Unlike a token a statement has no validity window:
//! the clocks on the two sides of an air gap are nobody's to keep in step,
//! and the age rules of bundles are their own (`bundle::refusal`).

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::registry::encoding;
use crate::registry::token::{now, Signer};

/// The head of a file, its signature included, is at most this long: an
/// RS256 JWS with a certificate chain in its header is a few kilobytes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

const PREFIX: &[u8] = b"{\"signature\":\"";
const TRAILER: &[u8] = b"\n}\n";

/// A document georeg signs.
pub trait Document: Serialize + DeserializeOwned {
    /// What it is: the statement's audience (`georeg-inventory`...).
    const KIND: &'static str;
    /// Its key in the file, beside `signature`.
    const KEY: &'static str;
    /// How to make a file this georeg reads, for one it cannot.
    const AGAIN: &'static str;
    fn id(&self) -> &str;
}

/// What the signature says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Statement {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    /// The document's id.
    pub jti: String,
    /// The SHA-256 (hex) and length of the document's bytes.
    pub sha256: String,
    pub size: u64,
}

/// The file holding `doc` and its signature, signed now.
pub fn seal<D: Document>(signer: &Signer, doc: &D) -> Result<Vec<u8>, String> {
    seal_at(signer, doc, now())
}

/// The file holding `doc` and its signature, dated `iat` (seconds since
/// the epoch). RS256 is deterministic: the same document, key and time
/// give the same bytes, which a bundle exported again needs.
pub fn seal_at<D: Document>(signer: &Signer, doc: &D, iat: u64) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec_pretty(doc).map_err(|e| format!("cannot be serialized: {e}"))?;
    let statement = Statement {
        iss: signer.issuer().to_string(),
        aud: D::KIND.to_string(),
        iat,
        jti: doc.id().to_string(),
        sha256: encoding::hex(&Sha256::digest(&body)),
        size: body.len() as u64,
    };
    let payload = serde_json::to_vec(&statement).map_err(|e| e.to_string())?;
    let mut file = format!("{{\"signature\":\"{}\",\"{}\":\n", signer.sign_payload(&payload), D::KEY).into_bytes();
    file.extend_from_slice(&body);
    file.extend_from_slice(TRAILER);
    Ok(file)
}

/// Copies the document of the sealed file read from `file` (`total`
/// bytes long) to `out`, once the signature in its head verifies with the
/// shared key, and checks that the copy is exactly what was signed.
/// `out` holds a document to parse only when the inner result is `Ok`;
/// the outer error is a failure to read `file` or write `out`.
pub fn unseal_to<D: Document>(
    signer: &Signer,
    mut file: impl Read,
    total: u64,
    out: &mut dyn Write,
) -> io::Result<Result<Statement, String>> {
    let mut head = Vec::with_capacity(MAX_HEAD_BYTES.min(total as usize));
    (&mut file).take(MAX_HEAD_BYTES.min(total as usize) as u64).read_to_end(&mut head)?;
    if (head.len() as u64) < total.min(MAX_HEAD_BYTES as u64) {
        return Ok(Err("ends before it should: it was cut short".into()));
    }
    let (statement, start) = match check_head::<D>(signer, &head, total) {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    // The document: what the head read of it already, then the rest.
    let mut hash = Sha256::new();
    let mut left = statement.size;
    let first = &head[start.min(head.len())..];
    let first = &first[..first.len().min(left as usize)];
    hash.update(first);
    out.write_all(first)?;
    left -= first.len() as u64;
    let mut buf = vec![0u8; 256 << 10];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(Err("ends before its document does: it was cut short".into()));
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let mut trailer = head[(start + statement.size as usize).min(head.len())..].to_vec();
    (&mut file).take((TRAILER.len() - trailer.len().min(TRAILER.len())) as u64).read_to_end(&mut trailer)?;
    if encoding::hex(&hash.finalize()) != statement.sha256 || trailer != TRAILER {
        return Ok(Err(
            "its contents differ from what was signed: it was edited after it was written, or damaged".into()
        ));
    }
    Ok(Ok(statement))
}

/// The statement of a file's head once its signature verifies, and where
/// the document begins; else why the file is not one to read.
fn check_head<D: Document>(signer: &Signer, head: &[u8], total: u64) -> Result<(Statement, usize), String> {
    let kind = D::KIND;
    if !head.starts_with(PREFIX) {
        // Format 1 was pretty-printed with its keys sorted, the signature last.
        if head.starts_with(b"{\n  \"") {
            return Err(format!(
                "was written by an older georeg version (its signature covers a re-serialization of the \
                 document, which would have to be parsed before it is checked): {}",
                D::AGAIN
            ));
        }
        return Err(format!("is not a georeg {kind} (it does not begin with a signature)"));
    }
    let rest = &head[PREFIX.len()..];
    let Some(end) = rest.iter().position(|&b| b == b'"') else {
        return Err(format!("is not a georeg {kind} (no signature within its first {MAX_HEAD_BYTES} bytes)"));
    };
    let jws = std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .ok_or_else(|| format!("is not a georeg {kind} (its signature is not a JWS)"))?;
    let key = format!("\",\"{}\":\n", D::KEY);
    if !rest[end..].starts_with(key.as_bytes()) {
        return Err(format!("is not a georeg {kind} (no \"{}\" after its signature)", D::KEY));
    }
    let start = PREFIX.len() + end + key.len();
    let payload = signer.verified_payload(jws).map_err(|why| {
        format!("its signature is not valid: {why} (signed with another key than registry.key_file, or edited)")
    })?;
    // Covered by the signature just checked: georeg's own statement.
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| format!("its signature holds no statement: {e}"))?;
    if statement.aud != kind {
        return Err(format!("its signature is for a {}, not a {kind}", statement.aud));
    }
    if statement.iss != signer.issuer() {
        return Err(format!(
            "it was signed by issuer {:?}, and this node's registry.issuer is {:?}",
            statement.iss,
            signer.issuer()
        ));
    }
    let signed = (start as u64).saturating_add(statement.size).saturating_add(TRAILER.len() as u64);
    if total != signed {
        return Err(format!(
            "is {total} bytes long, and its signature is for {signed}: it was cut short or edited after it was \
             written"
        ));
    }
    Ok((statement, start))
}

/// The document in `bytes` (a whole sealed file), once its signature
/// verifies and covers exactly these bytes; else why not.
#[cfg(test)]
pub fn unseal<D: Document>(signer: &Signer, bytes: &[u8]) -> Result<D, String> {
    let mut body = Vec::new();
    let statement = unseal_to::<D>(signer, bytes, bytes.len() as u64, &mut body).map_err(|e| e.to_string())??;
    let doc: D = serde_json::from_slice(&body).map_err(|e| format!("is not a georeg {}: {e}", D::KIND))?;
    if statement.jti != doc.id() {
        return Err(format!("its signature is for {} {:?}, not {:?}", D::KIND, statement.jti, doc.id()));
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
        assert!(text.starts_with("{\"signature\":\"") && text.contains("\"bundle\":\n{"), "readable JSON: {text}");
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "and JSON: {text}");

        let edited = text.replace("group/app", "group/eve");
        assert!(unseal::<Contents>(&s, edited.as_bytes()).unwrap_err().contains("edited after"));
        let longer = text.replace("group/app", "group/evil");
        assert!(unseal::<Contents>(&s, longer.as_bytes()).unwrap_err().contains("edited after"));
        assert!(unseal::<Contents>(&s, &bytes[..bytes.len() - 1]).unwrap_err().contains("cut short"));
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
        let swapped = String::from_utf8(sealed).unwrap().replace("\"inventory\":", "\"bundle\":");
        assert!(unseal::<Contents>(&s, swapped.as_bytes()).unwrap_err().contains("not a georeg-bundle"));
    }

    #[test]
    fn an_older_format_is_named_and_a_file_without_a_signature_is_never_parsed() {
        let s = signer();
        let old = b"{\n  \"bundle\": {\n    \"format\": \"georeg-bundle/1\"\n  },\n  \"signature\": \"x.y.z\"\n}\n";
        let why = unseal::<Contents>(&s, old).unwrap_err();
        assert!(why.contains("older georeg version") && why.contains("export"), "{why}");
        // 8 MiB of JSON without a signature: refused from its head alone.
        let mut junk = b"{\"bundle\":[".to_vec();
        junk.resize(8 << 20, b'[');
        let mut copied = Vec::new();
        let why = unseal_to::<Contents>(&s, &junk[..], junk.len() as u64, &mut copied).unwrap().unwrap_err();
        assert!(why.contains("does not begin with a signature") && copied.is_empty(), "{why}");
        let mut long = PREFIX.to_vec();
        long.resize(1 << 20, b'a');
        let why = unseal::<Contents>(&s, &long).unwrap_err();
        assert!(why.contains("no signature within"), "{why}");
    }
}
