//! Registries that authenticate on their own terms: htpasswd (Basic),
//! token auth by a realm that is not georeg's, and none at all. Each
//! replicates with every digest equal on both sides, and no password
//! shows anywhere georeg writes.

use crate::support::oci::{docker_image, oci_image, oci_index};
use crate::support::token_server::{READER, WRITER};
use crate::support::{Env, Mode, Run, Side, BASIC_USER};

/// Pushes three repositories of different shapes to the primary.
fn push_corpus(env: &Env) -> [&'static str; 3] {
    env.p.push_image("team/app", "v1", &oci_image(1, &[1000, 2000]));
    env.p.push_image("team/app", "v2", &docker_image(2, &[3000]));
    env.p.push_image("team/multi", "latest", &oci_index(3));
    env.p.push_image("tools/cli", "1.0", &oci_image(4, &[500]));
    ["team/app", "team/multi", "tools/cli"]
}

/// No password in what georeg printed or stored.
fn assert_no_secret(env: &Env, runs: &[&Run], secrets: &[&str]) {
    let state = std::fs::read(env.path("state.sqlite3")).unwrap_or_default();
    let state = String::from_utf8_lossy(&state);
    for secret in secrets {
        for run in runs {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "a password printed: {run}");
        }
        assert!(!state.contains(secret), "a password in the state file");
    }
}

#[test]
fn htpasswd_registries_on_both_sides_replicate_with_basic_credentials() {
    let env = Env::with_auth("auth-basic", Side::Basic, Side::Basic);
    let repos = push_corpus(&env);
    let check = env.georeg(&["check"]);
    check.assert_ok();
    for line in check.stdout.lines().filter(|l| l.contains(" registry http")) {
        assert!(line.contains(&format!("authentication: Basic as \"{}\"", BASIC_USER.0)), "{line}");
    }
    assert!(check.stdout.contains("push allowed") && check.stdout.contains("delete allowed"), "{}", check.stdout);
    let backfill = env.georeg(&["backfill"]);
    backfill.assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
    }
    let verify = env.georeg(&["verify"]);
    verify.assert_ok();
    assert_no_secret(&env, &[&check, &backfill, &verify], &[BASIC_USER.1]);
}

#[test]
fn a_wrong_password_fails_naming_the_registry_and_the_keys_not_the_password() {
    let env = Env::with_auth("auth-basic-wrong", Side::Basic, Side::Basic);
    env.p.push_image("team/app", "v1", &oci_image(5, &[1000]));
    std::fs::write(env.path("primary-password"), "not-the-password-9\n").unwrap();
    let run = env.georeg(&["sync", "team/app"]);
    assert_ne!(run.code, 0, "{run}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(&env.primary.url) && all.contains("401"), "{run}");
    assert!(all.contains("replication.primary_username"), "{run}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path("primary-password"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = env.georeg(&["check"]);
    assert_eq!(check.code, 1, "{check}");
    assert!(check.stdout.contains("FAILED  primary registry"), "{check}");
    let warning = check.stdout.lines().find(|l| l.starts_with("WARNING replication.primary_password_file")).unwrap();
    assert!(warning.contains("readable by group or others (mode 0644)"), "{warning}");
    assert_no_secret(&env, &[&run, &check], &["not-the-password-9", BASIC_USER.1]);
}

#[test]
fn token_auth_by_a_realm_of_its_own_replicates_with_tokens_it_hands_out() {
    let env = Env::with_auth("auth-realm", Side::Token, Side::Token);
    let repos = push_corpus(&env);
    let realm = env.realm.as_ref().unwrap();
    let check = env.georeg(&["check"]);
    check.assert_ok();
    let wanted = format!("authentication: Bearer with realm {}", realm.realm);
    assert!(check.stdout.contains(&format!("{wanted} (service \"container_registry\") as \"writer\"")), "{check}");
    assert!(check.stdout.contains(&format!("{wanted} (service \"container_registry\") as \"reader\"")), "{check}");
    let backfill = env.georeg(&["backfill"]);
    backfill.assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
    }
    // Tokens are reused per scope, not asked for every request.
    let issued = realm.issued.load(std::sync::atomic::Ordering::SeqCst);
    let requests = env.secondary.requests_matching(&["/v2/"]) + env.primary.requests_matching(&["/v2/"]);
    assert!(issued * 3 < requests, "{issued} tokens for {requests} requests");
    // A deletion on the primary reaches the secondary with the writer's token.
    let v2 = env.p.digest("team/app", "v2").unwrap();
    env.p.delete_manifest("team/app", &v2);
    env.georeg(&["sync", "team/app"]).assert_ok();
    env.assert_in_sync("team/app");
    let verify = env.georeg(&["verify"]);
    verify.assert_ok();
    assert_no_secret(&env, &[&check, &backfill, &verify], &[WRITER.1, READER.1]);
}

#[test]
fn an_open_primary_is_read_anonymously_without_any_key() {
    let env = Env::with_auth("auth-open", Side::Open, Side::Basic);
    let config = std::fs::read_to_string(&env.config).unwrap();
    assert!(!config.contains("key_file"), "no key anywhere: {config}");
    let repos = push_corpus(&env);
    let check = env.georeg(&["check"]);
    check.assert_ok();
    let primary = check.stdout.lines().find(|l| l.contains("primary registry")).unwrap();
    assert!(primary.contains("authentication: anonymous"), "{primary}");
    env.georeg(&["backfill"]).assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
    }
    env.georeg(&["verify"]).assert_ok();
}

