//! The doors to the state file. Each caller gets only the handle its side
//! needs, so what a side cannot do is not a convention but a missing
//! method:
//!
//! - [`Store`], the owner: opened by the process that holds the state
//!   file's lock; hands out the other handles and runs housekeeping
//!   (pruning, selective sync in force).
//! - [`Queue`], for replication: claims and job outcomes, and what a job
//!   records (tags, blobs, uploads, deletions held back, verification,
//!   drills, bundles imported).
//! - [`Log`], for the web side and the follower: what comes in (events,
//!   the cursor in a primary's log, secondaries' reports, chart samples)
//!   and operators' requests (a resync), never a claim.
//! - [`Reader`], the read side: its own read-only connections, each read
//!   one [`Snapshot`] in one transaction, so the numbers of one page agree
//!   with each other; in WAL mode a reader never waits for the writer and
//!   the writer never waits for a reader.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use super::open;
use super::shared::Shared;
use crate::config::selective::Selection;
use crate::error::Result;

/// The owner's handle (see the module docs).
pub(crate) struct Store {
    shared: Arc<Shared>,
    /// The queue, for tests that drive it through the owner.
    #[cfg(test)]
    queue: Queue,
    /// Where read-only connections open the same database.
    source: Source,
}

#[derive(Clone)]
enum Source {
    File(std::path::PathBuf),
    /// A named in-memory database, shared by its connections (tests).
    #[cfg(test)]
    Memory(String),
}

/// Replication's handle: claims, job outcomes and what jobs record.
#[derive(Clone)]
pub(crate) struct Queue(Arc<Shared>);

/// The web side's and the follower's handle: events, the cursor, reports,
/// samples and operators' requests.
#[derive(Clone)]
pub(crate) struct Log(Arc<Shared>);

/// The fingerprint keeper's handle: the fingerprints of this node's own
/// registry, and nothing else.
#[derive(Clone)]
pub(crate) struct Fingerprints(Arc<Shared>);

/// The read side: read-only connections, one snapshot per read.
pub(crate) struct Reader {
    conns: Vec<Mutex<Connection>>,
}

/// One consistent view of the state file: every query made through it
/// reads the same snapshot.
pub(crate) struct Snapshot<'a> {
    conn: &'a Connection,
}

/// Read-only connections a daemon's read side keeps (pages, `/metrics`,
/// reports and long status reads run side by side).
const READERS: usize = 4;

impl Store {
    /// Opens the state file for writing, creating and migrating it.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let conn = open::writer(path)?;
        Ok(Store::new(Shared::new(conn), Source::File(path.to_path_buf())))
    }

    /// A private in-memory state file (tests): named, so that a reader
    /// can open it too.
    #[cfg(test)]
    pub(crate) fn open_in_memory() -> Result<Store> {
        let name = format!("file:georeg-{}?mode=memory&cache=shared", crate::registry::token::random_hex(8));
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&name, flags)?;
        let conn = open::set_up(conn).map_err(|message| crate::error::Error::Store { message })?;
        Ok(Store::new(Shared::new(conn), Source::Memory(name)))
    }

    fn new(shared: Shared, source: Source) -> Store {
        let shared = Arc::new(shared);
        Store {
            #[cfg(test)]
            queue: Queue(shared.clone()),
            shared,
            source,
        }
    }

    pub(crate) fn queue(&self) -> Queue {
        Queue(self.shared.clone())
    }

    pub(crate) fn log(&self) -> Log {
        Log(self.shared.clone())
    }

    pub(crate) fn fingerprints(&self) -> Fingerprints {
        Fingerprints(self.shared.clone())
    }

    /// A read side on the same file, with connections of its own.
    pub(crate) fn reader(&self) -> Result<Reader> {
        match &self.source {
            Source::File(path) => Reader::open_with(path, READERS),
            #[cfg(test)]
            Source::Memory(name) => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
                Ok(Reader { conns: vec![Mutex::new(Connection::open_with_flags(name, flags)?)] })
            }
        }
    }

    /// Sets the selective sync that repositories first seen in events get
    /// (everything, until this is called).
    pub(crate) fn set_selection(&self, selection: Selection) {
        self.shared.set_selection(selection);
    }

    /// How many repositories that overran their sync budget may be synced
    /// at once (half the workers, at least one); no limit until called.
    pub(crate) fn set_slow_share(&self, n: usize) {
        self.shared.set_slow_share(n.max(1));
    }

    /// The schema version of the open file.
    pub(crate) fn schema_version(&self) -> Result<i64> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Wakes every sleeper (shutdown).
    pub(crate) fn ring_all(&self) {
        self.shared.work.ring();
        self.shared.appended.ring();
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.shared.conn()
    }

    /// Runs `f` on a snapshot read through the writer's connection (tests).
    #[cfg(test)]
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Snapshot) -> Result<T>) -> Result<T> {
        f(&Snapshot { conn: &self.conn() })
    }
}

