//! The tags and blobs georeg placed on the secondary: what it last left
//! each tag at (so an event about an unchanged tag costs one request), and
//! which repositories hold which blob (so a blob needed elsewhere is
//! mounted instead of copied). The registries stay the truth: a stale row
//! costs a request, never a wrong copy.

use rusqlite::{params, OptionalExtension};

use super::handles::Queue;
use super::shared::NOW;
use crate::error::Result;
use crate::registry::Digest;

impl Queue {
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

    /// The digest georeg last left `tag` at on the secondary, if any.
    pub fn tag_digest(&self, repository: &str, tag: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE r.name = ?1 AND t.name = ?2",
        )?;
        Ok(stmt.query_row([repository, tag], |r| r.get(0)).optional()?)
    }

    pub fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM unsupported_tags WHERE repository_id = ?1 AND tag = ?2")?
            .execute(params![id, tag])?;
        // The primary has the tag at this digest: no deletion of either stands.
        Queue::drop_deletions_of(&conn, id, tag, digest.as_str())?;
        conn.prepare_cached(&format!(
            "INSERT INTO tags (repository_id, name, digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, synced_at = {NOW}
                 WHERE digest <> excluded.digest"
        ))?
        .execute(params![id, tag, digest.as_str()])?;
        Ok(())
    }

    pub fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached(
            "DELETE FROM tags WHERE name = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
        )?
        .execute([repository, tag])?;
        conn.prepare_cached(
            "DELETE FROM unsupported_tags
             WHERE tag = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
        )?
        .execute([repository, tag])?;
        Ok(())
    }

    /// Records that the secondary refuses the primary's `tag` at `digest`
    /// (a schema 1 manifest it does not accept), and why.
    pub fn set_unsupported(&self, repository: &str, tag: &str, digest: &Digest, reason: &str) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO unsupported_tags (repository_id, tag, digest, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest, reason = excluded.reason,
                 seen_at = {NOW}"
            ))?
            .execute(params![id, tag, digest.as_str(), reason])?;
        Ok(())
    }

    /// The repository's tags the secondary refuses: tag -> the primary's
    /// digest it refused.
    pub fn unsupported_tags(&self, repository: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT u.tag, u.digest FROM unsupported_tags u JOIN repositories r ON r.id = u.repository_id
             WHERE r.name = ?1 ORDER BY u.tag",
        )?;
        let rows = stmt.query_map([repository], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many tags georeg recorded at `digest` in the repository.
    pub fn tags_at(&self, repository: &str, digest: &Digest) -> Result<i64> {
        let n = self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM tags WHERE digest = ?2
                 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
            )?
            .query_row([repository, digest.as_str()], |r| r.get(0))?;
        Ok(n)
    }

    /// Forgets every tag recorded at `digest` (the manifest was deleted).
    pub fn remove_tags_at(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM tags WHERE digest = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
            )?
            .execute([repository, digest.as_str()])?;
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

    /// Whether the repository itself is believed to hold the blob.
    pub fn holds_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM blobs b JOIN repositories r ON r.id = b.repository_id WHERE b.digest = ?1 AND r.name = ?2",
        )?;
        Ok(stmt.exists([digest.as_str(), repository])?)
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

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn tags_and_blob_sources() {
        let store = Store::open_in_memory().unwrap();
        let d = Digest::sha256_of(b"x");
        store.set_tag("a", "v1", &d).unwrap();
        store.set_tag("a", "v1", &d).unwrap();
        store.set_tag("a", "v2", &d).unwrap();
        assert_eq!(store.tags("a").unwrap()[0], ("v1".to_string(), d.to_string()));
        assert_eq!(store.tag_digest("a", "v2").unwrap().as_deref(), Some(d.as_str()));
        assert_eq!(store.tag_digest("a", "v3").unwrap(), None);
        store.remove_tag("a", "v1").unwrap();
        assert_eq!(store.tags("a").unwrap().len(), 1);
        store.remove_tags_at("a", &d).unwrap();
        assert!(store.tags("a").unwrap().is_empty());
        store.record_blob("a", &d, 1).unwrap();
        assert_eq!(store.blob_source(&d, "b").unwrap().as_deref(), Some("a"));
        assert_eq!(store.blob_source(&d, "a").unwrap(), None);
        store.forget_blob("a", &d).unwrap();
        assert_eq!(store.blob_source(&d, "b").unwrap(), None);
    }
}
