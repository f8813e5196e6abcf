//! georeg's peers on the same data: `skopeo sync`, the best-known tool for
//! the job, and the limit: the secondary registry ingesting the same blobs
//! and manifests straight from local files, uploaded by curl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use georeg::registry::token::Scope;

use crate::corpus::Repo;
use crate::lab::{harness_api, measure, pool, Lab};
use crate::support::keys;
use crate::support::registry::{Registry, SERVICE};

/// What a peer's run took.
pub struct PeerRun {
    pub wall: Duration,
    /// The largest peak RSS of any one process, in KiB (0: not measured).
    pub rss_kib: u64,
}

pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn token(repo: &str, actions: &[&str]) -> String {
    // What `georeg token --scope repository:REPO:ACTIONS` prints, minted in-process.
    keys().signer.sign(SERVICE, "bench", Duration::from_secs(3600), &[Scope::repository(repo, actions)]).text
}

fn host(reg: &Registry) -> &str {
    reg.url.trim_start_matches("http://")
}

/// `skopeo sync` of each repository, `workers` processes at a time (the
/// concurrency georeg gets), with pre-minted tokens, digests preserved.
pub fn skopeo(
    lab: &Lab,
    label: &str,
    primary: &Registry,
    secondary: &Registry,
    repos: &[String],
    workers: usize,
) -> PeerRun {
    skopeo_from(lab, label, host(primary), secondary, repos, workers)
}

/// The same, reading the primary registry at `source` (host:port: a WAN
/// proxy in front of it, say); the pre-minted tokens work through it.
pub fn skopeo_from(
    lab: &Lab,
    label: &str,
    source: &str,
    secondary: &Registry,
    repos: &[String],
    workers: usize,
) -> PeerRun {
    let skopeo = program("skopeo").expect("skopeo is needed: apt-get install -y skopeo");
    let numbered: Vec<(usize, &String)> = repos.iter().enumerate().collect();
    let rss = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    pool(&numbered, workers, |(i, repo)| {
        // skopeo puts each repository under DESTINATION by its last path component.
        let dest = match repo.rsplit_once('/') {
            Some((parent, _)) => format!("{}/{parent}", host(secondary)),
            None => host(secondary).to_string(),
        };
        let args: Vec<String> = [
            "sync",
            "--src",
            "docker",
            "--dest",
            "docker",
            "--preserve-digests",
            "--all",
            "--retry-times",
            "0",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--src-registry-token".into(),
            token(repo, &["pull"]),
            "--dest-registry-token".into(),
            token(repo, &["push", "pull"]),
            format!("{source}/{repo}"),
            dest,
        ])
        .collect();
        let run = measure(lab, &format!("{label}-{i:04}"), &skopeo, &args, &[]);
        rss.fetch_max(run.rss_kib, Ordering::Relaxed);
        if run.code != 0 {
            let tail: Vec<&str> = run.stderr.lines().rev().take(3).collect();
            failures.lock().unwrap().push(format!("{repo}: exit {}: {}", run.code, tail.join(" | ")));
        }
    });
    let wall = started.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "skopeo sync failed:\n{}", failures.join("\n"));
    PeerRun { wall, rss_kib: rss.into_inner() }
}

/// The secondary registry's own ingest limit: for each repository (on
/// `workers` threads, georeg's concurrency), open an upload per blob, then
/// one curl process PUTs every blob monolithically from its local file and
/// every manifest, over one kept-alive connection.
pub fn ingest(lab: &Lab, label: &str, secondary: &Registry, repos: &[Repo], workers: usize) -> PeerRun {
    let curl = program("curl").expect("curl is needed: apt-get install -y curl");
    let api = harness_api(secondary);
    let numbered: Vec<(usize, &Repo)> = repos.iter().enumerate().collect();
    let started = Instant::now();
    pool(&numbered, workers, |(i, repo)| {
        let auth = api.auth(&repo.name);
        let mut config = String::new();
        let group = |config: &mut String, content_type: &str| {
            config.push_str("silent\nshow-error\nwrite-out = \"%{http_code}\\n\"\n");
            config.push_str(&format!("header = \"Authorization: {auth}\"\n"));
            config.push_str(&format!("header = \"Content-Type: {content_type}\"\nheader = \"Expect:\"\n"));
        };
        group(&mut config, "application/octet-stream");
        for blob in &repo.blobs {
            let location = api.start_upload(&repo.name);
            let sep = if location.contains('?') { '&' } else { '?' };
            transfer(&mut config, &blob.path, &format!("{location}{sep}digest={}", blob.digest.replace(':', "%3A")));
        }
        let mut media_types: Vec<&str> = repo.tags.iter().map(|t| t.media_type.as_str()).collect();
        media_types.dedup();
        for media_type in media_types {
            config.push_str("next\n");
            group(&mut config, media_type);
            for t in repo.tags.iter().filter(|t| t.media_type == media_type) {
                transfer(&mut config, &t.manifest, &format!("{}/v2/{}/manifests/{}", api.url, repo.name, t.tag));
            }
        }
        let path = lab.path(&format!("{label}-{i:04}.curl"));
        std::fs::write(&path, config).unwrap();
        let out = Command::new(&curl).arg("--config").arg(&path).output().expect("run curl");
        let codes = String::from_utf8_lossy(&out.stdout);
        let expected = repo.blobs.len() + repo.tags.len();
        let created = codes.lines().filter(|c| c.trim() == "201").count();
        assert!(
            out.status.success() && created == expected,
            "curl uploads to {}: {created} of {expected} answered 201 ({codes:?}); {}",
            repo.name,
            String::from_utf8_lossy(&out.stderr)
        );
    });
    PeerRun { wall: started.elapsed(), rss_kib: 0 }
}

fn transfer(config: &mut String, file: &Path, url: &str) {
    config.push_str(&format!("upload-file = \"{}\"\nurl = \"{url}\"\noutput = \"/dev/null\"\n", file.display()));
}
