//! The burst alarm: a primary that deletes much at once (a bad cleanup
//! policy, a mistaken script, an intruder) should page someone while the
//! secondary still holds everything. When the deletions of the last hour
//! exceed `replication.delete_burst_share` of a repository's (or the
//! registry's) tags, and number at least `delete_burst_min_tags`, the
//! alarm's text is written onto those deletions; `deletion_summary` reports
//! it while any of them is held with no operator decision (or, applied at
//! once with no delay, for the hour).

use rusqlite::{params, Connection};

use super::deletions::DeletionPolicy;
use super::deletions::HOUR_AGO;
use super::handles::Queue;
use crate::error::Result;

impl Queue {
    /// After a job that noted deletions: when they, with the others of the
    /// last hour, are more than the policy's share of the repository's (or
    /// the registry's) tags, writes the alarm onto the hour's deletions
    /// that no operator decided on. Returns the alarm when it is new.
    pub fn flag_burst(&self, repository: &str, policy: &DeletionPolicy) -> Result<Option<String>> {
        let id = self.ensure_repository(repository)?;
        let conn = self.conn();
        for scope in [Some(id), None] {
            let Some(alarm) = burst(&conn, scope, repository, policy)? else { continue };
            let flagged = conn
                .prepare_cached(&format!(
                    "UPDATE deletions SET burst = ?2
                     WHERE seen_at >= {HOUR_AGO} AND (?1 IS NULL OR repository_id = ?1)
                       AND COALESCE(decided_by, 'delay') = 'delay' AND state IN ('held', 'applying', 'applied')
                       AND burst IS NOT ?2"
                ))?
                .execute(params![scope, alarm])?;
            return Ok((flagged > 0).then_some(alarm));
        }
        Ok(None)
    }
}

/// The burst alarm for one repository (`scope`) or the whole registry
/// (`None`), if the last hour's deletions exceed the policy's share of the
/// tags there. Tags still on the secondary are in `tags`; those removed
/// within the hour are not any more, so they are added back (a tag
/// overwritten is still there). An overwrite counts as a deletion: it
/// takes the digest the tag had.
fn burst(conn: &Connection, scope: Option<i64>, repository: &str, p: &DeletionPolicy) -> Result<Option<String>> {
    let (removed, applied): (i64, i64) = conn
        .prepare_cached(&format!(
            "SELECT COALESCE(SUM(tags), 0), COALESCE(SUM(CASE WHEN state = 'applied' AND kind <> 'overwrite' THEN tags END), 0)
             FROM deletions WHERE seen_at >= {HOUR_AGO} AND state <> 'dropped' AND (?1 IS NULL OR repository_id = ?1)"
        ))?
        .query_row([scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let present: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM tags WHERE ?1 IS NULL OR repository_id = ?1")?
        .query_row([scope], |r| r.get(0))?;
    let total = present + applied;
    if removed < p.burst_min_tags as i64 || total == 0 || removed as f64 <= p.burst_share * total as f64 {
        return Ok(None);
    }
    let whose = match scope {
        Some(_) => format!("of {repository}"),
        None => "of the registry".to_string(),
    };
    Ok(Some(format!(
        "burst of deletions: {removed} of {total} tags {whose} ({:.0} %) removed or overwritten on the primary within an hour, over \
         replication.delete_burst_share ({:.0} %)",
        removed as f64 * 100.0 / total as f64,
        p.burst_share * 100.0
    )))
}
