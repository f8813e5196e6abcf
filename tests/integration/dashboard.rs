//! The dashboard, status API, metrics, `georeg status` and admin access.

use std::process::Command;
use std::time::Duration;

use crate::support::oci::{self, oci_image};
use crate::support::{wait_until, Env, Mode};

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "admin-token-0123456789abcdef";

fn get(url: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(url);
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// (total, synced, failed, pending, started, verified, verification_failed) from the state file.
fn sql_counts(env: &Env) -> Vec<i64> {
    env.state()
        .query_row(
            "SELECT COUNT(*), TOTAL(sync_state = 'synced'), TOTAL(sync_state = 'failed'), TOTAL(sync_state = 'pending'),
                    TOTAL(sync_state = 'started'), TOTAL(verification_state = 'succeeded'), TOTAL(verification_state = 'failed')
             FROM repositories WHERE excluded = 0",
            [],
            |r| (0..7).map(|i| r.get::<_, f64>(i).map(|v| v as i64)).collect(),
        )
        .unwrap()
}

fn json_counts(v: &serde_json::Value) -> Vec<i64> {
    let r = &v["repositories"];
    ["total", "synced", "failed", "pending", "started", "verified", "verification_failed"]
        .iter()
        .map(|k| r[k].as_i64().unwrap_or_else(|| panic!("repositories.{k} missing in {v}")))
        .collect()
}

/// A secondary with two good repositories and one whose blob is corrupt on the primary.
fn settled_env(name: &str, with_token: bool) -> Env {
    let env = Env::new(name);
    if with_token {
        std::fs::write(env.path("admin-token"), format!("{TOKEN}\n")).unwrap();
        env.add_top_level("admin_token_file = \"admin-token\"");
    }
    env.p.push_image("good/a", "v1", &oci_image(600, &[2000]));
    env.p.push_image("good/b", "v1", &oci_image(601, &[2000]));
    let bad = oci_image(602, &[5000]);
    env.p.push_image("bad/c", "v1", &bad);
    let path = env.primary.blob_data_path(&oci::sha256(&bad.blobs[1]));
    let mut data = std::fs::read(&path).unwrap();
    data[0] ^= 1;
    std::fs::write(&path, data).unwrap();
    env.start_daemons();
    wait_until("two synced and verified, one failed", DEADLINE, || sql_counts(&env) == vec![3, 2, 1, 0, 0, 2, 0]);
    env
}

#[test]
fn dashboard_status_api_and_cli_agree_with_the_state_file() {
    let env = settled_env("views", true);
    // The failed repository retries in the background; compare snapshots
    // taken while the state file did not change.
    let mut agreed = false;
    for _ in 0..20 {
        let before = sql_counts(&env);
        let (code, api) = get(&format!("{}/api/v1/status", env.url()), Some(&bearer()));
        assert_eq!(code, 200, "{api}");
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        let cli = env.georeg(&["status", "--json"]);
        cli.assert_ok();
        let cli: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
        let (_, html) = get(&format!("{}/admin/geo/nodes", env.url()), Some(&bearer()));
        let after = sql_counts(&env);
        if before != after {
            continue;
        }
        assert_eq!(json_counts(&api), before, "GET /api/v1/status");
        assert_eq!(json_counts(&cli), before, "georeg status --json");
        assert!(html.contains(&format!("Synced <b>{}</b>", before[1])), "dashboard synced count");
        assert!(html.contains(&format!("Failed <b>{}</b>", before[2])), "dashboard failed count");
        assert!(html.contains(&format!("Verified <b>{}</b>", before[5])), "dashboard verified count");
        assert!(html.contains(&format!("Total <b>{}</b>", before[0])));
        assert!(html.contains("bad/c") && html.contains("did not match its digest"), "recent failures listed");
        // URLs appear as text (the primary it follows), never as an asset.
        assert!(
            !html.contains("<script")
                && !html.contains("src=\"http")
                && !html.contains("href=\"http")
                && !html.contains("url(http"),
            "no external assets"
        );
        for key in ["last_event_id", "cursor_last_event_id", "lag_seconds"] {
            assert!(api["events"].get(key).is_some() && cli["events"].get(key).is_some(), "events.{key}");
        }
        agreed = true;
        break;
    }
    assert!(agreed, "the state file never held still long enough to compare");
    // `georeg status` works with the daemon stopped.
    env.take_secondary_daemon().terminate();
    let text = env.georeg(&["status"]);
    text.assert_ok();
    assert!(text.stdout.contains("repositories: 3 total, 2 synced (66.7%), 1 failed"), "{}", text.stdout);
}

#[test]
fn metrics_parse_as_prometheus_text_and_match_the_counts() {
    let env = settled_env("metrics", false);
    let (code, text) = get(&format!("{}/metrics", env.url()), None);
    assert_eq!(code, 200);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    out["type:" + family.name] = family.type
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse /metrics");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics (install python3-prometheus-client if it is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str| parsed[format!("{name}{{}}")].as_f64().unwrap_or_else(|| panic!("{name} missing"));
    let counts = sql_counts(&env);
    assert_eq!(value("georeg_container_repositories"), counts[0] as f64);
    assert_eq!(value("georeg_container_repositories_synced"), counts[1] as f64);
    assert_eq!(value("georeg_container_repositories_verified"), counts[5] as f64);
    assert!(value("georeg_copied_bytes_total") > 4000.0);
    assert!(value("georeg_copied_blobs_total") >= 4.0);
    assert!(value("georeg_sync_failures_total") >= 1.0);
    assert_eq!(parsed["type:georeg_sync_duration_seconds"], "histogram");
    assert!(parsed["georeg_sync_duration_seconds_count{}"].as_f64().unwrap() >= 3.0);
    assert_eq!(parsed["type:georeg_events_received"], "counter");
    assert!(parsed.get("georeg_cursor_lag_seconds{}").is_some());
}

#[test]
fn admin_pages_need_the_credential_and_buttons_need_their_form_token() {
    let env = settled_env("access", true);
    let base = env.url();
    for path in ["/admin/geo/nodes", "/admin/geo/replication/container_repositories", "/api/v1/status", "/metrics"] {
        assert_eq!(get(&format!("{base}{path}"), None).0, 401, "{path} without credential");
        assert_eq!(get(&format!("{base}{path}"), Some("Bearer wrong-token-0123456789")).0, 401, "{path} wrong token");
        assert_eq!(get(&format!("{base}{path}"), Some(&bearer())).0, 200, "{path} with bearer");
    }
    let basic = format!("Basic {}", georeg::registry::encoding::base64(format!("anyone:{TOKEN}").as_bytes()));
    assert_eq!(get(&format!("{base}/admin/geo/nodes"), Some(&basic)).0, 200, "browser login with Basic auth");
    assert_eq!(get(&format!("{base}/-/health"), None).0, 200);
    assert_eq!(get(&format!("{base}/-/readiness"), None).0, 200);

    let resync = format!("{base}/admin/geo/replication/container_repositories/resync");
    let post = |auth: Option<&str>, body: &str| {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        let mut req = agent.post(&resync).set("Content-Type", "application/x-www-form-urlencoded");
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        match req.send_string(body) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(post(None, "name=good%2Fa"), 401, "resync without the credential is refused");
    assert_eq!(post(Some(&bearer()), "name=good%2Fa"), 403, "resync without the form token is refused");
    let (_, page) = get(&format!("{base}/admin/geo/replication/container_repositories?name=good"), Some(&bearer()));
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let synced_before: String = env
        .state()
        .query_row("SELECT last_synced_at FROM repositories WHERE name = 'good/a'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(post(Some(&bearer()), &format!("name=good%2Fa&csrf={csrf}")), 303);
    wait_until("good/a resynced", DEADLINE, || {
        env.state()
            .query_row("SELECT sync_state = 'synced' AND full_sync_requested = 0 AND last_synced_at >= ?1 FROM repositories WHERE name = 'good/a'", [&synced_before], |r| r.get::<_, bool>(0))
            .unwrap()
    });

    // Listening beyond loopback without a credential is refused.
    let text = std::fs::read_to_string(&env.config).unwrap().replace("admin_token_file = \"admin-token\"\n", "");
    let open = text.replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&env.config, open).unwrap();
    let run = env.georeg(&["serve"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("admin_token_file") && run.stderr.contains("admin_open"), "{}", run.stderr);
}

/// Renders `url` in headless Chromium: its DOM after rendering, and a
/// screenshot kept in target/test-artifacts/NAME.png (checked not blank).
fn render_in_chromium(env: &Env, url: &str, name: &str) -> String {
    let chromium =
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| std::path::Path::new(p).exists());
    let chromium = chromium.unwrap_or_else(|| {
        panic!("headless Chromium is needed for this test: apt-get install -y chromium (.ci/run installs it)")
    });
    let profile = env.path(&format!("chromium-profile-{name}"));
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1400",
    ];
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let shot = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    let bytes =
        std::fs::read(&png).unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&shot.stderr)));
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    // A blank page compresses to a few KB; the dashboard does not.
    assert!(bytes.len() > 20_000, "screenshot of {name}: {} bytes looks blank", bytes.len());
    eprintln!("screenshot kept at {}", png.display());
    dom
}

