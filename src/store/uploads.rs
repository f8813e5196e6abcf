//! Blobs copied in chunks (`replication.chunk_size`): where each one's
//! upload on the secondary stands, recorded after every chunk, so that a
//! restart continues it.

use rusqlite::{params, OptionalExtension};

use super::handles::{Queue, Snapshot};
use crate::error::Result;
use crate::registry::Digest;

/// A chunked copy in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The secondary's upload URL for the next chunk.
    pub location: String,
    /// Bytes the upload holds.
    pub bytes_done: u64,
    /// The SHA-256 state after them; empty once the blob is whole.
    pub hash_state: String,
    /// Where a restart took the copy up (None: never).
    pub resumed_from: Option<u64>,
}

/// A chunked copy in progress, as the pages show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UploadRow {
    pub repository: String,
    pub digest: String,
    pub size: u64,
    pub bytes_done: u64,
    pub resumed_from: Option<u64>,
    pub updated_at: String,
}

impl Queue {
    pub fn upload(&self, repository: &str, digest: &Digest) -> Result<Option<Upload>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT u.location, u.bytes_done, u.hash_state, u.resumed_from
             FROM uploads u JOIN repositories r ON r.id = u.repository_id
             WHERE r.name = ?1 AND u.digest = ?2",
        )?;
        let row = stmt
            .query_row([repository, digest.as_str()], |r| {
                Ok(Upload {
                    location: r.get(0)?,
                    bytes_done: r.get::<_, i64>(1)? as u64,
                    hash_state: r.get(2)?,
                    resumed_from: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Records where the upload of `digest` stands after a chunk.
    pub fn record_upload(&self, repository: &str, digest: &Digest, size: u64, upload: &Upload) -> Result<()> {
        let id = self.ensure_repository(repository)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO uploads (repository_id, digest, size, location, bytes_done, hash_state, resumed_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (repository_id, digest) DO UPDATE SET
                     size = excluded.size, location = excluded.location, bytes_done = excluded.bytes_done,
                     hash_state = excluded.hash_state, resumed_from = excluded.resumed_from,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            )?
            .execute(params![
                id,
                digest.as_str(),
                size as i64,
                upload.location,
                upload.bytes_done as i64,
                upload.hash_state,
                upload.resumed_from.map(|v| v as i64)
            ])?;
        Ok(())
    }

    pub fn forget_upload(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM uploads
                 WHERE digest = ?2 AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
            )?
            .execute([repository, digest.as_str()])?;
        Ok(())
    }
}

impl Snapshot<'_> {
    /// Every chunked copy in progress, largest first.
    pub fn uploads(&self) -> Result<Vec<UploadRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.name, u.digest, u.size, u.bytes_done, u.resumed_from, u.updated_at
             FROM uploads u JOIN repositories r ON r.id = u.repository_id
             ORDER BY u.size DESC, r.name LIMIT 100",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(UploadRow {
                repository: r.get(0)?,
                digest: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                bytes_done: r.get::<_, i64>(3)? as u64,
                resumed_from: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                updated_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn an_upload_is_recorded_updated_and_forgotten() {
        let store = Store::open_in_memory().unwrap();
        let d = Digest::sha256_of(b"big");
        assert_eq!(store.upload("a", &d).unwrap(), None);
        let mut up = Upload {
            location: "http://s/u/1?_state=x".into(),
            bytes_done: 64,
            hash_state: "64:00".into(),
            resumed_from: None,
        };
        store.record_upload("a", &d, 1000, &up).unwrap();
        up.bytes_done = 128;
        up.resumed_from = Some(64);
        store.record_upload("a", &d, 1000, &up).unwrap();
        assert_eq!(store.upload("a", &d).unwrap(), Some(up));
        let rows = store.read(|s| s.uploads()).unwrap();
        assert_eq!((rows.len(), rows[0].bytes_done, rows[0].resumed_from), (1, 128, Some(64)));
        store.forget_upload("a", &d).unwrap();
        assert_eq!(store.upload("a", &d).unwrap(), None);
    }
}
