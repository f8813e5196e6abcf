//! Nothing wrong copied, nothing silently missing, no registry harmed:
//! each test produces, against the real registry, a way the secondary
//! could end up different from the primary without georeg saying so.

use std::time::Duration;

use crate::support::oci::{self, oci_image};
use crate::support::referrers::ReferrersProxy;
use crate::support::{wait_until, Env, Mode, SECRET};

const DEADLINE: Duration = Duration::from_secs(60);

/// Posts a notification envelope to the secondary georeg, as the primary
/// registry would.
fn notify(env: &Env, events: serde_json::Value) {
    let body = serde_json::json!({ "events": events }).to_string();
    let resp = ureq::post(&format!("{}/api/v4/container_registry_event/events", env.url()))
        .set("Authorization", SECRET)
        .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
        .send_string(&body)
        .unwrap_or_else(|e| panic!("notify georeg: {e}"));
    assert_eq!(resp.status(), 200);
}

fn push_event(id: &str, repo: &str, tag: Option<&str>, digest: &str) -> serde_json::Value {
    let mut target = serde_json::json!({
        "mediaType": oci::OCI_MANIFEST,
        "digest": digest,
        "repository": repo,
        "url": format!("http://127.0.0.1:1/v2/{repo}/manifests/{digest}"),
    });
    if let Some(tag) = tag {
        target["tag"] = tag.into();
    }
    serde_json::json!({"id": id, "action": "push", "target": target})
}

fn failure_of(env: &Env, repo: &str) -> String {
    env.sync_state(repo).1.unwrap_or_default()
}

