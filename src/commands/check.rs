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

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::commands::node::{local_auth, primary_auth};
use crate::config::{Config, Role};
use crate::error::Error;
use crate::peer::PrimaryNode;
use crate::registry::token::Signer;
use crate::registry::{self, Client, Target};
use crate::replication::cursor;
use crate::store::Store;

use super::service_files::{give_to_directory_owner, readable, service_user, SERVICE_USER};

/// Where the push check opens (and cancels) its upload. Two components:
/// some registries route only `namespace/name` (GitLab's paths always
/// have a group, and container-registry 0.3 answers 404 to one).
pub const THROWAWAY_REPOSITORY: &str = "georeg/check";

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

    check_listen(&mut report, &config);
    let Ok(key) = check_key(&mut report, &config) else {
        return finish(&report);
    };
    check_secret_files(&mut report, &config);
    let tls = match crate::tls::client_config(config.tls.ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            report.fail("tls.ca_file", &e, "");
            return finish(&report);
        }
    };
    let agent = registry::agent(tls);
    let signer = key.as_deref();

    match config.role {
        Role::Secondary => check_local(
            &mut report,
            signer,
            &Target::new(&config.registry.url, agent.clone(), local_auth(&config, key.as_ref())),
        ),
        // georeg never writes to the primary registry, not even to check it.
        Role::Primary => {
            let what = format!("this node's registry {}", config.registry.url);
            let local = Client::read_only(&config.registry.url, agent.clone(), local_auth(&config, key.as_ref()));
            match local.ping().and_then(|()| local.catalog_page(1)) {
                Ok(_) => report.ok(
                    &what,
                    &format!(
                        "authentication: {}; may read it, catalog included (a primary's is never written to)",
                        local.auth_description()
                    ),
                ),
                Err(e) => report.fail(&what, &e.to_string(), &registry_hint(&e, signer, &local, "registry.url")),
            }
        }
    }
    if config.role == Role::Secondary && !config.replication.enabled {
        // An air-gapped or paused secondary reads nothing from the primary:
        // there may be no way to it at all.
        report.ok(
            "primary registry",
            "not contacted: replication.enabled = false (a paused or air-gapped secondary, fed by georeg import)",
        );
    }
    if config.role == Role::Secondary && config.replication.enabled {
        if let Some(url) = &config.replication.primary_api_url {
            let primary = Client::read_only(url, agent.clone(), primary_auth(&config, key.as_ref()));
            check_primary(&mut report, signer, &primary, &config.replication.repositories);
        }
        if let (Some(url), Some(key)) = (&config.replication.primary_node_url, &key) {
            check_primary_node(&mut report, &PrimaryNode::new(url, agent.clone(), key.clone(), &config.node_name));
        }
    }
    check_state(&mut report, &config.state_file);
    finish(&report)
}

/// What `georeg serve` refuses at its start besides the configuration
/// file: a `listen` address reachable from the network with the admin
/// pages open, a port another program holds, an unusable https listener.
fn check_listen(report: &mut Report, config: &Config) {
    let what = format!("listen {}", config.listen);
    if let Err(e) = config.check_admin_exposure() {
        report.fail(&what, &e.to_string(), "georeg serve refuses to start like this");
        return;
    }
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        if let Err((key_name, why)) = crate::tls::server_config(cert, key) {
            report.fail(&what, &format!("{key_name}: {why}"), "georeg serve refuses to start like this");
            return;
        }
    }
    match std::net::TcpListener::bind(&config.listen) {
        Ok(_) => report.ok(&what, "free: georeg serve can listen there"),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            match crate::store::lock::current_holder(&config.state_file) {
                Some(holder) if holder.command == Some(crate::store::lock::Locker::Serve) => {
                    report.ok(&what, &format!("in use by {holder}, this configuration's own daemon"))
                }
                _ => report.fail(
                    &what,
                    &format!("cannot listen there: {e}"),
                    "another program holds that port (5050 is also GitLab's registry port): stop it, or choose \
                     another listen address",
                ),
            }
        }
        Err(e) => report.fail(&what, &format!("cannot listen there: {e}"), "check listen"),
    }
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

