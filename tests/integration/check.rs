//! `georeg check` against real registries and a real primary georeg.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{agent, georeg_bin, keys, registry, Daemon, Env, Mode, TestDir};

fn check(config: &Path) -> (i32, String) {
    let out = Command::new(georeg_bin()).arg("--config").arg(config).arg("check").output().expect("run georeg");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = stdout + &String::from_utf8_lossy(&out.stderr);
    println!("georeg check:\n{all}");
    (out.status.code().unwrap_or(-1), all)
}

fn line<'a>(output: &'a str, prefix: &str) -> &'a str {
    output.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in:\n{output}"))
}

#[test]
fn everything_ok_against_good_registries_and_nothing_left_behind() {
    let env = Env::with_mode("check-ok", Mode::Follow);
    let primary = Daemon::start_at(&env.dir.0, "primary", &env.primary_config(), &env.primary_node_url(), agent(None));
    env.daemons.borrow_mut().push(primary);

    let (code, out) = check(&env.config);
    assert_eq!(code, 0, "{out}");
    for prefix in [
        "ok      config",
        "ok      listen ",
        "ok      key ",
        "ok      this node's registry",
        "ok      primary registry",
        "ok      followed georeg",
        "ok      state file",
    ] {
        line(&out, prefix);
    }
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.trim_end().ends_with("checks ok"), "{out}");
    // The push check cancelled its upload: no repository appeared.
    let body = agent(None)
        .get(&format!("{}/v2/_catalog", env.secondary.url))
        .set("Authorization", &format!("Bearer {}", catalog_token()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let catalog: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([]), "the check left a repository behind");
}

fn catalog_token() -> String {
    let scope = georeg::registry::token::Scope::catalog();
    keys().signer.sign(registry::SERVICE, "test", std::time::Duration::from_secs(60), &[scope]).text
}

#[test]
fn a_wrong_key_and_an_unreachable_primary_fail_with_hints() {
    let env = Env::new("check-bad");
    // A key of the right format whose certificate neither registry trusts,
    // readable by everyone.
    let stranger = env.path("stranger.key");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out", stranger.to_str().unwrap(), "2048"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::set_permissions(&stranger, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.write_config(&stranger, "");
    let (code, out) = check(&env.config);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "WARNING key").contains("mode 0644"), "{out}");
    let local = line(&out, "FAILED  this node's registry");
    assert!(
        local.contains("401") && local.contains("rootcertbundle") && local.contains("hint: georeg signs with key ID"),
        "{local}"
    );
    let primary = line(&out, "FAILED  primary registry");
    assert!(primary.contains("401") && primary.contains("hint:"), "{primary}");

    // The right key, but the primary registry is not where the config says.
    let closed = registry::free_port();
    env.write_config(&keys().pkcs1, "");
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .unwrap()
            .replace(&format!("{}/", env.primary.url), &format!("http://127.0.0.1:{closed}/")),
    )
    .unwrap();
    let (code, out) = check(&env.config);
    assert_eq!(code, 1, "{out}");
    line(&out, "ok      this node's registry");
    let primary = line(&out, "FAILED  primary registry");
    assert!(primary.contains(&format!("cannot reach http://127.0.0.1:{closed}/v2/")), "{primary}");
    assert!(primary.contains("hint: is the registry running, and is replication.primary_api_url right?"), "{primary}");
    line(&out, "ok      state file");
    assert!(out.contains("1 of "), "{out}");
}

#[test]
fn a_config_problem_is_the_usual_one_liner() {
    let dir = TestDir::new("check-config");
    let config = dir.0.join("georeg.toml");
    std::fs::write(
        &config,
        "node_name = \"s\"\nrole = \"secondary\"\n[registry]\nurl = \"http://127.0.0.1:1\"\nkey_file = \"missing.key\"\n",
    )
    .unwrap();
    let (code, out) = check(&config);
    assert_eq!(code, 2, "{out}");
    let failed = line(&out, "FAILED  config");
    assert!(failed.contains("registry.key_file") && failed.contains("does not exist"), "{failed}");
}

#[test]
fn a_world_readable_admin_token_is_warned_about() {
    let env = Env::new("check-token");
    let token = env.path("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.add_top_level("admin_token_file = \"admin-token\"");
    let (_, out) = check(&env.config);
    assert!(line(&out, "WARNING admin_token_file").contains("readable by others (mode 0644)"), "{out}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (_, out) = check(&env.config);
    assert!(!out.contains("readable by others"), "{out}");
}

/// `check` fails on what `serve` refuses at its start, and leaves alone
/// the primary of an air-gapped secondary.
#[test]
fn check_fails_where_serve_would_refuse_to_start_and_an_air_gapped_node_needs_no_primary() {
    let env = Env::new("check-parity");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let listen = format!("127.0.0.1:{}", env.port);

    // The port held by another program.
    let holder = std::net::TcpListener::bind(&listen).unwrap();
    let (code, out) = check(&env.config);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "FAILED  listen").contains("another program holds that port"), "{out}");
    let serve = env.georeg(&["serve"]);
    assert_ne!(serve.code, 0, "serve refuses it too: {serve}");
    assert!(serve.stderr.contains("cannot listen on"), "{serve}");
    drop(holder);

    // Reachable from the network with the admin pages open.
    std::fs::write(&env.config, text.replace(&listen, &format!("0.0.0.0:{}", env.port))).unwrap();
    let (code, out) = check(&env.config);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "FAILED  listen").contains("admin_token_file"), "{out}");
    env.georeg(&["serve"]).assert_code(2);

    // Air-gapped: replication off, the primary unreachable, all ok.
    let dead = format!("http://127.0.0.1:{}/", registry::free_port());
    let air_gapped =
        text.replace(&format!("{}/", env.primary.url), &dead).replace("workers = 2", "workers = 2\nenabled = false");
    std::fs::write(&env.config, air_gapped).unwrap();
    let (code, out) = check(&env.config);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "ok      primary registry").contains("not contacted: replication.enabled = false"), "{out}");
}
