//! The fingerprints of this node's own registry (see schema.sql, version
//! 12): which repository to read next, what was read, and the pages a
//! primary serves its followers, each with a digest over its entries so
//! that a follower fetches only the pages, then the repositories, that
//! differ from its own.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::handles::{Fingerprints, Snapshot};
use super::kept::Kept;
use super::shared::NOW;
use crate::error::Result;
use crate::registry::Digest;

/// One repository's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub repository: String,
    pub fingerprint: String,
    pub tags: i64,
    pub checked_at: String,
}

/// A page of fingerprints (repositories with tags: an empty repository
/// and no repository are the same to a follower): the names it covers (`first..=last`, in name
/// order), how many, a digest over its entries (`name fingerprint\n`
/// each), and when its least recently read entry was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub first: String,
    pub last: String,
    pub count: usize,
    pub digest: String,
    pub oldest_checked_at: String,
}

/// Marks a repository to be read again first, with a row for it if it
/// has none yet (an event named a new repository).
pub(super) const MARK_STALE: &str = "INSERT INTO fingerprints (repository, fingerprint, tags, checked_at, stale)
     VALUES (?1, '', 0, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 1) ON CONFLICT (repository) DO UPDATE SET stale = 1";

/// The digest of a page's entries.
pub fn page_digest<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = String::new();
    for (name, fingerprint) in entries {
        text.push_str(name);
        text.push(' ');
        text.push_str(fingerprint);
        text.push('\n');
    }
    Digest::sha256_of(text.as_bytes()).to_string()
}

impl Fingerprints {
    /// Up to `limit` repositories to read next: those events named first,
    /// then those read longest ago, once more than `older_than_seconds` ago.
    /// Their marks are cleared as they are taken, so that an event while
    /// one is being read marks it again.
    pub fn take_due(&self, limit: usize, older_than_seconds: u64) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let names: Vec<String> = tx
            .prepare_cached(
                "SELECT repository FROM fingerprints
                 WHERE stale = 1 OR checked_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?2)
                 ORDER BY stale DESC, checked_at LIMIT ?1",
            )?
            .query_map(params![limit as i64, format!("-{older_than_seconds} seconds")], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for name in &names {
            tx.prepare_cached("UPDATE fingerprints SET stale = 0 WHERE repository = ?1")?.execute([name])?;
        }
        tx.commit()?;
        Ok(names)
    }

    /// Every repository with a fingerprint.
    pub fn names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT repository FROM fingerprints ORDER BY repository")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records what the registry held for `repository` when it was read
    /// (`read_at`: when the read began).
    pub fn set(&self, repository: &str, fingerprint: &str, tags: usize, read_at: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO fingerprints (repository, fingerprint, tags, checked_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repository) DO UPDATE SET fingerprint = excluded.fingerprint, tags = excluded.tags,
                   checked_at = excluded.checked_at",
            )?
            .execute(params![repository, fingerprint, tags as i64, read_at])?;
        Ok(())
    }

    /// The registry no longer has the repository.
    pub fn remove(&self, repository: &str) -> Result<()> {
        self.conn().prepare_cached("DELETE FROM fingerprints WHERE repository = ?1")?.execute([repository])?;
        Ok(())
    }

    /// Marks a repository to be read again first (an event named it, or a
    /// sync changed it).
    pub fn mark_stale(&self, repository: &str) -> Result<()> {
        self.conn().prepare_cached(MARK_STALE)?.execute([repository])?;
        Ok(())
    }

    /// Repositories this node replicates (on a secondary).
    pub fn replicated_names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name FROM repositories WHERE excluded = 0 ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn is_replicated(&self, repository: &str) -> Result<bool> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM repositories WHERE name = ?1 AND excluded = 0")?
            .query_row([repository], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// What differs from the primary on purpose in a repository of the
    /// secondary: deletions held back or cancelled, and the tags the
    /// secondary refuses (with the primary's digest).
    pub fn expected_differences(&self, repository: &str) -> Result<(Kept, Vec<(String, String)>)> {
        let queue = self.queue();
        Ok((queue.kept_deletions(repository)?, queue.unsupported_tags(repository)?))
    }

    /// The tags georeg left in the repository on this node's registry.
    pub fn recorded_tags(&self, repository: &str) -> Result<Vec<String>> {
        Ok(self.queue().tags(repository)?.into_iter().map(|(tag, _)| tag).collect())
    }

    /// The current time as the state file writes it.
    pub fn now(&self) -> Result<String> {
        Ok(self.conn().query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))?)
    }
}