/// The shared key, when configured: parses, its certificate matches, and
/// it is private. `Err` when it cannot be used.
fn check_key(report: &mut Report, config: &Config) -> Result<Option<std::sync::Arc<Signer>>, ()> {
    let r = &config.registry;
    let Some(key_file) = &r.key_file else {
        return Ok(None);
    };
    let what = format!("key {}", key_file.display());
    // Load the key alone first, so a certificate mismatch is reported as that.
    let signer = match Signer::load(key_file, None, &r.issuer) {
        Ok(signer) => signer,
        Err(e) => {
            let hint = "registry.key_file must be gitlab-registry.key copied from the primary \
                        (/var/opt/gitlab/gitlab-rails/etc/gitlab-registry.key), a PEM RSA private key";
            report.fail(&what, &e.to_string(), hint);
            return Err(());
        }
    };
    report.ok(&what, &format!("RSA private key, key ID {}", signer.kid()));
    if let Ok(meta) = std::fs::metadata(key_file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            report.warn(
                &what,
                &format!(
                    "readable by group or others (mode {mode:04o}): it signs tokens both registries trust; \
                     keep it 0600 and owned by the user georeg runs as ({SERVICE_USER} for the package: \
                     chown {SERVICE_USER}: {0}; chmod 600 {0})",
                    key_file.display()
                ),
            );
        }
    }
    readable_by_service(report, &what, key_file);
    let Some(cert) = &r.certificate_file else {
        return Ok(Some(std::sync::Arc::new(signer)));
    };
    let what = format!("certificate {}", cert.display());
    match Signer::load(key_file, Some(cert), &r.issuer) {
        Ok(signer) => {
            report.ok(&what, "matches the key; tokens carry it as x5c");
            readable_by_service(report, &what, cert);
            Ok(Some(std::sync::Arc::new(signer)))
        }
        Err(e) => {
            report.fail(
                &what,
                &e.to_string(),
                "registry.certificate_file must be the certificate of registry.key_file \
                 (the registries' auth.token.rootcertbundle), or leave it out",
            );
            Err(())
        }
    }
}

/// The files holding registry credentials: as private as the key.
fn check_secret_files(report: &mut Report, config: &Config) {
    let (r, p) = (&config.registry, &config.replication);
    let files = [
        ("registry.password_file", &r.password_file),
        ("registry.auth_file", &r.auth_file),
        ("replication.primary_password_file", &p.primary_password_file),
        ("replication.primary_auth_file", &p.primary_auth_file),
    ];
    for (key, file) in files {
        let Some(file) = file else { continue };
        let what = format!("{key} {}", file.display());
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                report.warn(
                    &what,
                    &format!(
                        "readable by group or others (mode {mode:04o}): it holds a registry password; \
                         keep it 0600 and owned by the user georeg runs as ({SERVICE_USER} for the package: \
                         chown {SERVICE_USER}: {0}; chmod 600 {0})",
                        file.display()
                    ),
                );
            }
        }
        readable_by_service(report, &what, file);
    }
}

/// What to change when a registry refused or could not be reached.
fn registry_hint(e: &Error, signer: Option<&Signer>, client: &Client, url_key: &str) -> String {
    match (e, signer) {
        (Error::Registry { status: 401 | 403, .. }, _) if !client.signs_own_tokens() => client.auth_hint(),
        (Error::Registry { status: 401 | 403, .. }, Some(signer)) => format!(
            "georeg signs with key ID {}; the registry's log names the key ID it refused \
             (is registry.key_file the primary's gitlab-registry.key?); {}",
            signer.kid(),
            client.auth_hint()
        ),
        (Error::Transport { message, .. }, _) if message.contains("tls.ca_file") || message.contains("TLS") => {
            String::new()
        }
        (Error::Transport { .. }, _) => format!("is the registry running, and is {url_key} right?"),
        _ => String::new(),
    }
}

