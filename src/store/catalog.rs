//! What the catalog scan writes: the repositories the primary lists, and
//! which of them selective sync leaves out. A catalog of 100,000 names is
//! read and written a few thousand, or a few hundred, at a time, the one
//! writer connection let go between two, so that a notification never
//! waits for a whole catalog to be stored.

use rusqlite::{params, TransactionBehavior};

use super::handles::Queue;
use crate::error::Result;

impl Queue {
    /// Records repositories found in the primary's catalog; returns how
    /// many were new (queued for their first, full sync).
    pub fn add_repositories(&self, names: &[String]) -> Result<usize> {
        // One statement for each few hundred names: each row's triggers
        // (the kept counts, the names' trigrams) then cost what a row
        // costs, not what a statement does (36 us a row when executed one
        // by one), and the writer is let go between two of them, so that
        // a notification waits for one of them (a few milliseconds), not
        // for a whole catalog of 100,000 (1.4 s in one statement).
        let mut added = 0;
        for chunk in names.chunks(WRITE_CHUNK) {
            let list =
                serde_json::to_string(chunk).map_err(|e| crate::error::Error::Store { message: e.to_string() })?;
            added += self
                .conn()
                .prepare_cached(
                    "INSERT INTO repositories (name) SELECT value FROM json_each(?1) WHERE true
                     ON CONFLICT (name) DO NOTHING",
                )?
                .execute([list])?;
        }
        if added > 0 {
            self.work.ring();
        }
        Ok(added)
    }

    /// Every repository name in the state file.
    pub fn repository_names(&self) -> Result<Vec<String>> {
        // Read a few thousand at a time, the connection let go between
        // two: 100,000 names in one read held it (and every notification
        // waiting to be stored) for tens of milliseconds.
        let mut names: Vec<String> = Vec::new();
        loop {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached("SELECT name FROM repositories WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2")?;
            let page: Vec<String> = stmt
                .query_map(params![names.last(), READ_CHUNK as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let more = page.len() == READ_CHUNK;
            names.extend(page);
            if !more {
                return Ok(names);
            }
        }
    }

    /// Marks repositories in or out of selective sync. A repository coming
    /// back in is queued for a full sync.
    ///
    /// A transaction for each few hundred names ([`WRITE_CHUNK`]), the
    /// writer let go between two, as [`Queue::add_repositories`] does; a
    /// pass cut short is redone whole by the next (at start, every scan).
    pub fn apply_selection(&self, includes: impl Fn(&str) -> bool) -> Result<usize> {
        let names = self.repository_names()?;
        let mut excluded = 0;
        for chunk in names.chunks(WRITE_CHUNK) {
            excluded += self.apply_selection_to(chunk, &includes)?;
        }
        Ok(excluded)
    }

    fn apply_selection_to(&self, names: &[String], includes: &impl Fn(&str) -> bool) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut excluded = 0;
        for name in names {
            let out = !includes(name);
            excluded += usize::from(out);
            if out {
                tx.prepare_cached(
                    "UPDATE repositories SET excluded = 1, verification_state = 'disabled'
                     WHERE name = ?1 AND excluded = 0",
                )?
                .execute([name])?;
            } else {
                tx.prepare_cached(
                    "UPDATE repositories SET excluded = 0, full_sync_requested = 1, verification_state = 'pending',
                       sync_state = CASE sync_state WHEN 'started' THEN 'started' ELSE 'pending' END
                     WHERE name = ?1 AND excluded = 1",
                )?
                .execute([name])?;
            }
        }
        tx.commit()?;
        Ok(excluded)
    }
}

/// Names read at a time by [`Queue::repository_names`].
const READ_CHUNK: usize = 2_000;

/// Names written in one statement or transaction by the catalog scan's
/// writes: each holds the writer a few milliseconds at most.
const WRITE_CHUNK: usize = 250;
