//! Deletions held back on an air-gapped secondary: a transfer bundle that
//! no longer lists a tag asks for its deletion exactly as the primary
//! would, and with `replication.delete_delay_hours` the import holds it.
//! It is applied once due by the next import that still lists it as gone,
//! or by an operator without asking the primary (which such a node cannot
//! reach). The primary registry is stopped during every import and every
//! operator command.

use crate::support::oci::oci_image;
use crate::support::{Env, Run};

fn bundle_id(run: &Run) -> String {
    let line = run.stdout.lines().find(|l| l.starts_with("bundle ")).unwrap_or_else(|| panic!("{}", run.stdout));
    line["bundle ".len()..].split(':').next().unwrap().to_string()
}

/// Exports a full bundle, then imports it with the primary registry stopped.
fn carry(env: &mut Env, name: &str) -> (String, Run) {
    let path = env.path(name);
    let export = env.georeg(&["export", "--output", path.to_str().unwrap()]);
    export.assert_ok();
    env.primary.stop();
    let import = env.georeg(&["import", path.to_str().unwrap()]);
    (bundle_id(&export), import)
}

/// `(id, tag, state)` of each deletion `georeg deletions --json` lists.
fn held(env: &Env) -> Vec<(i64, String, String, Option<String>)> {
    let run = env.georeg(&["deletions", "--json"]);
    run.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["tag"].as_str().unwrap_or_default().into(),
                r["state"].as_str().unwrap().into(),
                r["bundle"].as_str().map(String::from),
            )
        })
        .collect()
}

/// Moves the held deletions a day and more into the past, seen and due,
/// as if the 24-hour delay had run out.
fn age_held(env: &Env) {
    let aged = "UPDATE deletions SET seen_at = '2000-01-01T00:00:00Z', applies_at = '2000-01-02T00:00:00Z'
                WHERE state = 'held'";
    env.state().execute(aged, []).unwrap();
}

#[test]
fn an_import_holds_the_deletions_its_bundle_asks_for_until_the_delay_or_an_operator() {
    let mut env = Env::new("dr-import");
    env.add_replication("delete_delay_hours = 24");
    env.add_replication("delete_burst_min_tags = 2");
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        env.p.push_image("air/app", tag, &oci_image(980 + i as u64, &[400]));
    }
    let (_, import) = carry(&mut env, "full.tar");
    import.assert_ok();
    env.primary.restart();
    env.assert_in_sync("air/app");

    // The primary loses two of its three tags; the next bundle says so.
    env.p.delete_tag("air/app", "v1");
    env.p.delete_tag("air/app", "v2");
    let (second, import) = carry(&mut env, "second.tar");
    import.assert_ok();
    assert!(import.stdout.contains("2 deletions held"), "{}", import.stdout);
    assert_eq!(env.s.tags("air/app"), ["v1", "v2", "v3"], "the import removed nothing");
    let list = held(&env);
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|d| d.2 == "held" && d.3.as_deref() == Some(second.as_str())), "{list:?}");
    let text = env.georeg(&["deletions"]);
    assert!(text.stdout.contains(&format!("held: tag removed (import of bundle {second})")), "{}", text.stdout);
    // The bundle proves the copy, the held tags expected.
    let run = env.georeg(&["verify", "--bundle", env.path("second.tar").to_str().unwrap()]);
    run.assert_ok();
    assert!(run.stdout.contains("2 tags whose deletion is held back or cancelled left out"), "{}", run.stdout);
    // Two of three tags at once: the burst alarm.
    let status = env.georeg(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(v["deletions"]["burst"].as_str().is_some_and(|b| b.contains("burst")), "{}", status.stdout);

    // An operator applies one, with the primary out of reach.
    let v1 = list.iter().find(|d| d.1 == "v1").unwrap().0.to_string();
    let run = env.georeg(&["deletions", "--apply", &v1]);
    run.assert_ok();
    assert!(run.stdout.contains("removed from the secondary"), "{}", run.stdout);
    assert_eq!(env.s.tags("air/app"), ["v2", "v3"]);

    // The other one's delay runs out (aged in the state file): an import
    // that still lists it as gone applies it; before that nothing does.
    age_held(&env);
    env.primary.restart();
    let (_, import) = carry(&mut env, "third.tar");
    import.assert_ok();
    assert_eq!(env.s.tags("air/app"), ["v3"], "{}", import.stdout);
    assert!(held(&env).is_empty());
    env.primary.restart();
    env.assert_in_sync("air/app");
}

#[test]
fn a_held_deletion_whose_tag_a_later_bundle_lists_again_is_dropped() {
    let mut env = Env::new("dr-import-back");
    env.add_replication("delete_delay_hours = 24");
    let image = oci_image(990, &[400]);
    env.p.push_image("air/app", "v1", &image);
    env.p.push_image("air/app", "v2", &oci_image(991, &[400]));
    carry(&mut env, "full.tar").1.assert_ok();
    env.primary.restart();
    env.p.delete_tag("air/app", "v1");
    carry(&mut env, "second.tar").1.assert_ok();
    assert_eq!(held(&env).len(), 1);
    env.primary.restart();
    env.p.push_image("air/app", "v1", &image);
    age_held(&env);
    carry(&mut env, "third.tar").1.assert_ok();
    assert_eq!(env.s.tags("air/app"), ["v1", "v2"], "the tag the bundle lists again stays");
    let state: String = env.state().query_row("SELECT state FROM deletions", [], |r| r.get(0)).unwrap();
    assert_eq!(state, "dropped");
}
