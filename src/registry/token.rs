//! JSON Web Tokens signed with the key pair shared by all nodes
//! (`gitlab-registry.key`), in the form the registry's token auth accepts.
//!
//! A registry configured for token auth trusts any RS256 token whose `kid`
//! names a key in its `rootcertbundle` (distribution 2.x: the libtrust key
//! ID) or whose `x5c` chain leads to one (distribution 3), with `iss` and
//! `aud` equal to its configured issuer and service. georeg mints such
//! tokens itself, so it never contacts a token realm. The same signer, with
//! audience "georeg", authenticates secondaries to a primary georeg.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::rand_core::{OsRng, RngCore};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::encoding;
use crate::error::{Error, Result};

/// The subject of the tokens georeg signs for registries: the registry
/// names it as the actor of georeg's own writes in its notifications.
pub const SUBJECT: &str = "georeg";

/// GitLab backdates `nbf` by five seconds to absorb clock skew between nodes.
const NOT_BEFORE_SKEW: u64 = 5;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    pub fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope { kind: "repository".into(), name: name.into(), actions: actions.iter().map(|a| a.to_string()).collect() }
    }

    /// `registry:catalog:*`, needed to list the catalog.
    pub fn catalog() -> Scope {
        Scope { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] }
    }

    /// Parses the Docker scope syntax `TYPE:NAME:ACTION[,ACTION...]`.
    pub fn parse(text: &str) -> Option<Scope> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() || actions.is_empty() {
            return None;
        }
        Some(Scope { kind: kind.into(), name: name.into(), actions: actions.split(',').map(str::to_string).collect() })
    }

    fn cache_key(scopes: &[Scope]) -> String {
        let mut key = String::new();
        for s in scopes {
            key.push_str(&s.kind);
            key.push(':');
            key.push_str(&s.name);
            key.push(':');
            key.push_str(&s.actions.join(","));
            key.push(' ');
        }
        key
    }
}

/// The claims georeg puts in, and checks on, a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    /// A plain string: distribution 2.8 fails to parse an array here.
    pub aud: String,
    #[serde(default)]
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Scope>,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5c: Option<&'a [String]>,
}

/// A signed token and the moment it stops being valid.
#[derive(Debug, Clone)]
pub struct Token {
    pub text: String,
    pub expires_at: u64,
}

/// Signs (and verifies) tokens with the shared key.
pub struct Signer {
    signing: SigningKey<Sha256>,
    verifying: VerifyingKey<Sha256>,
    kid: String,
    /// Base64 DER certificates, leaf first, when a certificate is configured.
    x5c: Option<Vec<String>>,
    spki_der: Vec<u8>,
    issuer: String,
}

impl Signer {
    /// Loads the private key (PKCS#1 `BEGIN RSA PRIVATE KEY`, as GitLab
    /// writes it, or PKCS#8 `BEGIN PRIVATE KEY`) and optionally the
    /// certificate chain to advertise in `x5c`.
    pub fn load(key_file: &Path, certificate_file: Option<&Path>, issuer: &str) -> Result<Signer> {
        let key_pem = std::fs::read_to_string(key_file)
            .map_err(|e| Error::Key { path: key_file.to_path_buf(), message: format!("cannot read: {e}") })?;
        let key =
            parse_private_key(&key_pem).map_err(|message| Error::Key { path: key_file.to_path_buf(), message })?;
        let mut signer = Signer::new(key, issuer);
        if let Some(cert_file) = certificate_file {
            let cert_pem = std::fs::read_to_string(cert_file)
                .map_err(|e| Error::Key { path: cert_file.to_path_buf(), message: format!("cannot read: {e}") })?;
            signer
                .set_certificates(&cert_pem)
                .map_err(|message| Error::Key { path: cert_file.to_path_buf(), message })?;
        }
        Ok(signer)
    }

    pub fn new(key: RsaPrivateKey, issuer: &str) -> Signer {
        let public = key.to_public_key();
        // The SubjectPublicKeyInfo DER is the same bytes a certificate for
        // this key carries, so the key ID can be computed from the key alone.
        let spki_der = public.to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        Signer {
            kid: libtrust_key_id(&spki_der),
            signing: SigningKey::<Sha256>::new(key),
            verifying: VerifyingKey::<Sha256>::new(public),
            x5c: None,
            spki_der,
            issuer: issuer.to_string(),
        }
    }