#[test]
fn a_manifest_damaged_on_the_primary_is_not_copied_by_an_event() {
    let env = Env::new("damaged-manifest");
    env.p.push_image("app", "v1", &oci_image(1, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // v2 is pushed, then its manifest is damaged in the primary's storage
    // before georeg reads it by tag.
    let v2 = oci_image(2, &[1000]);
    env.p.push_image("app", "v2", &v2);
    let path = env.primary.blob_data_path(&v2.digest);
    // Still valid JSON (the registry parses it), but not the bytes stored:
    // one hex digit of the config's digest changes.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"sha256:").unwrap() + 7;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();
    notify(&env, serde_json::json!([push_event("e-v2", "app", Some("v2"), &v2.digest)]));
    wait_until("the sync of app to fail", DEADLINE, || env.sync_state("app").0 == "failed");
    let why = failure_of(&env, "app");
    assert!(why.contains("did not match its digest") && why.contains(&v2.digest), "{why}");
    assert_eq!(env.s.digest("app", "v2"), None, "nothing damaged reaches the secondary");
    assert_eq!(env.s.digest("app", "v1").as_deref(), Some(oci_image(1, &[1000]).digest.as_str()));
}

#[test]
fn a_pushed_tag_that_does_not_resolve_yet_is_retried_not_taken_for_deleted() {
    let env = Env::new("unresolved-tag");
    env.p.push_image("app", "v1", &oci_image(3, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // The event arrives long before the tag resolves on the primary.
    let late = oci_image(4, &[1000]);
    notify(&env, serde_json::json!([push_event("e-late", "app", Some("late"), &late.digest)]));
    wait_until("the sync to fail for the unresolved tag", DEADLINE, || {
        failure_of(&env, "app").contains("does not resolve on the primary")
    });
    assert_ne!(env.sync_state("app").0, "synced");
    // Once the tag is there, the retry (a full comparison) copies it.
    env.p.push_image("app", "late", &late);
    wait_until("late on the secondary", DEADLINE, || env.s.digest("app", "late").is_some());
    env.wait_in_sync("app", DEADLINE);
}

#[test]
fn a_pushed_tag_not_written_yet_is_copied_ahead_by_digest() {
    let env = Env::new("ahead-of-tag");
    env.p.push_image("app", "v1", &oci_image(3, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // As distribution does it: the manifest is stored (readable by digest)
    // and notified before its tag link is written.
    let next = oci_image(7, &[1000, 2000]);
    env.p.push_image("app", &next.digest, &next);
    notify(&env, serde_json::json!([push_event("e-next", "app", Some("next"), &next.digest)]));
    wait_until("the sync to give up on the tag for now", DEADLINE, || {
        failure_of(&env, "app").contains("does not resolve on the primary")
    });
    // The image is on the secondary already, by digest; only the tag waits.
    assert_eq!(env.s.digest("app", &next.digest).as_deref(), Some(next.digest.as_str()));
    assert_eq!(env.s.digest("app", "next"), None, "no tag the primary does not have");
    env.p.put_manifest("app", "next", &next.media_type, &next.manifest);
    wait_until("next on the secondary", DEADLINE, || env.s.digest("app", "next").is_some());
    env.wait_in_sync("app", DEADLINE);
}

#[test]
fn a_tag_read_racing_the_registrys_write_of_it_is_asked_again_not_failed() {
    let env = Env::new("racing-tag");
    let proxy = ReferrersProxy::start(env.primary.url.trim_start_matches("http://"));
    env.route_primary_through(&proxy.url);
    env.p.push_image("app", "v1", &oci_image(3, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    let next = oci_image(8, &[1000]);
    env.p.push_image("app", "next", &next);
    // Distribution answers 500 to a read of a tag whose link it is writing.
    proxy.race_tag_writes(2);
    notify(&env, serde_json::json!([push_event("e-next", "app", Some("next"), &next.digest)]));
    wait_until("next on the secondary", DEADLINE, || env.s.digest("app", "next").is_some());
    env.wait_in_sync("app", DEADLINE);
    assert_eq!(proxy.races_left(), 0, "both racing reads happened");
    let metrics = ureq::get(&format!("{}/metrics", env.url())).call().unwrap().into_string().unwrap();
    assert!(
        metrics.lines().any(|l| l == "georeg_sync_failures_total 0"),
        "a read racing the tag's write is not a failed sync:\n{metrics}"
    );
}

#[test]
fn a_repository_delete_event_does_not_drop_the_rest_of_its_batch() {
    let env = Env::new("repo-delete-batch");
    env.p.push_image("app", "v1", &oci_image(5, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // A manifest pushed by digest only: no tag listing shows it.
    let loose = oci_image(6, &[1000]);
    env.p.push_image("app", &loose.digest, &loose);
    let delete_repo = serde_json::json!({"id": "e-del", "action": "delete", "target": {"repository": "app"}});
    notify(&env, serde_json::json!([delete_repo, push_event("e-loose", "app", None, &loose.digest)]));
    wait_until("the untagged manifest on the secondary", DEADLINE, || {
        env.s.digest("app", &loose.digest).as_deref() == Some(loose.digest.as_str())
    });
    env.assert_in_sync("app");
}

#[test]
fn events_obey_selective_sync_and_a_changed_selection_applies_at_start() {
    let env = Env::with_mode("selective-events", Mode::Direct);
    env.add_replication("exclude = [\"secret/**\"]");
    env.start_daemons();
    env.p.push_image("secret/app", "v1", &oci_image(7, &[1000]));
    env.p.push_image("team/app", "v1", &oci_image(8, &[1000]));
    env.wait_in_sync("team/app", DEADLINE);
    wait_until("the secret event stored", DEADLINE, || {
        env.state()
            .query_row("SELECT COUNT(*) FROM events WHERE repository = 'secret/app'", [], |r| r.get::<_, i64>(0))
            .unwrap()
            > 0
    });
    // Give the workers the same chance they had with team/app.
    env.p.push_image("team/other", "v1", &oci_image(9, &[1000]));
    env.wait_in_sync("team/other", DEADLINE);
    assert!(env.s.tags("secret/app").is_empty(), "an excluded repository was copied");
    let excluded: bool =
        env.state().query_row("SELECT excluded FROM repositories WHERE name = 'secret/app'", [], |r| r.get(0)).unwrap();
    assert!(excluded);

    // The selection changes while georeg is stopped: rows follow it at start.
    env.take_secondary_daemon().terminate();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace("exclude = [\"secret/**\"]", "include = [\"secret/**\"]")).unwrap();
    env.start_secondary_daemon();
    env.wait_in_sync("secret/app", DEADLINE);
    let team_excluded: bool =
        env.state().query_row("SELECT excluded FROM repositories WHERE name = 'team/app'", [], |r| r.get(0)).unwrap();
    assert!(team_excluded, "team/app is outside the new include");
}

#[test]
fn an_event_sync_reads_the_tags_it_touched_again_before_calling_it_synced() {
    let env = Env::new("touched-again");
    env.p.push_image("app", "v0", &oci_image(10, &[1000]));
    env.start_secondary_daemon();
    env.wait_in_sync("app", DEADLINE);
    // v1 is pushed with a large layer; while georeg copies it, v1 moves on
    // the primary (and that event is lost).
    let layer = env.p.push_large_image("app", "v1", 11, 300 << 20);
    let big = env.p.digest("app", "v1").unwrap();
    notify(&env, serde_json::json!([push_event("e-big", "app", Some("v1"), &big)]));
    wait_until("the copy of the large layer to start", DEADLINE, || {
        env.state()
            .query_row("SELECT sync_state FROM repositories WHERE name = 'app'", [], |r| r.get::<_, String>(0))
            .unwrap()
            == "started"
    });
    let small = oci_image(12, &[1000]);
    env.p.push_image("app", "v1", &small);
    wait_until("the difference to be found", DEADLINE, || {
        failure_of(&env, "app").contains("read again after the sync")
    });
    assert_ne!(env.sync_state("app").0, "synced", "never synced with v1 different on the two registries");
    // The full comparison that follows repairs it.
    wait_until("v1 repaired", DEADLINE, || env.s.digest("app", "v1").as_deref() == Some(small.digest.as_str()));
    env.wait_in_sync("app", DEADLINE);
    assert!(env.s.blob_exists("app", &layer), "the large layer was copied whole");
}

#[test]
fn georeg_check_on_a_primary_writes_nothing_to_its_registry() {
    let env = Env::with_mode("check-primary", Mode::Follow);
    let out = std::process::Command::new(crate::support::georeg_bin())
        .arg("--config")
        .arg(env.primary_config())
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("may read it, catalog included (a primary's is never written to)"), "{stdout}");
    let log = std::fs::read_to_string(&env.primary.log).unwrap();
    let writes: Vec<&str> =
        log.lines().filter(|l| ["\"POST ", "\"PUT ", "\"PATCH ", "\"DELETE "].iter().any(|m| l.contains(m))).collect();
    assert!(writes.is_empty(), "georeg check wrote to the primary registry: {writes:?}");
}

#[test]
fn a_secondary_that_refuses_deletes_keeps_the_tag_and_says_what_to_enable() {
    let mut env = Env::new("no-deletes");
    let v1 = oci_image(13, &[1000]);
    env.p.push_image("app", "v1", &v1);
    env.p.push_image("app", "v2", &oci_image(14, &[1000]));
    env.georeg(&["sync", "app"]).assert_ok();
    env.secondary.set_deletes(false);
    env.p.delete_tag("app", "v1");
    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("storage.delete.enabled"), "{}", run.stdout);
    assert_eq!(env.s.digest("app", "v1").as_deref(), Some(v1.digest.as_str()), "v1 was left as it was");
    env.secondary.set_deletes(true);
    env.georeg(&["sync", "app"]).assert_ok();
    env.assert_in_sync("app");
}

fn gap_message(env: &Env) -> Option<String> {
    env.state().query_row("SELECT gap_message FROM cursor", [], |r| r.get(0)).unwrap_or(None)
}

#[test]
fn a_follower_that_lost_events_says_so_and_compares_everything() {
    let env = Env::with_mode("log-gap", Mode::Follow);
    env.start_daemons();
    env.p.push_image("early/app", "v1", &oci_image(20, &[1000]));
    env.wait_in_sync("early/app", DEADLINE);
    // While the secondary is down, events go into the primary's log, and
    // the primary prunes them before the secondary reads them.
    env.take_secondary_daemon().terminate();
    env.p.push_image("early/app", "v2", &oci_image(21, &[1000]));
    env.p.push_image("late/app", "v1", &oci_image(22, &[1000]));
    wait_until("the primary to log the pushes", DEADLINE, || {
        env.primary_state().query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap() >= 3
    });
    env.primary_state().execute("DELETE FROM events WHERE id < (SELECT MAX(id) FROM events)", []).unwrap();
    env.start_secondary_daemon();
    wait_until("the gap to be recorded", DEADLINE, || gap_message(&env).is_some_and(|m| m.contains("were pruned")));
    env.wait_in_sync("early/app", DEADLINE);
    env.wait_in_sync("late/app", DEADLINE);
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("event log: lost its place at"), "{}", status.stdout);
    let log = env.daemons.borrow().iter().find(|d| d.name == "secondary").unwrap().log_text();
    assert!(log.contains("queued for a full comparison"), "{log}");
}

#[test]
fn a_rebuilt_primary_log_is_read_from_its_start_not_skipped() {
    let env = Env::with_mode("log-epoch", Mode::Follow);
    env.start_daemons();
    for i in 0..3 {
        env.p.push_image("app", &format!("v{i}"), &oci_image(30 + i, &[1000]));
    }
    env.wait_in_sync("app", DEADLINE);
    // The primary georeg's state file is lost and made anew: its log
    // starts again at id 1, below the secondary's cursor.
    env.take_daemon("primary").terminate();
    std::fs::remove_file(env.path("primary-state.sqlite3")).unwrap();
    for ext in ["-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(env.path(&format!("primary-state.sqlite3{ext}")));
    }
    env.start_primary_daemon();
    env.p.push_image("app", "after", &oci_image(40, &[1000]));
    wait_until("the tag pushed after the rebuild on the secondary", DEADLINE, || {
        env.s.digest("app", "after").is_some()
    });
    env.wait_in_sync("app", DEADLINE);
    assert!(gap_message(&env).is_some_and(|m| m.contains("another one")), "{:?}", gap_message(&env));
}
