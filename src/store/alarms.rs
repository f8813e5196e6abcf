//! Alarms no other row states (refused notifications, a primary georeg
//! that cannot be read), and the daemon's last health check: written where
//! they happen, read by every view from the same snapshot, so that `georeg
//! status`, the status API, `/metrics`, readiness and the dashboard tell
//! one health.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::handles::{Log, Snapshot};
use super::shared::NOW;
use crate::error::Result;

/// The alarm the notification endpoint raises while it refuses notifications.
pub const NOTIFICATIONS_REFUSED: &str = "notifications refused";

/// An alarm while it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub name: String,
    pub message: String,
    pub source: Option<String>,
    pub first_at: String,
    pub last_at: String,
    pub count: i64,
    /// Seconds since it was last raised.
    pub age_seconds: i64,
}

/// The daemon's last health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub problem: Option<String>,
    /// Why this node's own registry did not answer.
    pub own_registry: Option<String>,
    pub checked_at: String,
    pub age_seconds: i64,
}

impl Log {
    /// Raises (or raises again) the alarm `name`.
    pub fn raise_alarm(&self, name: &str, message: &str, source: Option<&str>) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO alarms (name, message, source) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET message = excluded.message, source = excluded.source,
                   last_at = {NOW}, count = count + 1"
            ))?
            .execute(params![name, message, source])?;
        Ok(())
    }

    /// The alarm `name` no longer stands.
    pub fn clear_alarm(&self, name: &str) -> Result<()> {
        self.conn().prepare_cached("DELETE FROM alarms WHERE name = ?1")?.execute([name])?;
        Ok(())
    }

    /// Records the daemon's health check (`None`: nothing wrong).
    pub fn record_health(&self, problem: Option<&str>, own_registry: Option<&str>) -> Result<()> {
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO health_check (id, problem, own_registry, checked_at) VALUES (1, ?1, ?2, {NOW})
                 ON CONFLICT (id) DO UPDATE SET problem = excluded.problem, own_registry = excluded.own_registry,
                   checked_at = excluded.checked_at"
            ))?
            .execute(params![problem, own_registry])?;
        Ok(())
    }
}

impl Snapshot<'_> {
    pub fn alarms(&self) -> Result<Vec<Alarm>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT name, message, source, first_at, last_at, count,
                    CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', last_at) AS INTEGER)
             FROM alarms ORDER BY first_at, name"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(Alarm {
                name: r.get(0)?,
                message: r.get(1)?,
                source: r.get(2)?,
                first_at: r.get(3)?,
                last_at: r.get(4)?,
                count: r.get(5)?,
                age_seconds: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn health_check(&self) -> Result<Option<HealthCheck>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT problem, own_registry, checked_at,
                            CAST(strftime('%s', {NOW}) AS INTEGER) - CAST(strftime('%s', checked_at) AS INTEGER)
                     FROM health_check WHERE id = 1"
                ),
                [],
                |r| {
                    Ok(HealthCheck {
                        problem: r.get(0)?,
                        own_registry: r.get(1)?,
                        checked_at: r.get(2)?,
                        age_seconds: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn an_alarm_stands_until_cleared_and_counts_how_often_it_was_raised() {
        let store = Store::open_in_memory().unwrap();
        let log = store.log();
        log.raise_alarm("refused", "wrong secret", Some("10.0.0.1")).unwrap();
        log.raise_alarm("refused", "wrong secret", Some("10.0.0.2")).unwrap();
        let alarms = store.read(|s| s.alarms()).unwrap();
        assert_eq!((alarms.len(), alarms[0].count, alarms[0].source.as_deref()), (1, 2, Some("10.0.0.2")));
        log.clear_alarm("refused").unwrap();
        assert!(store.read(|s| s.alarms()).unwrap().is_empty());
        log.record_health(Some("own registry: down"), Some("down")).unwrap();
        log.record_health(None, None).unwrap();
        assert_eq!(store.read(|s| s.health_check()).unwrap().unwrap().problem, None);
    }
}
