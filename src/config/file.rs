//! The configuration file's keys, their defaults, and reading it: TOML
//! into [`Config`], relative paths resolved, then the checks of
//! `validate`; a TOML error becomes one line naming the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::defaults::*;
use super::selective::Selection;
use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/georeg/georeg.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    /// The default only where a report omits it: only secondaries report.
    #[default]
    Secondary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shown on dashboards and sent to the primary with this node's status.
    pub node_name: String,
    pub role: Role,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// File holding the admin credential for the dashboard, status API,
    /// metrics and admin actions (a bearer token, or the password of HTTP
    /// Basic auth with any user name).
    pub admin_token_file: Option<PathBuf>,
    /// Serve the dashboard, status and metrics without a credential even on
    /// a non-loopback `listen` address. Off unless set explicitly.
    #[serde(default)]
    pub admin_open: bool,
    /// Events older than this are pruned from the state file (once applied,
    /// on a secondary). A secondary offline for longer catches up through
    /// backfill and verification instead of the event log.
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: u64,
    /// On a primary: events older than this are pruned even when a
    /// secondary that reported recently has not read them yet.
    #[serde(default = "default_event_retention_max_days")]
    pub event_retention_max_days: u64,
    /// The admin credential, read from `admin_token_file`.
    #[serde(skip)]
    pub admin_token: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Where this configuration was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

/// This node's own registry, and the key pair shared by all nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    /// The key pair shared by all nodes (GitLab's `gitlab-registry.key`):
    /// georeg signs its own registry tokens with it. Without it, georeg
    /// follows the registries' own challenges (credentials or anonymous).
    pub key_file: Option<PathBuf>,
    /// Credentials for this node's registry: a user name and a file
    /// holding the password, or a Docker config.json-style `auth_file`.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub auth_file: Option<PathBuf>,
    /// The credentials, read from `password_file` or `auth_file`.
    #[serde(skip)]
    pub credentials: Option<crate::registry::auth::Credentials>,
    pub certificate_file: Option<PathBuf>,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default = "default_service")]
    pub service: String,
    #[serde(default = "default_ttl")]
    pub token_ttl_seconds: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    pub secret_file: Option<PathBuf>,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// GitLab's `geo_registry_replication_enabled`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// GitLab's `geo_registry_replication_primary_api_url`.
    pub primary_api_url: Option<String>,
    /// The primary georeg, whose event log this secondary follows. Without
    /// it, the primary registry notifies this secondary directly.
    pub primary_node_url: Option<String>,
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How often the primary's catalog is scanned for repositories to backfill.
    #[serde(default = "default_backfill_interval")]
    pub backfill_interval_seconds: u64,
    /// The reconciliation window: every replicated repository is compared
    /// with the primary at least this often, whatever notifications said,
    /// and failover readiness counts a repository only when it was found
    /// equal within it. On a primary: how fresh the fingerprints it serves
    /// are kept (half the window).
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_seconds: u64,
    /// How long a successful verification stands before it is repeated.
    #[serde(default = "default_reverification_interval")]
    pub reverification_interval_seconds: u64,
    /// How often a secondary checks its health and reports its status to
    /// the primary georeg.
    #[serde(default = "default_report_interval")]
    pub report_interval_seconds: u64,
    /// A cap on the bytes read from the primary registry per second, shared
    /// by all workers (`"40MB/s"`); none by default.
    #[serde(default)]
    pub max_bandwidth: Option<String>,
    /// A cap on the requests sent to the primary registry per second.
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// `max_bandwidth` in bytes per second, once checked.
    #[serde(skip)]
    pub max_bytes_per_second: Option<u64>,
    /// Blobs larger than this are copied in chunks of this size, each
    /// recorded in the state file, so that a restart continues them
    /// (`"8MiB"`; `"0"`: every blob in one request).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: String,
    /// `chunk_size` in bytes, once checked.
    #[serde(skip)]
    pub chunk_bytes: u64,
    /// A blob of more than one chunk is read from the primary over this
    /// many streams at once, a chunk per `Range` request (1: one stream).
    #[serde(default = "default_blob_streams")]
    pub blob_streams: usize,
    /// A blob download from the primary that receives no byte for this
    /// long is continued from where it stopped, as a broken one is.
    #[serde(default = "default_stall_seconds")]
    pub stall_seconds: u64,
    /// A read from a registry that receives fewer bytes than this in any
    /// `stall_seconds` is stalled too (`"16KiB/s"`): a blob is resumed, a
    /// manifest or listing fails, which a trickling registry cannot
    /// outwait.
    #[serde(default = "default_min_rate")]
    pub min_rate: String,
    /// `min_rate` in bytes per second, once checked.
    #[serde(skip)]
    pub min_bytes_per_second: u64,
    /// The longest one repository's sync may take before it is stopped,
    /// failed with that reason and retried with backoff.
    #[serde(default = "default_sync_budget")]
    pub sync_budget_seconds: u64,
    /// The most tags one repository may have; more fail it.
    #[serde(default = "default_max_tags")]
    pub max_tags: usize,
    /// A repository failing for longer than this makes the node unhealthy.
    #[serde(default = "default_failing_alert")]
    pub failing_alert_seconds: u64,
    /// On a secondary fed by transfer bundles (replication.enabled =
    /// false): a last bundle exported longer ago than this makes the node
    /// unhealthy; 0 never does.
    #[serde(default = "default_bundle_max_age")]
    pub bundle_max_age_hours: u64,
    /// Deletions (tags, manifests, emptied repositories) wait this long in
    /// the state file before georeg applies them to the secondary; 0
    /// applies them at once.
    #[serde(default)]
    pub delete_delay_hours: u64,
    /// A burst of deletions (more than this share of a repository's or the
    /// registry's tags within an hour) makes the node unhealthy.
    #[serde(default = "default_burst_share")]
    pub delete_burst_share: f64,
    /// ...when at least this many tags are removed.
    #[serde(default = "default_burst_min_tags")]
    pub delete_burst_min_tags: u64,
    /// How often a sample of tags is pulled from the secondary as a client
    /// would (a drill); 0: never on its own.
    #[serde(default = "default_drill_interval")]
    pub drill_interval_seconds: u64,
    /// Tags pulled per drill.
    #[serde(default = "default_drill_sample")]
    pub drill_sample: usize,
    /// Credentials for the primary registry, as `registry.username`... are
    /// for this node's.
    #[serde(default)]
    pub primary_username: Option<String>,
    #[serde(default)]
    pub primary_password_file: Option<PathBuf>,
    #[serde(default)]
    pub primary_auth_file: Option<PathBuf>,
    /// The primary's credentials, read from the files above.
    #[serde(skip)]
    pub primary_credentials: Option<crate::registry::auth::Credentials>,
    /// Repositories to replicate by name, besides what the primary's
    /// catalog lists: for primaries whose `_catalog` is refused.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Selective sync: glob patterns of repositories to replicate (all when empty).
    #[serde(default)]
    pub include: Vec<String>,
    /// Selective sync: glob patterns of repositories never to replicate.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// TLS: extra trust for https registries and georeg nodes, and the
