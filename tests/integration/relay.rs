//! Relays: a chain primary -> relay -> second hop, three real registries
//! and three georeg processes. The relay is the usual test secondary
//! (following the primary georeg); the second hop follows the relay's
//! georeg and copies from the relay's registry, and its configuration does
//! not name the primary at all.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::oci::{oci_image, oci_index, sha256, Api};
use crate::support::registry::{free_port, Notify, Registry, ISSUER, SERVICE};
use crate::support::{georeg_bin, keys, wait_until, Env, Mode, Run, SECRET};

const DEADLINE: Duration = Duration::from_secs(90);

/// A second-hop secondary: its registry, and a georeg following `upstream`
/// (a georeg node) and copying from `upstream_registry`.
struct Hop {
    name: String,
    /// Runs as long as the hop does.
    _registry: Registry,
    api: Api,
    config: PathBuf,
    port: u16,
}

impl Hop {
    fn new(env: &Env, name: &str, upstream: &str, upstream_registry: &str) -> Hop {
        let k = keys();
        let registry = Registry::start(&env.dir.0, name, &k.cert, None);
        let api = Api::new(&registry.url, k.signer.clone());
        let port = free_port();
        let config = env.path(&format!("{name}.toml"));
        let text = format!(
            r#"node_name = "{name}"
role = "secondary"
listen = "127.0.0.1:{port}"
state_file = "{name}-state.sqlite3"

[registry]
url = "{url}"
key_file = "{key}"
issuer = "{ISSUER}"
service = "{SERVICE}"

[replication]
primary_api_url = "{upstream_registry}/"
primary_node_url = "{upstream}"
report_interval_seconds = 1
workers = 2
"#,
            url = registry.url,
            key = k.pkcs1.display(),
        );
        std::fs::write(&config, text).unwrap();
        Hop { name: name.into(), _registry: registry, api, config, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&self, env: &Env) {
        let d = Daemon::start(&env.dir.0, &self.name, &self.config, self.port);
        env.daemons.borrow_mut().push(d);
    }

    fn state(&self, env: &Env) -> rusqlite::Connection {
        rusqlite::Connection::open(env.path(&format!("{}-state.sqlite3", self.name))).unwrap()
    }

    /// Whether the hop holds exactly the primary's tags, at the same digests.
    fn matches_primary(&self, env: &Env, repo: &str) -> bool {
        let want = env.p.tag_digests(repo);
        !want.is_empty() && self.api.tag_digests(repo) == want
    }

    /// Every tag of the primary on the hop, with identical manifest bytes.
    fn assert_matches_primary(&self, env: &Env, repo: &str) {
        let want = env.p.tag_digests(repo);
        assert_eq!(self.api.tag_digests(repo), want, "tags of {repo}: second hop (left) differs from primary");
        for digest in want.values() {
            let (pb, pt) = env.p.manifest(repo, digest).unwrap();
            let (hb, ht) = self.api.manifest(repo, digest).unwrap();
            assert!(hb == pb && ht == pt, "manifest {repo}@{digest} differs on the second hop");
        }
    }
}

fn status(url: &str) -> serde_json::Value {
    match ureq::get(&format!("{url}/api/v1/status")).call() {
        Ok(r) => serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// The usual Follow-mode pair (primary georeg, relay), reporting every second.
fn chain(name: &str) -> Env {
    let env = Env::with_mode(name, Mode::Follow);
    env.add_replication("report_interval_seconds = 1");
    env
}

fn relay_hop(env: &Env) -> Hop {
    Hop::new(env, "hop", &env.url(), &env.secondary.url)
}

/// How many times a blob was read whole from the primary registry.
fn primary_blob_reads(env: &Env, digest: &str) -> usize {
    env.primary.requests_matching(&["\"GET /v2/", &format!("/blobs/{digest} HTTP/1.1\" 200")])
}

#[test]
fn a_chain_carries_pushes_repointed_tags_and_deletions_to_the_second_hop_with_one_copy_from_the_primary() {
    let env = chain("relay-chain");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    let v1 = oci_image(900, &[40_000, 50_000]);
    env.p.push_image("group/app", "v1", &v1);
    env.p.push_image("group/app", "v2", &oci_image(901, &[30_000]));
    env.p.push_image("group/app", "multi", &oci_index(902));
    wait_until("the second hop to hold the primary's three tags", DEADLINE, || hop.matches_primary(&env, "group/app"));
    hop.assert_matches_primary(&env, "group/app");
    // Blobs landed ahead of their manifests at both hops: the relay passes
    // on what it landed, from its own registry.
    let landed_ahead = |url: &str| {
        let text = crate::dr::get(&format!("{url}/metrics"));
        let line = text.lines().find(|l| l.starts_with("georeg_blobs_landed_ahead_total ")).unwrap().to_string();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    let (at_relay, at_hop) = (landed_ahead(&env.url()), landed_ahead(&hop.url()));
    assert!(at_relay >= 1.0 && at_hop >= 1.0, "landed ahead: {at_relay} at the relay, {at_hop} at the second hop");

    // A tag moved, a tag deleted: both reach the second hop through the relay.
    env.p.push_image("group/app", "v1", &oci_image(903, &[20_000]));
    env.p.delete_tag("group/app", "v2");
    wait_until("the move and the deletion to reach the second hop", DEADLINE, || {
        hop.matches_primary(&env, "group/app")
    });
    hop.assert_matches_primary(&env, "group/app");
    env.assert_in_sync("group/app");

    // One copy across the primary's link: every layer was read from the
    // primary registry once, by the relay; the second hop read the relay's.
    for layer in &v1.blobs {
        let digest = sha256(layer);
        assert_eq!(primary_blob_reads(&env, &digest), 1, "{digest} read from the primary more than once");
    }
    let hop_config = std::fs::read_to_string(&hop.config).unwrap();
    assert!(!hop_config.contains(&env.primary.url), "the second hop's configuration names the primary registry");

    // The chain is visible: the hop knows its upstreams, the relay lists
    // its follower, the primary shows the whole tree with each hop's lag.
    wait_until("the tree to reach the primary's status", DEADLINE, || {
        let primary = status(&env.primary_node_url());
        primary["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n["name"] == "secondary-test"
                    && n["followers"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f["name"] == "hop" && f["events"]["lag_seconds"].is_i64()))
            })
        })
    });
    let hop_status = status(&hop.url());
    assert_eq!(hop_status["node"]["chain"], serde_json::json!(["secondary-test", "primary-test"]), "{hop_status}");
    assert_eq!(hop_status["ready"], true, "{hop_status}");
    let relay_status = status(&env.url());
    assert!(relay_status["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["name"] == "hop")), "{relay_status}");
    let page = |url: &str| ureq::get(&format!("{url}/admin/geo/nodes")).call().unwrap().into_string().unwrap();
    let primary_page = page(&env.primary_node_url());
    assert!(primary_page.contains("Nodes following secondary-test") && primary_page.contains("<b>hop</b>"));
    assert!(page(&env.url()).contains("Nodes following this one"), "the relay's dashboard lists its followers");
    assert!(page(&hop.url()).contains("chain: hop → secondary-test → primary-test"));
    let check = georeg(&hop.config, &["check"]);
    assert!(
        check.stdout.contains("a relay: chain secondary-test -> primary-test") && check.code == 0,
        "georeg check names the chain: {check}"
    );
}

/// Runs `georeg --config CONFIG ARGS...`.
fn georeg(config: &std::path::Path, args: &[&str]) -> Run {
    let mut command = std::process::Command::new(georeg_bin());
    command.arg("--config").arg(config).args(args).env("RUST_LOG", "info").stdin(std::process::Stdio::null());
    Run::of(command.output().unwrap()).ran(&command, Some(config))
}

#[test]
fn a_relay_killed_mid_stream_loses_nothing_for_the_second_hop() {
    let env = chain("relay-kill");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    for i in 0..6u64 {
        env.p.push_image("group/app", &format!("v{i}"), &oci_image(910 + i, &[200_000, 100_000]));
    }
    // Killed while it works on the pushes; started again, it goes on.
    wait_until("the relay to start copying", DEADLINE, || !env.s.tags("group/app").is_empty());
    env.take_secondary_daemon().kill9();
    env.start_secondary_daemon();
    env.p.push_image("group/app", "after", &oci_image(920, &[10_000]));
    wait_until("the second hop to hold every tag", DEADLINE, || hop.matches_primary(&env, "group/app"));
    hop.assert_matches_primary(&env, "group/app");
}

#[test]
fn held_removals_at_a_relay_reach_the_second_hop_only_once_applied() {
    let env = chain("relay-held");
    env.add_replication("delete_delay_hours = 1");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    env.p.push_image("app", "keep", &oci_image(930, &[1000]));
    env.p.push_image("app", "gone", &oci_image(931, &[1000]));
    wait_until("both tags on the second hop", DEADLINE, || hop.api.tags("app").len() == 2);
    env.p.delete_tag("app", "gone");
    let held = || -> Option<i64> {
        // The removal of the tag itself: a relay that copied the primary's
        // throwaway in between holds an overwrite first (below).
        let removal = "SELECT id FROM deletions WHERE state = 'held' AND kind = 'tag' AND tag = 'gone'";
        env.state().query_row(removal, [], |r| r.get(0)).ok()
    };
    wait_until("the relay to hold the removal", DEADLINE, || held().is_some());
    // The relay logged nothing for it: the second hop has read everything
    // the relay logged, and still holds the tag.
    let relay_last =
        || -> i64 { env.state().query_row("SELECT COALESCE(MAX(id), 0) FROM applied", [], |r| r.get(0)).unwrap() };
    wait_until("the second hop to read the relay's whole log", DEADLINE, || {
        hop.state(&env).query_row("SELECT last_event_id FROM cursor", [], |r| r.get::<_, i64>(0)).unwrap()
            >= relay_last()
    });
    assert_eq!(hop.api.tags("app"), ["gone", "keep"], "a held removal reached the second hop");
    // distribution 2.8 removes a tag by re-pointing it at a throwaway
    // manifest and deleting that: a relay that copied the throwaway in
    // between holds that overwrite too, the digest it left under a backup
    // tag of its own (never logged for the second hop).
    let relay_tags =
        || -> Vec<String> { env.s.tags("app").into_iter().filter(|t| !t.starts_with("georeg-kept-")).collect() };
    assert_eq!(relay_tags(), ["gone", "keep"]);

    // Applied by an operator at the relay: now it travels on.
    env.georeg(&["deletions", "--apply", "--all"]).assert_ok();
    wait_until("the removal to reach the second hop", DEADLINE, || hop.api.tags("app") == ["keep"]);
    assert_eq!(env.s.tags("app"), ["keep"], "applied, no backup tag is left");
    hop.assert_matches_primary(&env, "app");
}

#[test]
fn a_second_hop_whose_place_in_the_relays_log_was_pruned_compares_everything() {
    let env = chain("relay-gap");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    env.p.push_image("app", "v1", &oci_image(940, &[1000]));
    wait_until("v1 on the second hop", DEADLINE, || hop.matches_primary(&env, "app"));
    let hop_daemon = env.take_daemon("hop");
    hop_daemon.terminate();
    env.p.push_image("app", "v2", &oci_image(941, &[1000]));
    env.p.push_image("app", "v3", &oci_image(942, &[1000]));
    env.p.push_image("other", "v1", &oci_image(943, &[1000]));
    env.wait_in_sync("app", DEADLINE);
    env.wait_in_sync("other", DEADLINE);
    // The relay prunes its log (what it applied is old and past the
    // longest retention) at its next start: the hop's place is gone.
    let relay = env.take_secondary_daemon();
    relay.terminate();
    env.state().execute("UPDATE applied SET received_at = '2000-01-01T00:00:00Z'", []).unwrap();
    env.add_top_level("event_retention_days = 1\nevent_retention_max_days = 1");
    env.start_secondary_daemon();
    wait_until("the relay to prune its log", DEADLINE, || {
        env.state().query_row("SELECT COUNT(*) FROM applied", [], |r| r.get::<_, i64>(0)).unwrap() == 1
    });
    hop.start(&env);
    wait_until("the second hop to catch up", DEADLINE, || {
        hop.matches_primary(&env, "app") && hop.matches_primary(&env, "other")
    });
    hop.assert_matches_primary(&env, "app");
    let gap: Option<String> = hop.state(&env).query_row("SELECT gap_message FROM cursor", [], |r| r.get(0)).unwrap();
    assert!(gap.as_deref().is_some_and(|g| g.contains("were pruned")), "the gap was not detected: {gap:?}");
}

#[test]
fn a_loop_is_refused_at_run_time_and_at_start() {
    // Two secondaries, each following the other: no primary in sight.
    let env = Env::with_mode("relay-loop", Mode::Manual);
    let hop = relay_hop(&env);
    env.add_replication(&format!("primary_node_url = \"{}\"", hop.url()));
    env.start_secondary_daemon();
    hop.start(&env);
    let looped = |url: &str| {
        let s = status(url);
        s["health_message"].as_str().is_some_and(|m| m.contains("makes a loop")) && s["ready"] == false
    };
    wait_until("both nodes to find the loop", DEADLINE, || looped(&env.url()) && looped(&hop.url()));
    let message = status(&hop.url())["health_message"].as_str().unwrap().to_string();
    assert!(message.contains("hop") && message.contains("secondary-test"), "{message}");

    // Started again, the second hop refuses at once (exit 2), naming the key.
    env.take_daemon("hop").terminate();
    let run = georeg(&hop.config, &["serve"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("replication.primary_node_url") && run.stderr.contains("makes a loop"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_second_hop_is_not_ready_while_its_relay_is_behind_the_primary() {
    let mut env = chain("relay-behind");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    env.p.push_image("app", "v1", &oci_image(950, &[1000]));
    wait_until("v1 on the second hop", DEADLINE, || hop.matches_primary(&env, "app"));
    let readiness = |url: &str| match ureq::get(&format!("{url}/-/readiness")).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    };
    wait_until("the second hop to be ready", DEADLINE, || readiness(&hop.url()).0 == 200);

    // The relay loses the primary: it is behind, and says so to the hop,
    // whose own registry and relay still answer.
    env.primary.stop();
    wait_until("the second hop to say it is not ready because of its relay", DEADLINE, || {
        let (code, text) = readiness(&hop.url());
        code == 503 && text.contains("the node it follows is behind the primary: secondary-test")
    });
    let check = georeg(&hop.config, &["failover-check"]);
    assert!(check.stdout.contains("upstream_behind") && check.code == 1, "{check}");

    env.primary.restart();
    wait_until("the second hop to be ready again", DEADLINE, || readiness(&hop.url()).0 == 200);
}

#[test]
fn a_promoted_relay_keeps_its_followers_following_it() {
    let mut env = chain("relay-promote");
    env.start_daemons();
    let hop = relay_hop(&env);
    hop.start(&env);
    env.p.push_image("app", "v1", &oci_image(960, &[1000]));
    wait_until("v1 on the second hop", DEADLINE, || hop.matches_primary(&env, "app"));

    // The primary is lost. The relay becomes the primary: its own role,
    // and its registry's notifications pointed at it.
    env.take_daemon("primary").terminate();
    env.take_secondary_daemon().terminate();
    env.primary.stop();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, config.replace("role = \"secondary\"", "role = \"primary\"")).unwrap();
    let notify = Notify { url: format!("{}/api/v4/container_registry_event/events", env.url()), secret: SECRET.into() };
    env.secondary.set_notify(Some(&notify));
    env.start_secondary_daemon();

    // The second hop, configured as before, goes on following it.
    env.s.push_image("app", "v2", &oci_image(961, &[1000]));
    wait_until("a push to the promoted relay to reach the second hop", DEADLINE, || {
        hop.api.tag_digests("app") == env.s.tag_digests("app") && hop.api.tags("app") == ["v1", "v2"]
    });
    wait_until("the second hop's chain to end at the promoted relay", DEADLINE, || {
        status(&hop.url())["node"]["chain"] == serde_json::json!(["secondary-test"])
    });
    let gap: Option<String> = hop.state(&env).query_row("SELECT gap_message FROM cursor", [], |r| r.get(0)).unwrap();
    assert!(gap.as_deref().is_some_and(|g| g.contains("another one than before")), "{gap:?}");
}

/// Distribution notifies a push before it writes the tag: the relay copies
/// the image by digest and puts the tag once it resolves. Its followers
/// learn of the push once, under its tag, not also as an image pushed by
/// digest (which cost each of them a second comparison).
#[test]
fn a_push_whose_tag_resolves_late_is_logged_once_under_its_tag() {
    use crate::support::hostile_registry::{Answer, HostileRegistry};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let env = Env::with_mode("relay-late-tag", Mode::Direct);
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let double = HostileRegistry::start(&env.primary.url, move |r| {
        let tag_read = r.method == "GET" && r.target == "/v2/group/app/manifests/v1";
        match tag_read && counter.fetch_add(1, Ordering::SeqCst) < 2 {
            true => Answer::Bare(404), // the tag link not written yet
            false => Answer::Forward,
        }
    });
    env.route_primary_through(&double.url);
    env.start_daemons();
    let image = oci_image(930, &[20_000]);
    env.p.push_image("group/app", "v1", &image);
    env.wait_in_sync("group/app", DEADLINE);
    assert!(asked.load(Ordering::SeqCst) >= 3, "the tag was read before and after it resolved");
    let logged: Vec<(Option<String>, Option<String>)> = env
        .state()
        .prepare("SELECT tag, digest FROM applied WHERE repository = 'group/app' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(logged, [(Some("v1".to_string()), Some(image.digest.clone()))], "logged once, under its tag");
}