#[test]
fn the_secondary_pages_render_in_headless_chromium() {
    let env = settled_env("chromium", false);
    let dom = render_in_chromium(&env, &format!("{}/admin/geo/nodes", env.url()), "dashboard-secondary");
    assert!(dom.contains("Container repositories") && dom.contains("Synchronization"), "rendered DOM: {dom}");
    assert!(
        dom.contains("Synced <b>2</b>") && dom.contains("Failed <b>1</b>") && dom.contains("Total <b>3</b>"),
        "counts: {dom}"
    );
    assert!(dom.contains("Pending <b>"), "the verification legend counts pending: {dom}");
    assert!(dom.contains(&format!("Follows {}", env.primary.url)), "the primary it follows: {dom}");
    assert!(dom.contains("Last 24 hours"), "the chart's section: {dom}");
    let dom = render_in_chromium(
        &env,
        &format!("{}/admin/geo/replication/container_repositories", env.url()),
        "dashboard-repositories",
    );
    let first_row = dom.split("<tr><td>").nth(1).unwrap_or_default();
    assert!(first_row.starts_with("bad/c"), "failing first: {dom}");
    assert!(dom.contains("<th>Retries</th>") && dom.contains("<th>Last verified</th>"), "{dom}");
    assert!(!dom.contains("http-equiv=\"refresh\""), "a page with a filter form does not reload itself: {dom}");
}

