//! The SQLite state file: repositories, their sync state and the tags and
//! blobs georeg placed on the secondary. `schema.sql` is the only schema.
//!
//! One connection behind a mutex, held only for short statements and never
//! across an HTTP call; SQLite serializes writers anyway.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::digest::Digest;
use crate::error::{Error, Result};

const SCHEMA: &str = include_str!("../schema.sql");

pub struct Store {
    conn: Mutex<Connection>,
}

/// A repository's row, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub sync_state: String,
    pub retry_count: u32,
    pub retry_at: Option<String>,
    pub last_synced_at: Option<String>,
    pub last_sync_failure: Option<String>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store {
                message: format!("cannot create {}: {e} (check state_file and the directory's owner)", dir.display()),
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| Error::Store { message: format!("cannot open {}: {e}", path.display()) })?;
        Store::init(conn).map_err(|e| Error::Store { message: format!("{}: {e}", path.display()) })
    }

    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?).map_err(|message| Error::Store { message })
    }

    fn init(mut conn: Connection) -> std::result::Result<Store, String> {
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: an event is acknowledged to the registry only after its
            // commit, and must survive a power cut, not just a crash.
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(())
        };
        setup().map_err(|e| e.to_string())?;
        migrate(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-written state behind
        // (statements are atomic), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Makes sure the repository has a row; returns its id.
    pub fn ensure_repository(&self, name: &str) -> Result<i64> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO repositories (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
            .execute([name])?;
        let id = conn.prepare_cached("SELECT id FROM repositories WHERE name = ?1")?.query_row([name], |r| r.get(0))?;
        Ok(id)
    }

    pub fn repository(&self, name: &str) -> Result<Option<Repository>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, sync_state, retry_count, retry_at, last_synced_at, last_sync_failure
             FROM repositories WHERE name = ?1",
        )?;
        Ok(stmt
            .query_row([name], |r| {
                Ok(Repository {
                    name: r.get(0)?,
                    sync_state: r.get(1)?,
                    retry_count: r.get(2)?,
                    retry_at: r.get(3)?,
                    last_synced_at: r.get(4)?,
                    last_sync_failure: r.get(5)?,
                })
            })
            .optional()?)
    }

    pub fn mark_started(&self, name: &str) -> Result<()> {
        self.ensure_repository(name)?;
        self.conn()
            .prepare_cached("UPDATE repositories SET sync_state = 'started', sync_started_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE name = ?1")?
            .execute([name])?;
        Ok(())
    }

    pub fn mark_synced(&self, name: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE repositories SET sync_state = 'synced', retry_count = 0, retry_at = NULL,
                 last_sync_failure = NULL, last_synced_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                 WHERE name = ?1",
            )?
            .execute([name])?;
        Ok(())
    }

    /// Puts an interrupted sync back in the queue, untouched by backoff.
    pub fn mark_pending(&self, name: &str) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE repositories SET sync_state = 'pending' WHERE name = ?1")?
            .execute([name])?;
        Ok(())
    }

    /// Records a failure; the retry waits longer with every consecutive one.
    pub fn mark_failed(&self, name: &str, failure: &str) -> Result<()> {
        self.ensure_repository(name)?;
        let conn = self.conn();
        let count: u32 = conn
            .prepare_cached("SELECT retry_count FROM repositories WHERE name = ?1")?
            .query_row([name], |r| r.get(0))?;
        let delay = retry_delay(count + 1, jitter());
        conn.prepare_cached(
            "UPDATE repositories SET sync_state = 'failed', retry_count = retry_count + 1,
             retry_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2), last_sync_failure = ?3
             WHERE name = ?1",
        )?
        .execute(params![name, format!("+{} seconds", delay.as_secs()), failure])?;
        Ok(())
    }

    /// The last-known digest of each tag of the repository on the secondary.
    pub fn tags(&self, name: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE r.name = ?1 ORDER BY t.name",
        )?;
        let rows = stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO tags (repository_id, name, digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest,
                 synced_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            )?
            .execute(params![id, tag, digest.as_str()])?;
        Ok(())
    }

    pub fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM tags WHERE name = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
            )?
            .execute([repository, tag])?;
        Ok(())
    }

    /// Records that the secondary's `repository` holds the blob.
    pub fn record_blob(&self, repository: &str, digest: &Digest, size: u64) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        self.conn()
            .prepare_cached("INSERT OR REPLACE INTO blobs (digest, repository_id, size) VALUES (?1, ?2, ?3)")?
            .execute(params![digest.as_str(), id, size as i64])?;
        Ok(())
    }

    /// Another repository of the secondary believed to hold the blob.
    pub fn blob_source(&self, digest: &Digest, except: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.name FROM blobs b JOIN repositories r ON r.id = b.repository_id
             WHERE b.digest = ?1 AND r.name <> ?2 LIMIT 1",
        )?;
        Ok(stmt.query_row([digest.as_str(), except], |r| r.get(0)).optional()?)
    }

    pub fn forget_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM blobs WHERE digest = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
            )?
            .execute([repository, digest.as_str()])?;
        Ok(())
    }
}

