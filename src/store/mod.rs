//! The SQLite state file. `schema.sql` at the top level is its only schema;
//! `open` opens and migrates it, and the other files own the queries:
//! `repos` (repositories and the sync queue), `tags` (what georeg placed on
//! the secondary), `verification` (the verification queue), `event` and
//! `events` (the event log), `cursor` (a secondary's place in its
//! primary's log), `applied` (what a secondary applied, the log its own
//! followers read), `nodes` (secondaries' reports, on a primary, and the
//! chart's samples), `uploads` (blobs copied in chunks), `bundles`
//! (transfer bundles imported), `deletions` (deletions held back,
//! `replication.delete_delay_hours`), `overwrites` (tags moved, held
//! back the same way), `kept` (what a comparison expects to differ) and
//! `burst` (their alarm), `drills`
//! (pulls from the secondary and what they found), `readiness` (what
//! failover would lose), `read_side` (what the pages show), `listing`
//! (the repository list's pages, by key) and `states`
//! (the sync and verification states).
//!
//! Callers never see the connection: `handles` gives each side the door
//! it needs (the owner's [`Store`], replication's [`Queue`], the web's and
//! the follower's [`Log`], and the [`Reader`] whose [`Snapshot`]s the
//! pages read). `shared` holds what the writer's handles share: one
//! connection behind a mutex, held only for short statements and never
//! across an HTTP call (SQLite serializes writers anyway). HTTP handlers
//! and replication workers meet only here: a handler commits rows, then
//! rings a bell so that sleeping workers look at the tables again. The
//! bells carry no data, so nothing is lost when the process dies.
//!
//! Notifications are group-committed: requests that arrive while another
//! commit is on its way to disk are stored together in the next
//! transaction, so a burst from many registries costs one fsync per batch
//! rather than one per request, and each is still answered only after its
//! own events are on disk.

mod alarms;
mod applied;
mod bundles;
mod catalog;
mod cursor;
mod deletions;
mod deletions_burst;
mod deletions_delay;
mod drills;
mod event;
mod events;
mod failover;
mod fingerprints;
mod handles;
mod kept;
mod listing;
pub(crate) mod lock;
mod nodes;
mod open;
mod overwrites;
mod read_side;
mod reconcile;
mod repos;
mod shared;
mod states;
mod tags;
mod uploads;
mod verification;

#[cfg(test)]
mod tests;

pub(crate) use alarms::{Alarm, NOTIFICATIONS_REFUSED};
pub(crate) use bundles::{BundleRow, NewBundle};
pub(crate) use cursor::Cursor;
pub(crate) use deletions::{Deletion, DeletionPolicy, DeletionSummary, NewDeletion, Open, Selector};
#[cfg(test)]
pub(crate) use drills::DrillRow;
pub(crate) use drills::{DrillFailure, DrillRecord, DrillSummary, DrillTag};
pub(crate) use event::{Action, Event, NewEvent};
pub(crate) use failover::Counted;
pub(crate) use fingerprints::{
    page_digest, Entry as FingerprintEntry, Local as LocalFingerprint, Page as FingerprintPage,
};
pub(crate) use handles::{Fingerprints, Log, Queue, Reader, Snapshot, Store};
pub(crate) use kept::Kept;
pub(crate) use listing::{Key, Page, Position, RepositoryFilter, Total, GROUPS};
pub(crate) use nodes::Sample;
pub(crate) use overwrites::{backup_tag, is_backup_tag};
pub(crate) use read_side::{Counts, RepositoryRow};
pub(crate) use reconcile::{Comparison, Known, PassRecord};
pub(crate) use repos::{Job, Progress};
pub(crate) use states::{Cause, Damage, DeletionKind, DeletionState};
pub(crate) use uploads::{Upload, UploadRow};
pub(crate) use verification::Verification;
