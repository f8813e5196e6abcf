//! How georeg proves itself to a registry: the `Authorization` header of
//! each request.
//!
//! Two models. GitLab's, the default: georeg signs its own tokens with the
//! shared key (`token`) and never asks anyone for one. Everyone else's:
//! the registry answers 401 with a `WWW-Authenticate` challenge and georeg
//! follows it, Basic directly with the configured credentials, or Bearer
//! by asking the challenge's realm for a token of the scope it needs
//! (credentials go to the realm only, never to the registry), anonymously
//! when no credentials are configured. Tokens are kept per scope until
//! they expire, and asked again when the registry refuses one.
//!
//! Credentials never leave this module except in the header itself: their
//! `Debug` hides the password, and no message quotes a header.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::bounded::{self, Limits};
use super::challenge::{parse_challenge, Challenge};
use super::encoding;
use super::http::{registry_error, transport_message};
use super::token::{Scope, TokenCache};
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

/// A user name and password for one registry (or its token realm).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <hidden> }}", self.username)
    }
}

impl Credentials {
    fn basic(&self) -> String {
        format!("Basic {}", encoding::base64(format!("{}:{}", self.username, self.password).as_bytes()))
    }
}

impl From<TokenCache> for Auth {
    fn from(tokens: TokenCache) -> Auth {
        Auth::Signed(tokens)
    }
}

/// How a client authenticates to its registry.
pub enum Auth {
    /// GitLab's model: tokens signed with the shared key.
    Signed(TokenCache),
    /// The registry's own challenge, with credentials or anonymously.
    Challenged(Challenger),
}

impl Auth {
    /// Follows the registry's challenges with `credentials` (anonymously
    /// without). `keys` names the configuration keys that hold them, for
    /// messages: `registry` or `replication.primary`.
    pub fn challenged(credentials: Option<Credentials>, keys: &'static str) -> Auth {
        Auth::Challenged(Challenger {
            credentials,
            keys,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            plain_warned: Default::default(),
        })
    }

    /// The header for a request needing `scopes`, when there is one to send.
    pub(super) fn header(&self, scopes: &[Scope], via: &Via<'_>) -> Result<Option<String>> {
        match self {
            Auth::Signed(tokens) => Ok(Some(format!("Bearer {}", tokens.get(scopes)))),
            Auth::Challenged(c) => c.header(scopes, via),
        }
    }

    /// The registry answered 401 with `header`: learns what it asks for.
    /// True when asking again can help (a new challenge, or a token to
    /// renew), false when the same request would be refused the same way.
    /// `sent`: the `Authorization` the refused request carried.
    pub(super) fn refused(&self, header: Option<&str>, sent: Option<&str>, scopes: &[Scope]) -> bool {
        match self {
            Auth::Signed(_) => false,
            Auth::Challenged(c) => c.refused(header, sent, scopes),
        }
    }

    /// What this client authenticates with, in words for `georeg check`.
    pub fn describe(&self) -> String {
        match self {
            Auth::Signed(_) => "GitLab-style token signed with registry.key_file".into(),
            Auth::Challenged(c) => c.describe(),
        }
    }

    /// What to change when the registry refuses georeg.
    pub fn hint(&self) -> String {
        match self {
            Auth::Signed(_) => "check that the registry's auth.token issuer, service and rootcertbundle match \
                                registry.issuer, registry.service and registry.key_file"
                .into(),
            Auth::Challenged(c) => c.hint(),
        }
    }
}

/// What a token request goes through: the client's agent, bounds and stop.
pub(super) struct Via<'a> {
    pub agent: &'a ureq::Agent,
    pub limits: Limits,
    pub stop: &'a Shutdown,
    /// The registry's URL, for messages.
    pub registry: &'a str,
}

/// Follows a registry's `WWW-Authenticate` challenges.
pub struct Challenger {
    credentials: Option<Credentials>,
    keys: &'static str,
    /// What the registry asked for last; `None` until it asks.
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope, with the moment to stop using them.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Whether sending credentials over plain http was warned about.
    plain_warned: std::sync::atomic::AtomicBool,
}

/// A token realm's answer (distribution's token spec; OAuth2 says `access_token`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token without `expires_in` lasts 60 s (distribution's token spec).
const DEFAULT_TOKEN_SECONDS: u64 = 60;
/// The most bytes of a token realm's answer.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

