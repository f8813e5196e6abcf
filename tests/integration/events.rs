//! `georeg serve`: event-driven replication from real registry
//! notifications, in both modes, and the notification endpoint's contract.

use std::time::Duration;

use crate::support::oci::{docker_image, oci_image, oci_index, sha256};
use crate::support::{wait_until, Env, Mode, SECRET};

const DEADLINE: Duration = Duration::from_secs(60);
const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";

fn post(url: &str, auth: Option<&str>, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut req =
        ureq::post(&format!("{url}/api/v4/container_registry_event/events")).set("Content-Type", content_type);
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    match req.send_bytes(body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST to georeg: {e}"),
    }
}

fn event_count(env: &Env) -> i64 {
    env.state().query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap()
}

fn push_event(id: &str, repo: &str, tag: &str) -> String {
    serde_json::json!({"events": [{
        "id": id,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:66651c6130ab580fd1fb5c873a79bbf4c2cccb7c12e0d139b65781b9e6159a18",
            "repository": repo,
            "tag": tag,
            "url": format!("http://127.0.0.1:1/v2/{repo}/manifests/sha256:66651c6130ab580fd1fb5c873a79bbf4c2cccb7c12e0d139b65781b9e6159a18"),
        }
    }]})
    .to_string()
}

fn replicates_pushes_and_deletes(mode: Mode) {
    let env = Env::with_mode(&format!("events-{mode:?}").to_lowercase(), mode);
    env.start_daemons();
    env.p.push_image("group/app", "v1", &oci_image(100, &[2000, 3000]));
    env.wait_in_sync("group/app", DEADLINE);
    env.p.push_image("group/app", "multi", &oci_index(101));
    env.p.push_image("group/app", "v2", &oci_image(100, &[2000, 3000])); // sibling of v1
    wait_until("multi and v2 on the secondary", DEADLINE, || env.s.tags("group/app").len() == 3);
    env.wait_in_sync("group/app", DEADLINE);
    env.p.delete_tag("group/app", "v1");
    wait_until("v1 to disappear from the secondary", DEADLINE, || env.s.tags("group/app") == vec!["multi", "v2"]);
    env.assert_in_sync("group/app");
}

#[test]
fn direct_notifications_replicate_pushes_and_deletes() {
    replicates_pushes_and_deletes(Mode::Direct);
}

#[test]
fn following_a_primary_georeg_replicates_pushes_and_deletes() {
    replicates_pushes_and_deletes(Mode::Follow);
}

#[test]
fn stopped_secondary_catches_up_from_its_cursor() {
    let env = Env::with_mode("catch-up", Mode::Follow);
    env.start_daemons();
    env.p.push_image("app", "v1", &oci_image(110, &[1000]));
    env.wait_in_sync("app", DEADLINE);
    let (took, status) = env.take_secondary_daemon().terminate();
    assert!(status.success() && took < Duration::from_secs(10), "stopped in {took:?} with {status}");
    // Pushes while the secondary is down reach the primary georeg's log only.
    for i in 0..5 {
        env.p.push_image(&format!("team/r{i}"), "v1", &docker_image(120 + i, &[500]));
    }
    env.p.push_image("app", "v2", &oci_image(111, &[1000]));
    let primary_state = rusqlite::Connection::open(env.path("primary-state.sqlite3")).unwrap();
    wait_until("the primary georeg to log the pushes", DEADLINE, || {
        primary_state.query_row("SELECT COUNT(DISTINCT repository) FROM events", [], |r| r.get::<_, i64>(0)).unwrap()
            >= 6
    });
    env.start_secondary_daemon();
    for i in 0..5 {
        env.wait_in_sync(&format!("team/r{i}"), DEADLINE);
    }
    env.wait_in_sync("app", DEADLINE);
    // The cursor reached the end of the primary's log.
    let last: i64 = primary_state.query_row("SELECT MAX(id) FROM events", [], |r| r.get(0)).unwrap();
    wait_until("the cursor to reach the primary's last event", DEADLINE, || {
        env.state().query_row("SELECT last_event_id FROM cursor", [], |r| r.get::<_, i64>(0)).unwrap() == last
    });
}

