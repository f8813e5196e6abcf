//! Bundles from a hostile transfer medium: bounded before they are
//! trusted. A description without a valid signature is refused from its
//! first kilobytes, whatever its size; a signed one naming a million
//! repositories is read one repository at a time; every refusal exits 2;
//! names a bundle carries never reach the terminal raw.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::RsaPrivateKey;
use serde_json::json;

use crate::support::oci::{oci_image, sha256};
use crate::support::registry::ISSUER;
use crate::support::{keys, run_measured, Env, Run};

/// Peak memory a refused or streamed bundle may take, in KiB: generous
/// (georeg idles at some 10 MiB); before, 64 MiB of JSON took 2.17 GB.
const MAX_PEAK_KB: u64 = 200 * 1024;

/// georeg's `reader::MAX_DESCRIPTION_BYTES`.
const MAX_DESCRIPTION_BYTES: u64 = 256 << 20;

const DESCRIPTION: &str = "georeg-bundle.json";

/// A tar file holding `files` (name, bytes), names written as they are.
fn tar_of(path: &Path, files: &[(&str, &[u8])]) {
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // Raw, so that control characters go in as a hostile tool writes them.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, *bytes).unwrap();
    }
    tar.finish().unwrap();
}

/// The deployment's shared key.
fn shared_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs1_pem(&std::fs::read_to_string(&keys().pkcs1).unwrap()).unwrap()
}

/// A description file as the format says (georeg-bundle/2), written here
/// as another tool would: an RS256 JWS over a statement of the document's
/// id, SHA-256 and size, then the document's bytes.
fn seal(key: &RsaPrivateKey, id: &str, document: &[u8]) -> Vec<u8> {
    use georeg::registry::encoding::base64url;
    let statement = json!({
        "iss": ISSUER, "aud": "georeg-bundle", "iat": 0, "jti": id,
        "sha256": sha256(document).trim_start_matches("sha256:"), "size": document.len(),
    });
    let input =
        format!("{}.{}", base64url(br#"{"alg":"RS256","typ":"JWT"}"#), base64url(statement.to_string().as_bytes()));
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone()).sign(input.as_bytes());
    let mut file =
        format!("{{\"signature\":\"{input}.{}\",\"bundle\":\n", base64url(&signature.to_bytes())).into_bytes();
    file.extend_from_slice(document);
    file.extend_from_slice(b"\n}\n");
    file
}

const ID: &str = "0123456789abcdef0123456789abcdef";

/// A description of one repository, exported from `primary`.
fn contents(primary: &str, repository: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "format": "georeg-bundle/2", "id": ID, "primary": primary,
        "created_at": "2026-12-01T00:00:00.000Z", "georeg_version": "test", "inventory": null,
        "repositories": [{"name": repository, "tags": {}, "mounts": []}],
        "deletions": [], "files": [],
    }))
    .unwrap()
}

/// A bundle of a description alone, signed with `key`.
fn signed_bundle(path: &Path, key: &RsaPrivateKey, document: &[u8]) {
    tar_of(path, &[(DESCRIPTION, &seal(key, ID, document))]);
}

/// A description naming `count` repositories `many/rNNNNNNN`, each with
/// tag v1 at `digest`, laid out as an export writes it.
fn many(primary: &str, count: usize, digest: &str) -> Vec<u8> {
    let mut text = format!(
        "{{\n  \"format\": \"georeg-bundle/2\",\n  \"id\": \"{ID}\",\n  \"primary\": \"{primary}\",\n  \
         \"created_at\": \"2026-12-01T00:00:00.000Z\",\n  \"georeg_version\": \"test\",\n  \"inventory\": null,\n  \
         \"repositories\": [\n"
    );
    for i in 0..count {
        let comma = if i + 1 < count { "," } else { "" };
        text.push_str(&format!(
            "    {{\n      \"name\": \"many/r{i:07}\",\n      \"tags\": {{\n        \"v1\": \"{digest}\"\n      }},\n      \
             \"mounts\": []\n    }}{comma}\n"
        ));
    }
    text.push_str("  ],\n  \"deletions\": [],\n  \"files\": []\n}");
    text.into_bytes()
}

