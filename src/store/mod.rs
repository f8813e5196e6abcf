//! The SQLite state file. `schema.sql` at the top level is its only schema;
//! this module opens and migrates it, and its submodules own the queries:
//! `repos` (repositories and the sync queue), `tags` (what georeg placed on
//! the secondary), `verification` (the verification queue), `events` (the
//! event log and the secondary's cursor), `nodes` (secondaries' reports, on
//! a primary), `uploads` (blobs copied in chunks), `bundles` (transfer
//! bundles imported), `deletions` (removals held back,
//! `replication.delete_delay_hours`) and `burst` (their alarm), `drills`
//! (pulls from the secondary and what they found), `readiness` (what
//! failover would lose), `queries` (the read side the pages show) and
//! `states` (the sync and verification states).
//!
//! One connection behind a mutex, held only for short statements and never
//! across an HTTP call; SQLite serializes writers anyway. HTTP handlers and
//! replication workers meet only here: a handler commits rows, then rings a
//! [`Bell`] so that sleeping workers look at the tables again. The bells
//! carry no data, so nothing is lost when the process dies.
//!
//! Notifications are group-committed: requests that arrive while another
//! commit is on its way to disk are stored together in the next
//! transaction, so a burst from many registries costs one fsync per batch
//! rather than one per request, and each is still answered only after its
//! own events are on disk.

mod bundles;
mod burst;
mod cursor;
mod deletions;
mod drills;
mod events;
pub mod lock;
mod nodes;
mod queries;
mod readiness;
mod repos;
mod scale_tests;
mod states;
mod tags;
mod uploads;
mod verification;

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::config::selective::Selection;
use crate::error::{Error, Result};

pub use bundles::{BundleRow, NewBundle};
pub use cursor::Cursor;
pub use deletions::{Kept, NewRemoval, Open, Removal, RemovalKind, RemovalPolicy, RemovalSummary, Selector};
#[cfg(test)]
pub use drills::DrillRow;
pub use drills::{DrillFailure, DrillRecord, DrillSummary, DrillTag};
pub use events::{Event, NewEvent};
pub use nodes::Sample;
pub use queries::{Counts, RepositoryFilter, RepositoryRow};
pub use readiness::Counted;
pub use repos::{Job, Progress};
pub use states::{SyncState, VerificationState};
pub use uploads::{Upload, UploadRow};
pub use verification::Verification;

const SCHEMA: &str = include_str!("../../schema.sql");

/// The current time as stored in the state file.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

pub struct Store {
    conn: Mutex<Connection>,
    /// Notifications waiting for the next group commit, and the outcomes
    /// of committed ones until their callers collect them.
    batch: Mutex<events::Batch>,
    /// Rung when a repository may have become claimable.
    pub work: Bell,
    /// Rung when events were appended (wakes long polls of the log).
    pub log: Bell,
    /// Selective sync, applied to repositories events make known.
    selection: Mutex<Selection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store {
                message: format!("cannot create {}: {e} (check state_file and the directory's owner)", dir.display()),
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|source| Error::Sql { context: format!("cannot open {}", path.display()), source })?;
        Store::init(conn).map_err(|e| Error::Store { message: format!("{}: {e}", path.display()) })
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?).map_err(|message| Error::Store { message })
    }

    fn init(mut conn: Connection) -> std::result::Result<Store, String> {
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // NORMAL: every commit survives a crash of georeg; a power cut
            // may take the last ones back, which recovery redoes (claims,
            // outcomes and records are redone by the next sync). Only the
            // commit of notifications, acknowledged to the registry, is
            // FULL (`events::commit_batch`): it must survive a power cut.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(())
        };
        setup().map_err(|e| e.to_string())?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            batch: Mutex::default(),
            work: Bell::default(),
            log: Bell::default(),
            selection: Mutex::default(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Statements are atomic, so a panic while holding the lock leaves no
        // half-written state behind and a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the selective sync that repositories first seen in events get
    /// (everything, until this is called).
    pub fn set_selection(&self, selection: Selection) {
        *self.selection.lock().unwrap_or_else(|p| p.into_inner()) = selection;
    }

    fn selection(&self) -> Selection {
        self.selection.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// A doorbell: waiters sleep until it rings or their timeout passes.
#[derive(Default)]
pub struct Bell {
    rings: Mutex<u64>,
    cv: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }

    /// The ring count, to pass to [`Bell::wait`] so no ring is missed
    /// between checking the tables and going to sleep.
    pub fn count(&self) -> u64 {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps until the bell rang after `seen`, or `timeout` passed.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.cv.wait_timeout_while(guard, timeout, |rings| *rings == seen);
    }
}

/// Exponential backoff for the `count`-th consecutive failure: 10 s, 20 s,
/// 40 s... capped at one hour, scaled by `jitter` (0.8 to 1.2) so that
/// repositories failing together do not retry in lockstep.
pub fn retry_delay(count: u32, jitter: f64) -> Duration {
    let base = 10u64.saturating_mul(1u64 << count.saturating_sub(1).min(16)).min(3600);
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
    fn a_file_of_every_older_version_migrates_to_the_latest() {
        let blocks = schema_blocks();
        let latest = blocks.last().unwrap().0;
        for (upto, _) in &blocks {
            let mut conn = Connection::open_in_memory().unwrap();
            for (v, sql) in blocks.iter().filter(|b| b.0 <= *upto) {
                conn.execute_batch(sql).unwrap_or_else(|e| panic!("block {v}: {e}"));
            }
            conn.pragma_update(None, "user_version", upto).unwrap();
            migrate(&mut conn).unwrap();
            let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(now, latest, "from version {upto}");
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(migrate(&mut conn).unwrap_err().contains("newer georeg"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(1, 1.0).as_secs(), 10);
        assert_eq!(retry_delay(2, 1.0).as_secs(), 20);
        assert_eq!(retry_delay(5, 1.0).as_secs(), 160);
        assert_eq!(retry_delay(50, 1.0).as_secs(), 3600);
        assert_eq!(retry_delay(50, 1.2).as_secs(), 4320);
    }

    #[test]
    fn bell_wakes_a_waiter() {
        let bell = std::sync::Arc::new(Bell::default());
        let seen = bell.count();
        let b = bell.clone();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            b.wait(seen, Duration::from_secs(10));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        bell.ring();
        assert!(t.join().unwrap() < Duration::from_secs(5));
        // A ring before the wait is not missed.
        let seen = bell.count();
        bell.ring();
        bell.wait(seen, Duration::from_secs(10));
    }
}