/// This node's own fingerprint of a repository, as a comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Empty while never read.
    pub fingerprint: String,
    pub tags: i64,
    pub checked_at: String,
    /// An event or a sync touched it since it was read.
    pub stale: bool,
}

impl Snapshot<'_> {
    /// Every fingerprint of this node's registry, by repository.
    pub fn local_fingerprints(&self) -> Result<std::collections::BTreeMap<String, Local>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT repository, fingerprint, tags, checked_at, stale FROM fingerprints")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, Local { fingerprint: r.get(1)?, tags: r.get(2)?, checked_at: r.get(3)?, stale: r.get(4)? }))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The fingerprints in pages of `size` repositories, in name order.
    /// Repositories never read yet (no fingerprint) are left out:
    /// `complete` says whether there are any.
    pub fn fingerprint_pages(&self, size: usize) -> Result<(Vec<Page>, bool)> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT repository, fingerprint, checked_at FROM fingerprints WHERE fingerprint <> '' AND tags > 0
             ORDER BY repository",
        )?;
        let mut rows = stmt.query([])?;
        let mut pages = Vec::new();
        let mut current: Vec<(String, String, String)> = Vec::with_capacity(size);
        let flush = |current: &mut Vec<(String, String, String)>, pages: &mut Vec<Page>| {
            if let (Some(first), Some(last)) = (current.first(), current.last()) {
                pages.push(Page {
                    first: first.0.clone(),
                    last: last.0.clone(),
                    count: current.len(),
                    digest: page_digest(current.iter().map(|e| (e.0.as_str(), e.1.as_str()))),
                    oldest_checked_at: current.iter().map(|e| e.2.clone()).min().unwrap_or_default(),
                });
            }
            current.clear();
        };
        while let Some(r) = rows.next()? {
            current.push((r.get(0)?, r.get(1)?, r.get(2)?));
            if current.len() == size {
                flush(&mut current, &mut pages);
            }
        }
        flush(&mut current, &mut pages);
        let unread: i64 =
            conn.query_row("SELECT COUNT(*) FROM fingerprints WHERE fingerprint = ''", [], |r| r.get(0))?;
        Ok((pages, unread == 0))
    }

    /// The fingerprints of the repositories named `first..=last`.
    pub fn fingerprints_in(&self, first: &str, last: &str) -> Result<Vec<Entry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT repository, fingerprint, tags, checked_at FROM fingerprints
             WHERE repository >= ?1 AND repository <= ?2 AND fingerprint <> '' AND tags > 0 ORDER BY repository",
        )?;
        let rows = stmt.query_map([first, last], |r| {
            Ok(Entry { repository: r.get(0)?, fingerprint: r.get(1)?, tags: r.get(2)?, checked_at: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn pages_cover_every_fingerprint_in_name_order_and_change_with_any_entry() {
        let store = Store::open_in_memory().unwrap();
        let f = store.fingerprints();
        let now = f.now().unwrap();
        for i in 0..5 {
            f.set(&format!("r{i}"), &format!("sha256:{i}"), 1, &now).unwrap();
        }
        let (pages, complete) = store.read(|s| s.fingerprint_pages(2)).unwrap();
        assert!(complete);
        assert_eq!(
            pages.iter().map(|p| (p.first.as_str(), p.count)).collect::<Vec<_>>(),
            [("r0", 2), ("r2", 2), ("r4", 1)]
        );
        let entries = store.read(|s| s.fingerprints_in("r2", "r3")).unwrap();
        assert_eq!(
            pages[1].digest,
            page_digest(entries.iter().map(|e| (e.repository.as_str(), e.fingerprint.as_str())))
        );
        f.set("r3", "sha256:x", 1, &now).unwrap();
        let (again, _) = store.read(|s| s.fingerprint_pages(2)).unwrap();
        assert_eq!((again[0].digest == pages[0].digest, again[1].digest == pages[1].digest), (true, false));
        // An event names a repository: it is read first, and the pages say
        // a fingerprint is missing until it is.
        f.mark_stale("r9").unwrap();
        assert_eq!(f.take_due(10, 3600).unwrap(), ["r9"]);
        assert!(f.take_due(10, 3600).unwrap().is_empty(), "taken");
        assert!(!store.read(|s| s.fingerprint_pages(2)).unwrap().1);
    }
}
