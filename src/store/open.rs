//! Opening the state file: the writer's connection (created and migrated
//! by the process that owns the file) and read-only connections (which
//! never create, lock or migrate anything, so `georeg status` works while
//! the daemon runs, on a read-only filesystem, and against a file an
//! older daemon is still using). `schema.sql` at the top level is the one
//! schema; its `-- @version N` blocks are the migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

const SCHEMA: &str = include_str!("../../schema.sql");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating it and its folder if need be) and migrates the state
/// file for writing.
pub(super) fn writer(path: &Path) -> Result<Connection> {
    // An empty file is a failed copy or restore, never a fresh install:
    // taking it for one would lose held deletions, bundle history and the
    // event log without a word.
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Err(Error::StateFile {
            path: path.to_path_buf(),
            message: "is empty (0 bytes), which no state file georeg wrote ever is (a failed copy or restore?): \
                      nothing was changed; restore it from a backup, or, if this node really starts afresh, \
                      remove it and its lock file and start again"
                .into(),
        });
    }
    // A lock file left by an earlier georeg witnesses a state file that is
    // gone: lost with a disk, deleted, or a path mistyped. Starting afresh
    // would do the same silent forgetting.
    if !path.exists() && !super::lock::made_by_this_process(path) {
        let lock = super::lock::path_for(path);
        return Err(Error::StateFile {
            path: path.to_path_buf(),
            message: format!(
                "does not exist, but {} shows that georeg kept its state there before: nothing was created; \
                 restore the state file from a backup, or check state_file; if this node really starts afresh \
                 (held deletions, bundle history and the event log forgotten), remove {} and start again",
                lock.display(),
                lock.display()
            ),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Store {
            message: format!("cannot create {}: {e} (check state_file and the directory's owner)", dir.display()),
        })?;
    }
    let conn =
        Connection::open(path).map_err(|e| Error::Store { message: format!("cannot open {}: {e}", path.display()) })?;
    set_up(conn).map_err(|e| Error::Store { message: format!("{}: {e}", path.display()) })
}

/// The writer's pragmas, then the migrations.
pub(super) fn set_up(mut conn: Connection) -> std::result::Result<Connection, String> {
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
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
    Ok(conn)
}

/// A read-only connection to an existing state file of the current schema
/// version. Never creates the file or its folder, never migrates: a
/// missing file, a newer or an older schema is the operator's to resolve,
/// and the error says how.
pub(super) fn reader(path: &Path) -> Result<Connection> {
    let refuse = |message: String| Error::StateFile { path: path.to_path_buf(), message };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(refuse("is not a file: check state_file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(
                "no state file exists there: `georeg serve` creates it at its first start (as do `georeg sync`, \
                 `backfill` and `import`); check state_file if one should exist"
                    .into(),
            ))
        }
        Err(e) => return Err(refuse(format!("cannot be read: {e}"))),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = match Connection::open_with_flags(path, flags).and_then(check_readable) {
        Ok(conn) => conn,
        // On a read-only filesystem, a WAL file whose writer closed cleanly
        // has no shared-memory file, and none can be made: nothing can
        // write there either, so the file is read as immutable.
        Err(first) => Connection::open_with_flags(immutable_uri(path), flags)
            .and_then(check_readable)
            .map_err(|_| refuse(format!("cannot be read: {first}")))?,
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| refuse(e.to_string()))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| refuse(e.to_string()))?;
    let latest = latest_version();
    if version > latest {
        return Err(refuse(format!(
            "schema version {version} was written by a newer georeg; this one knows up to {latest}: upgrade georeg"
        )));
    }
    if version < latest {
        let holder = super::lock::current_holder(path);
        return Err(refuse(match holder {
            Some(holder) => format!(
                "schema version {version} is older than this georeg's ({latest}) and {holder}, an older georeg, owns \
                 it (an upgrade in progress?): restart the service with this version, which migrates it, then ask \
                 again; nothing was changed"
            ),
            None => format!(
                "schema version {version} is older than this georeg's ({latest}): `georeg serve` of this version \
                 migrates it at its start; nothing was changed"
            ),
        }));
    }
    Ok(conn)
}

/// Reading the schema version proves the file is a database we can read.
fn check_readable(conn: Connection) -> rusqlite::Result<Connection> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
    Ok(conn)
}

fn immutable_uri(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = absolute.to_string_lossy();
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    format!("file:{escaped}?immutable=1")
}

/// The schema version this georeg writes.
pub(super) fn latest_version() -> i64 {
    schema_blocks().last().map(|b| b.0).unwrap_or(0)
}

/// Applies every `-- @version N` block of schema.sql above the file's
/// user_version, all in one exclusive transaction.
pub(super) fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
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
    fn a_lost_state_file_is_not_taken_for_a_first_start() {
        let dir = std::env::temp_dir().join(format!("georeg-lost-{}", crate::registry::token::random_hex(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.sqlite3");
        let lock = super::super::lock::path_for(&state);
        std::fs::write(&lock, "4242 serve\n").unwrap();
        let e = writer(&state).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("does not exist") && text.contains(&format!("remove {}", lock.display())), "{text}");
        assert!(!state.exists(), "nothing was created");
        // The operator's answer: the witness removed, it is a first start.
        std::fs::remove_file(&lock).unwrap();
        drop(writer(&state).unwrap());
        // A lock file this process made witnesses nothing.
        let other = dir.join("other.sqlite3");
        let held = super::super::lock::Lock::acquire(&other, super::super::lock::Locker::Serve).unwrap();
        drop(writer(&other).unwrap());
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `.schema` in sqlite3 shows what a column added later is for: only a
    /// comment inside the ALTER TABLE statement is kept in the table's text.
    #[test]
    fn every_column_added_later_carries_its_comment_into_the_schema() {
        for line in SCHEMA.lines().filter(|l| l.contains("ADD COLUMN")) {
            assert!(line.contains("/*") && line.contains("*/"), "no /* comment */ in: {line}");
        }
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let sql: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'repositories'", [], |r| r.get(0)).unwrap();
        assert!(sql.contains("overran_at TEXT /* when its last sync ran past"), "{sql}");
    }

    #[test]
    fn migrate_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert!(v >= 1);
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

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("georeg-open-{name}-{}", crate::registry::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_reader_creates_nothing_and_says_what_creates_the_file() {
        let dir = temp_dir("missing");
        let path = dir.join("sub").join("state.sqlite3");
        let e = reader(&path).unwrap_err();
        assert!(e.to_string().contains("no state file exists") && e.to_string().contains("georeg serve"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(!dir.join("sub").exists(), "the folder was created");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_refuses_other_schema_versions_and_changes_nothing() {
        let dir = temp_dir("versions");
        let path = dir.join("state.sqlite3");
        drop(writer(&path).unwrap());
        assert!(reader(&path).is_ok());
        let set = |v: i64| Connection::open(&path).unwrap().pragma_update(None, "user_version", v).unwrap();
        set(999);
        assert!(reader(&path).unwrap_err().to_string().contains("newer georeg"));
        set(3);
        let e = reader(&path).unwrap_err().to_string();
        assert!(e.contains("older than this georeg") && e.contains("nothing was changed"), "{e}");
        let v: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 3, "not migrated");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
