//! The checks `Config::parse` runs after TOML parsing: every value in
//! range, every file it names present and readable, every URL an http(s)
//! URL, and the combinations a role needs. Each failure names the key.

use super::file::{Config, Role};
use super::selective;
use crate::error::Result;

impl Config {
    /// `files`: also check the files the configuration names (the key,
    /// secrets, certificates); off for commands that only read the state
    /// file (`georeg status`).
    pub(super) fn validate(&mut self, files: bool) -> Result<()> {
        if self.node_name.trim().is_empty() {
            return Err(self.bad("node_name", "must not be empty"));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.bad("listen", format!("{:?} is not an address:port such as 127.0.0.1:5050", self.listen)));
        }
        self.registry.url = self.check_url("registry.url", &self.registry.url)?;
        if !(10..=3600).contains(&self.registry.token_ttl_seconds) {
            return Err(self.bad("registry.token_ttl_seconds", "must be between 10 and 3600"));
        }
        match &self.registry.key_file {
            Some(key) if files && !key.is_file() => {
                return Err(self.bad(
                    "registry.key_file",
                    format!("{} does not exist (copy gitlab-registry.key from the primary)", key.display()),
                ));
            }
            Some(_) => {}
            // The key also signs what nodes say to each other (the event
            // log, status reports): a primary georeg and a secondary that
            // follows one cannot do without it.
            None if self.role == Role::Primary => {
                return Err(self.bad(
                    "registry.key_file",
                    "is required on a primary: secondaries prove who they are with tokens signed with it                      (any RSA key all nodes share, e.g. openssl genrsa -out georeg.key 4096)",
                ));
            }
            None if self.replication.primary_node_url.is_some() => {
                return Err(self.bad(
                    "registry.key_file",
                    "is required with replication.primary_node_url: this node proves who it is to the                      primary georeg with a token signed with the key both share",
                ));
            }
            None if self.registry.certificate_file.is_some() => {
                return Err(
                    self.bad("registry.certificate_file", "is the certificate of registry.key_file, which is not set")
                );
            }
            None => {}
        }
        if let Some(cert) = self.registry.certificate_file.as_ref().filter(|_| files) {
            if !cert.is_file() {
                return Err(self.bad("registry.certificate_file", format!("{} does not exist", cert.display())));
            }
        }
        if files {
            self.validate_secret()?;
        }
        if let Some(file) = self.admin_token_file.as_ref().filter(|_| files) {
            let text = std::fs::read_to_string(file)
                .map_err(|e| self.bad("admin_token_file", format!("cannot read {}: {e}", file.display())))?;
            let token = text.trim().to_string();
            if token.len() < 16 || token.contains(char::is_whitespace) {
                return Err(self.bad(
                    "admin_token_file",
                    "the admin token must be at least 16 characters without spaces (e.g. openssl rand -hex 24)",
                ));
            }
            self.admin_token = Some(token);
        }
        if !(1..=64).contains(&self.replication.workers) {
            return Err(self.bad("replication.workers", "must be between 1 and 64"));
        }
        if let Some(url) = &self.replication.primary_api_url {
            self.replication.primary_api_url = Some(self.check_url("replication.primary_api_url", url)?);
        }
        if files {
            self.load_credentials()?;
        }
        for name in &self.replication.repositories {
            if !crate::registry::valid_repository(name) {
                return Err(self.bad(
                    "replication.repositories",
                    format!("{:?} is not a repository name (lowercase path components such as group/app)", name),
                ));
            }
        }
        if self.replication.reconcile_interval_seconds < 10 {
            return Err(self.bad(
                "replication.reconcile_interval_seconds",
                "must be at least 10 (no divergence outlives this window; a larger one costs less)",
            ));
        }
        if self.replication.backfill_interval_seconds < 5 {
            return Err(self.bad("replication.backfill_interval_seconds", "must be at least 5"));
        }
        if self.event_retention_days == 0 {
            return Err(self.bad("event_retention_days", "must be at least 1"));
        }
        if self.event_retention_max_days < self.event_retention_days {
            return Err(self.bad(
                "event_retention_max_days",
                format!("must be at least event_retention_days ({})", self.event_retention_days),
            ));
        }
        if self.replication.report_interval_seconds == 0 {
            return Err(self.bad("replication.report_interval_seconds", "must be at least 1"));
        }
        if let Some(rate) = &self.replication.max_bandwidth {
            let bytes =
                crate::registry::pace::parse_rate(rate).map_err(|why| self.bad("replication.max_bandwidth", why))?;
            self.replication.max_bytes_per_second = Some(bytes);
        }
        let chunk = crate::registry::pace::parse_size(&self.replication.chunk_size)
            .map_err(|why| self.bad("replication.chunk_size", why))?;
        if chunk != 0 && !(1 << 20..=1 << 30).contains(&chunk) {
            return Err(self.bad("replication.chunk_size", "must be 0 (off) or between 1MiB and 1GiB"));
        }
        // Chunks end where the SHA-256 state can be saved: on 64-byte multiples.
        self.replication.chunk_bytes = chunk / 64 * 64;
        if !(1..=16).contains(&self.replication.blob_streams) {
            return Err(self.bad("replication.blob_streams", "must be between 1 and 16"));
        }
        if !(1..=3600).contains(&self.replication.stall_seconds) {
            return Err(self.bad("replication.stall_seconds", "must be between 1 and 3600"));
        }
        self.replication.min_bytes_per_second = match self.replication.min_rate.trim() {
            "0" => 0,
            rate => crate::registry::pace::parse_rate(rate).map_err(|why| self.bad("replication.min_rate", why))?,
        };
        if let Some(max) = self.replication.max_bytes_per_second {
            let workers = self.replication.workers.max(1) as u64;
            if self.replication.min_bytes_per_second > max / workers {
                return Err(self.bad(
                    "replication.min_rate",
                    format!(
                        "must be below replication.max_bandwidth shared by the {workers} workers ({} bytes/s each), \
                         or every busy worker would count as stalled",
                        max / workers
                    ),
                ));
            }
        }
        if !(5..=7 * 86400).contains(&self.replication.sync_budget_seconds) {
            return Err(self.bad("replication.sync_budget_seconds", "must be between 5 and 604800 (a week)"));
        }
        if self.replication.max_tags == 0 {
            return Err(self.bad("replication.max_tags", "must be at least 1"));
        }
        if self.replication.max_requests_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(self.bad("replication.max_requests_per_second", "must be a number above 0"));
        }
        if self.replication.failing_alert_seconds < 60 {
            return Err(self.bad("replication.failing_alert_seconds", "must be at least 60"));
        }
        if self.replication.bundle_max_age_hours > 24 * 366 {
            return Err(self.bad("replication.bundle_max_age_hours", "must be at most 8784 (a year), or 0 for never"));
        }
        if self.replication.delete_delay_hours > 24 * 365 {
            return Err(self.bad("replication.delete_delay_hours", "must be at most 8760 (a year)"));
        }
        let share = self.replication.delete_burst_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(self.bad("replication.delete_burst_share", "must be above 0 and at most 1 (0.5: half)"));
        }
        if self.replication.delete_burst_min_tags == 0 {
            return Err(self.bad("replication.delete_burst_min_tags", "must be at least 1"));
        }
        if (1..5).contains(&self.replication.drill_interval_seconds) {
            return Err(self.bad("replication.drill_interval_seconds", "must be 0 (no scheduled drills) or at least 5"));
        }
        if !(1..=10_000).contains(&self.replication.drill_sample) {
            return Err(self.bad("replication.drill_sample", "must be between 1 and 10000"));
        }
        if self.replication.reverification_interval_seconds < 60 {
            return Err(self.bad("replication.reverification_interval_seconds", "must be at least 60"));
        }
        for (key, patterns) in
            [("replication.include", &self.replication.include), ("replication.exclude", &self.replication.exclude)]
        {
            for p in patterns {
                selective::check_pattern(p).map_err(|why| self.bad(key, why))?;
            }
        }
        if let Some(url) = &self.replication.primary_node_url {
            let url = self.check_url("replication.primary_node_url", url)?;
            let authority = url.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
            if authority.eq_ignore_ascii_case(&self.listen) {
                return Err(self.bad(
                    "replication.primary_node_url",
                    format!(
                        "{url} is this node's own address (listen = {:?}): a node cannot follow itself; name the \
                         primary georeg, or a relay closer to it",
                        self.listen
                    ),
                ));
            }
            self.replication.primary_node_url = Some(url);
        }
        if files {
            self.validate_tls()?;
        }
        if self.role == Role::Secondary && self.replication.enabled && self.replication.primary_api_url.is_none() {
            return Err(self.bad(
                "replication.primary_api_url",
                "is required on a secondary with replication enabled: the primary registry's URL",
            ));
        }
        // A primary receives the registry's notifications: without the
        // secret every one is refused, and the registry retries the first
        // forever, blocking its whole queue. A secondary without it (and
        // without a primary georeg to follow) learns of changes by
        // reconciliation alone, and says so at its start; a registry that
        // notifies it anyway is refused, which raises the alarm.
        let no_secret = self.notifications.secret.is_none() && (files || self.notifications.secret_file.is_none());
        if no_secret && self.role == Role::Primary {
            return Err(self.bad(
                "notifications.secret_file",
                "is required on a primary: the registry's notifications must be authenticated",
            ));
        }
        // Pull-only tokens for the primary, push tokens for this node's own
        // registry: the same registry in both places would copy into the
        // primary with tokens it trusts.
        if let Some(primary) = &self.replication.primary_api_url {
            if same_registry(primary, &self.registry.url) {
                return Err(self.bad(
                    "replication.primary_api_url",
                    format!(
                        "names the same registry as registry.url ({}): registry.url is this node's own registry, \
                         which georeg writes to; replication.primary_api_url is the primary's, which it only reads",
                        self.registry.url
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The notification secret, read from `secret_file` when given there.
    /// The seed requires it alphanumeric and starting with a letter.
    fn validate_secret(&mut self) -> Result<()> {
        let n = &self.notifications;
        let (key, secret) = match (&n.secret, &n.secret_file) {
            (Some(_), Some(_)) => {
                return Err(self.bad("notifications.secret", "set either secret or secret_file, not both"));
            }
            (Some(s), None) => ("notifications.secret", s.clone()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    self.bad("notifications.secret_file", format!("cannot read {}: {e}", file.display()))
                })?;
                ("notifications.secret_file", text.trim_end_matches(['\n', '\r']).to_string())
            }
            (None, None) => return Ok(()),
        };
        let mut chars = secret.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(self.bad(key, "the secret must be alphanumeric and start with a letter (GitLab's rule)"));
        }
        self.notifications.secret = Some(secret);
        Ok(())
    }

    /// The credentials of both registries, from the files their keys name.
    fn load_credentials(&mut self) -> Result<()> {
        use super::credentials::{self, PRIMARY, REGISTRY};
        let r = &self.registry;
        let local = credentials::load(
            &REGISTRY,
            &r.url,
            r.username.as_deref(),
            r.password_file.as_deref(),
            r.auth_file.as_deref(),
        )
        .map_err(|(key, why)| self.bad(key, why))?;
        let p = &self.replication;
        let primary = match &p.primary_api_url {
            Some(url) => credentials::load(
                &PRIMARY,
                url,
                p.primary_username.as_deref(),
                p.primary_password_file.as_deref(),
                p.primary_auth_file.as_deref(),
            )
            .map_err(|(key, why)| self.bad(key, why))?,
            None if p.primary_username.is_some()
                || p.primary_password_file.is_some()
                || p.primary_auth_file.is_some() =>
            {
                return Err(self.bad(
                    "replication.primary_api_url",
                    "is required with credentials for the primary registry (replication.primary_username...)",
                ));
            }
            None => None,
        };
        self.registry.credentials = local;
        self.replication.primary_credentials = primary;
        Ok(())
    }

    /// Loads what `[tls]` names, so that a bad file stops georeg at start.
    fn validate_tls(&self) -> Result<()> {
        if let Some(ca) = &self.tls.ca_file {
            crate::tls::load_certificates(ca).map_err(|why| self.bad("tls.ca_file", why))?;
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                crate::tls::server_config(cert, key).map_err(|(key, why)| self.bad(key, why))?;
            }
            (Some(_), None) => return Err(self.bad("tls.key_file", "is required with tls.cert_file")),
            (None, Some(_)) => return Err(self.bad("tls.cert_file", "is required with tls.key_file")),
            (None, None) => {}
        }
        Ok(())
    }

    fn check_url(&self, key: &str, url: &str) -> Result<String> {
        let trimmed = url.trim_end_matches('/');
        let rest = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(trimmed.to_string()),
            _ => Err(self.bad(key, format!("{url:?} is not an http:// or https:// URL"))),
        }
    }
}

/// Whether two registry URLs name the same registry (scheme and host
/// case-insensitive, default ports implied, trailing slashes ignored).
fn same_registry(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.trim_end_matches('/').to_ascii_lowercase();
        let (scheme, rest) = u.split_once("://").unwrap_or(("http", &u));
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap_or((rest.to_string(), String::new()));
        let host = match (scheme, host.rsplit_once(':')) {
            (_, Some((h, port))) if port.chars().all(|c| c.is_ascii_digit()) => format!("{h}:{port}"),
            ("https", _) => format!("{host}:443"),
            _ => format!("{host}:80"),
        };
        (scheme.to_string(), host, path)
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::same_registry;

    #[test]
    fn one_registry_under_two_spellings_is_the_same() {
        assert!(same_registry("http://Registry.example:5000/", "http://registry.example:5000"));
        assert!(same_registry("https://r.example", "https://r.example:443/"));
        assert!(!same_registry("http://r.example:5000", "http://r.example:5001"));
        assert!(!same_registry("http://a.example", "http://b.example"));
    }
}
