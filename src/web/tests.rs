//! Route tests: every endpoint's status codes (access missing, wrong and
//! right; CSRF; methods), through tiny_http's `TestRequest`, no socket.
#![cfg(test)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tiny_http::{Header, Method, TestRequest};

use super::app::App;
use super::http::Reply;
use super::server::{handle, response};
use crate::config::Config;
use crate::health::{Health, Stats};
use crate::peer::node_token;
use crate::registry;
use crate::registry::token::Signer;
use crate::shutdown::Shutdown;
use crate::store::{Log, Reader, Store};

const ADMIN: &str = "admin-token-0123456789";
const SECRET: &str = "NotifySecret1";
const ENVELOPE: &str = r#"{"events":[{"id":"e1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"g/app","tag":"v1","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}]}"#;

/// Everything an [`App`] borrows, for one role.
struct Fixture {
    config: Config,
    store: Store,
    log: Log,
    reader: Reader,
    stats: Stats,
    health: Health,
    signer: Arc<Signer>,
    shutdown: Shutdown,
    pushed: crate::replication::pushed::Pushed,
}

impl Fixture {
    fn new(role: &str) -> Fixture {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let text = format!(
            "node_name = \"n\"\nrole = \"{role}\"\n[registry]\nurl = \"http://127.0.0.1:1\"\n\
             key_file = \"test-key-pkcs1.pem\"\n[notifications]\nsecret = \"{SECRET}\"\n\
             [replication]\nprimary_api_url = \"http://127.0.0.2:1\"\n"
        );
        let mut config = Config::parse(&data.join("route-test.toml"), &text).unwrap();
        config.admin_token = Some(ADMIN.into());
        let signer =
            Arc::new(Signer::load(config.registry.key_file.as_deref().unwrap(), None, "gitlab-issuer").unwrap());
        let store = Store::open_in_memory().unwrap();
        Fixture {
            config,
            log: store.log(),
            reader: store.reader().unwrap(),
            store,
            stats: Stats::default(),
            health: Health::default(),
            signer,
            shutdown: Shutdown::default(),
            pushed: Default::default(),
        }
    }

