//! A changed `replication.delete_delay_hours`: deletions held under the
//! old delay are rescheduled to the new one (their time seen plus the new
//! delay), so that lengthening the delay protects what is held already,
//! and shortening it (to 0 too) makes what is past the new delay due. An
//! operator's decision (`--apply`, `--cancel`) is kept.

use rusqlite::params;

use super::handles::Queue;
use crate::error::Result;

/// What rescheduling changed, for the log.
#[derive(Debug, PartialEq)]
pub struct Rescheduled {
    /// Deletions moved to the new delay.
    pub moved: usize,
    /// The delays they were held with before, in hours, smallest first.
    pub was_hours: Vec<i64>,
    /// How many of them are due now.
    pub due: usize,
    /// When the soonest of the rest applies.
    pub next: Option<String>,
}

impl Queue {
    /// Moves every held deletion no operator decided on to `delay_hours`
    /// after it was seen; `None` when all were held with it already.
    pub fn reschedule_deletions(&self, delay_hours: u64) -> Result<Option<Rescheduled>> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let was_hours: Vec<i64> = tx
            .prepare_cached(
                "SELECT DISTINCT CAST(round((julianday(applies_at) - julianday(seen_at)) * 24) AS INTEGER) AS h
                 FROM deletions WHERE state = 'held' AND decided_by IS NULL
                   AND applies_at <> strftime('%Y-%m-%dT%H:%M:%SZ', seen_at, ?1) ORDER BY h",
            )?
            .query_map([format!("+{delay_hours} hours")], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if was_hours.is_empty() {
            return Ok(None);
        }
        let moved = tx
            .prepare_cached(
                "UPDATE deletions SET applies_at = strftime('%Y-%m-%dT%H:%M:%SZ', seen_at, ?1)
                 WHERE state = 'held' AND decided_by IS NULL
                   AND applies_at <> strftime('%Y-%m-%dT%H:%M:%SZ', seen_at, ?1)",
            )?
            .execute([format!("+{delay_hours} hours")])?;
        let (due, next) = tx
            .prepare_cached(
                "SELECT COUNT(*) FILTER (WHERE applies_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
                    MIN(applies_at) FILTER (WHERE applies_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
             FROM deletions WHERE state = 'held' AND decided_by IS NULL",
            )?
            .query_row(params![], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))?;
        tx.commit()?;
        Ok(Some(Rescheduled { moved, was_hours, due: due as usize, next }))
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::Digest;
    use crate::store::{Cause, DeletionKind, DeletionPolicy, NewDeletion, Selector, Store};

    fn hours(store: &Store) -> Vec<f64> {
        let conn = store.conn();
        let mut stmt = conn
            .prepare("SELECT (julianday(applies_at) - julianday(seen_at)) * 24 FROM deletions ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn a_changed_delay_moves_held_deletions_and_keeps_operator_decisions() {
        let store = Store::open_in_memory().unwrap();
        let day = DeletionPolicy { delay_hours: 24, burst_share: 0.5, burst_min_tags: 3 };
        let d = Digest::sha256_of(b"x");
        for tag in ["v1", "v2", "v3"] {
            let r = NewDeletion {
                kind: DeletionKind::Tag,
                tag: Some(tag),
                digest: Some(&d),
                cause: Cause::TagRemoved,
                tags: 1,
                bundle: None,
            };
            store.hold_deletion("app", &r, &day).unwrap();
        }
        assert_eq!(store.reschedule_deletions(24).unwrap(), None, "held with this delay already");
        let last: i64 = store.conn().query_row("SELECT max(id) FROM deletions", [], |r| r.get(0)).unwrap();
        store.apply_deletions_now(&Selector::Ids(vec![last])).unwrap();

        let longer = store.reschedule_deletions(72).unwrap().unwrap();
        assert_eq!((longer.moved, longer.was_hours.clone(), longer.due), (2, vec![24], 0));
        let h = hours(&store);
        assert!((h[0] - 72.0).abs() < 0.01 && (h[1] - 72.0).abs() < 0.01, "{h:?}");
        assert!(h[2] < 0.01, "the operator's --apply is kept: {h:?}");

        let none = store.reschedule_deletions(0).unwrap().unwrap();
        assert_eq!((none.moved, none.was_hours, none.due, none.next), (2, vec![72], 2, None));
    }
}