/// A secondary's own registry: `/v2/`, then a push (an upload opened in a
/// throwaway repository and cancelled at once), then a delete of a
/// manifest that cannot exist (refused, or answered "unknown": nothing
/// is deleted either way).
fn check_local(report: &mut Report, signer: Option<&Signer>, local: &Target) {
    let what = format!("this node's registry {}", local.url());
    if let Err(e) = local.ping() {
        report.fail(&what, &e.to_string(), &registry_hint(&e, signer, local, "registry.url"));
        return;
    }
    let upload = local.start_upload(THROWAWAY_REPOSITORY).map(|location| {
        if let Err(e) = local.abort_upload(THROWAWAY_REPOSITORY, &location) {
            log::warn!("the check's upload in {THROWAWAY_REPOSITORY} was not cancelled: {e}; the registry purges it");
        }
    });
    if let Err(e) = upload {
        let mut hint = registry_hint(&e, signer, local, "registry.url");
        if hint.is_empty() {
            hint = "georeg must push here: is the registry read-only (storage.maintenance.readonly)?".into();
        }
        report.fail(&what, &format!("/v2/ answers, but a push is refused: {e}"), &hint);
        return;
    }
    let deletes = match local.deletes_enabled(THROWAWAY_REPOSITORY) {
        Ok(true) => "delete allowed".to_string(),
        Ok(false) => "deletes refused by the registry (405): deletions on the primary are not applied here".into(),
        Err(e) => format!("delete refused ({e}): deletions on the primary are not applied here"),
    };
    report.ok(
        &what,
        &format!(
            "authentication: {}; push allowed (an upload to {THROWAWAY_REPOSITORY} opened and cancelled); {deletes}",
            local.auth_description()
        ),
    );
}

/// The primary registry: `/v2/` and one catalog page, read-only; when the
/// catalog is refused, the tags of the first of `replication.repositories`.
fn check_primary(report: &mut Report, signer: Option<&Signer>, primary: &Client, repositories: &[String]) {
    let what = format!("primary registry {}", primary.url());
    if let Err(e) = primary.ping() {
        let hint = registry_hint(&e, signer, primary, "replication.primary_api_url");
        report.fail(&what, &e.to_string(), &hint);
        return;
    }
    let auth = primary.auth_description();
    match (primary.catalog_page(1), repositories.first()) {
        (Ok(_), _) => report.ok(&what, &format!("authentication: {auth}; may read it, catalog included")),
        (Err(e), Some(repo)) => match primary.tags(repo) {
            Ok(found) => report.ok(
                &what,
                &format!(
                    "authentication: {auth}; may read {repo} ({}), but not the catalog ({e}): only \
                     replication.repositories and the repositories events name are replicated",
                    if found.is_some() { "found" } else { "not there yet" }
                ),
            ),
            Err(e) => {
                let hint = registry_hint(&e, signer, primary, "replication.primary_api_url");
                report.fail(&what, &format!("neither the catalog nor {repo} can be read: {e}"), &hint)
            }
        },
        (Err(e), None) => {
            let mut hint = registry_hint(&e, signer, primary, "replication.primary_api_url");
            if matches!(e, Error::Registry { .. }) {
                hint = format!(
                    "{hint}{}if this registry does not serve its catalog to georeg, list the repositories to \
                     replicate in replication.repositories",
                    if hint.is_empty() { "" } else { "; " }
                );
            }
            report.fail(&what, &format!("authentication: {auth}; the catalog cannot be read: {e}"), &hint)
        }
    }
}

/// The georeg followed (the primary, or a relay): its event log, read
/// with this node's JWT, and the chain it leads up to the primary.
fn check_primary_node(report: &mut Report, node: &PrimaryNode) {
    let what = format!("followed georeg {}", node.url());
    let page = node.events(0, 1, Duration::ZERO);
    let chain = page.as_ref().map(cursor::chain_of).unwrap_or_default();
    match (page, cursor::a_loop(node, &chain)) {
        (Ok(_), Some(looped)) => report.fail(&what, &looped, ""),
        (Ok(page), None) => report.ok(
            &what,
            &format!(
                "accepts this node's token; last event id {}; {}",
                page.last_event_id,
                match chain.len() {
                    0 | 1 => "the primary".to_string(),
                    _ => format!("a relay: chain {}", chain.join(" -> ")),
                }
            ),
        ),
        (Err(e), _) if e.contains("cannot reach") && !e.contains("TLS") && !e.contains("tls.ca_file") => report.fail(
            &what,
            &e,
            "is the georeg it follows running (georeg serve), and is replication.primary_node_url right?",
        ),
        (Err(e), _) => report.fail(&what, &e, ""),
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