/// Exponential backoff for the `count`-th consecutive failure: 30 s, 60 s,
/// 120 s... capped at one hour, scaled by `jitter` (0.8 to 1.2) so that
/// repositories failing together do not retry in lockstep.
pub fn retry_delay(count: u32, jitter: f64) -> Duration {
    let base = 30u64.saturating_mul(1u64 << count.saturating_sub(1).min(16)).min(3600);
    Duration::from_secs((base as f64 * jitter).round() as u64)
}

fn jitter() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0)
}

/// Applies every `-- @version N` block of schema.sql above the file's
/// user_version, all in one exclusive transaction.
fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
    let blocks = schema_blocks();
    let latest = blocks.last().map(|b| b.0).unwrap_or(0);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(|e| format!("cannot lock for migration: {e}"))?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if current > latest {
        return Err(format!(
            "schema version {current} was written by a newer georeg; this one knows up to {latest}: upgrade georeg"
        ));
    }
    for (version, sql) in blocks.iter().filter(|b| b.0 > current) {
        tx.execute_batch(sql).map_err(|e| format!("migration to schema version {version} failed: {e}"))?;
    }
    tx.pragma_update(None, "user_version", latest).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

fn schema_blocks() -> Vec<(i64, String)> {
    let mut blocks: Vec<(i64, String)> = Vec::new();
    for line in SCHEMA.lines() {
        if let Some(v) = line.strip_prefix("-- @version ") {
            if let Ok(v) = v.trim().parse() {
                blocks.push((v, String::new()));
                continue;
            }
        }
        if let Some((_, sql)) = blocks.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let store = Store::open_in_memory().unwrap();
        let v = store.schema_version().unwrap();
        assert!(v >= 1);
        let mut conn = store.conn.into_inner().unwrap();
        migrate(&mut conn).unwrap();
        let again: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(migrate(&mut conn).unwrap_err().contains("newer georeg"));
    }

    #[test]
    fn failure_then_success() {
        let store = Store::open_in_memory().unwrap();
        store.mark_started("g/app").unwrap();
        assert_eq!(store.repository("g/app").unwrap().unwrap().sync_state, "started");
        store.mark_failed("g/app", "boom").unwrap();
        store.mark_failed("g/app", "boom again").unwrap();
        let r = store.repository("g/app").unwrap().unwrap();
        assert_eq!((r.sync_state.as_str(), r.retry_count), ("failed", 2));
        assert_eq!(r.last_sync_failure.as_deref(), Some("boom again"));
        assert!(r.retry_at.is_some());
        store.mark_synced("g/app").unwrap();
        let r = store.repository("g/app").unwrap().unwrap();
        assert_eq!((r.sync_state.as_str(), r.retry_count, r.retry_at), ("synced", 0, None));
        assert!(r.last_synced_at.is_some());
    }

    #[test]
    fn tags_and_blob_sources() {
        let store = Store::open_in_memory().unwrap();
        let d = Digest::sha256_of(b"x");
        store.set_tag("a", "v1", &d).unwrap();
        store.set_tag("a", "v1", &d).unwrap();
        assert_eq!(store.tags("a").unwrap(), vec![("v1".to_string(), d.to_string())]);
        store.remove_tag("a", "v1").unwrap();
        assert!(store.tags("a").unwrap().is_empty());
        store.record_blob("a", &d, 1).unwrap();
        assert_eq!(store.blob_source(&d, "b").unwrap().as_deref(), Some("a"));
        assert_eq!(store.blob_source(&d, "a").unwrap(), None);
        store.forget_blob("a", &d).unwrap();
        assert_eq!(store.blob_source(&d, "b").unwrap(), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(1, 1.0).as_secs(), 30);
        assert_eq!(retry_delay(2, 1.0).as_secs(), 60);
        assert_eq!(retry_delay(5, 1.0).as_secs(), 480);
        assert_eq!(retry_delay(50, 1.0).as_secs(), 3600);
        assert_eq!(retry_delay(50, 1.2).as_secs(), 4320);
    }
}