/// Runs `args` + `bundle` as import and as verify --bundle, and asserts
/// both refuse it with exit 2 naming the file and saying `why`, in
/// little memory; returns the import's peak RSS in KiB.
fn refused(env: &Env, bundle: &Path, why: &str) -> u64 {
    let file = bundle.to_str().unwrap();
    let mut peak = 0;
    for args in [vec!["import", file], vec!["verify", "--bundle", file]] {
        let started = Instant::now();
        let (run, kb) = run_measured(env, &args);
        run.assert_code(2);
        assert!(run.stderr.contains(file) && run.stderr.contains(why), "want {why:?}:\n{run}");
        assert!(kb < MAX_PEAK_KB, "{args:?}: peak RSS {kb} KiB");
        eprintln!("{args:?} {}: refused in {:?}, peak RSS {kb} KiB", bundle.display(), started.elapsed());
        peak = peak.max(kb);
    }
    peak
}

#[test]
fn a_description_without_a_valid_signature_is_refused_unread_however_large() {
    let env = Env::new("bundle-unsigned");
    // 64 MiB of JSON, the shape of a description, without a signature.
    let mut json = b"{\"bundle\":{\"format\":\"georeg-bundle/2\",\"repositories\":[".to_vec();
    let entry = b"{\"name\":\"x/y\",\"tags\":{\"v1\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}},";
    while json.len() < 64 << 20 {
        json.extend_from_slice(entry);
    }
    json.extend_from_slice(b"{}]}}\n");
    let unsigned = env.path("unsigned.tar");
    tar_of(&unsigned, &[(DESCRIPTION, &json)]);
    let kb = refused(&env, &unsigned, "does not begin with a signature");
    eprintln!("64 MiB unsigned description: peak RSS {kb} KiB");

    // The same behind a forged signature: checked before the document is read.
    let mut forged = format!("{{\"signature\":\"{}.{}.{}\",\"bundle\":\n", "e30", "e30", "AAAA").into_bytes();
    forged.extend_from_slice(&json[10..]);
    tar_of(&unsigned, &[(DESCRIPTION, &forged)]);
    refused(&env, &unsigned, "signature is not valid");

    // Larger than any description may be: refused from its tar header (a
    // sparse file: nothing of it is written, nothing read).
    let oversized = env.path("oversized.tar");
    let size = MAX_DESCRIPTION_BYTES + 1;
    let mut header = tar::Header::new_gnu();
    header.set_path(DESCRIPTION).unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    let mut file = std::fs::File::create(&oversized).unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(512 + size.div_ceil(512) * 512 + 1024).unwrap();
    refused(&env, &oversized, &format!("more than the {MAX_DESCRIPTION_BYTES} bytes"));
}

#[test]
fn every_refused_bundle_exits_2() {
    let env = Env::new("bundle-refusals");
    env.p.push_image("ref/app", "v1", &oci_image(50, &[200_000]));
    let good = env.path("good.tar");
    env.georeg(&["export", "--output", good.to_str().unwrap()]).assert_ok();
    let bytes = std::fs::read(&good).unwrap();
    let bundle = env.path("b.tar");

    // Signed with another key than the deployment's.
    let other = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    signed_bundle(&bundle, &other, &contents(&env.primary.url, "ref/app"));
    refused(&env, &bundle, "another key");

    // The signature edited (one character of its RSA signature).
    let at = bytes.windows(11).position(|w| w == b"\",\"bundle\":").unwrap() - 5;
    let mut edited = bytes.clone();
    edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&bundle, &edited).unwrap();
    refused(&env, &bundle, "signature is not valid");

    // Cut short inside the description, and inside the blobs.
    std::fs::write(&bundle, &bytes[..bytes.len() - 3000]).unwrap();
    refused(&env, &bundle, "cut short");
    std::fs::write(&bundle, &bytes[..100_000]).unwrap();
    refused(&env, &bundle, "cut short");

    // No description at all.
    tar_of(&bundle, &[("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")]);
    refused(&env, &bundle, "holds no georeg-bundle.json");

    // A description of format 1 (whose signature covered a re-serialization).
    let old = b"{\n  \"bundle\": {\n    \"format\": \"georeg-bundle/1\"\n  },\n  \"signature\": \"a.b.c\"\n}\n";
    tar_of(&bundle, &[(DESCRIPTION, old)]);
    refused(&env, &bundle, "older georeg version");

    // And the bundle as exported imports: none of this was its fault.
    env.georeg(&["import", good.to_str().unwrap()]).assert_ok();
}

/// Neither output holds a control character or bidi control a bundle
/// brought, nor a line it forged.
fn assert_printed_safely(run: &Run) {
    for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw = text.chars().find(|&c| matches!(c, '\u{1b}' | '\u{7}' | '\u{202e}' | '\u{2066}' | '\u{200f}'));
        assert!(raw.is_none(), "{what} holds {raw:?} raw:\n{run}");
        assert!(!text.lines().any(|l| l.starts_with("forged")), "{what} holds a forged line:\n{run}");
    }
}

