//! Disaster recovery against real registries: deletions held back
//! (`replication.delete_delay_hours`) and what operators do with them, the
//! burst alarm, `georeg failover-check`, and drills that find a blob
//! damaged in the secondary's storage for the resync to repair.

use std::time::Duration;

use crate::support::oci::{self, oci_image};
use crate::support::{wait_until, Env, Mode};

const DEADLINE: Duration = Duration::from_secs(60);

/// The deletions `georeg deletions --json` lists, as (id, repository, tag or digest, state).
pub(super) fn deletions(env: &Env) -> Vec<(i64, String, String, String)> {
    let run = env.georeg(&["deletions", "--json"]);
    run.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let what = r["tag"].as_str().or(r["digest"].as_str()).unwrap_or_default();
            (
                r["id"].as_i64().unwrap(),
                r["repository"].as_str().unwrap().into(),
                what.into(),
                r["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn id_of(list: &[(i64, String, String, String)], repo: &str, what: &str) -> String {
    let row = list.iter().find(|r| r.1 == repo && r.2 == what).unwrap_or_else(|| panic!("{repo} {what} in {list:?}"));
    row.0.to_string()
}

pub(super) fn get(url: &str) -> String {
    match ureq::get(url).call() {
        Ok(r) => r.into_string().unwrap(),
        Err(ureq::Error::Status(_, r)) => r.into_string().unwrap(),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

pub(super) fn status_json(env: &Env) -> serde_json::Value {
    serde_json::from_str(&get(&format!("{}/api/v1/status", env.url()))).unwrap()
}

/// A metric's value from `/metrics`.
pub(super) fn metric(env: &Env, name: &str) -> f64 {
    let text = get(&format!("{}/metrics", env.url()));
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {text}"));
    line[name.len() + 1..].parse().unwrap()
}

#[test]
fn held_deletions_stay_on_the_secondary_until_applied_and_siblings_survive() {
    let env = Env::new("dr-held");
    env.add_replication("delete_delay_hours = 24");
    let shared = oci_image(900, &[700]);
    env.p.push_image("app", "v1", &shared);
    env.p.push_image("app", "latest", &shared);
    env.p.push_image("app", "v2", &oci_image(901, &[700]));
    env.p.push_image("gone/app", "a", &oci_image(902, &[500]));
    env.p.push_image("gone/app", "b", &oci_image(903, &[500]));
    env.georeg(&["sync", "app", "gone/app"]).assert_ok();

    // The primary loses a tag, and a whole repository.
    env.p.delete_tag("app", "v1");
    std::fs::remove_dir_all(env.primary.root.join("docker/registry/v2/repositories/gone/app")).unwrap();
    let run = env.georeg(&["sync", "app", "gone/app"]);
    run.assert_ok();
    assert!(run.stdout.contains("app: synced") && run.stdout.contains("1 deletions held"), "{}", run.stdout);
    assert!(run.stdout.contains("2 deletions held"), "{}", run.stdout);
    assert_eq!(env.s.tags("app"), ["latest", "v1", "v2"], "the tag stays on the secondary");
    assert_eq!(env.s.tags("gone/app"), ["a", "b"], "the repository stays on the secondary");
    assert_eq!(env.s.digest("app", "v1"), Some(shared.digest.clone()));

    // Listed, each with when it was seen and when it applies: a day later.
    let run = env.georeg(&["deletions"]);
    run.assert_ok();
    for want in [
        "ID",
        "REPOSITORY",
        "SEEN AT",
        "APPLIES AT",
        "tag v1 (sha256:",
        "held: tag removed",
        "held: repository emptied",
    ] {
        assert!(run.stdout.contains(want), "{want}: {}", run.stdout);
    }
    let list = deletions(&env);
    assert_eq!(list.len(), 3, "{list:?}");
    let hours: Vec<f64> = env
        .state()
        .prepare("SELECT (julianday(applies_at) - julianday(seen_at)) * 24 FROM deletions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(hours.iter().all(|h| (h - 24.0).abs() < 0.01), "{hours:?}");
    // A repository whose only differences are held deletions is verified.
    let run = env.georeg(&["verify", "app", "gone/app"]);
    run.assert_ok();
    assert!(run.stdout.contains("whose deletion is held back or cancelled left out"), "{}", run.stdout);
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("deletions: 3 held (3 tags), the next applies at"), "{}", status.stdout);
    // A second comparison holds nothing new.
    env.georeg(&["sync", "app", "gone/app"]).assert_ok();
    assert_eq!(deletions(&env).len(), 3);

    // Applied early: the tag goes, its sibling at the same digest stays.
    let run = env.georeg(&["deletions", "--apply", &id_of(&list, "app", "v1")]);
    run.assert_ok();
    assert!(
        run.stdout.contains("app tag v1 (sha256:") && run.stdout.contains("removed from the secondary"),
        "{}",
        run.stdout
    );
    assert_eq!(env.s.tags("app"), ["latest", "v2"]);
    assert_eq!(env.s.digest("app", "latest"), Some(shared.digest.clone()));
    assert_eq!(env.s.tags("gone/app"), ["a", "b"], "the other deletions wait");
    let run = env.georeg(&["deletions", "--apply", "--all"]);
    run.assert_ok();
    assert_eq!(run.stdout.matches("removed from the secondary").count(), 2, "{}", run.stdout);
    assert!(env.s.tags("gone/app").is_empty());
    assert!(env.georeg(&["deletions"]).stdout.contains("no deletions held back"));
    env.assert_in_sync("app");
    let again = env.georeg(&["deletions", "--apply", "999"]);
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(again.stdout.contains("999: FAILED: no held deletion has this ID"), "{}", again.stdout);
}

#[test]
fn cancelled_deletions_are_kept_and_verification_passes() {
    let env = Env::new("dr-cancel");
    env.add_replication("delete_delay_hours = 24");
    let old = oci_image(905, &[600]);
    env.p.push_image("app", "old", &old);
    env.p.push_image("app", "v2", &oci_image(906, &[600]));
    env.georeg(&["sync", "app"]).assert_ok();
    env.p.delete_tag("app", "old");
    env.georeg(&["sync", "app"]).assert_ok();

    let run = env.georeg(&["deletions", "--cancel", "--all"]);
    run.assert_ok();
    assert!(
        run.stdout.contains("app tag old (sha256:") && run.stdout.contains("cancelled: kept on the secondary"),
        "{}",
        run.stdout
    );
    assert_eq!(deletions(&env).iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["cancelled"]);
    // Kept through further comparisons, and expected by verification.
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(run.stdout.contains("1 deletions cancelled by an operator, kept"), "{}", run.stdout);
    assert_eq!(env.s.tags("app"), ["old", "v2"]);
    assert_eq!(env.s.digest("app", "old"), Some(old.digest.clone()));
    let run = env.georeg(&["verify", "app"]);
    run.assert_ok();
    assert!(run.stdout.contains("app: verified"), "{}", run.stdout);
    let run = env.georeg(&["deletions", "--apply", "--all"]);
    run.assert_ok();
    assert!(run.stdout.contains("no deletions held back: nothing applied"), "{}", run.stdout);
    let check = env.georeg(&["failover-check"]);
    assert!(check.stdout.contains("note cancelled_deletions: 1 deletions cancelled"), "{}", check.stdout);

    // Pushed again on the primary, the tag follows the primary once more,
    // and the digest it kept is held like any overwrite.
    let new = oci_image(907, &[600]);
    env.p.push_image("app", "old", &new);
    env.georeg(&["sync", "app"]).assert_ok();
    assert_eq!(env.s.digest("app", "old"), Some(new.digest.clone()));
    let list = deletions(&env);
    assert_eq!(
        list.iter().map(|r| (r.2.as_str(), r.3.as_str())).collect::<Vec<_>>(),
        [("old", "held")],
        "the cancelled deletion is done with; what the tag left is an overwrite held: {list:?}"
    );
    let backup = format!("georeg-kept-sha256-{}", old.digest.trim_start_matches("sha256:"));
    assert_eq!(env.s.digest("app", &backup), Some(old.digest.clone()));
    env.georeg(&["verify", "app"]).assert_ok();
}

#[test]
fn a_burst_of_deletions_makes_the_node_unhealthy_while_the_copy_is_whole() {
    let env = Env::with_mode("dr-burst", Mode::Direct);
    env.add_replication("delete_delay_hours = 24\ndelete_burst_min_tags = 5");
    env.start_daemons();
    let images: Vec<_> = (0..12).map(|i| oci_image(910 + i, &[100])).collect();
    for (i, image) in images.iter().enumerate() {
        env.p.push_image("burst/app", &format!("t{i}"), image);
    }
    wait_until("12 tags on the secondary", DEADLINE, || env.s.tags("burst/app").len() == 12);
    env.wait_in_sync("burst/app", DEADLINE);
    assert_eq!(status_json(&env)["healthy"], true);

    // Most of the repository vanishes on the primary at once.
    for image in &images[..10] {
        env.p.delete_manifest("burst/app", &image.digest);
    }
    wait_until("the burst alarm", DEADLINE, || {
        let s = status_json(&env);
        s["healthy"] == false && s["health_message"].as_str().unwrap_or("").contains("burst of deletions")
    });
    let s = status_json(&env);
    let message = s["health_message"].as_str().unwrap();
    assert!(message.contains("of burst/app") && message.contains("georeg deletions"), "{message}");
    wait_until("ten deletions held", DEADLINE, || metric(&env, "georeg_deletions_held") == 10.0);
    assert_eq!(env.s.tags("burst/app").len(), 12, "the copy is still whole");
    assert_eq!(metric(&env, "georeg_deletion_burst"), 1.0);
    assert!(metric(&env, "georeg_deletions_next_apply_timestamp_seconds") > 0.0);
    let status = env.georeg(&["status"]);
    assert!(status.stdout.contains("unhealthy: burst of deletions"), "{}", status.stdout);
    let dashboard = get(&format!("{}/admin/geo/nodes", env.url()));
    assert!(dashboard.contains("Disaster recovery") && dashboard.contains("burst of deletions"), "{dashboard}");

    // An operator decides: keep them. The alarm clears.
    let run = env.georeg(&["deletions", "--cancel", "--all"]);
    run.assert_ok();
    assert_eq!(run.stdout.matches("cancelled: kept").count(), 10, "{}", run.stdout);
    wait_until("healthy again", DEADLINE, || status_json(&env)["healthy"] == true);
    assert_eq!(metric(&env, "georeg_deletion_burst"), 0.0);
    assert_eq!(metric(&env, "georeg_deletions_cancelled"), 10.0);
    let run = env.georeg(&["verify", "burst/app"]);
    run.assert_ok();
    assert_eq!(env.s.tags("burst/app").len(), 12);
}

#[test]
fn failover_check_exits_1_while_a_repository_fails_and_0_once_synced_and_verified() {
    let env = Env::new("dr-failover");
    let image = oci_image(920, &[4000]);
    env.p.push_image("app", "v1", &image);
    let path = env.primary.blob_data_path(&oci::sha256(&image.blobs[1]));
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(env.georeg(&["sync", "app"]).code, 1);

    let run = env.georeg(&["failover-check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("LOSS failing: 1 repository failing: app since")), "{}", run.stdout);
    assert!(lines.last().unwrap().starts_with("NOT READY"), "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&env.georeg(&["failover-check", "--json"]).stdout).unwrap();
    assert_eq!(json["ready"], false);
    assert!(
        json["findings"].as_array().unwrap().iter().any(|f| f["check"] == "failing" && f["loss"] == true),
        "{json}"
    );
    let status: serde_json::Value = serde_json::from_str(&env.georeg(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["failover"]["ready"], false);

    // Repaired on the primary and synced (with the primary's catalog read:
    // nothing new there): still unproved until verified.
    std::fs::write(&path, &good).unwrap();
    env.georeg(&["backfill"]).assert_ok();
    let run = env.georeg(&["failover-check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("LOSS unverified: 1 repository not verified"), "{}", run.stdout);
    env.georeg(&["verify", "app"]).assert_ok();
    let run = env.georeg(&["failover-check"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("LOSS"), "{}", run.stdout);
    assert_eq!(run.stdout.lines().last(), Some("ready: nothing would be lost if the primary vanished now"));
    let json: serde_json::Value = serde_json::from_str(&env.georeg(&["failover-check", "--json"]).stdout).unwrap();
    assert_eq!(json["ready"], true);
}

#[test]
fn a_drill_finds_a_blob_damaged_in_the_secondarys_storage_and_the_resync_repairs_it() {
    let env = Env::new("dr-drill");
    let image = oci_image(930, &[60_000, 80_000]);
    let (rotten, lost) = (oci::sha256(&image.blobs[1]), oci::sha256(&image.blobs[2]));
    env.p.push_image("app", "v1", &image);
    env.p.push_image("other", "v1", &oci_image(931, &[1000]));
    let run = env.georeg(&["drill"]);
    run.assert_ok();
    assert!(run.stdout.contains("nothing to drill"), "{}", run.stdout);
    assert!(env.georeg(&["status"]).stdout.contains("last drill: none yet"), "no empty drill is recorded");
    // A signature under its fallback tag (distribution 2.8 has no referrers API).
    let signed = oci_image(932, &[1000]);
    let signature = crate::support::shapes::referrer(933, &signed, "application/vnd.dev.cosign.artifact.sig.v1+json");
    env.p.push_image("signed/app", "v1", &signed);
    env.p.push_image("signed/app", &format!("sha256-{}", signed.digest.trim_start_matches("sha256:")), &signature);
    env.georeg(&["sync", "app", "other", "signed/app"]).assert_ok();
    let run = env.georeg(&["drill", "--sample", "10"]);
    run.assert_ok();
    assert!(
        run.stdout.lines().any(|l| l.starts_with("app:v1: 1 manifests, 3 blobs") && l.ends_with("whole")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("signed/app:v1: 2 manifests"), "the referrer is pulled too: {}", run.stdout);
    assert_eq!(run.stdout.lines().count(), 4, "every tag, fallback tag included: {}", run.stdout);

    // A byte rots in the secondary's storage: the drill finds it, names it,
    // records it and queues a resync.
    let path = env.secondary.blob_data_path(&rotten);
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let run = env.georeg(&["drill"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!("app:v1: FAILED: blob {rotten} on the secondary")), "{}", run.stdout);
    assert!(run.stdout.contains("did not match its digest"), "{}", run.stdout);
    assert!(run.stderr.contains("full sync queued for app"), "{}", run.stderr);
    let (failures, first): (i64, String) = env
        .state()
        .query_row("SELECT failures, first_failing_digest FROM drills ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((failures, first.as_str()), (1, rotten.as_str()));
    assert_eq!(env.sync_state("app").0, "pending", "a resync is queued");
    let status = env.georeg(&["status"]);
    assert!(
        status.stdout.contains(&format!("FAILED for 1 of 4 tags; first failing digest {rotten}")),
        "{}",
        status.stdout
    );
    let check = env.georeg(&["failover-check"]);
    assert!(check.code == 1 && check.stdout.contains("LOSS drill_failed"), "{}", check.stdout);

    // The resync copies it again; distribution keeps the bytes it stored,
    // so the repository fails saying which file to delete.
    let run = env.georeg(&["sync", "app"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let hex = rotten.trim_start_matches("sha256:");
    assert!(run.stdout.contains("still reads back damaged"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("docker/registry/v2/blobs/sha256/{}/{hex}", &hex[..2])), "{}", run.stdout);
    // The operator deletes it from the storage, as told; the next resync repairs it.
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(run.stdout.contains("1 damaged blobs or manifests repaired"), "{}", run.stdout);
    assert_eq!(env.s.blob("app", &rotten).map(|b| oci::sha256(&b)), Some(rotten.clone()));
    env.georeg(&["drill"]).assert_ok();

    // A blob the storage lost altogether: the resync alone restores it.
    std::fs::remove_dir_all(env.secondary.blob_data_path(&lost).parent().unwrap()).unwrap();
    let run = env.georeg(&["drill"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains(&format!("app:v1: FAILED: blob {lost} on the secondary")), "{}", run.stdout);
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(run.stdout.contains("1 damaged blobs or manifests repaired"), "{}", run.stdout);
    assert_eq!(env.s.blob("app", &lost).map(|b| oci::sha256(&b)), Some(lost.clone()));
    let unrepaired: i64 = env
        .state()
        .query_row("SELECT COUNT(*) FROM drill_failures WHERE repaired_at IS NULL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unrepaired, 0);

    // The daemon drills by itself, and says so in /metrics and on the dashboard.
    env.add_replication("drill_interval_seconds = 5");
    env.georeg(&["verify", "app", "other", "signed/app"]).assert_ok();
    env.start_daemons();
    wait_until("a scheduled drill", DEADLINE, || {
        env.state()
            .query_row("SELECT COUNT(*) FROM drills WHERE trigger = 'schedule'", [], |r| r.get::<_, i64>(0))
            .unwrap()
            > 0
    });
    assert!(metric(&env, "georeg_drill_last_success_timestamp_seconds") > 0.0);
    assert_eq!(metric(&env, "georeg_drill_failures"), 0.0);
    assert_eq!(metric(&env, "georeg_failover_ready"), 1.0);
    let dashboard = get(&format!("{}/admin/geo/nodes", env.url()));
    assert!(dashboard.contains("Last drill") && dashboard.contains("Passed"), "{dashboard}");
}

#[test]
fn the_daemon_applies_deletions_when_their_delay_runs_out_or_an_operator_asks() {
    let env = Env::with_mode("dr-daemon", Mode::Direct);
    env.add_replication("delete_delay_hours = 1");
    env.start_daemons();
    let images: Vec<_> = (0..3).map(|i| oci_image(940 + i, &[300])).collect();
    for (i, image) in images.iter().enumerate() {
        env.p.push_image("app", &format!("v{i}"), image);
    }
    env.wait_in_sync("app", DEADLINE);
    env.p.delete_manifest("app", &images[0].digest);
    env.p.delete_manifest("app", &images[1].digest);
    wait_until("two deletions held", DEADLINE, || deletions(&env).len() == 2);
    assert_eq!(env.s.tags("app"), ["v0", "v1", "v2"]);
    // Each names the tag it takes off the secondary, not only a digest.
    let run = env.georeg(&["deletions"]);
    let short = |d: &str| d[..19].to_string();
    for (i, image) in images[..2].iter().enumerate() {
        let want = format!("manifest {} (tag v{i})", short(&image.digest));
        assert!(run.stdout.contains(&want), "{want}:\n{}", run.stdout);
    }

    // Asked while the daemon runs: it applies the deletion, the command follows.
    let list = deletions(&env);
    let run = env.georeg(&["deletions", "--apply", &id_of(&list, "app", &images[0].digest)]);
    run.assert_ok();
    assert!(run.stderr.contains("georeg serve") && run.stdout.contains("removed from the secondary"), "{}", run.stdout);
    assert_eq!(env.s.tags("app"), ["v1", "v2"]);

    // The other one's hour runs out (aged in the state file): the daemon applies it.
    env.state().execute("UPDATE deletions SET applies_at = '2000-01-01T00:00:00Z' WHERE state = 'held'", []).unwrap();
    wait_until("the due deletion applied", DEADLINE, || env.s.tags("app") == ["v2"]);
    env.assert_in_sync("app");
    let state: String = env
        .state()
        .query_row("SELECT state || ' by ' || decided_by FROM deletions WHERE digest = ?1", [&images[1].digest], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state, "applied by delay");
}

#[test]
fn applying_a_deletion_in_an_excluded_repository_answers_at_once_with_the_reason() {
    let env = Env::with_mode("dr-excluded", Mode::Direct);
    env.add_replication("delete_delay_hours = 1");
    env.start_daemons();
    let (kept, gone) = (oci_image(950, &[300]), oci_image(951, &[300]));
    env.p.push_image("old/app", "v1", &kept);
    env.p.push_image("old/app", "v2", &gone);
    env.wait_in_sync("old/app", DEADLINE);
    env.p.delete_manifest("old/app", &gone.digest);
    wait_until("the deletion held", DEADLINE, || deletions(&env).len() == 1);
    let id = id_of(&deletions(&env), "old/app", &gone.digest);
    let applies_at = || -> String {
        env.state().query_row("SELECT applies_at FROM deletions WHERE id = ?1", [&id], |r| r.get(0)).unwrap()
    };
    let before = applies_at();

    // The operator narrows selective sync: georeg no longer touches
    // old/app, so nothing would ever apply the deletion.
    env.add_replication("exclude = [\"old/**\"]");
    for args in [vec!["deletions", "--apply", id.as_str()], vec!["deletions", "--apply", "--all"]] {
        let started = std::time::Instant::now();
        let run = env.georeg(&args);
        assert_eq!(run.code, 1, "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} waited {:?}", started.elapsed());
        assert!(
            run.stdout.contains(&format!("{id} old/app manifest"))
                && run.stdout.contains("FAILED: old/app is excluded by selective sync")
                && run.stdout.contains(&format!("georeg deletions --cancel {id}")),
            "{args:?}: {}",
            run.stdout
        );
    }
    assert_eq!(applies_at(), before, "the deletion was not marked due");
    assert_eq!(env.s.tags("old/app"), ["v1", "v2"], "nothing was removed");
}

#[test]
fn a_changed_delay_reschedules_held_deletions_and_says_so() {
    let env = Env::new("dr-redelay");
    env.add_replication("delete_delay_hours = 24");
    let (kept, gone) = (oci_image(960, &[300]), oci_image(961, &[300]));
    env.p.push_image("app", "v1", &kept);
    env.p.push_image("app", "v2", &gone);
    env.georeg(&["sync", "app"]).assert_ok();
    env.p.delete_tag("app", "v2");
    env.georeg(&["sync", "app"]).assert_ok();
    let delay = || -> f64 {
        env.state()
            .query_row("SELECT (julianday(applies_at) - julianday(seen_at)) * 24 FROM deletions", [], |r| r.get(0))
            .unwrap()
    };
    assert!((delay() - 24.0).abs() < 0.01);
    let set = |hours: u32| {
        let text = std::fs::read_to_string(&env.config).unwrap();
        let changed = text.lines().map(|l| match l.starts_with("delete_delay_hours") {
            true => format!("delete_delay_hours = {hours}"),
            false => l.to_string(),
        });
        std::fs::write(&env.config, changed.collect::<Vec<_>>().join("\n")).unwrap();
    };

    // Longer: what is held already is protected for the new delay too.
    set(72);
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("replication.delete_delay_hours is now 72: 1 held deletions (held 24 hours) rescheduled"),
        "{}",
        run.stderr
    );
    assert!((delay() - 72.0).abs() < 0.01, "{}", delay());
    assert_eq!(env.s.tags("app"), ["v1", "v2"]);

    // Off: the held deletion is due, and this sync applies it.
    set(0);
    let run = env.georeg(&["sync", "app"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("is now 0: 1 held deletions (held 72 hours) rescheduled")
            && run.stderr.contains("1 due now"),
        "{}",
        run.stderr
    );
    assert_eq!(env.s.tags("app"), ["v1"], "the due deletion was applied");
    env.assert_in_sync("app");
}
