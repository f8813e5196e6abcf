//! The configuration file's tests: parsing, defaults and every error naming its key.
#![cfg(test)]

use super::*;
use crate::error::Result;

fn write_dir(secret: &str) -> tempdir::TempDir {
    let dir = tempdir::TempDir::new();
    std::fs::write(dir.0.join("key.pem"), include_str!("../../tests/data/test-key-pkcs1.pem")).unwrap();
    std::fs::write(dir.0.join("secret"), secret).unwrap();
    dir
}

mod tempdir {
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("georeg-config-test-{}", crate::registry::token::random_hex(8)));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const GOOD: &str = r#"
node_name = "secondary-1"
role = "secondary"
state_file = "state.sqlite3"

[registry]
url = "http://127.0.0.1:5000/"
key_file = "key.pem"

[notifications]
secret_file = "secret"

[replication]
primary_api_url = "http://primary.example.com:5000/"
workers = 2
"#;

fn parse(dir: &tempdir::TempDir, text: &str) -> Result<Config> {
    Config::parse(&dir.0.join("georeg.toml"), text)
}

fn err(dir: &tempdir::TempDir, text: &str) -> String {
    parse(dir, text).unwrap_err().to_string()
}

#[test]
fn good_config_resolves_paths_and_defaults() {
    let dir = write_dir("Abc123\n");
    let c = parse(&dir, GOOD).unwrap();
    assert_eq!(c.registry.url, "http://127.0.0.1:5000");
    assert_eq!(c.replication.primary_api_url.as_deref(), Some("http://primary.example.com:5000"));
    assert_eq!(c.state_file, dir.0.join("state.sqlite3"));
    assert_eq!(c.notifications.secret.as_deref(), Some("Abc123"));
    assert_eq!(c.registry.issuer, "gitlab-issuer");
    assert_eq!(c.registry.token_ttl_seconds, 300);
    assert_eq!(c.replication.workers, 2);
    assert!(c.replication.enabled);
}