    /// Adds the certificate chain for `x5c`; fails when the leaf does not
    /// carry this signer's public key.
    pub(crate) fn set_certificates(&mut self, cert_pem: &str) -> std::result::Result<(), String> {
        let certs = encoding::pem_blocks(cert_pem, "CERTIFICATE");
        let Some(leaf) = certs.first() else {
            return Err("no BEGIN CERTIFICATE block found".into());
        };
        // A certificate embeds its SubjectPublicKeyInfo verbatim.
        if !contains(leaf, &self.spki_der) {
            return Err("the certificate does not match the private key in registry.key_file".into());
        }
        self.x5c = Some(certs.iter().map(|der| encoding::base64(der)).collect());
        Ok(())
    }

    /// The libtrust key ID distribution 2.x matches against `kid`.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, audience: &str, subject: &str, ttl: Duration, access: &[Scope]) -> Token {
        let iat = now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: audience.to_string(),
            sub: subject.to_string(),
            iat,
            nbf: iat.saturating_sub(NOT_BEFORE_SKEW),
            exp: iat + ttl.as_secs(),
            jti: random_hex(16),
            access: access.to_vec(),
        };
        // ok: serializing this plain struct to JSON cannot fail.
        let payload = serde_json::to_vec(&claims).expect("claims serialize"); // ok: plain struct
        Token { text: self.sign_payload(&payload), expires_at: claims.exp }
    }

    /// `payload` as a compact RS256 JWS signed with the shared key: a
    /// token's claims, or a signed statement about a document.
    pub(crate) fn sign_payload(&self, payload: &[u8]) -> String {
        let header = Header { alg: "RS256", typ: "JWT", kid: &self.kid, x5c: self.x5c.as_deref() };
        // ok: serializing this plain struct to JSON cannot fail.
        let header = serde_json::to_vec(&header).expect("header serializes"); // ok: plain struct
        let signing_input = format!("{}.{}", encoding::base64url(&header), encoding::base64url(payload));
        let signature = self.signing.sign_with_rng(&mut OsRng, signing_input.as_bytes());
        format!("{signing_input}.{}", encoding::base64url(&signature.to_bytes()))
    }

    /// Checks a token signed with the shared key: signature, audience,
    /// issuer and validity window (60 s leeway, as the registry allows).
    pub(crate) fn verify(&self, token: &str, audience: &str) -> std::result::Result<Claims, String> {
        let payload = self.verified_payload(token)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|e| format!("claims: {e}"))?;
        if claims.aud != audience {
            return Err(format!("audience is {:?}, expected {audience:?}", claims.aud));
        }
        if claims.iss != self.issuer {
            return Err(format!("issuer is {:?}, expected {:?}", claims.iss, self.issuer));
        }
        let now = now();
        if claims.exp + 60 < now {
            return Err("token expired".into());
        }
        if claims.nbf > now + 60 {
            return Err("token not valid yet (check the clocks of both nodes)".into());
        }
        Ok(claims)
    }

    /// The issuer this signer writes into what it signs (`registry.issuer`).
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The payload of a compact RS256 JWS whose signature verifies with
    /// the shared key; what the payload says is the caller's to check.
    pub(crate) fn verified_payload(&self, token: &str) -> std::result::Result<Vec<u8>, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT (expected three dot-separated parts)".into());
        };
        let header_json = encoding::base64_decode(header).ok_or("header is not base64url")?;
        let header_value: serde_json::Value =
            serde_json::from_slice(&header_json).map_err(|e| format!("header: {e}"))?;
        if header_value.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
            return Err("only RS256 tokens are accepted".into());
        }
        let signature = encoding::base64_decode(signature).ok_or("signature is not base64url")?;
        let signature = Signature::try_from(signature.as_slice()).map_err(|_| "malformed signature")?;
        let signed = &token[..header.len() + 1 + payload.len()];
        self.verifying
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "signature does not verify with the shared key")?;
        encoding::base64_decode(payload).ok_or_else(|| "payload is not base64url".to_string())
    }
}

/// Hands out tokens for a registry, reusing each until shortly before it
/// expires. The registry checks a token when a request starts, not while its
/// body streams, so a copy that outlives one token simply takes a fresh one
/// for its next request (GitLab issue 384862 is the failure this avoids).
pub struct TokenCache {
    signer: std::sync::Arc<Signer>,
    audience: String,
    ttl: Duration,
    tokens: Mutex<HashMap<String, Token>>,
}