impl Challenger {
    fn header(&self, scopes: &[Scope], via: &Via<'_>) -> Result<Option<String>> {
        let challenge = lock(&self.challenge).clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => {
                self.warn_if_plain(via.registry);
                Ok(self.credentials.as_ref().map(Credentials::basic))
            }
            Some(Challenge::Bearer { realm, service }) => {
                let key = scope_key(scopes);
                if let Some((token, until)) = lock(&self.tokens).get(&key) {
                    if *until > Instant::now() {
                        return Ok(Some(format!("Bearer {token}")));
                    }
                }
                self.warn_if_plain(&realm);
                let (token, lifetime) = self.ask_realm(&realm, service.as_deref(), scopes, via)?;
                // Renewed a little before it expires: a request that starts
                // with it must not be refused on the way.
                let until = Instant::now() + lifetime.saturating_sub((lifetime / 5).min(Duration::from_secs(10)));
                let mut tokens = lock(&self.tokens);
                if tokens.len() > 1024 {
                    let now = Instant::now();
                    tokens.retain(|_, (_, until)| *until > now);
                }
                tokens.insert(key, (token.clone(), until));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Credentials about to cross a network unencrypted: said once.
    fn warn_if_plain(&self, url: &str) {
        let Some(rest) = url.strip_prefix("http://") else { return };
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if self.credentials.is_some()
            && !loopback
            && !self.plain_warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            log::warn!(
                "{url} is plain http: the password of {} crosses the network readable by anyone on the way; \
                 serve it over https",
                self.key_names().0
            );
        }
    }

    fn refused(&self, header: Option<&str>, sent: Option<&str>, scopes: &[Scope]) -> bool {
        let Some(challenge) = header.and_then(parse_challenge) else {
            return false;
        };
        *lock(&self.challenge) = Some(challenge.clone());
        match challenge {
            // Refused with the credentials: they are wrong. Refused
            // without (the first request, or one sent before another
            // thread learned the challenge): send them.
            Challenge::Basic => self.credentials.is_some() && !sent.is_some_and(|s| s.starts_with("Basic ")),
            // A token expired or revoked early, or none sent yet: ask
            // the realm (the client asks again only once per request).
            Challenge::Bearer { .. } => {
                lock(&self.tokens).remove(&scope_key(scopes));
                true
            }
        }
    }

    /// `GET realm?service=..&scope=..`, with the credentials when there are.
    fn ask_realm(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
        via: &Via<'_>,
    ) -> Result<(String, Duration)> {
        let mut query: Vec<String> = Vec::new();
        if let Some(service) = service {
            query.push(format!("service={}", query_escape(service)));
        }
        for s in scopes {
            query.push(format!("scope={}", query_escape(&format!("{}:{}:{}", s.kind, s.name, s.actions.join(",")))));
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() { realm.to_string() } else { format!("{realm}{separator}{}", query.join("&")) };
        let mut req = via.agent.get(&url);
        if let Some(c) = &self.credentials {
            req = req.set("Authorization", &c.basic());
        }
        let resp = match req.call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => {
                let e = registry_error(resp, "GET", &url);
                return Err(self.realm_error(e, via.registry));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Transport {
                    url: url.clone(),
                    message: format!(
                        "{} (the token realm {} asked for by {})",
                        transport_message(&t),
                        realm,
                        via.registry
                    ),
                })
            }
        };
        let body = bounded::read_whole(resp, via.limits, via.stop, MAX_TOKEN_ANSWER, &url, "reading a token")?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Registry {
            request: format!("GET {url}"),
            status: 200,
            code: String::new(),
            message: format!("not a token answer: {e}"),
        })?;
        let token = answer.token.or(answer.access_token).filter(|t| !t.is_empty()).ok_or_else(|| Error::Registry {
            request: format!("GET {url}"),
            status: 200,
            code: String::new(),
            message: "the answer holds neither token nor access_token".into(),
        })?;
        Ok((token, Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS).max(1))))
    }

    fn realm_error(&self, e: Error, registry: &str) -> Error {
        match e {
            Error::Registry { request, status, code, message } => Error::Registry {
                request,
                status,
                code,
                message: format!("{message}: the token realm of {registry} refused {}; {}", self.who(), self.hint()),
            },
            other => other,
        }
    }

    fn who(&self) -> String {
        match &self.credentials {
            Some(c) => format!("the user {:?}", c.username),
            None => "an anonymous request".into(),
        }
    }

    fn describe(&self) -> String {
        let how = match &self.credentials {
            Some(c) => format!("as {:?}", c.username),
            None => "anonymously".into(),
        };
        match &*lock(&self.challenge) {
            None if self.credentials.is_some() => {
                "anonymous (the registry asked for no authentication; the credentials were not needed)".into()
            }
            None => "anonymous (the registry asked for no authentication)".into(),
            Some(Challenge::Basic) => format!("Basic {how}"),
            Some(Challenge::Bearer { realm, service }) => format!(
                "Bearer with realm {realm}{} {how}",
                service.as_deref().map(|s| format!(" (service {s:?})")).unwrap_or_default()
            ),
        }
    }

    /// The configuration keys of these credentials: user, password file, auth file.
    fn key_names(&self) -> (&'static str, &'static str, &'static str) {
        match self.keys {
            "registry" => ("registry.username", "registry.password_file", "registry.auth_file"),
            _ => ("replication.primary_username", "replication.primary_password_file", "replication.primary_auth_file"),
        }
    }

    fn hint(&self) -> String {
        let (user, password, file) = self.key_names();
        match &self.credentials {
            Some(_) => format!("check {user} and the password in {password} (or the entry in {file})"),
            None => format!("the registry wants credentials: set {user} and {password}, or {file}"),
        }
    }
}