#[test]
fn errors_name_the_key() {
    let dir = write_dir("Abc123");
    let e = err(&dir, &GOOD.replace("workers = 2", "workers = \"two\""));
    assert!(e.contains("replication.workers") && e.contains("invalid type"), "{e}");
    let e = err(&dir, &GOOD.replace("workers = 2", "wokers = 2"));
    assert!(e.contains("replication.wokers") && e.contains("unknown field"), "{e}");
    let e = err(&dir, &GOOD.replace("url = \"http://127.0.0.1:5000/\"\n", ""));
    assert!(e.contains("registry.url") && e.contains("missing field"), "{e}");
    let e = err(&dir, &GOOD.replace("role = \"secondary\"", "role = \"tertiary\""));
    assert!(e.contains("role") && e.contains("tertiary"), "{e}");
    let e = err(&dir, &GOOD.replace("key.pem", "nope.pem"));
    assert!(e.contains("registry.key_file") && e.contains("does not exist"), "{e}");
    let e = err(&dir, &GOOD.replace("http://127.0.0.1:5000/", "ftp://x"));
    assert!(e.contains("registry.url"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    let e = err(&dir, &GOOD.replace("workers = 2", "workers = 2\nchunk_size = \"1KB\""));
    assert!(e.contains("replication.chunk_size") && e.contains("1MiB"), "{e}");
    let e = err(&dir, &GOOD.replace("workers = 2", "workers = 2\nstall_seconds = 0"));
    assert!(e.contains("replication.stall_seconds"), "{e}");
}

#[test]
fn chunk_size_defaults_to_8_mib_and_rounds_to_64_bytes() {
    let dir = write_dir("Abc123");
    assert_eq!(parse(&dir, GOOD).unwrap().replication.chunk_bytes, 8 << 20);
    let c = parse(&dir, &GOOD.replace("workers = 2", "workers = 2\nchunk_size = \"2000001\"")).unwrap();
    assert_eq!(c.replication.chunk_bytes, 2000001 / 64 * 64);
}

#[test]
fn secret_must_be_alphanumeric_starting_with_a_letter() {
    for bad in ["1abc", "ab-c", "", "ab c"] {
        let dir = write_dir(bad);
        let e = err(&dir, GOOD);
        assert!(e.contains("notifications.secret_file") && e.contains("alphanumeric"), "{bad}: {e}");
    }
    let dir = write_dir("x");
    let e = err(&dir, &GOOD.replace("secret_file = \"secret\"", "secret = \"9lives\""));
    assert!(e.contains("notifications.secret:"), "{e}");
}

#[test]
fn tls_files_resolve_and_are_checked_at_load() {
    let dir = write_dir("Abc");
    std::fs::write(dir.0.join("junk.pem"), "not PEM\n").unwrap();
    let e = err(&dir, &format!("{GOOD}\n[tls]\nca_file = \"junk.pem\"\n"));
    assert!(e.contains("tls.ca_file") && e.contains("junk.pem") && e.contains("no BEGIN CERTIFICATE"), "{e}");
    let e = err(&dir, &format!("{GOOD}\n[tls]\nca_file = \"absent.pem\"\n"));
    assert!(e.contains("tls.ca_file") && e.contains("cannot read"), "{e}");
    let e = err(&dir, &format!("{GOOD}\n[tls]\ncert_file = \"junk.pem\"\n"));
    assert!(e.contains("tls.key_file: is required with tls.cert_file"), "{e}");
    let e = err(&dir, &format!("{GOOD}\n[tls]\ncert_file = \"junk.pem\"\nkey_file = \"key.pem\"\n"));
    assert!(e.contains("tls.cert_file"), "{e}");
    let e = err(&dir, &format!("{GOOD}\n[tls]\ncafile = \"x\"\n"));
    assert!(e.contains("tls.cafile") && e.contains("unknown field"), "{e}");
    let c = parse(&dir, GOOD).unwrap();
    assert!(c.tls.ca_file.is_none() && c.tls.cert_file.is_none());
    std::fs::write(dir.0.join("ca.pem"), include_str!("../../tests/data/test-cert.pem")).unwrap();
    let c = parse(&dir, &format!("{GOOD}\n[tls]\nca_file = \"ca.pem\"\n")).unwrap();
    assert_eq!(c.tls.ca_file, Some(dir.0.join("ca.pem")));
}

#[test]
fn secondary_needs_primary_url() {
    let dir = write_dir("Abc");
    let e = err(&dir, &GOOD.replace("primary_api_url = \"http://primary.example.com:5000/\"", ""));
    assert!(e.contains("replication.primary_api_url"), "{e}");
    let primary = GOOD
        .replace("role = \"secondary\"", "role = \"primary\"")
        .replace("primary_api_url = \"http://primary.example.com:5000/\"", "");
    assert!(parse(&dir, &primary).is_ok());
}

#[test]
fn a_secondary_without_a_secret_or_a_primary_georeg_is_replicated_by_reconciliation_alone() {
    let dir = write_dir("Abc");
    let alone = parse(&dir, &GOOD.replace("secret_file = \"secret\"", "")).unwrap();
    assert!(alone.notifications.secret.is_none() && alone.replication.primary_node_url.is_none());
    // Following a primary georeg, it receives no notification.
    let follow = GOOD
        .replace("secret_file = \"secret\"", "")
        .replace("workers = 2", "workers = 2\nprimary_node_url = \"http://primary.example.com:5050\"");
    assert!(parse(&dir, &follow).is_ok());
}

#[test]
fn the_primary_registry_cannot_be_this_nodes_own() {
    let dir = write_dir("Abc");
    let swapped = GOOD.replace("http://primary.example.com:5000/", "http://127.0.0.1:5000");
    let e = err(&dir, &swapped);
    assert!(e.contains("replication.primary_api_url") && e.contains("registry.url"), "{e}");
}

#[test]
fn a_node_cannot_follow_itself() {
    let dir = write_dir("Abc");
    let listen = parse(&dir, GOOD).unwrap().listen;
    let itself = GOOD.replace("workers = 2", &format!("workers = 2\nprimary_node_url = \"http://{listen}/\""));
    let e = err(&dir, &itself);
    assert!(e.contains("replication.primary_node_url") && e.contains("cannot follow itself"), "{e}");
}

#[test]
fn a_paused_or_air_gapped_secondary_needs_no_notification_secret() {
    let dir = write_dir("Abc123");
    let text = GOOD.replace("secret_file = \"secret\"", "").replace("workers = 2", "workers = 2\nenabled = false");
    assert!(parse(&dir, &text).is_ok(), "{:?}", parse(&dir, &text).err());
}

#[test]
fn disaster_recovery_keys_default_and_are_checked() {
    let dir = write_dir("Abc");
    let c = parse(&dir, GOOD).unwrap();
    let r = &c.replication;
    assert_eq!(
        (r.delete_delay_hours, r.delete_burst_min_tags, r.drill_interval_seconds, r.drill_sample),
        (0, 10, 86400, 10)
    );
    assert_eq!(r.delete_burst_share, 0.5);
    let with = |line: &str| GOOD.replace("workers = 2", &format!("workers = 2\n{line}"));
    let c = parse(&dir, &with("delete_delay_hours = 24\ndrill_interval_seconds = 0")).unwrap();
    assert_eq!(c.replication.delete_delay_hours, 24);
    for (line, key) in [
        ("delete_burst_share = 0.0", "replication.delete_burst_share"),
        ("delete_burst_share = 1.5", "replication.delete_burst_share"),
        ("delete_burst_min_tags = 0", "replication.delete_burst_min_tags"),
        ("delete_delay_hours = 100000", "replication.delete_delay_hours"),
        ("drill_interval_seconds = 2", "replication.drill_interval_seconds"),
        ("drill_sample = 0", "replication.drill_sample"),
    ] {
        let e = err(&dir, &with(line));
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn the_packaged_config_names_only_known_keys_and_holds_deletions_a_day() {
    let config: Config = toml::from_str(include_str!("../../packaging/georeg.toml")).unwrap();
    assert_eq!(config.replication.delete_delay_hours, 24);
}

#[test]
fn the_packaged_primary_example_names_only_known_keys() {
    let config: Config = toml::from_str(include_str!("../../packaging/georeg-primary.toml")).unwrap();
    assert_eq!(config.role, crate::config::Role::Primary);
    assert!(config.admin_token_file.is_some(), "a non-loopback listen needs the admin credential");
}

#[test]
fn credentials_name_their_keys_and_replace_the_key() {
    let dir = write_dir("Abc123");
    std::fs::write(dir.0.join("pw"), "hunter2-secret\n").unwrap();
    let no_key = GOOD.replace("key_file = \"key.pem\"\n", "");
    let c = parse(&dir, &no_key).unwrap();
    assert!(c.registry.key_file.is_none() && c.registry.credentials.is_none(), "anonymous");
    let with = no_key.replace("[notifications]", "username = \"georeg\"\npassword_file = \"pw\"\n\n[notifications]")
        + "primary_username = \"reader\"\nprimary_password_file = \"pw\"\nrepositories = [\"group/app\"]\n";
    let c = parse(&dir, &with).unwrap();
    assert_eq!(c.registry.credentials.as_ref().map(|c| c.password.as_str()), Some("hunter2-secret"));
    assert_eq!(c.replication.primary_credentials.as_ref().map(|c| c.username.as_str()), Some("reader"));
    assert_eq!(c.replication.repositories, ["group/app"]);
    assert!(!format!("{c:?}").contains("hunter2"), "the password never prints");
    let e = err(&dir, &with.replace("password_file = \"pw\"\n\n", "\n"));
    assert!(e.contains("registry.password_file") && e.contains("is required with registry.username"), "{e}");
    let e = err(&dir, &with.replace("primary_password_file = \"pw\"", "primary_password_file = \"missing\""));
    assert!(e.contains("replication.primary_password_file") && e.contains("cannot read"), "{e}");
    let e = err(&dir, &with.replace("\"group/app\"", "\"Group/App\""));
    assert!(e.contains("replication.repositories"), "{e}");
    let e = err(&dir, &no_key.replace("role = \"secondary\"", "role = \"primary\""));
    assert!(e.contains("registry.key_file") && e.contains("required on a primary"), "{e}");
}
