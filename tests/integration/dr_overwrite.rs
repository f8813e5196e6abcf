//! Overwrites held back like deletions, against real registries: with
//! `replication.delete_delay_hours` set, a tag the primary moves moves on
//! the secondary at once, and the digest it left stays there under a
//! backup tag for the delay; a burst of them raises the alarm; applied, the
//! backup goes; cancelled, the tag goes back to its previous digest and
//! verification expects the difference.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dr::{deletions, metric, status_json};
use crate::support::oci::oci_image;
use crate::support::{wait_until, Env, Mode};

const DEADLINE: Duration = Duration::from_secs(60);
const REPO: &str = "pipeline/app";

/// The backup tag that keeps `digest`.
fn backup(digest: &str) -> String {
    format!("georeg-kept-sha256-{}", digest.trim_start_matches("sha256:"))
}

/// The secondary's digest of each of `tags`.
fn secondary_at(env: &Env, tags: &[String]) -> BTreeMap<String, Option<String>> {
    tags.iter().map(|t| (t.clone(), env.s.digest(REPO, t))).collect()
}

#[test]
fn a_burst_of_overwrites_raises_the_alarm_and_cancelling_puts_every_tag_back() {
    let env = Env::with_mode("dr-overwrite", Mode::Direct);
    env.add_replication("delete_delay_hours = 24\ndelete_burst_min_tags = 5");
    env.start_daemons();
    let tags: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let before: Vec<_> = (0..12).map(|i| oci_image(940 + i, &[300])).collect();
    for (tag, image) in tags.iter().zip(&before) {
        env.p.push_image(REPO, tag, image);
    }
    env.wait_in_sync(REPO, DEADLINE);
    assert_eq!(status_json(&env)["healthy"], true);

    // A broken pipeline overwrites ten of the twelve tags on the primary.
    let after: Vec<_> = (0..10).map(|i| oci_image(960 + i, &[301])).collect();
    for (tag, image) in tags.iter().zip(&after) {
        env.p.push_image(REPO, tag, image);
    }
    // The tags follow the primary at once; what they left stays, tagged.
    let moved: BTreeMap<String, Option<String>> = tags
        .iter()
        .zip(after.iter().map(|i| &i.digest).chain(before[10..].iter().map(|i| &i.digest)))
        .map(|(t, d)| (t.clone(), Some(d.clone())))
        .collect();
    wait_until("the tags to follow the primary", DEADLINE, || secondary_at(&env, &tags) == moved);
    wait_until("the burst alarm", DEADLINE, || {
        let s = status_json(&env);
        s["healthy"] == false && s["health_message"].as_str().unwrap_or("").contains("removed or overwritten")
    });
    wait_until("ten overwrites held", DEADLINE, || metric(&env, "georeg_deletions_held") == 10.0);
    for image in &before[..10] {
        assert_eq!(env.s.digest(REPO, &backup(&image.digest)), Some(image.digest.clone()), "kept under its backup tag");
    }
    let run = env.georeg(&["deletions"]);
    run.assert_ok();
    assert!(run.stdout.contains("tag t0 (was sha256:") && run.stdout.contains(", now sha256:"), "{}", run.stdout);
    assert_eq!(run.stdout.matches("held: tag overwritten").count(), 10, "{}", run.stdout);
    // Backup tags are expected: the repository verifies.
    env.georeg(&["verify", REPO]).assert_ok();

    // One overwrite was meant: applied, its backup tag goes.
    let list = deletions(&env);
    assert_eq!(list.len(), 10, "{list:?}");
    let t9 = list.iter().find(|r| r.2 == "t9").unwrap().0.to_string();
    let run = env.georeg(&["deletions", "--apply", &t9]);
    run.assert_ok();
    assert!(run.stdout.contains("is no longer kept on the secondary"), "{}", run.stdout);
    assert_eq!(env.s.digest(REPO, &backup(&before[9].digest)), None, "the backup tag of t9 is gone");

    // The rest were not: cancelled, every tag goes back to its previous digest.
    let run = env.georeg(&["deletions", "--cancel", "--all"]);
    run.assert_ok();
    assert_eq!(run.stdout.matches("the tag goes back to sha256:").count(), 9, "{}", run.stdout);
    let restored: BTreeMap<String, Option<String>> = tags
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), Some(if i == 9 { after[9].digest.clone() } else { before[i].digest.clone() })))
        .collect();
    wait_until("every tag put back", DEADLINE, || secondary_at(&env, &tags) == restored);
    for (i, image) in before[..9].iter().enumerate() {
        let (bytes, _) = env.s.manifest(REPO, &tags[i]).unwrap();
        assert_eq!(bytes, image.manifest, "{} pulls its previous manifest", tags[i]);
    }
    wait_until("the backup tags removed", DEADLINE, || env.s.tags(REPO).len() == 12);
    wait_until("healthy again", DEADLINE, || status_json(&env)["healthy"] == true);
    // The difference is expected, and stays: notifications and syncs leave it.
    env.georeg(&["verify", REPO]).assert_ok();
    env.georeg(&["sync", REPO]).assert_ok();
    assert_eq!(secondary_at(&env, &tags), restored);

    // The primary moves a put-back tag again: it follows the primary from
    // then on, and what it left is held like any overwrite.
    let again = oci_image(980, &[302]);
    env.p.push_image(REPO, "t0", &again);
    wait_until("t0 to follow the primary", DEADLINE, || env.s.digest(REPO, "t0").as_deref() == Some(&again.digest));
    assert_eq!(env.s.digest(REPO, &backup(&before[0].digest)), Some(before[0].digest.clone()));
    env.georeg(&["verify", REPO]).assert_ok();
}
