//! On a primary: the last status each secondary reported, for the
//! primary's dashboard and metrics.

use rusqlite::params;

use super::handles::{Log, Snapshot};
use super::shared::NOW;
use crate::error::Result;

/// A secondary's latest report, on a primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub name: String,
    pub reported_at: String,
    pub age_seconds: i64,
    pub healthy: bool,
    pub health_message: Option<String>,
    pub status: String,
}

impl Log {
    /// Records a secondary's report (on a primary).
    pub fn record_node(&self, name: &str, healthy: bool, message: Option<&str>, status: &str) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO nodes (name, reported_at, healthy, health_message, status) VALUES (?1, {NOW}, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET reported_at = excluded.reported_at, healthy = excluded.healthy,
                 health_message = excluded.health_message, status = excluded.status"
            ))?
            .execute(params![name, healthy, message, status])?;
        Ok(())
    }
}

impl Snapshot<'_> {
    pub fn nodes(&self) -> Result<Vec<NodeReport>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT name, reported_at, CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', reported_at) AS INTEGER),
                    healthy, health_message, status
             FROM nodes ORDER BY name"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeReport {
                name: r.get(0)?,
                reported_at: r.get(1)?,
                age_seconds: r.get(2)?,
                healthy: r.get(3)?,
                health_message: r.get(4)?,
                status: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// One point of the dashboard's 24-hour chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Seconds before now.
    pub ago_seconds: i64,
    pub lag_seconds: i64,
    pub copied_bytes: i64,
}

impl Log {
    /// Records one sample and forgets those older than a day.
    pub fn record_sample(&self, lag_seconds: i64, copied_bytes: u64) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO samples (lag_seconds, copied_bytes) VALUES (?1, ?2)")?
            .execute(params![lag_seconds, copied_bytes as i64])?;
        conn.prepare_cached("DELETE FROM samples WHERE at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')")?
            .execute([])?;
        Ok(())
    }
}

impl Snapshot<'_> {
    /// The last day's samples, oldest first.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', at) AS INTEGER), lag_seconds,
                    copied_bytes
             FROM samples ORDER BY at, rowid"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(Sample { ago_seconds: r.get(0)?, lag_seconds: r.get(1)?, copied_bytes: r.get(2)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use crate::store::{states::SyncState, Store};

    #[test]
    fn node_reports_are_upserted() {
        let store = Store::open_in_memory().unwrap();
        store.log().record_node("s1", true, None, "{}").unwrap();
        store.log().record_node("s1", false, Some("registry down"), "{\"x\":1}").unwrap();
        let nodes = store.read(|s| s.nodes()).unwrap();
        assert_eq!(nodes.len(), 1);
        assert!(!nodes[0].healthy && nodes[0].health_message.as_deref() == Some("registry down"));
        assert!(nodes[0].age_seconds <= 1);
    }
}
