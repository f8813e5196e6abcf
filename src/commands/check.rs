//! `georeg check`: the first thing to run after editing the configuration.
//!
//! Proves, one line each, what `georeg serve` will need: the configuration,
//! the shared key (and its certificate), this node's registry accepting a
//! push token, on a secondary the primary registry accepting pull-only and
//! catalog tokens and the primary georeg accepting this node's JWT, and a
//! writable, current state file. Each failure names what failed and what
//! to change. It leaves nothing behind: the push check opens an upload in a
//! throwaway repository and cancels it, which stores no blob and no
//! manifest.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Role};
use crate::error::Error;
use crate::peer::PrimaryNode;
use crate::registry::token::{Signer, TokenCache};
use crate::registry::{self, Client, Target};
use crate::store::Store;

/// The user the packaged service runs as.
pub const SERVICE_USER: &str = "georeg";
/// Where the push check opens (and cancels) its upload.
pub const THROWAWAY_REPOSITORY: &str = "georeg-check";

/// Counts and prints the outcome of each check.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: &str) {
        self.passed += 1;
        println!("ok      {what}: {detail}");
    }

    fn warn(&mut self, what: &str, message: &str) {
        println!("WARNING {what}: {message}");
    }

    fn fail(&mut self, what: &str, error: &str, hint: &str) {
        self.fail_line(&format!("{what}: {error}"), hint);
    }

    fn fail_line(&mut self, line: &str, hint: &str) {
        self.failed += 1;
        if hint.is_empty() {
            println!("FAILED  {line}");
        } else {
            println!("FAILED  {line}; hint: {hint}");
        }
    }
}

/// `georeg check`: 0 when every check passed, 2 when the configuration
/// itself is unusable, 1 when anything else failed.
pub fn run(config_path: &Path) -> ExitCode {
    let mut report = Report::default();
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            // The usual one-liner, which names the file and the key already.
            report.fail_line(&e.to_string(), "georeg serve stops with the same message until it is fixed");
            println!("georeg check: the configuration must be fixed before anything else can be checked");
            return ExitCode::from(2);
        }
    };
    let role = match config.role {
        Role::Primary => "primary",
        Role::Secondary => "secondary",
    };
    report.ok(&format!("config {}", config.path.display()), &format!("{role} node {:?}", config.node_name));
    readable_by_service(&mut report, "config", &config.path);
    if let Some(secret) = &config.notifications.secret_file {
        readable_by_service(&mut report, "notifications.secret_file", secret);
    }
    if let Some(token) = &config.admin_token_file {
        readable_by_service(&mut report, "admin_token_file", token);
        if let Ok(meta) = std::fs::metadata(token) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                report.warn(
                    &format!("admin_token_file {}", token.display()),
                    &format!(
                        "readable by others (mode {mode:04o}): it opens the dashboard and the resync buttons; \
                         chown root:{SERVICE_USER} {0}; chmod 640 {0}",
                        token.display()
                    ),
                );
            }
        }
    }

    let Some(signer) = check_key(&mut report, &config) else {
        return finish(&report);
    };
    let tls = match crate::tls::client_config(config.tls.ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            report.fail("tls.ca_file", &e, "");
            return finish(&report);
        }
    };
    let agent = registry::agent(tls);
    let ttl = Duration::from_secs(config.registry.token_ttl_seconds);
    let tokens = || TokenCache::new(signer.clone(), &config.registry.service, ttl);

    match config.role {
        Role::Secondary => {
            check_local(&mut report, &signer, &Target::new(&config.registry.url, agent.clone(), tokens()))
        }
        // georeg never writes to the primary registry, not even to check it.
        Role::Primary => {
            let what = format!("this node's registry {}", config.registry.url);
            let local = Client::read_only(&config.registry.url, agent.clone(), tokens());
            match local.ping().and_then(|()| local.catalog_page(1)) {
                Ok(_) => {
                    report.ok(&what, "accepts georeg's pull-only and catalog tokens (a primary's is never written to)")
                }
                Err(e) => report.fail(&what, &e.to_string(), &registry_hint(&e, &signer, "registry.url")),
            }
        }
    }
    if config.role == Role::Secondary {
        if let Some(url) = &config.replication.primary_api_url {
            check_primary(&mut report, &signer, &Client::read_only(url, agent.clone(), tokens()));
        }
        if let Some(url) = &config.replication.primary_node_url {
            check_primary_node(&mut report, &PrimaryNode::new(url, agent.clone(), signer.clone(), &config.node_name));
        }
    }
    check_state(&mut report, &config.state_file);
    finish(&report)
}

