//! The event log: registry notifications georeg acts on, stored before they
//! are acknowledged; and a secondary's cursor in its primary's log.

use rusqlite::{params, Connection, TransactionBehavior};

use super::event::{event_row, Event, NewEvent, EVENT_COLUMNS};
use super::handles::{Log, Queue, Snapshot, Store};
use super::repos::Job;
use super::shared::{Batch, Queued};
use crate::config::selective::Selection;
use crate::error::{Error, Result};

impl Log {
    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the events, each event id once; with `schedule`, also queues
    /// their repositories for sync. Returns how many were new. When this
    /// returns, they are on disk.
    ///
    /// Group commit: the caller queues its events, then waits for the
    /// connection. Whoever gets it commits everything queued by then in
    /// one transaction and leaves each caller its outcome, so concurrent
    /// notifications share one fsync. Each request has its own savepoint:
    /// one that fails does not fail the others.
    pub fn record_events(&self, events: &[NewEvent], schedule: bool) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let ticket = {
            let mut batch = self.batch();
            let ticket = batch.next_ticket;
            batch.next_ticket += 1;
            batch.queued.push(Queued { ticket, events: events.to_vec(), schedule });
            ticket
        };
        let mut conn = self.conn_first();
        let queued = {
            let mut batch = self.batch();
            if let Some(outcome) = batch.done.remove(&ticket) {
                return outcome.map_err(|message| Error::Store { message });
            }
            std::mem::take(&mut batch.queued)
        };
        let outcomes = commit_batch(&mut conn, &queued, &self.selection());
        let mut mine = Err(format!("notification batch lost request {ticket}"));
        let (mut stored, mut scheduled) = (0, false);
        {
            let mut batch = self.batch();
            for (q, outcome) in queued.iter().zip(outcomes) {
                if let Ok(n) = outcome {
                    stored += n;
                    scheduled |= q.schedule && n > 0;
                }
                if q.ticket == ticket {
                    mine = outcome;
                } else {
                    batch.done.insert(q.ticket, outcome);
                }
            }
        }
        // Outcomes are posted before the connection is released: a caller
        // whose events went into this batch finds its outcome when it gets
        // the connection.
        drop(conn);
        if stored > 0 {
            self.appended.ring();
            if scheduled {
                self.work.ring();
            }
        }
        mine.map_err(|message| Error::Store { message })
    }

    /// Up to `limit` events after log position `after`, oldest first.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
        let rows = stmt.query_map(params![after, limit as i64], event_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest log position, 0 when no event was ever stored.
    pub fn last_event_id(&self) -> Result<i64> {
        Snapshot::over(&self.conn()).last_event_id()
    }

    /// This log's epoch (made with the state file) and its oldest id still
    /// stored (0 when it never held an event): what a secondary checks its
    /// place in the log against.
    pub fn log_position(&self) -> Result<(String, i64)> {
        let conn = self.conn();
        let epoch = conn.query_row("SELECT epoch FROM log_epoch WHERE id = 1", [], |r| r.get(0))?;
        let oldest = conn.query_row("SELECT COALESCE(MIN(id), 0) FROM events", [], |r| r.get(0))?;
        Ok((epoch, oldest))
    }
}

impl Snapshot<'_> {
    /// The newest log position, 0 when no event was ever stored. (Pruning
    /// always keeps the newest event, so this never goes down.)
    pub fn last_event_id(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }
}

impl Queue {
    /// The events a job must apply, oldest first.
    pub fn events_for(&self, job: &Job) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE repository = ?1 AND id > ?2 AND id <= ?3 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![job.name, job.after, job.through], event_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Store {
    /// Deletes events older than `days` days. On a secondary, only those
    /// their repository has applied. On a primary, only those every
    /// secondary that reported within `days` has read, and, whatever they
    /// read, everything older than `max_days`. The newest event always
    /// stays, so the log's position never goes back. Returns how many were
    /// deleted.
    pub fn prune_events(&self, days: u64, max_days: u64, secondary: bool) -> Result<usize> {
        let n = self.conn().execute(
            "DELETE FROM events WHERE id < (SELECT MAX(id) FROM events)
             AND ((NOT ?3 AND received_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2))
                  OR (received_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)
                      AND (NOT ?3 OR id <= (SELECT r.events_done_through FROM repositories r
                                            WHERE r.name = events.repository))
                      AND (?3 OR id <= COALESCE(
                             (SELECT MIN(CAST(json_extract(n.status, '$.events.cursor_last_event_id') AS INTEGER))
                              FROM nodes n WHERE n.reported_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?1)),
                             id))))",
            params![format!("-{days} days"), format!("-{max_days} days"), secondary],
        )?;
        Ok(n)
    }
}