/// optional HTTPS listener of georeg's own server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificates trusted besides the system's (an internal CA).
    pub ca_file: Option<PathBuf>,
    /// With `key_file`: serve https on `listen` with this certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            enabled: true,
            primary_api_url: None,
            primary_node_url: None,
            workers: default_workers(),
            backfill_interval_seconds: default_backfill_interval(),
            reverification_interval_seconds: default_reverification_interval(),
            reconcile_interval_seconds: default_reconcile_interval(),
            report_interval_seconds: default_report_interval(),
            failing_alert_seconds: default_failing_alert(),
            bundle_max_age_hours: default_bundle_max_age(),
            delete_delay_hours: 0,
            delete_burst_share: default_burst_share(),
            delete_burst_min_tags: default_burst_min_tags(),
            drill_interval_seconds: default_drill_interval(),
            drill_sample: default_drill_sample(),
            max_bandwidth: None,
            max_requests_per_second: None,
            max_bytes_per_second: None,
            chunk_size: default_chunk_size(),
            blob_streams: default_blob_streams(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            stall_seconds: default_stall_seconds(),
            min_rate: default_min_rate(),
            min_bytes_per_second: 16 << 10,
            sync_budget_seconds: default_sync_budget(),
            max_tags: default_max_tags(),
            primary_username: None,
            primary_password_file: None,
            primary_auth_file: None,
            primary_credentials: None,
            repositories: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

impl ReplicationConfig {
    pub fn selection(&self) -> Selection {
        Selection::new(&self.include, &self.exclude)
    }
}

impl Config {
    /// The file named by `--config`, else `GEOREG_CONFIG`, else the default.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        match std::env::var_os("GEOREG_CONFIG") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        Config::parse(path, &read(path)?)
    }

    /// The configuration without checking the files it names (key,
    /// secrets, certificates): for `georeg status`, which reads only the
    /// state file and must work before the key is in place.
    pub fn load_for_status(path: &Path) -> Result<Config> {
        Config::parse_checked(path, &read(path)?, false)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        Config::parse_checked(path, text, true)
    }

    fn parse_checked(path: &Path, text: &str, files: bool) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        config.path = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new("."));
        config.state_file = base.join(&config.state_file);
        for file in [
            &mut config.registry.key_file,
            &mut config.registry.password_file,
            &mut config.registry.auth_file,
            &mut config.replication.primary_password_file,
            &mut config.replication.primary_auth_file,
        ] {
            *file = file.take().map(|p| base.join(p));
        }
        config.registry.certificate_file = config.registry.certificate_file.map(|p| base.join(p));
        config.notifications.secret_file = config.notifications.secret_file.map(|p| base.join(p));
        config.admin_token_file = config.admin_token_file.map(|p| base.join(p));
        for file in [&mut config.tls.ca_file, &mut config.tls.cert_file, &mut config.tls.key_file] {
            *file = file.take().map(|p| base.join(p));
        }
        config.validate(files)?;
        Ok(config)
    }

    pub(crate) fn bad(&self, key: &str, message: impl Into<String>) -> Error {
        Error::Config { file: self.path.clone(), key: key.into(), message: message.into() }
    }

    /// Refuses to serve the admin pages to the network without a credential,
    /// unless the configuration says explicitly that they are open.
    pub fn check_admin_exposure(&self) -> Result<()> {
        let loopback = self.listen.parse::<std::net::SocketAddr>().map(|a| a.ip().is_loopback()).unwrap_or(false);
        if !loopback && self.admin_token.is_none() && !self.admin_open {
            return Err(self.bad(
                "admin_token_file",
                format!(
                    "listen = {:?} is reachable from the network: set admin_token_file, or admin_open = true to serve the dashboard without a credential",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    /// The primary registry's URL; only meaningful on a secondary.
    pub fn primary_api_url(&self) -> Result<&str> {
        self.replication.primary_api_url.as_deref().ok_or_else(|| {
            self.bad("replication.primary_api_url", "is not set: this node does not know the primary registry")
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config {
        file: path.to_path_buf(),
        key: String::new(),
        message: format!("cannot read: {e} (pass --config FILE or set GEOREG_CONFIG)"),
    })
}

/// Turns a TOML error into one line: file, dotted key, what is wrong, line.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim().replace('\n', " ");
    let (key, line) = match e.span() {
        Some(span) => locate_key(text, span.start, &message),
        None => (String::new(), 0),
    };
    let message = if line > 0 { format!("{message} (line {line})") } else { message };
    Error::Config { file: path.to_path_buf(), key, message }
}

/// Finds the dotted key an error at byte `offset` is about, and its line.
fn locate_key(text: &str, offset: usize, message: &str) -> (String, usize) {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line_no - 1).copied().unwrap_or("").trim();
    let section = lines[..line_no.saturating_sub(1).min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .chain(std::iter::once(current).filter(|c| c.starts_with('[')))
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    // "missing field `x`" points at the table that lacks it.
    let missing = message.split('`').nth(1).filter(|_| message.starts_with("missing field"));
    let leaf = match missing {
        Some(field) => Some(field.to_string()),
        None if current.starts_with('[') => None,
        None => current.split('=').next().map(|k| k.trim().trim_matches('"').to_string()).filter(|k| !k.is_empty()),
    };
    let section = if current.starts_with('[') {
        Some(current.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    } else {
        section
    };
    let key = match (section, leaf) {
        (Some(s), Some(k)) if !s.is_empty() => format!("{s}.{k}"),
        (Some(s), None) => s,
        (_, Some(k)) => k,
        (None, None) => String::new(),
    };
    (key, line_no)
}
