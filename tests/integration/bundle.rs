//! Air-gapped secondaries: transfer bundles against real registries. The
//! primary registry is stopped during every import, so nothing can come
//! from it; it is started again only to compare both registries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::support::oci::{docker_image, oci_image, oci_index, sha256};
use crate::support::{poll_until, Env, Run};

/// The bundle id an export printed (`bundle ID: ...`).
fn bundle_id(run: &Run) -> String {
    let line = run.stdout.lines().find(|l| l.starts_with("bundle ")).unwrap_or_else(|| panic!("{}", run.stdout));
    line["bundle ".len()..].split(':').next().unwrap().to_string()
}

fn export(env: &Env, name: &str, extra: &[&str]) -> (PathBuf, Run) {
    let path = env.path(name);
    let mut args = vec!["export", "--output", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = env.georeg(&args);
    run.assert_ok();
    (path, run)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Where a file's bytes begin inside the bundle's tar.
fn offset_in_tar(bundle: &Path, name: &str) -> u64 {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let mut entries = archive.entries().unwrap().map(|e| e.unwrap());
    let entry = entries.find(|e| e.path().unwrap().to_str() == Some(name)).unwrap_or_else(|| panic!("no {name}"));
    entry.raw_file_position()
}

/// `(80.1 MB)` of the import's last line: the bytes this run copied.
fn copied_bytes(run: &Run) -> u64 {
    let line = run.stdout.lines().find(|l| l.contains("this run copied")).unwrap_or_else(|| panic!("{}", run.stdout));
    let human = line.split("blobs (").nth(1).unwrap().split(')').next().unwrap();
    let (number, unit) = human.split_once(' ').unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other}"),
    };
    (number.parse::<f64>().unwrap() * scale) as u64
}

