//! https: a primary registry and a primary georeg behind a certificate of
//! an internal CA, trusted through `tls.ca_file`; and the error an operator
//! sees when that trust is missing.

use std::time::Duration;

use crate::support::oci::oci_image;
use crate::support::{keys, Env, Mode};

fn trust(env: &Env) -> String {
    let ca = &env.https.as_ref().expect("an https env").ca;
    format!("\n[tls]\nca_file = \"{}\"\n", ca.display())
}

#[test]
fn an_https_primary_replicates_once_its_ca_is_trusted() {
    let env = Env::with_https("tls-sync", Mode::Manual);
    assert!(env.primary.url.starts_with("https://"), "{}", env.primary.url);
    env.p.push_image("secure/app", "v1", &oci_image(400, &[3000, 70_000]));

    // Without tls.ca_file the system store does not know the test CA: the
    // failure names the URL and the key that fixes it.
    let run = env.georeg(&["sync", "secure/app"]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    println!("{}", run.stdout);
    let line = run.stdout.lines().find(|l| l.starts_with("secure/app: FAILED")).unwrap_or_default();
    assert!(line.contains(&format!("{}/v2/", env.primary.url)), "names the URL: {line}");
    assert!(line.contains("not trusted") && line.contains("set tls.ca_file"), "says what to do: {line}");
    assert!(env.s.tags("secure/app").is_empty());

    env.write_config(&keys().pkcs1, &trust(&env));
    let run = env.georeg(&["sync", "secure/app"]);
    run.assert_ok();
    env.assert_in_sync("secure/app");
}

#[test]
fn a_secondary_follows_a_primary_georeg_serving_https() {
    // The primary registry notifies the primary georeg over https (Go's
    // client trusts the test CA through SSL_CERT_FILE), and the secondary
    // long-polls the primary georeg's event log over https.
    let env = Env::with_https("tls-follow", Mode::Follow);
    assert!(env.primary_node_url().starts_with("https://"));
    env.write_config(&keys().pkcs1, &trust(&env));
    env.start_daemons();
    for i in 0..3u64 {
        env.p.push_image("secure/followed", &format!("v{i}"), &oci_image(410 + i, &[2000]));
    }
    env.wait_in_sync("secure/followed", Duration::from_secs(60));

    let primary = env.daemons.borrow().iter().position(|d| d.name == "primary").unwrap();
    let daemons = env.daemons.borrow();
    let primary = &daemons[primary];
    assert!(primary.log_text().contains(&format!("serving on https://127.0.0.1:{}", env.primary_port)));
    // The log over https refuses a client without a token, as over http.
    match primary.agent.get(&format!("{}/api/v1/events?after=0", primary.url)).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    // And plain http on the https port gets no answer that looks like one.
    assert!(ureq::get(&format!("http://127.0.0.1:{}/-/health", env.primary_port))
        .timeout(Duration::from_secs(5))
        .call()
        .is_err());
}

#[test]
fn without_the_ca_check_and_the_cursor_say_to_set_tls_ca_file() {
    let env = Env::with_https("tls-untrusted", Mode::Follow);
    env.start_daemons();
    let url = env.primary_node_url();
    // The cursor thread records why it cannot read the primary's log.
    crate::support::wait_until("the cursor to record the TLS failure", Duration::from_secs(30), || {
        let error: Option<String> =
            env.state().query_row("SELECT last_error FROM cursor", [], |r| r.get(0)).unwrap_or(None);
        error.is_some_and(|e| e.contains(&url) && e.contains("not trusted") && e.contains("set tls.ca_file"))
    });

    let run = env.georeg(&["check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    for what in [format!("FAILED  primary registry {}", env.primary.url), format!("FAILED  followed georeg {url}")] {
        let line = run.stdout.lines().find(|l| l.starts_with(&what)).unwrap_or_default();
        assert!(line.contains("set tls.ca_file"), "{what}: {}", run.stdout);
    }
}