/// Waits until the daemon reports bytes of the repository being copied.
fn wait_copy_under_way(env: &Env, repo: &str) {
    wait_until(&format!("the copy of {repo} to be under way"), DEADLINE, || {
        let Ok(resp) = ureq::get(&format!("{}/api/v1/status", env.url())).call() else { return false };
        let status: serde_json::Value = serde_json::from_reader(resp.into_reader()).unwrap_or_default();
        status["copying"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["repository"] == repo && c["bytes"].as_u64() > Some(0))
    });
}

#[test]
fn kill_during_a_large_copy_then_restart_converges() {
    let env = Env::with_mode("kill9", Mode::Direct);
    env.start_daemons();
    // A layer large enough that the copy is still running when the kill lands.
    env.p.push_large_image("big", "v1", 7, 150 * 1000 * 1000);
    wait_copy_under_way(&env, "big");
    env.take_secondary_daemon().kill9();
    assert!(env.s.tags("big").is_empty(), "the kill landed before the copy finished");
    env.start_secondary_daemon();
    env.wait_in_sync("big", DEADLINE);
    wait_until("big recorded as synced", DEADLINE, || env.sync_state("big").0 == "synced");
}

#[test]
fn sigterm_mid_copy_leaves_nothing_started() {
    let env = Env::with_mode("sigterm", Mode::Direct);
    env.start_daemons();
    env.p.push_large_image("big", "v1", 9, 150 * 1000 * 1000);
    wait_copy_under_way(&env, "big");
    let (took, status) = env.take_secondary_daemon().terminate();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let started: i64 = env
        .state()
        .query_row("SELECT COUNT(*) FROM repositories WHERE sync_state = 'started'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(started, 0, "nothing left started after a clean stop");
    env.start_secondary_daemon();
    env.wait_in_sync("big", DEADLINE);
}

#[test]
fn endpoint_authenticates_validates_and_deduplicates() {
    let env = Env::with_mode("endpoint", Mode::Direct);
    env.start_daemons();
    let url = format!("http://127.0.0.1:{}", env.port);
    let body = push_event("e-1", "group/app", "v1");

    assert_eq!(post(&url, None, ENVELOPE, body.as_bytes()).0, 401);
    assert_eq!(post(&url, Some("WrongSecret"), ENVELOPE, body.as_bytes()).0, 401);
    assert_eq!(post(&url, Some(&format!("Bearer {SECRET}")), ENVELOPE, body.as_bytes()).0, 401);
    assert_eq!(event_count(&env), 0, "nothing stored without the secret");

    let (code, text) = post(&url, Some(SECRET), ENVELOPE, b"{\"events\": [");
    assert_eq!(code, 400);
    assert!(text.contains("malformed JSON"), "{text}");
    let (code, text) = post(&url, Some(SECRET), ENVELOPE, b"{\"foo\": 1}");
    assert_eq!(code, 400);
    assert!(text.contains("events"), "{text}");
    // Oversized bodies: tests/integration/hostile.rs.
    assert_eq!(event_count(&env), 0);

    for sample in ["pull-index", "push-blob"] {
        let bytes =
            std::fs::read(format!("{}/tests/data/notifications/{sample}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(post(&url, Some(SECRET), ENVELOPE, &bytes).0, 200, "{sample}");
    }
    let mount = br#"{"events":[{"id":"m-1","action":"mount","target":{"repository":"group/app","digest":"sha256:66651c6130ab580fd1fb5c873a79bbf4c2cccb7c12e0d139b65781b9e6159a18"}}]}"#;
    assert_eq!(post(&url, Some(SECRET), "application/json", mount).0, 200);
    assert_eq!(event_count(&env), 0, "pulls, mounts and blob pushes are not stored");

    assert_eq!(post(&url, Some(SECRET), ENVELOPE, body.as_bytes()).0, 200);
    assert_eq!(post(&url, Some(SECRET), "application/vnd.docker.distribution.events.v2+json", body.as_bytes()).0, 200);
    assert_eq!(event_count(&env), 1, "a duplicate delivery is stored once");
}

#[test]
fn concurrent_notifications_are_all_stored_exactly_once() {
    let env = Env::with_mode("load", Mode::Direct);
    // Replication paused: this measures the endpoint, not the copy engine.
    env.write_config(&crate::support::keys().pkcs1, "enabled = false\n");
    env.start_daemons();
    let url = format!("http://127.0.0.1:{}", env.port);
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 1000 / CLIENTS + 1;
    let started = std::time::Instant::now();
    let failures: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let url = url.clone();
                s.spawn(move || {
                    let mut bad = 0;
                    for i in 0..PER_CLIENT {
                        let body = push_event(&format!("load-{c}-{i}"), &format!("load/r{}", i % 50), "v1");
                        let (code, _) = post(&url, Some(SECRET), ENVELOPE, body.as_bytes());
                        if !(200..300).contains(&code) {
                            bad += 1;
                        }
                    }
                    bad
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let elapsed = started.elapsed();
    eprintln!("{} notifications from {CLIENTS} clients in {elapsed:?}", CLIENTS * PER_CLIENT);
    assert_eq!(failures, 0, "every notification answered 2xx");
    assert_eq!(event_count(&env), (CLIENTS * PER_CLIENT) as i64, "each stored exactly once");
    let distinct: i64 = env.state().query_row("SELECT COUNT(DISTINCT event_id) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(distinct, (CLIENTS * PER_CLIENT) as i64);
}

#[test]
fn primary_log_requires_a_token_signed_with_the_shared_key() {
    let env = Env::with_mode("log-auth", Mode::Follow);
    env.start_daemons();
    let url = format!("http://127.0.0.1:{}/api/v1/events?after=0", env.primary_port);
    let status = |auth: Option<String>| {
        let mut req = ureq::get(&url);
        if let Some(a) = auth {
            req = req.set("Authorization", &a);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some("Bearer not.a.jwt".into())), 401);
    let signer = &crate::support::keys().signer;
    let wrong_audience = signer.sign("container_registry", "s", Duration::from_secs(60), &[]).text;
    assert_eq!(status(Some(format!("Bearer {wrong_audience}"))), 401);
    let other_key = georeg::registry::token::Signer::new(
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap(),
        crate::support::registry::ISSUER,
    );
    let forged = other_key.sign("georeg", "s", Duration::from_secs(60), &[]).text;
    assert_eq!(status(Some(format!("Bearer {forged}"))), 401);
    let good = signer.sign("georeg", "s", Duration::from_secs(60), &[]).text;
    assert_eq!(status(Some(format!("Bearer {good}"))), 200);
}

/// Requests georeg made to a registry, from its access log.
fn georeg_requests(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        // Replication's requests: reconciliation's say so in their User-Agent.
        .filter(|l| l.contains("\"georeg/") && l.contains("HTTP/1.1\"") && !l.contains("(reconcile)"))
        .map(String::from)
        .collect()
}

/// georeg's requests after the first `skip`, up to the verification that
/// follows every sync (it starts by listing the repository's tags).
fn copy_requests(log: &std::path::Path, skip: usize) -> Vec<String> {
    georeg_requests(log)
        .into_iter()
        .skip(skip)
        .take_while(|l| !l.contains("/tags/list"))
        // The health check's ping (every report interval) is not the copy's.
        .filter(|l| !l.contains("\"GET /v2/ HTTP"))
        .collect()
}

#[test]
fn one_push_into_a_large_repository_costs_a_handful_of_requests() {
    let env = Env::with_mode("proportional", Mode::Direct);
    env.start_daemons();
    let image = oci_image(130, &[1000]);
    for i in 0..300 {
        env.p.push_image("many", &format!("t{i:04}"), &image);
    }
    // Let the 300 notifications arrive and be applied before measuring.
    wait_until("300 events applied", DEADLINE, || {
        env.state()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM events) = 300 AND sync_state = 'synced'
                        AND events_done_through = (SELECT MAX(id) FROM events)
                        AND verification_state IN ('succeeded', 'failed')
                 FROM repositories WHERE name = 'many'",
                [],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(false)
    });
    env.assert_in_sync("many");
    let (before_p, before_s) = (georeg_requests(&env.primary.log).len(), georeg_requests(&env.secondary.log).len());
    env.p.push_image("many", "new", &oci_image(131, &[1000]));
    wait_until("the new tag on the secondary", DEADLINE, || env.s.digest("many", "new").is_some());
    wait_until("the sync to be recorded", DEADLINE, || env.sync_state("many").0 == "synced");
    let on_primary = copy_requests(&env.primary.log, before_p);
    let on_secondary = copy_requests(&env.secondary.log, before_s);
    eprintln!(
        "one new tag in a 300-tag repository: {} requests to the primary, {} to the secondary",
        on_primary.len(),
        on_secondary.len()
    );
    // On the primary: the manifest GET (again while the registry is still
    // writing the tag it announced), the 2 blob GETs, and the HEAD that
    // reads the tag again after the copy. On the secondary: per blob one
    // POST (a mount that opens the upload when the blob is missing) and its
    // PUT, the manifest PUT, and the HEAD that reads the tag again. 10
    // requests in all. When the first read of the tag comes before the
    // registry wrote it, the image is copied ahead by the event's digest
    // meanwhile: one GET by digest on the primary and one PUT by digest on
    // the secondary more.
    let blob_gets = on_primary.iter().filter(|l| l.contains("GET /v2/many/blobs/")).count();
    assert_eq!(blob_gets, 2, "{on_primary:#?}");
    let ahead = on_secondary.iter().filter(|l| l.contains("PUT /v2/many/manifests/sha256:")).count();
    assert!(ahead <= 1, "{on_secondary:#?}");
    assert!(on_primary.len() <= 6 + ahead, "{on_primary:#?}");
    let heads = |lines: &[String]| lines.iter().filter(|l| l.contains("HEAD /v2/many/manifests/new")).count();
    assert_eq!((heads(&on_primary), heads(&on_secondary)), (1, 1), "{on_primary:#?}\n{on_secondary:#?}");
    assert_eq!(on_secondary.len(), 6 + ahead, "{on_secondary:#?}");
    assert_eq!(env.s.tags("many").len(), 301);
}

/// The registry notifies each blob as it lands, before the client pushes
/// the manifest: georeg lands those blobs on the secondary at once, so
/// that the manifest's event leaves only the manifest to put. Selective
/// sync still holds.
fn blobs_land_ahead_of_their_manifest(mode: Mode) {
    let env = Env::with_mode(&format!("events-ahead-{mode:?}").to_lowercase(), mode);
    env.add_replication("exclude = [\"private/**\"]");
    env.start_daemons();
    let image = oci_image(300, &[200_000, 300_000]);
    let private = env.p.push_blob("private/app", &image.blobs[1]);
    for blob in &image.blobs {
        env.p.push_blob("ahead/app", blob);
    }
    wait_until("the blobs on the secondary, before any manifest", DEADLINE, || {
        image.blobs.iter().all(|b| env.s.blob_exists("ahead/app", &sha256(b)))
    });
    assert!(env.s.tags("ahead/app").is_empty());
    assert!(!env.s.blob_exists("private/app", &private), "an excluded repository's blob landed ahead");
    env.p.put_manifest("ahead/app", "v1", &image.media_type, &image.manifest);
    env.wait_in_sync("ahead/app", DEADLINE);
    assert_eq!(crate::dr::metric(&env, "georeg_blobs_landed_ahead_total"), 3.0);
    let log = env.take_secondary_daemon().log_text();
    let synced = log.lines().find(|l| l.contains("ahead/app: synced")).unwrap_or_else(|| panic!("{log}"));
    assert!(synced.contains("0 blobs copied") && synced.contains("3 already present"), "{synced}");
    assert!(!env.s.blob_exists("private/app", &private));

    // A push abandoned before its manifest: its blob lands, and the state
    // file records it nowhere (only a manifest's sync records blobs).
    env.start_secondary_daemon();
    let orphan = env.p.push_blob("orphan/app", &oci_image(301, &[50_000]).blobs[1]);
    wait_until("the orphan blob on the secondary", DEADLINE, || env.s.blob_exists("orphan/app", &orphan));
    let rows: i64 =
        env.state().query_row("SELECT COUNT(*) FROM blobs WHERE digest = ?1", [&orphan], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0, "a blob landed ahead was recorded without its manifest");
}

#[test]
fn direct_notifications_land_blobs_ahead_of_their_manifest() {
    blobs_land_ahead_of_their_manifest(Mode::Direct);
}

#[test]
fn a_primary_georeg_passes_blob_pushes_on_to_its_followers() {
    blobs_land_ahead_of_their_manifest(Mode::Follow);
}
