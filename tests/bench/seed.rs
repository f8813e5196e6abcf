//! Seeds a state file for the scale scenario with SQL: every repository of
//! the synthetic primary synced and verified, with its tags and blobs, as a
//! first pass would have left it. A real first pass of 100,000
//! repositories into a real secondary registry would take hours on the
//! benchmark's machine; a no-op pass, the pages and the event path only
//! read these rows. Times are spread over the past days as a node that has
//! run for a while has them, none due for reverification for hours.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::params;

use crate::lab::Georeg;
use crate::support::georeg_bin;
use crate::support::oci::sha256;
use crate::synthetic::{self, LARGE};

/// Verified at most this long ago: the default reverification interval
/// is 7 days, so nothing comes due while the scenario runs.
const SPREAD_SECONDS: u64 = 6 * 24 * 3600;

/// One repository's rows: its tags (name, digest) and its blobs (digest, size).
struct Rows {
    id: i64,
    name: String,
    tags: Vec<(String, String)>,
    blobs: Vec<(String, usize)>,
    checksum: String,
}

fn rows(id: i64, name: String, tags: Vec<String>) -> Rows {
    let mut out = Rows { id, name, tags: Vec::new(), blobs: Vec::new(), checksum: String::new() };
    let mut text = String::new();
    for tag in tags {
        let img = synthetic::image(&out.name, &tag);
        if out.blobs.is_empty() {
            out.blobs.push((img.layer_digest.clone(), img.layer.len()));
        }
        out.blobs.push((img.config_digest.clone(), img.config.len()));
        text.push_str(&format!("{tag} {}\n", img.digest));
        out.tags.push((tag, img.digest));
    }
    // Sorted by tag name, as verification computes it.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    out.checksum = sha256(format!("{}\n", lines.join("\n")).as_bytes());
    out
}

/// Creates the node's state file with georeg's own schema ([`create`]),
/// then fills it: `n` small repositories of `tags` tags and the
/// large one of `large_tags`. Returns how long it took.
pub fn seed(node: &Georeg, n: usize, tags: usize, large_tags: usize) -> Duration {
    let started = Instant::now();
    create(node);
    let mut conn = node.db();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = conn.transaction().unwrap();
    let mut ids: Vec<(i64, String, Vec<String>)> =
        (0..n).map(|i| (i as i64 + 1, synthetic::name(i), (0..tags).map(synthetic::small_tag).collect())).collect();
    ids.push((n as i64 + 1, LARGE.into(), (0..large_tags).map(synthetic::large_tag).collect()));
    // Digests are computed on two threads, a batch at a time, and stored on this one.
    for batch in ids.chunks(2000) {
        let (a, b) = batch.split_at(batch.len() / 2);
        let computed: Vec<Rows> = std::thread::scope(|s| {
            let half = |part: &[(i64, String, Vec<String>)]| {
                part.iter().map(|(id, name, tags)| rows(*id, name.clone(), tags.clone())).collect::<Vec<_>>()
            };
            let other = s.spawn(move || half(b));
            let mut mine = half(a);
            mine.extend(other.join().expect("a seeding thread"));
            mine
        });
        for r in &computed {
            store(&tx, r);
        }
    }
    tx.commit().unwrap();
    drop(conn);
    started.elapsed()
}

/// A new state file with georeg's own schema. `georeg status` only reads
/// (it refuses a state file that does not exist); `georeg deletions
/// --cancel --all` opens it read-write, which creates and migrates it, and
/// with no deletion held does nothing else.
pub fn create(node: &Georeg) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", node.state.display()));
    }
    let out = std::process::Command::new(georeg_bin())
        .arg("--config")
        .arg(&node.config)
        .args(["deletions", "--cancel", "--all"])
        .output()
        .expect("run georeg deletions");
    assert!(out.status.success(), "georeg deletions on a new state file: {}", String::from_utf8_lossy(&out.stderr));
}