impl TokenCache {
    pub(crate) fn new(signer: std::sync::Arc<Signer>, audience: &str, ttl: Duration) -> TokenCache {
        TokenCache { signer, audience: audience.into(), ttl, tokens: Mutex::new(HashMap::new()) }
    }

    /// A token for `access`: the cached one while it has a fifth of its
    /// lifetime left, else a new one. Signing (an RSA operation, the
    /// slow part) happens outside the lock, so workers that need tokens
    /// for different repositories do not queue behind one signature.
    pub(crate) fn get(&self, access: &[Scope]) -> String {
        self.get_signed_by(access, |access| self.signer.sign(&self.audience, SUBJECT, self.ttl, access))
    }

    fn get_signed_by(&self, access: &[Scope], sign: impl FnOnce(&[Scope]) -> Token) -> String {
        let key = Scope::cache_key(access);
        let now = now();
        // Renew once less than a fifth of the lifetime (at least 10 s) is left.
        let margin = (self.ttl.as_secs() / 5).max(10);
        if let Some(t) = self.lock().get(&key).filter(|t| t.expires_at > now + margin) {
            return t.text.clone();
        }
        // Two threads missing the same scope both sign; the second insert
        // replaces the first, and both tokens are valid.
        let token = sign(access);
        let text = token.text.clone();
        let mut tokens = self.lock();
        if tokens.len() > 1024 {
            tokens.retain(|_, t| t.expires_at > now + margin);
        }
        tokens.insert(key, token);
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn parse_private_key(pem: &str) -> std::result::Result<RsaPrivateKey, String> {
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem.trim()).map_err(|e| format!("not a valid PKCS#1 RSA private key: {e}"))
    } else if pem.contains("BEGIN PRIVATE KEY") {
        RsaPrivateKey::from_pkcs8_pem(pem.trim()).map_err(|e| format!("not a valid PKCS#8 RSA private key: {e}"))
    } else if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        Err("the key is encrypted; georeg needs it unencrypted, as GitLab writes gitlab-registry.key".into())
    } else {
        Err("no 'BEGIN RSA PRIVATE KEY' (PKCS#1) or 'BEGIN PRIVATE KEY' (PKCS#8) block found".into())
    }
}