#[test]
fn full_then_incremental_bundles_keep_an_air_gapped_secondary_identical() {
    let mut env = Env::new("bundle-cycle");
    let shared = oci_image(3, &[400_000]);
    env.p.push_image("air/app", "v1", &oci_image(1, &[300_000, 200_000]));
    env.p.push_image("air/app", "v2", &docker_image(2, &[250_000]));
    env.p.push_image("air/app", "lib", &shared);
    env.p.push_large_image("air/app", "big", 6, 20 << 20);
    env.p.push_image("air/lib", "v1", &shared);
    env.p.push_image("air/lib", "v1-alias", &shared);
    env.p.push_image("air/lib", "old", &oci_image(4, &[100_000]));
    env.p.push_image("air/multi", "latest", &oci_index(5));
    // A repository the secondary holds and the primary never will.
    env.s.push_image("air/gone", "v1", &oci_image(7, &[10_000]));

    // Full bundle, written without the secondary (export never contacts
    // registry.url); the primary goes away; the import fills the secondary.
    env.secondary.stop();
    let (full, run) = export(&env, "full.tar", &[]);
    env.secondary.restart();
    let id = bundle_id(&run);
    let sums = std::fs::read_to_string(env.path("full.tar.sha256")).unwrap();
    let hex: String = Sha256::digest(std::fs::read(&full).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sums, format!("{hex}  full.tar\n"), "the checksum to carry with it");
    env.primary.stop();
    let started = Instant::now();
    let run = env.georeg(&["import", full.to_str().unwrap()]);
    run.assert_ok();
    let full_import = started.elapsed();
    assert!(run.stdout.contains(&format!("bundle {id} imported")), "{}", run.stdout);
    env.primary.restart();
    let repos = ["air/app", "air/lib", "air/multi"];
    for repo in repos {
        env.assert_in_sync(repo);
        assert_eq!(env.sync_state(repo).0, "synced", "{repo}");
    }
    let tags: i64 = env.state().query_row("SELECT COUNT(*) FROM tags", [], |r| r.get(0)).unwrap();
    assert_eq!(tags, 8, "every tag recorded as a sync records it");
    let status = env.georeg(&["status"]);
    status.assert_ok();
    assert!(status.stdout.contains(&format!("last bundle: {id} from {}", env.primary.url)), "{}", status.stdout);
    let json = env.georeg(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["last_bundle"]["id"], id.as_str());
    assert!(v["last_bundle"]["age_seconds"].as_i64().unwrap() < 600);
    let run = env.georeg(&["verify", "--bundle", full.to_str().unwrap(), "air/app", "air/lib", "air/multi"]);
    run.assert_ok();

    // The primary moves on: a push, a new repository, tags deleted (one of
    // them a sibling of a tag that stays).
    env.p.push_image("air/app", "v3", &oci_image(8, &[50_000]));
    env.p.push_image("air/new", "v1", &oci_image(9, &[60_000]));
    env.p.delete_tag("air/lib", "v1-alias");
    env.p.delete_tag("air/lib", "old");
    env.p.push_image("air/multi", "latest", &oci_image(10, &[20_000]));

    let inventory = env.path("inventory.json");
    env.georeg(&["inventory", "--output", inventory.to_str().unwrap()]).assert_ok();
    // What the secondary lacks, without writing a bundle.
    let files = std::fs::read_dir(env.path("")).unwrap().count();
    let run = env.georeg(&["export", "--inventory", inventory.to_str().unwrap(), "--dry-run"]);
    assert_eq!(run.code, 1, "it lacks something: {}\n{}", run.stdout, run.stderr);
    for want in [
        "air/app: 1 tag missing (v3); a bundle carries 1 manifest and 2 blobs (",
        "air/new: 1 tag missing (v1); a bundle carries 1 manifest and 2 blobs (",
        "air/lib: 2 tags to remove (old, v1-alias)",
        "air/multi: 1 tag at another digest (latest); a bundle carries 1 manifest and 2 blobs (",
        "air/gone: the primary no longer has it: 1 tag to remove",
        "lacks something in 5 of 5 repositories: 2 tags missing, 1 at another digest, 3 to remove; a bundle would \
         carry 3 manifests and 6 blobs (",
    ] {
        assert!(run.stdout.contains(want), "{want}: {}", run.stdout);
    }
    assert_eq!(std::fs::read_dir(env.path("")).unwrap().count(), files, "a dry run writes nothing");
    let (incremental, run) = export(&env, "incremental.tar", &["--inventory", inventory.to_str().unwrap()]);
    assert!(run.stdout.contains("2 tags and 1 repository to remove"), "{}", run.stdout);
    let (full2, _) = export(&env, "full2.tar", &[]);
    let (small, whole) = (size(&incremental), size(&full2));
    eprintln!(
        "bundles: full {} bytes, incremental {small} bytes ({:.2} % of a full one now, {whole} bytes); full import \
         {full_import:?}",
        size(&full),
        small as f64 * 100.0 / whole as f64
    );
    assert!(small * 50 < whole, "the incremental bundle ({small} bytes) is not much smaller than a full one ({whole})");

    env.primary.stop();
    let run = env.georeg(&["import", incremental.to_str().unwrap()]);
    run.assert_ok();
    env.primary.restart();
    for repo in ["air/app", "air/lib", "air/multi", "air/new"] {
        env.assert_in_sync(repo);
    }
    let lib = env.s.tag_digests("air/lib");
    assert_eq!(lib.keys().collect::<Vec<_>>(), ["v1"], "the sibling tag stays, the deleted ones go");
    assert_eq!(lib["v1"], shared.digest);
    assert!(env.s.tag_digests("air/gone").is_empty(), "the repository gone from the primary has no tags left");
    env.georeg(&["inventory", "--output", inventory.to_str().unwrap()]).assert_ok();
    let run = env.georeg(&["export", "--inventory", inventory.to_str().unwrap(), "--dry-run"]);
    assert_eq!(run.code, 0, "it lacks nothing now: {}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("lacks something in 0 of"), "{}", run.stdout);

    // verify --bundle: proves it without the primary, and catches a change.
    env.primary.stop();
    let run = env.georeg(&["verify", "--bundle", incremental.to_str().unwrap()]);
    run.assert_ok();
    assert!(run.stdout.contains("air/app: holds what the bundle says"), "{}", run.stdout);
    let verified: String = env
        .state()
        .query_row("SELECT verification_state FROM repositories WHERE name = 'air/app'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verified, "succeeded");
    env.s.delete_tag("air/app", "v2");
    let run = env.georeg(&["verify", "--bundle", incremental.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("air/app: FAILED") && run.stdout.contains("tag v2"), "{}", run.stdout);
    assert!(run.stdout.contains("air/lib: holds what the bundle says"), "{}", run.stdout);
}

#[test]
fn a_flipped_byte_in_a_blob_fails_the_import_naming_it_and_nothing_referencing_it_is_pushed() {
    let mut env = Env::new("bundle-flip");
    let good = oci_image(10, &[100_000]);
    let bad = oci_image(11, &[300_000]);
    env.p.push_image("flip/app", "good", &good);
    env.p.push_image("flip/app", "bad", &bad);
    env.p.push_image("flip/other", "v1", &oci_image(12, &[20_000]));
    let (path, _) = export(&env, "b.tar", &[]);
    let layer = sha256(&bad.blobs[1]);
    let at = offset_in_tar(&path, &format!("blobs/sha256/{}", layer.trim_start_matches("sha256:"))) + 150_000;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    env.primary.stop();

    let run = env.georeg(&["import", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let line =
        run.stdout.lines().find(|l| l.starts_with("flip/app: FAILED")).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains(&layer) && line.contains("did not match its digest"), "{line}");
    assert_eq!(env.s.digest("flip/app", "bad"), None, "the tag referencing the damaged blob was not pushed");
    assert!(!env.s.blob_exists("flip/app", &layer), "the damaged blob was never completed");
    assert_eq!(env.s.digest("flip/app", "good").as_deref(), Some(good.digest.as_str()), "the other tag was");
    assert!(env.s.digest("flip/other", "v1").is_some(), "and the other repository");
    let (state, failure) = env.sync_state("flip/app");
    assert_eq!(state, "failed");
    assert!(failure.unwrap().contains(&layer));
    assert!(run.stdout.contains("not imported completely"), "{}", run.stdout);
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("bundle import not finished"), "{}", status.stdout);
    // Damaged bytes stay damaged: a second run fails the same way.
    let again = env.georeg(&["import", path.to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(!env.s.blob_exists("flip/app", &layer));
    env.primary.restart();
}

#[test]
fn an_import_killed_with_kill_9_finishes_when_run_again_without_copying_twice() {
    let mut env = Env::new("bundle-kill");
    let repos: Vec<String> = (0..3).map(|i| format!("kill/r{i}")).collect();
    for (i, repo) in repos.iter().enumerate() {
        env.p.push_large_image(repo, "big", 20 + i as u64, 40 << 20);
        env.p.push_image(repo, "small", &oci_image(30 + i as u64, &[50_000]));
    }
    let (path, _) = export(&env, "b.tar", &[]);
    env.primary.stop();

    let mut child = env.spawn("import-killed", &["import", path.to_str().unwrap()]);
    // Part-way: a large blob's chunks are recorded in the state file.
    poll_until("the import to copy part of a large blob", Duration::from_secs(60), Duration::from_millis(5), || {
        assert!(child.try_wait().unwrap().is_none(), "the import ended before it could be killed mid-way");
        let conn = env.state();
        conn.query_row("SELECT COUNT(*) FROM uploads WHERE bytes_done > 0", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let run = env.georeg(&["import", path.to_str().unwrap()]);
    run.assert_ok();
    let total: u64 = 3 * (40 << 20);
    let copied = copied_bytes(&run);
    eprintln!("after kill -9: the second run copied {copied} of {total}+ bytes\n{}", run.stderr);
    assert!(copied < total, "the second run copied {copied} bytes, all over again");
    env.primary.restart();
    for repo in &repos {
        env.assert_in_sync(repo);
        assert_eq!(env.sync_state(repo).0, "synced", "{repo}");
    }
    assert!(env.started_rows().is_empty(), "rows left claimed: {:?}", env.started_rows());
    let uploads: i64 = env.state().query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get(0)).unwrap();
    assert_eq!(uploads, 0, "no chunked copy left half-done");
}

#[test]
fn a_200_mb_layer_exports_and_imports_in_flat_memory() {
    let mut env = Env::new("bundle-memory");
    let layer = env.p.push_large_image("mem/big", "v1", 60, 200 * 1000 * 1000);
    let path = env.path("b.tar");
    let started = Instant::now();
    let (run, export_kb) = crate::support::run_measured(&env, &["export", "--output", path.to_str().unwrap()]);
    run.assert_ok();
    let exported = started.elapsed();
    env.primary.stop();
    let started = Instant::now();
    let (run, import_kb) = crate::support::run_measured(&env, &["import", path.to_str().unwrap()]);
    run.assert_ok();
    let imported = started.elapsed();
    eprintln!(
        "a 200 MB layer: export {exported:?}, peak RSS {export_kb} KiB; import {imported:?} ({:.0} MB/s), peak RSS \
         {import_kb} KiB",
        200.0 / imported.as_secs_f64()
    );
    assert!(export_kb < 64 * 1024, "export peak RSS {export_kb} KiB, must stay under 64 MiB");
    assert!(import_kb < 64 * 1024, "import peak RSS {import_kb} KiB, must stay under 64 MiB");
    assert!(env.s.blob_exists("mem/big", &layer));
    env.primary.restart();
    env.assert_in_sync("mem/big");
}

#[test]
fn a_bundle_for_another_primary_or_older_than_the_last_is_refused_unless_forced() {
    let env = Env::new("bundle-refuse");
    env.p.push_image("ref/app", "v1", &oci_image(40, &[10_000]));
    let (older, _) = export(&env, "older.tar", &[]);
    env.p.push_image("ref/app", "v2", &oci_image(41, &[10_000]));
    let (newer, _) = export(&env, "newer.tar", &[]);
    let want = env.p.tag_digests("ref/app");

    // Not beside a running daemon: it owns the state file.
    env.start_secondary_daemon();
    let run = env.georeg(&["import", newer.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("georeg serve") && run.stderr.contains("stop it for the import"), "{}", run.stderr);
    env.take_secondary_daemon().terminate();

    env.georeg(&["import", newer.to_str().unwrap()]).assert_ok();
    let run = env.georeg(&["import", older.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refused") && run.stderr.contains("--force-older"), "{}", run.stderr);
    assert_eq!(env.s.tag_digests("ref/app"), want, "nothing changed");
    env.georeg(&["import", "--force-older", older.to_str().unwrap()]).assert_ok();
    assert_eq!(env.s.tags("ref/app"), ["v1"], "forced: the older state, as the operator asked");
    env.georeg(&["import", newer.to_str().unwrap()]).assert_ok();
    assert_eq!(env.s.tag_digests("ref/app"), want);

    env.route_primary_through("http://127.0.0.1:9");
    let run = env.georeg(&["import", newer.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!("exported from the primary registry {}", env.primary.url))
            && run.stderr.contains("--force-primary"),
        "{}",
        run.stderr
    );
    env.georeg(&["import", "--force-primary", newer.to_str().unwrap()]).assert_ok();
    let forced: String =
        env.state().query_row("SELECT forced FROM bundles WHERE forced IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert!(forced.contains("--force-primary") || forced.contains("--force-older"), "{forced}");
}

#[test]
fn referrers_the_primary_lists_only_through_its_api_travel_in_a_bundle() {
    use crate::support::referrers::ReferrersProxy;
    use crate::support::shapes::referrer;
    let mut env = Env::new("bundle-referrers");
    let image = oci_image(40, &[50_000]);
    let signature = referrer(41, &image, "application/vnd.dev.cosign.artifact.sig.v1+json");
    let sbom_signature = referrer(42, &signature, "application/vnd.dev.cosign.artifact.sig.v1+json");
    env.p.push_image("signed/app", "v1", &image);
    // Pushed by digest, without fallback tags: only the referrers API
    // reaches them, which a test double in front of distribution 2.8 serves.
    env.p.push_image("signed/app", &signature.digest, &signature);
    env.p.push_image("signed/app", &sbom_signature.digest, &sbom_signature);
    assert_eq!(env.p.tags("signed/app"), ["v1"]);
    let proxy = ReferrersProxy::start(env.primary.url.trim_start_matches("http://"));
    proxy.set(&image, &[&signature]);
    proxy.set(&signature, &[&sbom_signature]);
    env.route_primary_through(&proxy.url);

    let (path, run) = export(&env, "b.tar", &[]);
    assert!(run.stdout.contains("1 tags, 2 referrers"), "{}", run.stdout);
    env.primary.stop();
    let run = env.georeg(&["import", path.to_str().unwrap()]);
    run.assert_ok();
    assert!(run.stdout.contains("2 referrers copied"), "{}", run.stdout);
    for r in [&signature, &sbom_signature] {
        let (bytes, _) = env.s.manifest("signed/app", &r.digest).expect("the referrer is on the secondary");
        assert_eq!(bytes, r.manifest, "byte for byte");
        assert_eq!(env.s.digest("signed/app", &r.digest).as_deref(), Some(r.digest.as_str()));
    }
    assert_eq!(env.s.tags("signed/app"), ["v1"], "no tag was made up for them");

    let verify = |env: &Env| env.georeg(&["verify", "--bundle", path.to_str().unwrap()]);
    let run = verify(&env);
    run.assert_ok();
    assert!(run.stdout.contains("signed/app: holds what the bundle says (1 tag and 2 referrers)"), "{}", run.stdout);
    // A referrer lost on the secondary is a difference, named.
    env.s.delete_manifest("signed/app", &sbom_signature.digest);
    let run = verify(&env);
    assert_eq!(run.code, 1, "{run}");
    let named = format!("referrer {} {}: secondary missing", signature.digest, sbom_signature.digest);
    assert!(run.stdout.contains("signed/app: FAILED") && run.stdout.contains(&named), "{}", run.stdout);
    env.primary.restart();
}

#[test]
fn a_bundle_older_than_bundle_max_age_hours_turns_an_air_gapped_node_unhealthy_until_a_new_one_comes() {
    use crate::dr::{get, metric};
    let mut env = Env::new("bundle-age");
    env.add_replication("enabled = false");
    env.p.push_image("age/app", "v1", &oci_image(1, &[30_000]));
    // Exported nine days ago (SOURCE_DATE_EPOCH dates it), imported now:
    // the copy is older than the default 192 hours.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exported = now - 9 * 24 * 3600;
    let old = env.path("old.tar");
    let run = std::process::Command::new(crate::support::georeg_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["export", "--output", old.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", exported.to_string())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let id = bundle_id(&Run::of(run));
    env.primary.stop();
    env.georeg(&["import", old.to_str().unwrap()]).assert_ok();
    assert!(env.s.digest("age/app", "v1").is_some(), "imported");

    let status = env.georeg(&["status"]);
    let line = status.stdout.lines().find(|l| l.contains("unhealthy:")).unwrap_or_else(|| panic!("{}", status.stdout));
    assert!(
        line.contains(&id) && line.contains("exported 216 h ago") && line.contains("replication.bundle_max_age_hours"),
        "{line}"
    );
    env.start_secondary_daemon();
    let api: serde_json::Value = serde_json::from_str(&get(&format!("{}/api/v1/status", env.url()))).unwrap();
    assert_eq!(api["healthy"], false, "{api}");
    assert!(api["health_message"].as_str().unwrap().contains(&id), "{api}");
    assert_eq!(metric(&env, "georeg_bundle_last_export_timestamp_seconds"), exported as f64);
    let imported = metric(&env, "georeg_bundle_last_import_timestamp_seconds");
    assert!(imported >= (now - 5) as f64 && imported <= (now + 600) as f64, "imported at {imported}, now {now}");
    drop(env.take_secondary_daemon());

    // A fresh bundle carried across: healthy again.
    env.primary.restart();
    let (fresh, _) = export(&env, "fresh.tar", &[]);
    env.primary.stop();
    env.georeg(&["import", fresh.to_str().unwrap()]).assert_ok();
    let status = env.georeg(&["status"]);
    assert!(!status.stdout.contains("unhealthy"), "{}", status.stdout);
    env.primary.restart();
}