fn finish(report: &Report) -> ExitCode {
    if report.failed == 0 {
        println!("georeg check: all {} checks ok", report.passed);
        ExitCode::SUCCESS
    } else {
        println!("georeg check: {} of {} checks FAILED", report.failed, report.passed + report.failed);
        ExitCode::from(1)
    }
}

/// The shared key: parses, its certificate matches, and it is private.
fn check_key(report: &mut Report, config: &Config) -> Option<std::sync::Arc<Signer>> {
    let r = &config.registry;
    let what = format!("key {}", r.key_file.display());
    // Load the key alone first, so a certificate mismatch is reported as that.
    let signer = match Signer::load(&r.key_file, None, &r.issuer) {
        Ok(signer) => signer,
        Err(e) => {
            let hint = "registry.key_file must be gitlab-registry.key copied from the primary \
                        (/var/opt/gitlab/gitlab-rails/etc/gitlab-registry.key), a PEM RSA private key";
            report.fail(&what, &e.to_string(), hint);
            return None;
        }
    };
    report.ok(&what, &format!("RSA private key, key ID {}", signer.kid()));
    if let Ok(meta) = std::fs::metadata(&r.key_file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            report.warn(
                &what,
                &format!(
                    "readable by group or others (mode {mode:04o}): it signs tokens both registries trust; \
                     keep it 0600 and owned by the user georeg runs as ({SERVICE_USER} for the package: \
                     chown {SERVICE_USER}: {0}; chmod 600 {0})",
                    r.key_file.display()
                ),
            );
        }
    }
    readable_by_service(report, &what, &r.key_file);
    let Some(cert) = &r.certificate_file else {
        return Some(std::sync::Arc::new(signer));
    };
    let what = format!("certificate {}", cert.display());
    match Signer::load(&r.key_file, Some(cert), &r.issuer) {
        Ok(signer) => {
            report.ok(&what, "matches the key; tokens carry it as x5c");
            readable_by_service(report, &what, cert);
            Some(std::sync::Arc::new(signer))
        }
        Err(e) => {
            report.fail(
                &what,
                &e.to_string(),
                "registry.certificate_file must be the certificate of registry.key_file \
                 (the registries' auth.token.rootcertbundle), or leave it out",
            );
            None
        }
    }
}

/// What to change when a registry refused or could not be reached.
fn registry_hint(e: &Error, signer: &Signer, url_key: &str) -> String {
    match e {
        Error::Registry { status: 401, .. } | Error::Registry { status: 403, .. } => format!(
            "georeg signs with key ID {}; the registry's log names the key ID it refused \
             (is registry.key_file the primary's gitlab-registry.key?)",
            signer.kid()
        ),
        Error::Transport { message, .. } if message.contains("tls.ca_file") || message.contains("TLS") => String::new(),
        Error::Transport { .. } => format!("is the registry running, and is {url_key} right?"),
        _ => String::new(),
    }
}

/// A secondary's own registry: `/v2/` with a signed token, then a push:
/// an upload opened in a throwaway repository and cancelled at once.
fn check_local(report: &mut Report, signer: &Signer, local: &Target) {
    let what = format!("this node's registry {}", local.url());
    if let Err(e) = local.ping() {
        report.fail(&what, &e.to_string(), &registry_hint(&e, signer, "registry.url"));
        return;
    }
    let upload = local.start_upload(THROWAWAY_REPOSITORY).map(|location| {
        if let Err(e) = local.abort_upload(THROWAWAY_REPOSITORY, &location) {
            log::warn!("the check's upload in {THROWAWAY_REPOSITORY} was not cancelled: {e}; the registry purges it");
        }
    });
    match upload {
        Ok(()) => report.ok(
            &what,
            &format!(
                "accepts georeg's tokens, push included (an upload to {THROWAWAY_REPOSITORY} opened and cancelled)"
            ),
        ),
        Err(e) => {
            let mut hint = registry_hint(&e, signer, "registry.url");
            if hint.is_empty() {
                hint = "georeg must push here: is the registry read-only (storage.maintenance.readonly)?".into();
            }
            report.fail(&what, &format!("/v2/ answers, but a push is refused: {e}"), &hint)
        }
    }
}