    fn app(&self) -> App<'_> {
        App {
            config: &self.config,
            log: &self.log,
            reader: &self.reader,
            stats: &self.stats,
            health: &self.health,
            signer: Some(&self.signer),
            form_secret: "unused".into(),
            shutdown: &self.shutdown,
            refusals: Default::default(),
            long_polls: Default::default(),
            pushed: &self.pushed,
            prefetch: None,
        }
    }

    fn send(&self, rq: TestRequest) -> Reply {
        handle(&self.app(), &mut rq.into())
    }

    fn csrf(&self) -> String {
        super::auth::csrf_token(&self.app())
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

fn get(path: &str) -> TestRequest {
    TestRequest::new().with_path(path)
}

fn post(path: &str, body: &'static str) -> TestRequest {
    TestRequest::new().with_method(Method::Post).with_path(path).with_body(body)
}

fn admin(rq: TestRequest) -> TestRequest {
    rq.with_header(header("Authorization", &format!("Bearer {ADMIN}")))
}

fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[test]
fn health_is_open_and_readiness_names_what_is_down() {
    let f = Fixture::new("secondary");
    assert_eq!(f.send(get("/-/health")).status, 200);
    let ready = f.send(get("/-/readiness"));
    assert_eq!(ready.status, 503);
    assert!(body(&ready).contains("not checked its registry yet"), "{}", body(&ready));
    // The report thread's check found the registry down: readiness says
    // so, from the same snapshot the status reads.
    let down = "cannot reach http://127.0.0.1:1/v2/: Connection refused";
    f.log.record_health(Some(&format!("own registry: {down}")), Some(down)).unwrap();
    let ready = f.send(get("/-/readiness"));
    assert_eq!(ready.status, 503);
    assert!(body(&ready).contains("registry does not answer: cannot reach http://127.0.0.1:1"), "{}", body(&ready));
    f.log.record_health(None, None).unwrap();
    assert_eq!(f.send(get("/-/readiness")).status, 200);
}

#[test]
fn admin_pages_need_the_credential() {
    let f = Fixture::new("secondary");
    let pages = [
        "/api/v1/status",
        "/metrics",
        "/admin/geo/nodes",
        "/admin/geo/replication/container_repositories",
        "/admin/geo/replication/container_repositories?state=failed&name=x&page=2",
    ];
    for page in pages {
        let missing = f.send(get(page));
        assert_eq!(missing.status, 401, "{page}");
        assert!(missing.headers.iter().any(|(k, v)| *k == "WWW-Authenticate" && v.starts_with("Basic")), "{page}");
        let wrong = f.send(get(page).with_header(header("Authorization", "Bearer admin-token-012345678X")));
        assert_eq!(wrong.status, 401, "{page}");
        assert_eq!(f.send(admin(get(page))).status, 200, "{page}");
    }
    // HTTP Basic: any user, the token as password ("u:admin-token-0123456789").
    let basic = header("Authorization", "Basic dTphZG1pbi10b2tlbi0wMTIzNDU2Nzg5");
    assert_eq!(f.send(get("/admin/geo/nodes").with_header(basic)).status, 200);
    let wrong_basic = header("Authorization", "Basic dTp3cm9uZw==");
    assert_eq!(f.send(get("/admin/geo/nodes").with_header(wrong_basic)).status, 401);
    let root = f.send(admin(get("/")));
    assert_eq!((root.status, root.headers[0].1.as_str()), (303, "/admin/geo/nodes"));
    assert_eq!(f.send(admin(get("/no/such/page"))).status, 404);
    // The right path with the wrong method is no page either.
    assert_eq!(f.send(admin(post("/api/v1/status", ""))).status, 404);
    assert_eq!(f.send(admin(get("/api/v4/container_registry_event/events"))).status, 404);
}

#[test]
fn body_limits_come_from_the_endpoints() {
    use super::server::{body_limit, MAX_API_BODY, MAX_OTHER_BODY};
    assert_eq!(body_limit("POST", "/api/v4/container_registry_event/events"), MAX_API_BODY);
    assert_eq!(body_limit("POST", "/api/v1/nodes/status"), MAX_API_BODY);
    assert_eq!(body_limit("POST", "/admin/geo/replication/container_repositories/resync"), MAX_OTHER_BODY);
    // The right path with another method, and no endpoint at all.
    assert_eq!(body_limit("GET", "/api/v4/container_registry_event/events"), MAX_OTHER_BODY);
    assert_eq!(body_limit("POST", "/no/such/page"), MAX_OTHER_BODY);
}

#[test]
fn notifications_need_the_secret_and_a_well_formed_envelope() {
    let f = Fixture::new("secondary");
    let path = "/api/v4/container_registry_event/events";
    let events =
        |rq: TestRequest| rq.with_header(header("Content-Type", "application/vnd.docker.distribution.events.v2+json"));
    assert_eq!(f.send(events(post(path, ENVELOPE))).status, 401, "no secret");
    let wrong = events(post(path, ENVELOPE)).with_header(header("Authorization", "NotifySecret2"));
    assert_eq!(f.send(wrong).status, 401, "wrong secret");
    // The admin credential is not the notification secret.
    assert_eq!(f.send(admin(events(post(path, ENVELOPE)))).status, 401);
    let auth = |rq: TestRequest| rq.with_header(header("Authorization", SECRET));
    let text = auth(post(path, ENVELOPE)).with_header(header("Content-Type", "text/plain"));
    assert_eq!(f.send(text).status, 415);
    assert_eq!(f.send(auth(events(post(path, "{not json")))).status, 400);
    let huge = auth(events(post(path, ENVELOPE))).with_header(header("Content-Length", "2000000"));
    assert_eq!(f.send(huge).status, 413);
    let ok = f.send(auth(events(post(path, ENVELOPE))));
    assert_eq!(ok.status, 200, "{}", body(&ok));
    assert!(body(&ok).contains("\"stored\":1"), "{}", body(&ok));
    let again = f.send(auth(events(post(path, ENVELOPE))));
    assert!(body(&again).contains("\"duplicates\":1"), "{}", body(&again));
    assert_eq!(f.store.log().events_after(0, 10).unwrap().len(), 1, "a redelivery is stored once");
}

#[test]
fn the_event_log_and_reports_need_a_node_token_on_a_primary_and_a_relay() {
    let f = Fixture::new("primary");
    f.store
        .log()
        .record_events(&super::notifications::parse_envelope(ENVELOPE.as_bytes()).unwrap().events, false)
        .unwrap();
    let log = "/api/v1/events?after=0&limit=10";
    assert_eq!(f.send(get(log)).status, 401, "no token");
    assert_eq!(f.send(admin(get(log))).status, 401, "the admin credential is no node token");
    let forged = Signer::new(rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap(), "gitlab-issuer");
    let bearer = |token: String| header("Authorization", &format!("Bearer {token}"));
    assert_eq!(f.send(get(log).with_header(bearer(node_token(&forged, "s1")))).status, 401, "another key");
    let page = f.send(get(log).with_header(bearer(node_token(&f.signer, "s1"))));
    assert_eq!(page.status, 200);
    let page: crate::peer::Page = serde_json::from_slice(&page.body).unwrap();
    assert_eq!((page.events.len(), page.last_event_id), (1, 1));

    let report = "/api/v1/nodes/status";
    assert_eq!(f.send(post(report, "{}")).status, 401);
    let token = || bearer(node_token(&f.signer, "s1"));
    assert_eq!(f.send(post(report, "{not json").with_header(token())).status, 400);
    let status = r#"{"node":{"name":"s1","role":"secondary","version":"0","replication_enabled":true},"healthy":true}"#;
    assert_eq!(f.send(post(report, status).with_header(token())).status, 200);
    assert_eq!(f.store.read(|s| s.nodes()).unwrap()[0].name, "s1");

    // A secondary serves both too, as a relay: the log of what it applied
    // (another log than the events it read), and its followers' reports.
    let s = Fixture::new("secondary");
    let page = s.send(get(log).with_header(bearer(node_token(&s.signer, "hop"))));
    assert_eq!(page.status, 200);
    let page: crate::peer::Page = serde_json::from_slice(&page.body).unwrap();
    assert!(page.events.is_empty() && page.epoch.ends_with(".applied"), "{page:?}");
    assert_eq!(s.send(get(log)).status, 401, "no token");
    assert_eq!(s.send(post(report, status).with_header(bearer(node_token(&s.signer, "hop")))).status, 200);
    assert_eq!(s.store.read(|s| s.nodes()).unwrap()[0].name, "hop");
}

#[test]
fn resync_buttons_need_the_form_token() {
    let f = Fixture::new("secondary");
    let one = "/admin/geo/replication/container_repositories/resync";
    let failed = "/admin/geo/replication/container_repositories/resync_failed";
    assert_eq!(f.send(post(one, "name=g%2Fapp")).status, 401, "admin credential first");
    assert_eq!(f.send(admin(post(one, "name=g%2Fapp"))).status, 403, "no csrf");
    assert_eq!(f.send(admin(post(one, "name=g%2Fapp&csrf=0123"))).status, 403, "stale csrf");
    let with_csrf = |body: String| -> &'static str { Box::leak(body.into_boxed_str()) };
    let bad_name = with_csrf(format!("name=G%2F..&csrf={}", f.csrf()));
    assert_eq!(f.send(admin(post(one, bad_name))).status, 400);
    let good = with_csrf(format!("name=g%2Fapp&csrf={}", f.csrf()));
    let pressed = f.send(admin(post(one, good)));
    assert_eq!(pressed.status, 303);
    let back = pressed.headers.iter().find(|h| h.0 == "Location").map(|h| h.1.clone()).unwrap_or_default();
    assert!(back.ends_with("?done=resync"), "{back}");
    assert!(body(&f.send(admin(get(Box::leak(back.into_boxed_str()))))).contains("Resync queued"));
    assert!(f.store.repository("g/app").unwrap().unwrap().full_sync_requested);
    let all = with_csrf(format!("csrf={}", f.csrf()));
    assert_eq!(f.send(admin(post(failed, all))).status, 303);
    assert_eq!(f.send(admin(get(one))).status, 404, "a GET presses no button");
}

#[test]
fn a_primary_exports_no_secondary_only_series() {
    let primary = body(&Fixture::new("primary").send(admin(get("/metrics"))));
    let secondary = body(&Fixture::new("secondary").send(admin(get("/metrics"))));
    for series in ["georeg_container_repositories", "georeg_cursor_lag_seconds", "georeg_copied_bytes_total"] {
        assert!(!primary.contains(series), "{series} on a primary");
        assert!(secondary.contains(series), "{series} on a secondary");
    }
    for text in [&primary, &secondary] {
        assert!(text.contains("georeg_build_info{version=") && text.contains("\nprocess_open_fds "), "{text}");
    }
}

#[test]
fn the_nodes_page_shows_the_last_bundle_imported_and_its_age() {
    let f = Fixture::new("secondary");
    let page = body(&f.send(admin(get("/admin/geo/nodes"))));
    assert!(!page.contains("Transfer bundles"), "a secondary fed by replication has none");
    let bundle = crate::store::NewBundle {
        id: "0123456789abcdef",
        primary_url: "http://127.0.0.2:1",
        created_at: "2020-01-01T00:00:00.000Z",
        inventory_id: None,
        file: "/media/usb/b.tar",
        repositories: 1,
        forced: None,
    };
    f.store.begin_bundle(&bundle).unwrap();
    let page = body(&f.send(admin(get("/admin/geo/nodes"))));
    assert!(page.contains("has not finished") && page.contains("georeg import /media/usb/b.tar"), "{page}");
    f.store.finish_bundle("0123456789abcdef", "1 repositories").unwrap();
    let page = body(&f.send(admin(get("/admin/geo/nodes"))));
    assert!(page.contains("Transfer bundles") && page.contains("0123456789ab</span>"), "{page}");
    assert!(page.contains(" d ago</span>") && !page.contains("has not finished"), "{page}");
}

#[test]
fn a_large_answer_is_framed_by_its_length_so_the_front_keeps_the_connection() {
    // Beyond tiny_http's 32 KiB chunked threshold, as a page of 50
    // repositories with failures is.
    let reply = Reply::html("x".repeat(100_000));
    let mut wire = Vec::new();
    response(reply).raw_print(&mut wire, tiny_http::HTTPVersion(1, 1), &[], false, None).unwrap();
    let text = String::from_utf8_lossy(&wire);
    assert!(text.contains("Content-Length: 100000\r\n"), "{}", &text[..200]);
    assert!(!text.contains("Transfer-Encoding"));
    // The front relays it by its length and keeps the server connection
    // for the client's next request, instead of reading until it closes.
    let mut to = Vec::new();
    assert!(super::wire::relay_response(&mut std::io::Cursor::new(wire.clone()), &mut to, false).unwrap());
    assert_eq!(to, wire);
}

#[test]
fn held_deletions_are_listed_with_apply_and_keep_buttons_that_need_the_form_token() {
    use crate::store::{Cause, DeletionKind, DeletionPolicy, NewDeletion};
    let f = Fixture::new("secondary");
    let d = crate::registry::Digest::sha256_of(b"m");
    f.store.set_tag("g/app", "v1", &d).unwrap();
    let policy = DeletionPolicy { delay_hours: 24, ..DeletionPolicy::default() };
    for tag in ["v1", "v2"] {
        let held = NewDeletion {
            kind: DeletionKind::Tag,
            tag: Some(tag),
            digest: Some(&d),
            cause: Cause::TagRemoved,
            tags: 1,
            bundle: None,
        };
        f.store.hold_deletion("g/app", &held, &policy).unwrap();
    }
    let page = body(&f.send(admin(get("/admin/geo/nodes"))));
    assert!(
        page.contains("Deletions held back") && page.contains("tag v1 (sha256:") && page.contains("Apply now"),
        "{page}"
    );
    let list = body(&f.send(admin(get("/admin/geo/replication/container_repositories"))));
    assert!(list.contains("2 deletions held</a>"), "the repository list says so: {list}");
    let path = "/admin/geo/replication/deletions";
    let with_csrf = |body: String| -> &'static str { Box::leak(body.into_boxed_str()) };
    assert_eq!(f.send(admin(post(path, "id=1&action=keep"))).status, 403, "no csrf");
    let keep = f.send(admin(post(path, with_csrf(format!("id=1&action=keep&csrf={}", f.csrf())))));
    assert_eq!(keep.status, 303);
    let apply = f.send(admin(post(path, with_csrf(format!("id=2&action=apply&csrf={}", f.csrf())))));
    assert_eq!(apply.status, 303);
    let again = f.send(admin(post(path, with_csrf(format!("id=1&action=keep&csrf={}", f.csrf())))));
    assert_eq!(again.status, 409, "deletion 1 is no longer held");
    let states: Vec<(i64, String, Option<String>)> = f
        .reader
        .read(|snap| {
            Ok(snap
                .open_deletions()?
                .into_iter()
                .map(|d| (d.id, d.state.as_str().to_string(), d.decided_by.map(|b| b.as_str().to_string())))
                .collect())
        })
        .unwrap();
    assert!(states.contains(&(1, "cancelled".into(), Some("operator".into()))), "{states:?}");
    assert!(states.contains(&(2, "held".into(), Some("operator".into()))), "apply made it due: {states:?}");
    let page = body(&f.send(admin(get("/admin/geo/nodes?done=deletion-2-applied"))));
    assert!(page.contains("Deletion 2 is due now"), "{page}");
}

#[test]
fn a_primary_has_no_repository_table_and_no_resync_button() {
    let f = Fixture::new("primary");
    let page = body(&f.send(admin(get("/admin/geo/replication/container_repositories"))));
    assert!(page.contains("A primary node replicates nothing itself"), "{page}");
    assert!(!page.contains("Resync all failed") && !page.contains("<table"), "{page}");
}

#[test]
fn an_air_gapped_node_whose_last_bundle_is_too_old_is_unhealthy_and_metrics_say_when() {
    let mut f = Fixture::new("secondary");
    f.config.replication.enabled = false;
    let bundle = |id: &'static str, created_at: &'static str| crate::store::NewBundle {
        id,
        primary_url: "http://127.0.0.2:1",
        created_at,
        inventory_id: None,
        file: "/media/b.tar",
        repositories: 1,
        forced: None,
    };
    f.store.begin_bundle(&bundle("old-bundle", "2020-11-30T10:00:00.000Z")).unwrap();
    f.store.finish_bundle("old-bundle", "1 repository").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body(&f.send(admin(get("/api/v1/status"))))).unwrap();
    assert_eq!(status["healthy"], false, "{status}");
    let message = status["health_message"].as_str().unwrap_or_default();
    assert!(message.contains("old-bundle") && message.contains("replication.bundle_max_age_hours"), "{message}");
    let metrics = body(&f.send(admin(get("/metrics"))));
    assert!(metrics.contains("\ngeoreg_bundle_last_export_timestamp_seconds 1606730400\n"), "{metrics}");
    // 0 turns the alarm off; a node that replicates over the network has none.
    f.config.replication.bundle_max_age_hours = 0;
    let status: serde_json::Value = serde_json::from_str(&body(&f.send(admin(get("/api/v1/status"))))).unwrap();
    assert!(!status["health_message"].as_str().unwrap_or_default().contains("bundle"), "{status}");
    f.config.replication.bundle_max_age_hours = 192;
    f.config.replication.enabled = true;
    let status: serde_json::Value = serde_json::from_str(&body(&f.send(admin(get("/api/v1/status"))))).unwrap();
    assert!(!status["health_message"].as_str().unwrap_or_default().contains("bundle"), "{status}");
}