#[test]
fn names_from_a_bundle_never_reach_the_terminal_raw() {
    let env = Env::new("bundle-escapes");
    let hostile = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}txt.exe\u{2066}\u{200f}\nforged: bundle imported";
    let bundle = env.path("b.tar");
    let file = bundle.to_str().unwrap();

    // Names in the tar's headers.
    let name = format!("blobs/{hostile}");
    tar_of(&bundle, &[(&name, b"1"), (&name, b"2")]);
    for args in [vec!["import", file], vec!["verify", "--bundle", file]] {
        let run = env.georeg(&args);
        run.assert_code(2);
        assert!(run.stderr.contains("twice") && run.stderr.contains("\\u{1b}[2J"), "{run}");
        assert_printed_safely(&run);
    }

    // A signed description: a repository name, a primary's URL.
    signed_bundle(&bundle, &shared_key(), &contents(&env.primary.url, &format!("app{hostile}")));
    let run = env.georeg(&["import", file]);
    run.assert_code(2);
    assert!(run.stderr.contains("names the repository"), "{run}");
    assert_printed_safely(&run);
    let primary = format!("http://primary.example{hostile}");
    signed_bundle(&bundle, &shared_key(), &contents(&primary, "ok/app"));
    let run = env.georeg(&["import", file]);
    run.assert_code(2);
    assert!(run.stderr.contains("exported from the primary registry http://primary.example\\u{1b}"), "{run}");
    assert_printed_safely(&run);
    // verify --bundle does not care which primary, and prints its URL.
    let run = env.georeg(&["verify", "--bundle", file]);
    run.assert_ok();
    assert!(run.stderr.contains("exported from http://primary.example\\u{1b}"), "{run}");
    assert_printed_safely(&run);
}

/// Repositories in the synthetic bundle: 250,000 keeps the test under
/// half a minute with a debug build (each pass parses some 44 MB);
/// GEOREG_TEST_BUNDLE_REPOSITORIES=1000000 measures a million.
fn repositories() -> usize {
    std::env::var("GEOREG_TEST_BUNDLE_REPOSITORIES").ok().and_then(|n| n.parse().ok()).unwrap_or(250_000)
}

#[test]
fn a_signed_bundle_naming_very_many_repositories_is_read_one_repository_at_a_time() {
    let mut env = Env::new("bundle-many");
    let count = repositories();
    // The secondary holds the one repository selective sync keeps.
    let image = oci_image(51, &[10_000]);
    env.s.push_image("many/r0000007", "v1", &image);
    env.add_replication("include = [\"many/r0000007\"]");
    let started = Instant::now();
    let bundle = env.path("many.tar");
    signed_bundle(&bundle, &shared_key(), &many(&env.primary.url, count, &image.digest));
    let size = std::fs::metadata(&bundle).unwrap().len();
    eprintln!("a description of {count} repositories: {size} bytes, written in {:?}", started.elapsed());
    env.primary.stop();

    let file = bundle.to_str().unwrap();
    let started = Instant::now();
    let (run, import_kb) = run_measured(&env, &["import", file]);
    run.assert_ok();
    let imported = started.elapsed();
    let left_out = format!("{} left out by selective sync", count - 1);
    assert!(run.stderr.contains(": 1 repositories") && run.stderr.contains(&left_out), "{run}");
    assert!(run.stdout.contains("many/r0000007: imported"), "{run}");
    let started = Instant::now();
    let (run, verify_kb) = run_measured(&env, &["verify", "--bundle", file]);
    run.assert_ok();
    let verified = started.elapsed();
    assert!(run.stdout.contains("many/r0000007: holds what the bundle says"), "{run}");
    eprintln!(
        "{count} repositories: import {imported:?}, peak RSS {import_kb} KiB; verify --bundle {verified:?}, peak \
         RSS {verify_kb} KiB"
    );
    assert!(import_kb < MAX_PEAK_KB, "import: peak RSS {import_kb} KiB");
    assert!(verify_kb < MAX_PEAK_KB, "verify --bundle: peak RSS {verify_kb} KiB");
    let run = env.georeg(&["verify", "--bundle", file, &format!("many/r{count:07}")]);
    run.assert_code(2);
    assert!(run.stderr.contains("is not a repository of bundle"), "{run}");
}