#[test]
fn a_gitlab_primary_replicates_into_a_basic_secondary_with_the_key_for_one_and_a_password_for_the_other() {
    let env = Env::with_auth("auth-mixed", Side::Gitlab, Side::Basic);
    // The secondary's credentials from a Docker config.json, as docker login writes it.
    let host = env.secondary.url.trim_start_matches("http://");
    let auth = georeg::registry::encoding::base64(format!("{}:{}", BASIC_USER.0, BASIC_USER.1).as_bytes());
    let json = format!(r#"{{"auths": {{"other.example": {{"auth": "eDp5"}}, "{host}": {{"auth": "{auth}"}}}}}}"#);
    std::fs::write(env.path("auth.json"), json).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    let config = config.replace(
        &format!("username = \"{}\"\npassword_file = \"registry-password\"\n", BASIC_USER.0),
        "auth_file = \"auth.json\"\n",
    );
    assert!(config.contains("auth_file"), "{config}");
    std::fs::write(&env.config, config).unwrap();
    let repos = push_corpus(&env);
    let check = env.georeg(&["check"]);
    check.assert_ok();
    assert!(check.stdout.contains("authentication: GitLab-style token"), "{check}");
    assert!(check.stdout.contains("authentication: Basic"), "{check}");
    // The auth file is readable by others: warned about as the key would be.
    assert!(check.stdout.contains("WARNING registry.auth_file"), "{check}");
    env.georeg(&["backfill"]).assert_ok();
    for repo in repos {
        env.assert_in_sync(repo);
    }
}

#[test]
fn a_public_primary_is_read_with_anonymous_tokens_from_its_realm() {
    let env = Env::with_auth("auth-anonymous-token", Side::AnonymousToken, Side::Basic);
    let repos = push_corpus(&env);
    // No catalog for anonymous readers: the repositories are named.
    env.add_replication("repositories = [\"team/app\", \"team/multi\", \"tools/cli\"]");
    let check = env.georeg(&["check"]);
    check.assert_ok();
    let realm = &env.realm.as_ref().unwrap().realm;
    let primary = check.stdout.lines().find(|l| l.contains("primary registry")).unwrap();
    assert!(primary.contains(&format!("authentication: Bearer with realm {realm}")), "{primary}");
    assert!(primary.contains("anonymously") && primary.contains("but not the catalog"), "{primary}");
    let backfill = env.georeg(&["backfill"]);
    backfill.assert_ok();
    assert!(backfill.stderr.contains("refuses its catalog"), "{backfill}");
    for repo in repos {
        env.assert_in_sync(repo);
    }
    env.georeg(&["verify"]).assert_ok();
}

#[test]
fn htpasswd_registries_stay_in_step_by_notifications() {
    let env = Env::with_auth_notifying("auth-basic-events", Side::Basic, Side::Basic, Mode::Direct);
    env.start_daemons();
    env.p.push_image("team/app", "v1", &oci_image(20, &[1000]));
    env.wait_in_sync("team/app", std::time::Duration::from_secs(60));
    env.p.push_image("team/app", "v2", &docker_image(21, &[2000]));
    env.wait_in_sync("team/app", std::time::Duration::from_secs(60));
}