#[test]
fn primary_dashboard_shows_each_secondary_that_reports() {
    let env = Env::with_mode("primary-dash", Mode::Follow);
    env.add_replication("report_interval_seconds = 1");
    env.start_daemons();
    env.p.push_image("app", "v1", &oci_image(700, &[1000]));
    env.wait_in_sync("app", DEADLINE);
    let primary = format!("http://127.0.0.1:{}", env.primary_port);
    wait_until("the primary to show the secondary synced", DEADLINE, || {
        let (_, body) = get(&format!("{primary}/api/v1/status"), None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["nodes"].as_array().is_some_and(|n| {
            n.iter()
                .any(|n| n["name"] == "secondary-test" && n["health"] == "healthy" && n["repositories"]["synced"] == 1)
        })
    });
    let (code, html) = get(&format!("{primary}/admin/geo/nodes"), None);
    assert_eq!(code, 200);
    assert!(html.contains("secondary-test") && html.contains("healthy") && html.contains("Events stored"), "{html}");
    let dom = render_in_chromium(&env, &format!("{primary}/admin/geo/nodes"), "dashboard-primary");
    assert!(
        dom.contains(&format!("127.0.0.1:{}", env.port))
            && dom.contains(&format!("georeg {}", env!("CARGO_PKG_VERSION"))),
        "each secondary's address and version: {dom}"
    );
    assert!(dom.contains("0 failing") && dom.contains("last event ID processed"), "{dom}");
    let (_, status) = get(&format!("{primary}/api/v1/status"), None);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(v["events"]["last_event_id"].as_i64().unwrap() >= 1);
    // The report endpoint wants the shared key's signature.
    let forged =
        ureq::post(&format!("{primary}/api/v1/nodes/status")).set("Authorization", "Bearer x.y.z").send_string("{}");
    assert!(matches!(forged, Err(ureq::Error::Status(401, _))));
}

/// A line's value in `/metrics`: `name{labels} value`.
fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_primary_shows_each_secondarys_failover_state_and_held_deletions() {
    let env = Env::with_mode("dash-primary-dr", Mode::Follow);
    env.add_replication("report_interval_seconds = 1");
    env.add_replication("delete_delay_hours = 24");
    env.start_daemons();
    let (kept, gone) = (oci_image(970, &[300]), oci_image(971, &[300]));
    env.p.push_image("app", "v1", &kept);
    env.p.push_image("app", "v2", &gone);
    env.wait_in_sync("app", DEADLINE);
    env.p.delete_manifest("app", &gone.digest);

    let primary = env.primary_node_url();
    let series = |name: &str| format!("{name}{{node=\"secondary-test\"}}");
    wait_until("the primary to learn of the held deletion", DEADLINE, || {
        let (_, text) = get(&format!("{primary}/metrics"), None);
        metric_value(&text, &series("georeg_node_deletions_held")) == Some(1.0)
    });
    // The failover state the primary shows is the one the secondary assessed.
    wait_until("the primary to show the secondary's own failover state", DEADLINE, || {
        let (_, own) = get(&format!("{}/api/v1/status", env.url()), None);
        let own: serde_json::Value = serde_json::from_str(&own).unwrap();
        let ready = own["failover"]["ready"].as_bool().unwrap();
        let (_, text) = get(&format!("{primary}/metrics"), None);
        metric_value(&text, &series("georeg_node_failover_ready")) == Some(f64::from(u8::from(ready)))
    });
    let (code, page) = get(&format!("{primary}/admin/geo/nodes"), None);
    assert_eq!(code, 200);
    assert!(page.contains("secondary-test") && page.contains("1 deletion held, the next applies at"), "{page}");
    assert!(page.contains("Failover: <span class=\"badge"), "{page}");
}