/// Completes a state file [`seed`]ed synced as reconciliation leaves it:
/// every repository compared with the primary, and a fingerprint of each
/// in this node's registry (its verification checksum: the same string).
/// When is set by [`spread`].
pub fn reconciled(node: &Georeg) {
    let conn = node.db();
    conn.execute_batch(
        "UPDATE repositories SET compared_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now');
         INSERT INTO fingerprints (repository, fingerprint, tags, checked_at, stale)
             SELECT r.name, r.verification_checksum, (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
                    strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 0
             FROM repositories r;",
    )
    .unwrap();
}

/// Gives a primary georeg's new state file the fingerprints of the
/// follower's (both registries hold the same), as its keeper leaves them.
pub fn fingerprints_from(primary: &Georeg, follower: &Georeg) {
    create(primary);
    let conn = primary.db();
    conn.execute("ATTACH DATABASE ?1 AS follower", [follower.state.display().to_string()]).unwrap();
    conn.execute_batch(
        "INSERT INTO fingerprints (repository, fingerprint, tags, checked_at, stale)
             SELECT repository, fingerprint, tags, checked_at, 0 FROM follower.fingerprints;
         DETACH DATABASE follower;",
    )
    .unwrap();
}

/// Spreads when each fingerprint was read (and, on a secondary, when each
/// repository was compared) over the `seconds` before now, as a keeper in
/// its steady state leaves them: it reads each again once older than half
/// the window, so their ages are spread over that half. `salt` tells two
/// nodes' spreads apart.
pub fn spread(node: &Georeg, seconds: u64, salt: u64) {
    let mut conn = node.db();
    let names: Vec<String> = {
        let mut stmt = conn.prepare("SELECT repository FROM fingerprints ORDER BY repository").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let tx = conn.transaction().unwrap();
    {
        let mut fp = tx
            .prepare(
                "UPDATE fingerprints SET checked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2) WHERE repository = ?1",
            )
            .unwrap();
        let mut compared = tx
            .prepare("UPDATE repositories SET compared_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2) WHERE name = ?1")
            .unwrap();
        for (i, name) in names.iter().enumerate() {
            let ago = format!("-{} seconds", (i as u64 * 7919 + salt).wrapping_mul(2654435761) % seconds.max(1));
            fp.execute(params![name, ago]).unwrap();
            compared.execute(params![name, ago]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn store(tx: &rusqlite::Transaction, r: &Rows) {
    // Synced, then verified, a while ago.
    let ago = format!("-{} seconds", (r.id as u64 * 7919) % SPREAD_SECONDS + 60);
    let blob_bytes: usize = r.blobs.iter().map(|b| b.1).sum();
    let report = format!(
        "{} tags copied, 0 unchanged, 0 removed; {} blobs copied ({blob_bytes} B), 0 mounted, 0 already present",
        r.tags.len(),
        r.blobs.len()
    );
    tx.prepare_cached(
        "INSERT INTO repositories (id, name, sync_state, full_sync_requested, verification_state,
             created_at, sync_started_at, last_synced_at, last_sync_report, verified_at, verification_checksum)
         VALUES (?1, ?2, 'synced', 0, 'succeeded',
             strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-8 days'),
             strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3), strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3), ?4,
             strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3), ?5)",
    )
    .unwrap()
    .execute(params![r.id, r.name, ago, report, r.checksum])
    .unwrap();
    let mut tag = tx.prepare_cached("INSERT INTO tags (repository_id, name, digest) VALUES (?1, ?2, ?3)").unwrap();
    for (name, digest) in &r.tags {
        tag.execute(params![r.id, name, digest]).unwrap();
    }
    let mut blob =
        tx.prepare_cached("INSERT OR IGNORE INTO blobs (digest, repository_id, size) VALUES (?1, ?2, ?3)").unwrap();
    for (digest, size) in &r.blobs {
        blob.execute(params![digest, r.id, *size as i64]).unwrap();
    }
}

/// Marks every `every`-th small repository failed, retried only in a day,
/// as a node that runs for a while has a few: the pages list them first.
pub fn fail_some(state: &Path, every: usize) -> i64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let n = conn
        .execute(
            "UPDATE repositories SET sync_state = 'failed', retry_count = 3,
                 retry_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+1 day'),
                 failing_since = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-2 hours'),
                 last_sync_failure = 'PUT manifest: 503 Service Unavailable (the secondary registry was down)'
             WHERE id % ?1 = 0 AND name <> ?2",
            params![every.max(1) as i64, LARGE],
        )
        .unwrap();
    n as i64
}
