//! Transfer bundles imported into an air-gapped secondary: which ones,
//! from which primary, exported when, and how far each import got, so
//! that an import cut short continues with the repositories left, an
//! older bundle is refused, and the pages show the last one and its age.

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension};

use super::handles::{Queue, Snapshot};
use super::shared::NOW;
use crate::error::Result;

/// A bundle as the state file knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleRow {
    pub id: String,
    pub primary_url: String,
    /// When it was exported (milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`).
    pub created_at: String,
    pub inventory_id: Option<String>,
    pub file: String,
    pub repositories: i64,
    pub started_at: String,
    /// When its import finished (None: not yet).
    pub imported_at: Option<String>,
    pub report: Option<String>,
    /// Seconds since it was exported: how old the secondary's copy of the
    /// primary is, when this is the last bundle imported.
    pub age_seconds: i64,
}

/// A bundle whose import begins.
pub struct NewBundle<'a> {
    pub id: &'a str,
    pub primary_url: &'a str,
    pub created_at: &'a str,
    pub inventory_id: Option<&'a str>,
    pub file: &'a str,
    pub repositories: usize,
    pub forced: Option<&'a str>,
}

const COLUMNS: &str = "id, primary_url, created_at, inventory_id, file, repositories, started_at, imported_at, \
                       report, MAX(0, CAST(strftime('%s', 'now') AS INTEGER) - CAST(strftime('%s', created_at) AS INTEGER))";

fn row(r: &rusqlite::Row) -> rusqlite::Result<BundleRow> {
    Ok(BundleRow {
        id: r.get(0)?,
        primary_url: r.get(1)?,
        created_at: r.get(2)?,
        inventory_id: r.get(3)?,
        file: r.get(4)?,
        repositories: r.get(5)?,
        started_at: r.get(6)?,
        imported_at: r.get(7)?,
        report: r.get(8)?,
        age_seconds: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
    })
}

impl Queue {
    /// The bundle exported last among those this node imported or began
    /// to import, leaving out `except` (the one about to be imported).
    pub fn newest_bundle(&self, except: &str) -> Result<Option<BundleRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM bundles WHERE id <> ?1 ORDER BY created_at DESC LIMIT 1"
        ))?;
        Ok(stmt.query_row([except], row).optional()?)
    }

    /// Records that the import of a bundle begins, and returns the
    /// repositories an earlier run of the same import finished. A bundle
    /// imported completely before is imported again whole.
    pub fn begin_bundle(&self, b: &NewBundle) -> Result<BTreeSet<String>> {
        let conn = self.conn();
        let finished: Option<Option<String>> = conn
            .prepare_cached("SELECT imported_at FROM bundles WHERE id = ?1")?
            .query_row([b.id], |r| r.get(0))
            .optional()?;
        if let Some(Some(_)) = finished {
            conn.prepare_cached("DELETE FROM bundle_repositories WHERE bundle_id = ?1")?.execute([b.id])?;
        }
        conn.prepare_cached(&format!(
            "INSERT INTO bundles (id, primary_url, created_at, inventory_id, file, repositories, forced)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET file = excluded.file, started_at = {NOW},
                 forced = COALESCE(excluded.forced, forced)"
        ))?
        .execute(params![
            b.id,
            b.primary_url,
            b.created_at,
            b.inventory_id,
            b.file,
            b.repositories as i64,
            b.forced
        ])?;
        let mut stmt = conn.prepare_cached("SELECT repository FROM bundle_repositories WHERE bundle_id = ?1")?;
        let done = stmt.query_map([b.id], |r| r.get(0))?;
        Ok(done.collect::<rusqlite::Result<_>>()?)
    }

    /// Records one repository of the bundle as imported.
    pub fn bundle_repository_imported(&self, id: &str, repository: &str) -> Result<()> {
        self.conn()
            .prepare_cached("INSERT OR IGNORE INTO bundle_repositories (bundle_id, repository) VALUES (?1, ?2)")?
            .execute([id, repository])?;
        Ok(())
    }

    /// Records that every repository of the bundle is imported.
    pub fn finish_bundle(&self, id: &str, report: &str) -> Result<()> {
        self.conn()
            .prepare_cached(&format!("UPDATE bundles SET imported_at = {NOW}, report = ?2 WHERE id = ?1"))?
            .execute([id, report])?;
        Ok(())
    }
}

impl Snapshot<'_> {
    /// The last bundle imported completely, and the newest one whose
    /// import has not finished (when it began after that).
    pub fn bundle_status(&self) -> Result<(Option<BundleRow>, Option<BundleRow>)> {
        let conn = self.conn();
        let last = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM bundles WHERE imported_at IS NOT NULL ORDER BY imported_at DESC, created_at DESC
                 LIMIT 1"
            ))?
            .query_row([], row)
            .optional()?;
        let unfinished = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM bundles WHERE imported_at IS NULL ORDER BY started_at DESC LIMIT 1"
            ))?
            .query_row([], row)
            .optional()?;
        Ok((last, unfinished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    fn new<'a>(id: &'a str, created_at: &'a str) -> NewBundle<'a> {
        NewBundle {
            id,
            primary_url: "https://p.example",
            created_at,
            inventory_id: None,
            file: "/media/b.tar",
            repositories: 2,
            forced: None,
        }
    }

    #[test]
    fn an_import_resumes_with_the_repositories_left_and_the_newest_bundle_is_known() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.read(|s| s.bundle_status()).unwrap(), (None, None));
        assert!(store.begin_bundle(&new("b1", "2020-11-30T10:00:00.000Z")).unwrap().is_empty());
        store.bundle_repository_imported("b1", "a").unwrap();
        // Cut short, then run again: "a" is done.
        let done = store.begin_bundle(&new("b1", "2020-11-30T10:00:00.000Z")).unwrap();
        assert_eq!(done, BTreeSet::from(["a".to_string()]));
        let (last, unfinished) = store.read(|s| s.bundle_status()).unwrap();
        assert_eq!((last, unfinished.map(|b| b.id)), (None, Some("b1".into())));
        store.finish_bundle("b1", "2 repositories").unwrap();
        let (last, unfinished) = store.read(|s| s.bundle_status()).unwrap();
        let last = last.unwrap();
        assert_eq!((last.id.as_str(), unfinished), ("b1", None));
        assert!(last.imported_at.is_some() && last.age_seconds > 0, "{last:?}");
        // A finished bundle imported again is imported whole.
        assert!(store.begin_bundle(&new("b1", "2020-11-30T10:00:00.000Z")).unwrap().is_empty());
        store.begin_bundle(&new("b2", "2020-11-30T10:00:00.001Z")).unwrap();
        assert_eq!(store.newest_bundle("b1").unwrap().unwrap().id, "b2");
        assert_eq!(store.newest_bundle("b2").unwrap().unwrap().id, "b1");
    }
}
