//! The states a repository's sync and verification go through, as Rust
//! enums that read and write the text schema.sql stores (and its CHECK
//! constraints allow), so no query compares a misspelled string.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// `repositories.sync_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    /// Known, never synced, or queued (events, resync).
    Pending,
    /// A sync is running now.
    Started,
    /// The last sync copied every tag of the primary.
    Synced,
    /// The last sync failed; retried with backoff.
    Failed,
}

/// `repositories.verification_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationState {
    Pending,
    Started,
    Succeeded,
    Failed,
    /// Not verified: excluded by selective sync.
    Disabled,
}

impl SyncState {
    pub const ALL: [SyncState; 4] = [SyncState::Pending, SyncState::Started, SyncState::Synced, SyncState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "pending",
            SyncState::Started => "started",
            SyncState::Synced => "synced",
            SyncState::Failed => "failed",
        }
    }
}

impl VerificationState {
    pub const ALL: [VerificationState; 5] = [
        VerificationState::Pending,
        VerificationState::Started,
        VerificationState::Succeeded,
        VerificationState::Failed,
        VerificationState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerificationState::Pending => "pending",
            VerificationState::Started => "started",
            VerificationState::Succeeded => "succeeded",
            VerificationState::Failed => "failed",
            VerificationState::Disabled => "disabled",
        }
    }
}

macro_rules! text_enum {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("unknown state {s:?}"))
            }
        }

        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

text_enum!(SyncState);
text_enum!(VerificationState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_sql_and_text() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for s in SyncState::ALL {
            let back: SyncState = conn.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!((back, s.to_string().parse::<SyncState>().unwrap()), (s, s));
        }
        for v in VerificationState::ALL {
            let back: VerificationState = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
            assert_eq!(back, v);
        }
        assert!(conn.query_row("SELECT 'synced '", [], |r| r.get::<_, SyncState>(0)).is_err());
        assert_eq!(serde_json::to_string(&VerificationState::Succeeded).unwrap(), "\"succeeded\"");
    }

    #[test]
    fn the_schema_allows_exactly_these_states() {
        let schema = include_str!("../../schema.sql");
        let allowed = |column: &str| -> Vec<String> {
            let line = schema.lines().skip_while(|l| !l.trim_start().starts_with(column)).nth(1).unwrap();
            line.split('\'').skip(1).step_by(2).map(String::from).collect()
        };
        assert_eq!(allowed("sync_state "), SyncState::ALL.map(|s| s.as_str().to_string()));
        assert_eq!(allowed("verification_state "), VerificationState::ALL.map(|s| s.as_str().to_string()));
    }
}
