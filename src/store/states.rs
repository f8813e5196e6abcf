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

/// `deletions.kind`: what a deletion takes off the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionKind {
    /// One tag, leaving sibling tags at its digest.
    Tag,
    /// A manifest by digest, and every tag pointing at it.
    Manifest,
    /// The digest a tag pointed to before the primary moved it: kept
    /// reachable under a backup tag for the delay.
    Overwrite,
}

/// `deletions.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionState {
    /// Waiting for its delay to end.
    Held,
    /// A worker is applying it now (a crash puts it back to held).
    Applying,
    Applied,
    /// An operator chose to keep it on the secondary.
    Cancelled,
    /// The primary has it again: nothing to delete.
    Dropped,
}

/// `deletions.decided_by`: who ended a deletion's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    /// Its delay ran out (or there was none).
    Delay,
    /// `georeg deletions --apply` or `--cancel`.
    Operator,
    /// The primary has it again.
    Primary,
}

/// `deletions.cause`: what happened on the primary that a deletion follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    #[serde(rename = "tag removed")]
    TagRemoved,
    #[serde(rename = "manifest deleted")]
    ManifestDeleted,
    #[serde(rename = "repository emptied")]
    RepositoryEmptied,
    #[serde(rename = "tag overwritten")]
    TagOverwritten,
}

impl DeletionKind {
    pub const ALL: [DeletionKind; 3] = [DeletionKind::Tag, DeletionKind::Manifest, DeletionKind::Overwrite];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionKind::Tag => "tag",
            DeletionKind::Manifest => "manifest",
            DeletionKind::Overwrite => "overwrite",
        }
    }
}

impl DeletionState {
    pub const ALL: [DeletionState; 5] = [
        DeletionState::Held,
        DeletionState::Applying,
        DeletionState::Applied,
        DeletionState::Cancelled,
        DeletionState::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionState::Held => "held",
            DeletionState::Applying => "applying",
            DeletionState::Applied => "applied",
            DeletionState::Cancelled => "cancelled",
            DeletionState::Dropped => "dropped",
        }
    }
}

impl DecidedBy {
    pub const ALL: [DecidedBy; 3] = [DecidedBy::Delay, DecidedBy::Operator, DecidedBy::Primary];

    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Delay => "delay",
            DecidedBy::Operator => "operator",
            DecidedBy::Primary => "primary",
        }
    }
}

impl Cause {
    pub const ALL: [Cause; 4] =
        [Cause::TagRemoved, Cause::ManifestDeleted, Cause::RepositoryEmptied, Cause::TagOverwritten];

    /// As `georeg deletions` shows it and the state file stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::TagRemoved => "tag removed",
            Cause::ManifestDeleted => "manifest deleted",
            Cause::RepositoryEmptied => "repository emptied",
            Cause::TagOverwritten => "tag overwritten",
        }
    }
}

/// What a drill found wrong with a tag it pulled: `drill_failures.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Damage {
    /// A blob damaged or missing on the secondary.
    Blob,
    /// A manifest damaged or missing.
    Manifest,
    /// The tag itself missing.
    Tag,
    /// The registry did not answer: nothing a resync repairs, and the
    /// state file does not keep it.
    Unreachable,
}

impl Damage {
    pub const ALL: [Damage; 4] = [Damage::Blob, Damage::Manifest, Damage::Tag, Damage::Unreachable];

    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Blob => "blob",
            Damage::Manifest => "manifest",
            Damage::Tag => "tag",
            Damage::Unreachable => "unreachable",
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
text_enum!(DeletionKind);
text_enum!(DeletionState);
text_enum!(DecidedBy);
text_enum!(Cause);
text_enum!(Damage);

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
