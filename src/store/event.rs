//! The rows of the event log: an event to store (a manifest push, or a
//! tag, manifest or repository delete) and a stored event as a primary's
//! log serves it.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::registry::{valid_repository, valid_tag, Digest};

/// What an event did: `events.action` (schema.sql allows these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest pushed, by tag or by digest.
    Push,
    /// A tag, a manifest or a whole repository deleted.
    Delete,
    /// Anything else a primary's log may serve (a newer georeg's action):
    /// such an event is not valid here and is skipped, never stored.
    #[serde(other)]
    Other,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Other => "other",
        }
    }
}

impl ToSql for Action {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Action::Other => Err(rusqlite::Error::ToSqlConversionFailure("an event of another action".into())),
            a => Ok(ToSqlOutput::from(a.as_str())),
        }
    }
}

impl FromSql for Action {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            other => Err(FromSqlError::Other(format!("unknown event action {other:?}").into())),
        }
    }
}

/// An event to store: one manifest push, or a tag, manifest or repository delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The registry's id for the event, used to store a redelivery once.
    pub event_id: String,
    pub repository: String,
    pub action: Action,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
}

/// A stored event, as the primary's log serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log of the node that stored it.
    pub id: i64,
    pub event_id: String,
    pub received_at: String,
    pub repository: String,
    pub action: Action,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
}

impl Event {
    /// Whether the event passes the checks a notification passes (a valid
    /// repository name, tag and digest; push or delete), so that what a
    /// primary's log serves is held to the same grammar as what the
    /// registry sends.
    pub fn is_valid(&self) -> bool {
        valid_repository(&self.repository)
            && self.action != Action::Other
            && self.tag.as_deref().is_none_or(valid_tag)
            && self.digest.as_deref().is_none_or(|d| Digest::parse(d).is_ok())
    }
}

pub(super) const EVENT_COLUMNS: &str = "id, event_id, received_at, repository, action, tag, digest, media_type";

pub(super) fn event_row(r: &rusqlite::Row) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        event_id: r.get(1)?,
        received_at: r.get(2)?,
        repository: r.get(3)?,
        action: r.get(4)?,
        tag: r.get(5)?,
        digest: r.get(6)?,
        media_type: r.get(7)?,
    })
}