/// Inserts events, each event id once, and with `schedule` (the selective
/// sync in force) marks their repositories for sync; a repository first
/// seen here that selective sync leaves out is recorded excluded, so an
/// event never copies what the configuration says not to. Returns how
/// many events were new.
pub(super) fn insert_rows(
    conn: &Connection,
    events: &[(&NewEvent, Option<i64>)],
    schedule: Option<&Selection>,
) -> rusqlite::Result<usize> {
    let mut inserted = 0;
    for (e, primary_id) in events {
        let n = conn
            .prepare_cached(
                "INSERT INTO events (event_id, repository, action, tag, digest, media_type, primary_event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (event_id) DO NOTHING",
            )?
            .execute(params![e.event_id, e.repository, e.action, e.tag, e.digest, e.media_type, primary_id])?;
        inserted += n;
        if n == 1 && schedule.is_none() {
            // On a primary, the event changed its own registry: the
            // repository's fingerprint is read again first.
            conn.prepare_cached(super::fingerprints::MARK_STALE)?.execute([&e.repository])?;
        }
        if let Some(selection) = schedule.filter(|_| n == 1) {
            conn.prepare_cached(
                "INSERT INTO repositories (name, excluded, verification_state)
                 VALUES (?1, ?2, CASE WHEN ?2 THEN 'disabled' ELSE 'pending' END) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![e.repository, !selection.includes(&e.repository)])?;
            conn.prepare_cached(
                "UPDATE repositories SET sync_state = 'pending'
                 WHERE name = ?1 AND sync_state IN ('synced', 'failed') AND excluded = 0",
            )?
            .execute([&e.repository])?;
        }
    }
    Ok(inserted)
}