#[test]
fn the_repository_list_pages_by_key_and_keeps_its_filter() {
    let f = Fixture::new("secondary");
    let names: Vec<String> = (0..120).map(|i| format!("g/r{i:03}")).collect();
    f.store.add_repositories(&names).unwrap();
    let list = "/admin/geo/replication/container_repositories";
    let href = |page: &str, label: &str| -> Option<String> {
        let end = page.find(&format!("\">{label}</a>"))?;
        let start = page[..end].rfind("href=\"")? + "href=\"".len();
        Some(page[start..end].replace("&amp;", "&"))
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let first = body(&f.send(admin(get(list))));
    assert!(first.contains("Rows 1–50 of 120 repositories") && first.contains("g/r049<"), "{first}");
    assert!(href(&first, "← Previous").is_none() && href(&first, "« First").is_none(), "{first}");
    let next = href(&first, "Next →").unwrap();
    assert!(next.contains("after=g/r049&group=3"), "{next}");
    let second = body(&f.send(admin(get(leak(next)))));
    assert!(second.contains("50 rows, g/r050 to g/r099, of 120 repositories"), "{second}");
    let previous = body(&f.send(admin(get(leak(href(&second, "← Previous").unwrap())))));
    assert!(previous.contains("Rows 1–50 of 120"), "{previous}");
    let last = body(&f.send(admin(get(leak(href(&second, "Last »").unwrap())))));
    assert!(last.contains("Rows 71–120 of 120 repositories") && href(&last, "Next →").is_none(), "{last}");
    // The filter goes with the links; a name filter is counted.
    let filtered = body(&f.send(admin(get("/admin/geo/replication/container_repositories?state=pending&name=r1"))));
    assert!(filtered.contains("Rows 1–20 of 20 matching repositories"), "{filtered}");
    assert!(!filtered.contains("Next →"), "{filtered}");
    let filtered = body(&f.send(admin(get("/admin/geo/replication/container_repositories?state=pending&name=r"))));
    let next = href(&filtered, "Next →").unwrap();
    assert!(next.contains("state=pending&name=r&after="), "{next}");
    // Links of the paged list before keys: the first page, never an error.
    for old in ["?page=3", "?page=-1", "?after=x&group=9", "?before=g%2Fr000&group=3", "?page=999&state=failed"] {
        let reply = f.send(admin(get(leak(format!("{list}{old}")))));
        assert_eq!(reply.status, 200, "{old}");
    }
    assert!(body(&f.send(admin(get(leak(format!("{list}?page=3")))))).contains("Rows 1–50 of 120"));
}

#[path = "fuzz_tests.rs"]
mod fuzz;
