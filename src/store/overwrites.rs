//! Overwrites held back (`replication.delete_delay_hours`): a tag the
//! primary moved takes the digest it pointed to off the secondary as surely
//! as a deletion would, once nothing else points at it and the registry
//! collects it. So each move is recorded as a deletion of kind `overwrite`
//! (the tag, the digest it left, the digest it moved to): held for the
//! delay, while the replication keeps the left digest under a backup tag;
//! counted by the burst alarm like any deletion; and, cancelled by an
//! operator, a pin: the tag goes back to the digest it left and stays there
//! while the primary has it at the digest it moved to.

use rusqlite::{params, OptionalExtension};

use super::deletions::DeletionPolicy;
use super::handles::Queue;
use super::shared::NOW;
use crate::error::Result;
use crate::registry::Digest;

/// Where the secondary keeps a digest a held overwrite left: a tag, so
/// that a registry collecting untagged manifests keeps it for the delay.
/// One per digest, whichever tags left it.
pub fn backup_tag(digest: &Digest) -> String {
    format!("{BACKUP_PREFIX}{}", digest.as_str().trim_start_matches("sha256:"))
}

/// Whether `tag` is one of georeg's backup tags.
pub fn is_backup_tag(tag: &str) -> bool {
    tag.starts_with(BACKUP_PREFIX)
}

const BACKUP_PREFIX: &str = "georeg-kept-sha256-";

/// A tag an operator put back: the secondary keeps it at `kept` while the
/// primary has it at `replaced_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub id: i64,
    pub tag: String,
    pub kept: Digest,
    pub replaced_by: Digest,
}