/// Commits queued notifications in one transaction, each request in its
/// own savepoint; returns each request's outcome, in order.
fn commit_batch(
    conn: &mut Connection,
    queued: &[Queued],
    selection: &Selection,
) -> Vec<std::result::Result<usize, String>> {
    let run = |conn: &mut Connection| -> rusqlite::Result<Vec<std::result::Result<usize, String>>> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(queued.len());
        for q in queued {
            let savepoint = tx.savepoint()?;
            let rows: Vec<(&NewEvent, Option<i64>)> = q.events.iter().map(|e| (e, None)).collect();
            match insert_rows(&savepoint, &rows, q.schedule.then_some(selection)) {
                Ok(n) => {
                    savepoint.commit()?;
                    outcomes.push(Ok(n));
                }
                // Dropping the savepoint rolls this request back, and only it.
                Err(e) => outcomes.push(Err(e.to_string())),
            }
        }
        tx.commit()?;
        Ok(outcomes)
    };
    // An event is acknowledged to the registry only after its commit, and
    // must survive a power cut, not just a crash: this commit alone is
    // FULL (it fsyncs the whole log, earlier NORMAL commits with it).
    let result = conn.pragma_update(None, "synchronous", "FULL").and_then(|()| run(conn));
    if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
        log::warn!("state file: cannot set synchronous back to NORMAL ({e}); commits stay durable, only slower");
    }
    match result {
        Ok(outcomes) => outcomes,
        Err(e) => vec![Err(e.to_string()); queued.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    fn ev(id: &str, repo: &str) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            repository: repo.into(),
            action: crate::store::Action::Push,
            tag: Some("v1".into()),
            digest: None,
            media_type: None,
        }
    }

    #[test]
    fn duplicate_delivery_is_stored_once() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.log().record_events(&[ev("a", "r"), ev("b", "r")], false).unwrap(), 2);
        assert_eq!(store.log().record_events(&[ev("a", "r")], false).unwrap(), 0);
        assert_eq!(store.read(|s| s.last_event_id()).unwrap(), 2);
        let log = store.log().events_after(0, 10).unwrap();
        assert_eq!(log.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(store.log().events_after(1, 10).unwrap().len(), 1);
        assert!(store.repository("r").unwrap().is_none(), "a primary schedules nothing");
    }

    #[test]
    fn only_the_commit_of_notifications_is_full() {
        let store = Store::open_in_memory().unwrap();
        let level = |store: &Store| -> i64 { store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap() };
        assert_eq!(level(&store), 1, "NORMAL by default");
        store.log().record_events(&[ev("a", "r")], false).unwrap();
        assert_eq!(level(&store), 1, "back to NORMAL after the FULL commit");
    }

    #[test]
    fn pruning_keeps_recent_and_unapplied_events() {
        let store = Store::open_in_memory().unwrap();
        store.log().record_events(&[ev("a", "r1"), ev("b", "r2")], true).unwrap();
        store.conn().execute("UPDATE events SET received_at = '2000-01-01T00:00:00Z'", []).unwrap();
        let job = store.claim_next().unwrap().unwrap();
        store.finish_job(&job, "").unwrap();
        // Only the applied one of the two old events goes (the other is newest anyway).
        assert_eq!(store.prune_events(30, 90, true).unwrap(), 1);
        assert_eq!(store.read(|s| s.event_count()).unwrap(), 1);
        // The newest event always stays, so the log position never goes down.
        assert_eq!(store.prune_events(30, 90, false).unwrap(), 0);
        assert_eq!(store.read(|s| s.last_event_id()).unwrap(), 2);
        store.log().record_events(&[ev("c", "r1")], false).unwrap();
        assert_eq!(store.prune_events(30, 90, false).unwrap(), 1);
        assert_eq!(store.read(|s| s.last_event_id()).unwrap(), 3);
    }

    #[test]
    fn concurrent_notifications_are_each_stored_once_and_answered_with_their_own_count() {
        let dir = std::env::temp_dir().join(format!("georeg-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("state.sqlite3")).unwrap();
        let (threads, per_thread) = (16, 40);
        let (own, shared): (usize, usize) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        let (mut own, mut shared) = (0, 0);
                        for i in 0..per_thread {
                            own += store.log().record_events(&[ev(&format!("e{t}-{i}"), "r")], true).unwrap();
                            // Every thread also delivers the same events: each is new once.
                            shared += store.log().record_events(&[ev(&format!("shared-{i}"), "r")], true).unwrap();
                        }
                        (own, shared)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!(own, threads * per_thread, "each caller is told its own event was new");
        assert_eq!(shared, per_thread, "a redelivered event counts as new exactly once");
        let rows = store.log().events_after(0, 10_000).unwrap();
        let ids: std::collections::HashSet<&str> = rows.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), threads * per_thread + per_thread);
        assert_eq!(rows.len(), ids.len(), "no event stored twice");
        assert_eq!(store.repository("r").unwrap().unwrap().sync_state, SyncState::Pending);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_notification_does_not_fail_the_others_in_its_batch() {
        let store = Store::open_in_memory().unwrap();
        let mut bad = ev("bad", "r");
        bad.action = crate::store::Action::Other; // no action the state file stores
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (store, bad) = (&store, &bad);
                    s.spawn(move || {
                        let e = if t == 3 { bad.clone() } else { ev(&format!("ok{t}"), "r") };
                        store.log().record_events(&[e], false).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outcomes.iter().filter(|ok| !**ok).count(), 1);
        assert!(!outcomes[3]);
        assert_eq!(store.log().events_after(0, 100).unwrap().len(), 7);
    }

    #[test]
    fn followed_events_advance_the_cursor_atomically() {
        let primary = Store::open_in_memory().unwrap();
        primary.log().record_events(&[ev("a", "r1"), ev("b", "r2"), ev("c", "r1")], false).unwrap();
        let secondary = Store::open_in_memory().unwrap();
        let page = primary.log().events_after(0, 2).unwrap();
        secondary.log().record_followed(&page, 2, 3, "e").unwrap();
        let c = secondary.read(|s| s.cursor()).unwrap();
        assert_eq!((c.last_event_id, c.primary_last_event_id), (2, 3));
        assert_eq!(secondary.repository("r2").unwrap().unwrap().sync_state, SyncState::Pending);
        // Re-reading the same page changes nothing.
        assert_eq!(secondary.log().record_followed(&page, 2, 3, "e").unwrap(), 0);
        let rest = primary.log().events_after(c.last_event_id, 10).unwrap();
        secondary.log().record_followed(&rest, 3, 3, "e").unwrap();
        assert_eq!(secondary.read(|s| s.cursor()).unwrap().last_event_id, 3);
        secondary.log().record_followed(&[], 3, 3, "e").unwrap();
        assert_eq!(secondary.read(|s| s.cursor()).unwrap().last_event_id, 3, "an empty page keeps the cursor");
    }

    #[test]
    fn a_primary_keeps_events_until_its_secondaries_read_them_up_to_the_cap() {
        let store = Store::open_in_memory().unwrap();
        let events: Vec<NewEvent> = (0..5).map(|i| ev(&format!("e{i}"), "r")).collect();
        store.log().record_events(&events, false).unwrap();
        store.conn().execute("UPDATE events SET received_at = '2000-01-01T00:00:00Z' WHERE id <= 4", []).unwrap();
        let report = |read: i64| format!("{{\"events\":{{\"cursor_last_event_id\":{read}}}}}");
        store.log().record_node("s1", true, None, &report(2)).unwrap();
        store.log().record_node("s2", true, None, &report(4)).unwrap();
        // s1 has read up to 2: only 1 and 2 may go.
        assert_eq!(store.prune_events(30, 100_000, false).unwrap(), 2);
        assert_eq!(store.log().log_position().unwrap().1, 3);
        // A secondary silent for longer than the retention does not hold the log.
        store.conn().execute("UPDATE nodes SET reported_at = '2000-01-01T00:00:00Z' WHERE name = 's1'", []).unwrap();
        assert_eq!(store.prune_events(30, 100_000, false).unwrap(), 2, "3 and 4: up to what s2 read");
        assert_eq!(store.log().log_position().unwrap().1, 5);
        // Past the cap, events go whatever the secondaries read.
        store.log().record_node("s2", true, None, &report(0)).unwrap();
        store.log().record_events(&[ev("e9", "r")], false).unwrap();
        store.conn().execute("UPDATE events SET received_at = '2000-01-01T00:00:00Z'", []).unwrap();
        assert_eq!(store.prune_events(30, 100_000, false).unwrap(), 0, "s2 has read nothing");
        assert_eq!(store.prune_events(30, 60, false).unwrap(), 1, "the cap");
    }
}