/// libtrust key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 30
/// bytes, base32 without padding, in 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let b32 = encoding::base32(&hash[..30]);
    let groups: Vec<&str> = (0..12).map(|i| &b32[i * 4..i * 4 + 4]).collect();
    groups.join(":")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    encoding::hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 1024-bit test key (small to keep the test fast); never used anywhere else.
    const KEY_PKCS1: &str = include_str!("../../tests/data/test-key-pkcs1.pem");
    const KEY_PKCS8: &str = include_str!("../../tests/data/test-key-pkcs8.pem");
    const CERT: &str = include_str!("../../tests/data/test-cert.pem");
    /// Computed with `openssl x509 -pubkey | openssl pkey -pubin -outform DER
    /// | sha256sum`, first 30 bytes, base32, grouped: the recipe libtrust uses.
    const KID: &str = include_str!("../../tests/data/test-kid.txt");

    #[test]
    fn kid_matches_libtrust_vector_for_both_key_formats() {
        let a = Signer::new(parse_private_key(KEY_PKCS1).unwrap(), "iss");
        let b = Signer::new(parse_private_key(KEY_PKCS8).unwrap(), "iss");
        assert_eq!(a.kid(), KID.trim());
        assert_eq!(b.kid(), KID.trim());
        assert_eq!(a.kid().len(), 59);
    }

    #[test]
    fn token_claims_and_header() {
        let mut signer = Signer::new(parse_private_key(KEY_PKCS1).unwrap(), "gitlab-issuer");
        signer.set_certificates(CERT).unwrap();
        let before = now();
        let token = signer.sign(
            "container_registry",
            "georeg",
            Duration::from_secs(300),
            &[Scope::repository("group/app", &["pull"])],
        );
        let parts: Vec<&str> = token.text.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&encoding::base64_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], KID.trim());
        assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
        let claims: serde_json::Value = serde_json::from_slice(&encoding::base64_decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "gitlab-issuer");
        assert!(claims["aud"].is_string(), "aud must be a plain string for distribution 2.8");
        assert_eq!(claims["aud"], "container_registry");
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat >= before);
        assert_eq!(claims["nbf"].as_u64().unwrap(), iat - 5);
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        assert_eq!(
            claims["access"],
            serde_json::json!([{"type": "repository", "name": "group/app", "actions": ["pull"]}])
        );
        let verified = signer.verify(&token.text, "container_registry").unwrap();
        assert_eq!(verified.access, vec![Scope::repository("group/app", &["pull"])]);
    }

    #[test]
    fn verify_rejects_tampering_wrong_audience_and_other_keys() {
        let signer = Signer::new(parse_private_key(KEY_PKCS1).unwrap(), "gitlab-issuer");
        let token = signer.sign("georeg", "secondary-1", Duration::from_secs(60), &[]).text;
        assert!(signer.verify(&token, "georeg").is_ok());
        assert!(signer.verify(&token, "container_registry").unwrap_err().contains("audience"));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = encoding::base64url(
            br#"{"iss":"gitlab-issuer","aud":"georeg","iat":1,"nbf":1,"exp":99999999999,"jti":"x"}"#,
        );
        assert!(signer.verify(&parts.join("."), "georeg").unwrap_err().contains("signature"));
        let other = Signer::new(RsaPrivateKey::new(&mut OsRng, 1024).unwrap(), "gitlab-issuer");
        assert!(other.verify(&token, "georeg").unwrap_err().contains("signature"));
        assert!(signer.verify("abc", "georeg").is_err());
        let expired = signer.sign("georeg", "s", Duration::from_secs(0), &[]);
        assert!(signer.verify(&expired.text, "georeg").is_ok(), "60 s leeway");
    }

    #[test]
    fn certificate_for_another_key_is_refused() {
        let mut other = Signer::new(RsaPrivateKey::new(&mut OsRng, 1024).unwrap(), "i");
        assert!(other.set_certificates(CERT).unwrap_err().contains("does not match"));
    }

    #[test]
    fn cache_reuses_until_near_expiry() {
        let signer = std::sync::Arc::new(Signer::new(parse_private_key(KEY_PKCS1).unwrap(), "i"));
        let cache = TokenCache::new(signer.clone(), "svc", Duration::from_secs(300));
        let scope = [Scope::repository("a", &["pull"])];
        assert_eq!(cache.get(&scope), cache.get(&scope));
        assert_ne!(cache.get(&scope), cache.get(&[Scope::repository("b", &["pull"])]));
        // A lifetime shorter than the renewal margin is never reused.
        let short = TokenCache::new(signer, "svc", Duration::from_secs(5));
        assert_ne!(short.get(&scope), short.get(&scope));
    }

    /// One thread signs for scope `a` and does not finish until a second
    /// thread got its token for scope `b`: were signing done under the
    /// cache's lock, the second thread would wait for the first for ever
    /// (here: until the first gives up after 10 s and the test fails).
    #[test]
    fn a_signature_does_not_hold_up_other_scopes() {
        use std::sync::mpsc::channel;
        let signer = std::sync::Arc::new(Signer::new(parse_private_key(KEY_PKCS1).unwrap(), "i"));
        let cache = TokenCache::new(signer, "svc", Duration::from_secs(300));
        let token = |text: &str| Token { text: text.into(), expires_at: now() + 300 };
        let (signing, signing_rx) = channel();
        let (b_done, b_done_rx) = channel();
        let shared = &cache;
        std::thread::scope(|s| {
            let a = s.spawn(move || {
                let cache = shared;
                cache.get_signed_by(&[Scope::repository("a", &["pull"])], |_| {
                    signing.send(()).unwrap();
                    let other_finished = b_done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
                    token(if other_finished { "a" } else { "b waited for a" })
                })
            });
            signing_rx.recv().unwrap();
            let b = cache.get_signed_by(&[Scope::repository("b", &["pull"])], |_| token("b"));
            b_done.send(()).unwrap();
            assert_eq!((a.join().unwrap().as_str(), b.as_str()), ("a", "b"));
        });
        // Both were cached: asked again, nothing is signed.
        let unsigned = |_: &[Scope]| -> Token { panic!("signed again") };
        assert_eq!(cache.get_signed_by(&[Scope::repository("a", &["pull"])], unsigned), "a");
        assert_eq!(cache.get_signed_by(&[Scope::repository("b", &["pull"])], unsigned), "b");
    }

    #[test]
    fn scope_parse() {
        assert_eq!(
            Scope::parse("repository:group/app:pull,push"),
            Some(Scope::repository("group/app", &["pull", "push"]))
        );
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::catalog()));
        assert_eq!(Scope::parse("repository:x"), None);
    }

    #[test]
    fn rejects_non_keys() {
        assert!(parse_private_key("hello").unwrap_err().contains("no 'BEGIN"));
    }
}