/// The primary registry: `/v2/` and one catalog page with pull-only tokens.
fn check_primary(report: &mut Report, signer: &Signer, primary: &Client) {
    let what = format!("primary registry {}", primary.url());
    let outcome = primary.ping().and_then(|()| primary.catalog_page(1));
    match outcome {
        Ok(_) => report.ok(&what, "accepts georeg's pull-only and catalog tokens"),
        Err(e) => report.fail(&what, &e.to_string(), &registry_hint(&e, signer, "replication.primary_api_url")),
    }
}

/// The primary georeg: its event log, read with this node's JWT.
fn check_primary_node(report: &mut Report, node: &PrimaryNode) {
    let what = format!("primary georeg {}", node.url());
    match node.events(0, 1, Duration::ZERO) {
        Ok(page) => report.ok(&what, &format!("accepts this node's token; last event id {}", page.last_event_id)),
        Err(e) if e.contains("cannot reach") && !e.contains("TLS") && !e.contains("tls.ca_file") => report.fail(
            &what,
            &e,
            "is the primary georeg running (georeg serve), and is replication.primary_node_url right?",
        ),
        Err(e) => report.fail(&what, &e, ""),
    }
}

/// The state file opens, migrates to the current schema and is writable.
fn check_state(report: &mut Report, path: &Path) {
    let what = format!("state file {}", path.display());
    let existed = path.exists();
    let opened = Store::open(path).and_then(|store| store.schema_version());
    if !existed {
        give_to_directory_owner(path);
    }
    match opened {
        Ok(version) => report.ok(&what, &format!("writable, schema version {version}")),
        Err(e) => report.fail(
            &what,
            &e.to_string(),
            &format!(
                "state_file's directory must be writable by the user georeg runs as \
                 ({SERVICE_USER} for the package, whose service owns /var/lib/georeg)"
            ),
        ),
    }
}

/// A state file this check created as root would lock out the service's
/// own user: hand it to whoever owns its directory (the service user for
/// /var/lib/georeg). Without root this changes nothing, and needs nothing.
fn give_to_directory_owner(path: &Path) {
    let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    if let Ok(file) = std::fs::metadata(path) {
        if (file.uid(), file.gid()) != (dir.uid(), dir.gid()) {
            if let Err(e) = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid())) {
                log::debug!("cannot hand {} to its directory's owner: {e}", path.display());
            }
        }
    }
}

/// Warns when the packaged service's user exists and could not read `path`.
fn readable_by_service(report: &mut Report, what: &str, path: &Path) {
    let (Some((uid, gid)), Ok(meta)) = (service_user(), std::fs::metadata(path)) else {
        return;
    };
    if !readable(&meta, uid, gid) {
        report.warn(
            what,
            &format!(
                "the {SERVICE_USER} service cannot read {0} (owner {1}:{2}, mode {3:04o}): \
                 chown {SERVICE_USER}: {0}, or chgrp {SERVICE_USER} {0} and chmod g+r",
                path.display(),
                meta.uid(),
                meta.gid(),
                meta.permissions().mode() & 0o7777
            ),
        );
    }
}

/// The service user's uid and gid, when the package created it.
fn service_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == SERVICE_USER => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// Whether uid/gid may read the file, by its mode bits (supplementary
/// groups and ACLs aside).
fn readable(meta: &Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.permissions().mode();
    (meta.uid() == uid && mode & 0o400 != 0) || (meta.gid() == gid && mode & 0o040 != 0) || mode & 0o004 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readability_follows_the_mode_bits() {
        let path = std::env::temp_dir().join(format!("georeg-check-test-{}", crate::registry::token::random_hex(8)));
        std::fs::write(&path, "x").unwrap();
        let set = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let meta = || std::fs::metadata(&path).unwrap();
        let (me, group) = (meta().uid(), meta().gid());
        set(0o600);
        assert!(readable(&meta(), me, group));
        assert!(!readable(&meta(), me + 1, group + 1));
        set(0o640);
        assert!(readable(&meta(), me + 1, group));
        set(0o604);
        assert!(readable(&meta(), me + 1, group + 1));
        std::fs::remove_file(&path).unwrap();
    }
}
