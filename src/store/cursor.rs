//! A secondary's place in the primary georeg's event log: the last id it
//! stored, which log (epoch) those ids belong to, and the last time it
//! found it could not trust that place and queued a full comparison of
//! every repository instead.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::event::{Event, NewEvent};
use super::events::insert_rows;
use super::handles::{Log, Snapshot};
use super::shared::NOW;
use crate::error::Result;

/// A secondary's position in its primary's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub last_event_id: i64,
    pub primary_last_event_id: i64,
    pub updated_at: Option<String>,
    pub last_error: Option<String>,
    /// The epoch of the log `last_event_id` is a position in.
    pub primary_epoch: Option<String>,
    /// When the cursor last lost its place, and what was done about it.
    pub gap_detected_at: Option<String>,
    pub gap_message: Option<String>,
    /// The node this one follows and its own upstreams, nearest first, up
    /// to the primary, as it said at the last read (empty: not known).
    pub upstream_chain: Vec<String>,
    /// Why that node is behind the primary, as it said (`None`: it is not).
    pub upstream_behind: Option<String>,
}

impl Log {
    /// Stores events read from the primary's log and advances the cursor
    /// past them, atomically: after a crash, reading resumes exactly after
    /// the last event stored. `through` is the last id of the page read,
    /// even when events at its end were skipped as invalid; `epoch` is the
    /// log's.
    pub fn record_followed(
        &self,
        events: &[Event],
        through: i64,
        primary_last_event_id: i64,
        epoch: &str,
    ) -> Result<usize> {
        let new: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent {
                event_id: e.event_id.clone(),
                repository: e.repository.clone(),
                action: e.action,
                tag: e.tag.clone(),
                digest: e.digest.clone(),
                media_type: e.media_type.clone(),
            })
            .collect();
        let tagged: Vec<(&NewEvent, Option<i64>)> = new.iter().zip(events).map(|(n, e)| (n, Some(e.id))).collect();
        let inserted;
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            inserted = insert_rows(&tx, &tagged, Some(&self.selection()))?;
            tx.prepare_cached(&format!(
                "UPDATE cursor SET last_event_id = MAX(last_event_id, ?1), primary_last_event_id = ?2,
                 primary_epoch = NULLIF(?3, ''), updated_at = {NOW}, last_error = NULL WHERE id = 1"
            ))?
            .execute(params![through, primary_last_event_id, epoch])?;
            tx.commit()?;
        }
        if inserted > 0 {
            self.appended.ring();
            self.work.ring();
        }
        Ok(inserted)
    }

    /// The cursor lost its place in the primary's log (`message` says
    /// how): it moves to `restart_after` in the log of `epoch`, and every
    /// repository is queued for a full comparison, which repairs whatever
    /// the lost events would have. In one transaction.
    pub fn cursor_lost_place(&self, message: &str, restart_after: i64, epoch: &str) -> Result<usize> {
        let queued;
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(&format!(
                "UPDATE cursor SET last_event_id = ?1, primary_epoch = NULLIF(?2, ''), gap_detected_at = {NOW},
                 gap_message = ?3 WHERE id = 1"
            ))?
            .execute(params![restart_after, epoch, message])?;
            queued = tx.execute(
                "UPDATE repositories SET full_sync_requested = 1,
                 sync_state = CASE sync_state WHEN 'started' THEN 'started' ELSE 'pending' END
                 WHERE excluded = 0",
                [],
            )?;
            tx.commit()?;
        }
        self.work.ring();
        Ok(queued)
    }

    /// Records what the node this one follows said of itself: its chain
    /// up to the primary, and why it is behind the primary, if it is.
    pub fn record_upstream(&self, chain: &[String], behind: Option<&str>) -> Result<()> {
        let chain = serde_json::to_string(chain).unwrap_or_else(|_| "[]".into());
        self.conn()
            .prepare_cached("UPDATE cursor SET upstream_chain = ?1, upstream_behind = ?2 WHERE id = 1")?
            .execute(params![chain, behind])?;
        Ok(())
    }

    /// Records why reading the primary's log failed, for the operator.
    pub fn cursor_failed(&self, message: &str) -> Result<()> {
        self.conn().execute("UPDATE cursor SET last_error = ?1 WHERE id = 1", [message])?;
        Ok(())
    }
}

impl Log {
    /// Where the cursor stands.
    pub fn cursor(&self) -> Result<Cursor> {
        Snapshot::over(&self.conn()).cursor()
    }
}

impl Snapshot<'_> {
    pub fn cursor(&self) -> Result<Cursor> {
        let conn = self.conn();
        let cursor = conn
            .query_row(
                "SELECT last_event_id, primary_last_event_id, updated_at, last_error, primary_epoch,
                        gap_detected_at, gap_message, upstream_chain, upstream_behind
                 FROM cursor WHERE id = 1",
                [],
                |r| {
                    Ok(Cursor {
                        last_event_id: r.get(0)?,
                        primary_last_event_id: r.get(1)?,
                        updated_at: r.get(2)?,
                        last_error: r.get(3)?,
                        primary_epoch: r.get(4)?,
                        gap_detected_at: r.get(5)?,
                        gap_message: r.get(6)?,
                        upstream_chain: r
                            .get::<_, Option<String>>(7)?
                            .and_then(|json| serde_json::from_str(&json).ok())
                            .unwrap_or_default(),
                        upstream_behind: r.get(8)?,
                    })
                },
            )
            .optional()?;
        Ok(cursor.unwrap_or_default())
    }
}