/// Tests drive the queue straight through the owner.
#[cfg(test)]
impl Deref for Store {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.queue
    }
}

impl Deref for Queue {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Log {
    /// The queue's requests an operator may make through the web side
    /// (a resync) reuse the queue's statements.
    pub(super) fn queue(&self) -> Queue {
        Queue(self.0.clone())
    }
}

impl Fingerprints {
    /// The queue's reads the keeper needs reuse the queue's statements.
    pub(super) fn queue(&self) -> Queue {
        Queue(self.0.clone())
    }
}

impl Deref for Fingerprints {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Deref for Log {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Reader {
    /// A read side on an existing state file, for a command that only
    /// reads: read-only, creating and migrating nothing (see `open::reader`).
    pub(crate) fn open(path: &Path) -> Result<Reader> {
        Reader::open_with(path, 1)
    }

    fn open_with(path: &Path, n: usize) -> Result<Reader> {
        let conns = (0..n).map(|_| open::reader(path).map(Mutex::new)).collect::<Result<_>>()?;
        Ok(Reader { conns })
    }

    /// Runs `f` on one snapshot: a read transaction on a free connection
    /// (or the first, when all are busy).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Snapshot) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conns
            .iter()
            .find_map(|c| c.try_lock().ok())
            .unwrap_or_else(|| self.conns[0].lock().unwrap_or_else(|p| p.into_inner()));
        let tx = conn.transaction()?;
        let out = f(&Snapshot { conn: &tx });
        // Nothing was written: ending the read is a rollback.
        drop(tx);
        out
    }
}

impl<'a> Snapshot<'a> {
    /// A view through a writer's own connection, for a handle that needs
    /// one of the read side's queries itself.
    pub(super) fn over(conn: &'a Connection) -> Snapshot<'a> {
        Snapshot { conn }
    }

    pub(super) fn conn(&self) -> &'a Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::NewEvent;

    fn event(id: &str) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            repository: "g/app".into(),
            action: crate::store::Action::Push,
            tag: Some("v1".into()),
            digest: None,
            media_type: None,
        }
    }

    #[test]
    fn a_notification_commits_while_a_snapshot_is_read_and_the_snapshot_does_not_change() {
        let dir = std::env::temp_dir().join(format!("georeg-handles-{}", crate::registry::token::random_hex(6)));
        let store = Store::open(&dir.join("state.sqlite3")).unwrap();
        let (log, reader) = (store.log(), store.reader().unwrap());
        log.record_events(&[event("before")], true).unwrap();
        let (done, committed) = mpsc::channel();
        reader
            .read(|snap| {
                let before = snap.event_count()?;
                // A notification arrives while this page is being read: it
                // commits (and is answered) without waiting for the read.
                std::thread::scope(|s| {
                    s.spawn(|| done.send(log.record_events(&[event("during")], true)).unwrap());
                    let outcome = committed.recv_timeout(Duration::from_secs(5));
                    assert!(matches!(outcome, Ok(Ok(1))), "the commit waited for the snapshot: {outcome:?}");
                });
                // The snapshot still shows the state file as it was.
                assert_eq!(snap.event_count()?, before);
                Ok(())
            })
            .unwrap();
        assert_eq!(reader.read(|snap| snap.event_count()).unwrap(), 2, "the next snapshot sees it");
        drop((store, log, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_read_side_cannot_write() {
        let dir = std::env::temp_dir().join(format!("georeg-handles-{}", crate::registry::token::random_hex(6)));
        let store = Store::open(&dir.join("state.sqlite3")).unwrap();
        let reader = store.reader().unwrap();
        let write = reader.read(|snap| Ok(snap.conn().execute("DELETE FROM events", [])?));
        assert!(write.is_err(), "a read-only connection wrote");
        drop((store, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