impl Queue {
    /// Records that `tag` moves from `previous` to `next` on the
    /// secondary: held for the delay (a digest left already held for this
    /// tag keeps its time), or, with no delay, recorded as applied for the
    /// burst alarm. Returns whether it is held.
    pub fn record_overwrite(
        &self,
        repository: &str,
        tag: &str,
        previous: &Digest,
        next: &Digest,
        policy: &DeletionPolicy,
    ) -> Result<bool> {
        let id = self.ensure_repository(repository)?;
        let held = policy.delay_hours > 0;
        self.conn()
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO deletions (repository_id, kind, tag, digest, replaced_by, cause, tags, state,
                                                 applies_at, decided_at, decided_by)
                 VALUES (?1, 'overwrite', ?2, ?3, ?4, 'tag overwritten', 1, CASE WHEN ?5 THEN 'held' ELSE 'applied' END,
                         strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?6),
                         CASE WHEN ?5 THEN NULL ELSE {NOW} END, CASE WHEN ?5 THEN NULL ELSE 'delay' END)"
            ))?
            .execute(params![
                id,
                tag,
                previous.as_str(),
                next.as_str(),
                held,
                format!("+{} hours", policy.delay_hours)
            ])?;
        Ok(held)
    }

    /// The operator's pin on `tag`, if an overwrite of it was cancelled.
    pub fn pin(&self, repository: &str, tag: &str) -> Result<Option<Pin>> {
        Ok(self.pins_where(repository, Some(tag))?.into_iter().next())
    }

    /// Every pin in the repository: tags an operator put back.
    pub fn pins(&self, repository: &str) -> Result<Vec<Pin>> {
        self.pins_where(repository, None)
    }

    fn pins_where(&self, repository: &str, tag: Option<&str>) -> Result<Vec<Pin>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT h.id, h.tag, h.digest, h.replaced_by FROM deletions h JOIN repositories r ON r.id = h.repository_id
             WHERE r.name = ?1 AND h.kind = 'overwrite' AND h.state = 'cancelled' AND (?2 IS NULL OR h.tag = ?2)
             ORDER BY h.id DESC",
        )?;
        let rows = stmt.query_map(params![repository, tag], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut pins = Vec::new();
        for row in rows {
            let (id, tag, kept, replaced_by) = row?;
            if let (Ok(kept), Ok(replaced_by)) = (Digest::parse(&kept), Digest::parse(&replaced_by)) {
                pins.push(Pin { id, tag, kept, replaced_by });
            }
        }
        Ok(pins)
    }

    /// The primary moved a pinned tag again: the pin ends (dropped, decided
    /// by the primary), and the tag follows the primary from now on.
    pub fn unpin(&self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "UPDATE deletions SET state = 'dropped', decided_at = {NOW}, decided_by = 'primary'
                 WHERE id = ?1 AND kind = 'overwrite' AND state = 'cancelled'"
            ))?
            .execute([id])?;
        Ok(())
    }

    /// Whether an overwrite still held (other than `except`) keeps
    /// `digest`: its backup tag stays while one does.
    pub fn backup_needed(&self, repository: &str, digest: &Digest, except: i64) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT 1 FROM deletions h JOIN repositories r ON r.id = h.repository_id
                 WHERE r.name = ?1 AND h.kind = 'overwrite' AND h.digest = ?2 AND h.id <> ?3
                   AND h.state IN ('held', 'applying') LIMIT 1",
            )?
            .query_row(params![repository, digest.as_str(), except], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeletionKind, DeletionState, Selector, Store};

    const DAY: DeletionPolicy = DeletionPolicy { delay_hours: 24, burst_share: 0.5, burst_min_tags: 3 };

    #[test]
    fn an_overwrite_is_held_keeps_its_digest_expected_and_pins_the_tag_when_cancelled() {
        let store = Store::open_in_memory().unwrap();
        let (d1, d2, d3) = (Digest::sha256_of(b"1"), Digest::sha256_of(b"2"), Digest::sha256_of(b"3"));
        store.set_tag("app", "latest", &d1).unwrap();
        assert!(store.record_overwrite("app", "latest", &d1, &d2, &DAY).unwrap());
        assert!(store.record_overwrite("app", "latest", &d1, &d2, &DAY).unwrap(), "held once");
        assert!(store.record_overwrite("app", "latest", &d2, &d3, &DAY).unwrap(), "each digest left is kept");
        let open = store.read(|s| s.open_deletions()).unwrap();
        assert_eq!(open.len(), 2);
        assert!(open.iter().all(|d| d.kind == DeletionKind::Overwrite && d.state == DeletionState::Held));
        assert_eq!(open[0].what(), format!("tag latest (was {}, now {})", &d1.as_str()[..19], &d2.as_str()[..19]));
        // Both digests left are reachable under their backup tags, expected.
        let kept = store.kept_deletions("app").unwrap();
        assert!(kept.covers(&crate::store::backup_tag(&d1), d1.as_str()));
        assert!(kept.covers(&crate::store::backup_tag(&d2), d2.as_str()));
        assert!(!kept.covers("latest", d1.as_str()), "the tag itself follows the primary");
        assert!(store.backup_needed("app", &d1, 0).unwrap());
        assert!(!store.backup_needed("app", &d1, open[0].id).unwrap(), "only that one keeps it");
        // An overwrite is a deletion for the burst alarm.
        assert_eq!(store.read(|s| s.deletion_summary()).unwrap().held_tags, 2);
        // Cancelled: a pin, expected at the digest it left.
        store.cancel_deletions(&Selector::Ids(vec![open[0].id])).unwrap();
        let pin = store.pin("app", "latest").unwrap().unwrap();
        assert_eq!((pin.kept.clone(), pin.replaced_by.clone()), (d1.clone(), d2.clone()));
        let kept = store.kept_deletions("app").unwrap();
        assert!(kept.pinned_at("latest", d1.as_str(), Some(d2.as_str())));
        assert!(!kept.pinned_at("latest", d1.as_str(), Some(d3.as_str())), "the primary moved on: not expected");
        assert!(!store.backup_needed("app", &d1, 0).unwrap(), "a pinned digest is kept by its tag");
        store.unpin(pin.id).unwrap();
        assert_eq!(store.pin("app", "latest").unwrap(), None);
    }

    #[test]
    fn with_no_delay_an_overwrite_is_recorded_applied() {
        let store = Store::open_in_memory().unwrap();
        let (d1, d2) = (Digest::sha256_of(b"1"), Digest::sha256_of(b"2"));
        let now = DeletionPolicy { delay_hours: 0, ..DAY };
        assert!(!store.record_overwrite("app", "latest", &d1, &d2, &now).unwrap());
        assert!(store.read(|s| s.open_deletions()).unwrap().is_empty());
        assert!(store.kept_deletions("app").unwrap().is_empty());
    }
}