/// The cache key of a set of scopes.
fn scope_key(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| format!("{}:{}:{} ", s.kind, s.name, s.actions.join(","))).collect()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let c = Credentials { username: "alice".into(), password: "s3cret-word".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.basic(), format!("Basic {}", encoding::base64(b"alice:s3cret-word")));
    }

    #[test]
    fn a_second_basic_challenge_is_final() {
        let auth = Auth::challenged(Some(Credentials { username: "u".into(), password: "p".into() }), "registry");
        let scopes = [Scope::repository("a", &["pull"])];
        let challenge = Some("Basic realm=\"r\"");
        assert!(auth.refused(challenge, None, &scopes), "first: send the credentials");
        assert!(auth.refused(challenge, None, &scopes), "sent before the challenge was known: send them");
        assert!(!auth.refused(challenge, Some("Basic dTpw"), &scopes), "sent and refused: they are wrong");
        let anonymous = Auth::challenged(None, "registry");
        assert!(!anonymous.refused(challenge, None, &scopes), "nothing to send");
    }

    /// A registry with a token realm on one tiny_http server: the realm
    /// hands out `tok-N` to Basic `u:p` (no `expires_in`); the registry
    /// takes only the newest token. Revoking it makes georeg ask again on
    /// the 401; the credentials reach only the realm.
    #[test]
    fn a_refused_token_is_asked_for_again_and_credentials_go_to_the_realm_only() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let (issued, basic_at_registry) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (srv, n, leaked, realm) = (server.clone(), issued.clone(), basic_at_registry.clone(), base.clone());
        let thread = std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let auth = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string())
                    .unwrap_or_default();
                let response = if request.url().starts_with("/token") {
                    assert!(request.url().contains("scope=repository%3Aa%3Apull"), "{}", request.url());
                    if auth == format!("Basic {}", encoding::base64(b"u:p")) {
                        let token = n.fetch_add(1, Ordering::SeqCst) + 1;
                        tiny_http::Response::from_string(format!(r#"{{"token":"tok-{token}"}}"#))
                    } else {
                        tiny_http::Response::from_string("{}").with_status_code(401)
                    }
                } else {
                    if auth.starts_with("Basic") {
                        leaked.fetch_add(1, Ordering::SeqCst);
                    }
                    if auth == format!("Bearer tok-{}", n.load(Ordering::SeqCst)) {
                        tiny_http::Response::from_string("{}")
                    } else {
                        let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}/token\",service=\"s\"");
                        tiny_http::Response::from_string("{}")
                            .with_status_code(401)
                            .with_header(challenge.parse::<tiny_http::Header>().unwrap())
                    }
                };
                let _ = request.respond(response);
            }
        });
        let agent = super::super::agent(crate::tls::client_config(None).unwrap());
        let auth = Auth::challenged(Some(Credentials { username: "u".into(), password: "p".into() }), "registry");
        let client = super::super::Client::read_only(&base, agent, auth);
        assert!(client.tags("a").is_ok(), "the challenge followed, a token asked for");
        assert!(client.tags("a").is_ok(), "the token reused");
        assert_eq!(issued.load(Ordering::SeqCst), 1);
        issued.fetch_add(1, Ordering::SeqCst); // revoked: the registry wants the next one
        assert!(client.tags("a").is_ok(), "refused, asked again");
        assert_eq!(issued.load(Ordering::SeqCst), 3);
        assert_eq!(basic_at_registry.load(Ordering::SeqCst), 0, "the registry never saw the credentials");
        assert!(client.auth_description().starts_with(&format!("Bearer with realm {base}/token")));
        server.unblock();
        thread.join().unwrap();
    }

    #[test]
    fn scopes_are_escaped_in_the_query() {
        assert_eq!(query_escape("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
