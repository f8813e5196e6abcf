//! Credentials for a registry from the configuration: a user name with a
//! password file, or a Docker `config.json`-style auth file (what docker,
//! podman, skopeo, crane and regctl write), whose `auths` map is keyed by
//! the registry's host[:port].
//!
//! Errors name the key and the file, never the password.

use std::path::Path;

use serde::Deserialize;

use crate::registry::auth::Credentials;
use crate::registry::encoding;

/// The three keys of one registry's credentials, e.g. `registry.username`.
pub struct Keys {
    pub username: &'static str,
    pub password_file: &'static str,
    pub auth_file: &'static str,
}

pub const REGISTRY: Keys =
    Keys { username: "registry.username", password_file: "registry.password_file", auth_file: "registry.auth_file" };
pub const PRIMARY: Keys = Keys {
    username: "replication.primary_username",
    password_file: "replication.primary_password_file",
    auth_file: "replication.primary_auth_file",
};

/// The credentials for the registry at `url`, or `None` when none are
/// configured. `Err((key, why))` names the key at fault.
pub fn load(
    keys: &Keys,
    url: &str,
    username: Option<&str>,
    password_file: Option<&Path>,
    auth_file: Option<&Path>,
) -> Result<Option<Credentials>, (&'static str, String)> {
    match (username, password_file, auth_file) {
        (None, None, None) => Ok(None),
        (_, _, Some(_)) if username.is_some() || password_file.is_some() => Err((
            keys.auth_file,
            format!("set either {} or {} with {}, not both", keys.auth_file, keys.username, keys.password_file),
        )),
        (Some(user), Some(file), None) => {
            if user.is_empty() || user.contains(':') {
                return Err((keys.username, "must not be empty nor contain ':' (HTTP Basic cannot carry it)".into()));
            }
            let text = std::fs::read_to_string(file)
                .map_err(|e| (keys.password_file, format!("cannot read {}: {e}", file.display())))?;
            let password = text.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err((keys.password_file, format!("{} is empty", file.display())));
            }
            Ok(Some(Credentials { username: user.to_string(), password }))
        }
        (Some(_), None, None) => Err((keys.password_file, format!("is required with {}", keys.username))),
        (None, Some(_), None) => Err((keys.username, format!("is required with {}", keys.password_file))),
        (_, _, Some(file)) => from_auth_file(file, url).map(Some).map_err(|why| (keys.auth_file, why)),
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The entry of `auths` for the registry at `url`.
fn from_auth_file(file: &Path, url: &str) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    // serde_json's messages quote no values, only positions.
    let parsed: AuthFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a Docker config.json-style auth file: {e}", file.display()))?;
    let host = host_of(url);
    let entry = parsed.auths.iter().find(|(key, _)| host_of(key) == host).map(|(_, entry)| entry);
    let Some(entry) = entry else {
        if parsed.cred_helpers.keys().any(|k| host_of(k) == host) {
            return Err(format!(
                "{} sends {host} to a credential helper (credHelpers), which georeg does not run: \
                 put the credentials in its auths map (docker login --password-stdin with DOCKER_CONFIG \
                 pointing at a directory of georeg's own writes one)",
                file.display()
            ));
        }
        let mut known: Vec<&str> = parsed.auths.keys().map(String::as_str).collect();
        known.sort();
        return Err(format!(
            "{} has no entry for {host} in auths (it has: {})",
            file.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ));
    };
    let bad = |why: &str| format!("{}: the entry for {host} {why}", file.display());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = encoding::base64_decode(auth).ok_or_else(|| bad("has an auth that is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("has an auth that is not text"))?;
        let (username, password) =
            decoded.split_once(':').ok_or_else(|| bad("has an auth that is not base64 of user:password"))?;
        if username.is_empty() || password.is_empty() {
            return Err(bad("has an auth with an empty user or password"));
        }
        return Ok(Credentials { username: username.into(), password: password.into() });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
            Ok(Credentials { username: u.clone(), password: p.clone() })
        }
        _ if entry.identitytoken.is_some() => {
            Err(bad("holds an identity token (OAuth2 refresh token), which georeg does not use: give it auth"))
        }
        _ => Err(bad("has neither auth nor username and password")),
    }
}

/// `host[:port]` of a URL or of an `auths` key (`https://host:port/v1/`,
/// `host:port`), lowercase, without a default port.
fn host_of(text: &str) -> String {
    let lower = text.trim().to_ascii_lowercase();
    let (scheme, rest) = match lower.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("", lower.as_str()),
    };
    let host = rest.split('/').next().unwrap_or("");
    match (scheme, host.rsplit_once(':')) {
        ("https", Some((h, "443"))) | ("http", Some((h, "80"))) => h.to_string(),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("georeg-cred-test-{}", crate::registry::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn hosts_match_across_spellings() {
        assert_eq!(host_of("https://Registry.example:443/v1/"), "registry.example");
        assert_eq!(host_of("registry.example:5000"), "registry.example:5000");
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn auth_files_give_credentials_by_host() {
        let auth = encoding::base64(b"alice:pa:ss");
        let file = temp(
            "config.json",
            &format!(
                r#"{{"auths": {{"https://r.example:5000": {{"auth": "{auth}"}},
                  "other.example": {{"username": "bob", "password": "pw"}}}}}}"#
            ),
        );
        let c = load(&REGISTRY, "https://r.example:5000", None, None, Some(&file)).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "pa:ss"));
        let c = load(&PRIMARY, "http://other.example/", None, None, Some(&file)).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        let (key, why) = load(&PRIMARY, "http://third.example", None, None, Some(&file)).unwrap_err();
        assert_eq!(key, "replication.primary_auth_file");
        assert!(why.contains("no entry for third.example") && why.contains("other.example"), "{why}");
    }

    #[test]
    fn user_and_password_file_go_together() {
        let pw = temp("pw", "secret-one\n");
        let c = load(&REGISTRY, "http://r", Some("u"), Some(&pw), None).unwrap().unwrap();
        assert_eq!(c.password, "secret-one");
        assert_eq!(load(&REGISTRY, "http://r", Some("u"), None, None).unwrap_err().0, "registry.password_file");
        assert_eq!(load(&REGISTRY, "http://r", None, Some(&pw), None).unwrap_err().0, "registry.username");
        let (key, why) = load(&REGISTRY, "http://r", Some("u"), Some(&pw), Some(&pw)).unwrap_err();
        assert_eq!(key, "registry.auth_file");
        assert!(!why.contains("secret-one"));
        let empty = temp("empty", "\n");
        assert!(load(&REGISTRY, "http://r", Some("u"), Some(&empty), None).unwrap_err().1.contains("is empty"));
    }
}
