//! The status snapshot's shape: one picture of a node, as the status API
//! and `/metrics` serve it, `georeg status --json` prints it and
//! secondaries report it to the primary (JSON, so fields only ever get
//! added, with defaults). `status` fills it in; `dr` assesses failover.

use serde::{Deserialize, Serialize};

use super::stats::Copying;
use crate::config::Role;
use crate::store::{Alarm, BundleRow, Comparison, Counts, DeletionSummary, DrillSummary, RepositoryRow, UploadRow};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeInfo,
    /// False when something needs the operator; `health_message` says what.
    pub healthy: bool,
    #[serde(default)]
    pub health_message: Option<String>,
    /// True when this node can serve (`/-/readiness`): its daemon runs and
    /// its registry answered the last check; `ready_message` says why not.
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub ready_message: Option<String>,
    /// On a secondary: how recently every repository was compared with
    /// the primary, and the last reconciliation pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Comparison>,
    /// Why no comparison can count yet (a follower whose primary georeg
    /// never answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_blocked: Option<String>,
    /// Alarms standing (refused notifications...).
    #[serde(default)]
    pub alarms: Vec<Alarm>,
    #[serde(default)]
    pub repositories: Counts,
    #[serde(default)]
    pub events: EventsStatus,
    #[serde(default)]
    pub oldest_unsynced: Option<Oldest>,
    #[serde(default)]
    pub copying: Vec<Copying>,
    /// Large blobs copied in chunks, where each stands (a restart
    /// continues them from there).
    #[serde(default)]
    pub uploads: Vec<UploadRow>,
    #[serde(default)]
    pub recent_failures: Vec<RepositoryRow>,
    /// On a primary: every secondary that reports in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeStatus>>,
    /// Repositories whose syncs are failing, apart from the lag.
    #[serde(default)]
    pub failing: Failing,
    /// The georeg process that owns the state file right now (`georeg
    /// serve (PID 123)`), if any.
    #[serde(default)]
    pub daemon: Option<String>,
    /// When a repository last finished syncing (None: never).
    #[serde(default)]
    pub last_sync_at: Option<String>,
    /// When the newest event was stored (None: never).
    #[serde(default)]
    pub last_event_at: Option<String>,
    /// When a repository was last verified (None: never).
    #[serde(default)]
    pub last_verified_at: Option<String>,
    /// On an air-gapped secondary: the last transfer bundle imported
    /// completely, and its age (since its export: how old this node's copy
    /// of the primary is).
    #[serde(default)]
    pub last_bundle: Option<BundleRow>,
    /// A bundle whose import began and has not finished.
    #[serde(default)]
    pub unfinished_bundle: Option<BundleRow>,
    /// Deletions held back (`replication.delete_delay_hours`) and the burst alarm.
    #[serde(default)]
    pub deletions: DeletionSummary,
    /// The last drill, and drill failures not repaired yet.
    #[serde(default)]
    pub drill: DrillSummary,
    /// On a secondary: what would be lost if the primary vanished now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// Repositories whose syncs are failing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Failing {
    pub repositories: i64,
    /// The one failing longest, since when, for how many seconds, and why.
    pub oldest: Option<String>,
    pub since: Option<String>,
    pub seconds: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub role: Role,
    pub version: String,
    pub replication_enabled: bool,
    /// Where this node's own server listens (`listen`).
    #[serde(default)]
    pub listen: String,
    /// On a secondary: the primary it follows (the primary georeg, else
    /// the primary registry).
    #[serde(default)]
    pub follows: Option<String>,
    /// On a secondary: what selective sync replicates (`every repository`,
    /// or `replication.include` and `exclude`).
    #[serde(default)]
    pub selection: Option<String>,
    /// Where its dashboard is, when its `listen` names an address other
    /// hosts can use (not loopback, not every interface).
    #[serde(default)]
    pub dashboard: Option<String>,
    /// The node this one follows and its own upstreams, nearest first, up
    /// to the primary (a secondary following a georeg; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventsStatus {
    /// Primary: the newest event in its log. Secondary: the newest event
    /// id the primary reported ("Last event ID from primary").
    pub last_event_id: i64,
    /// Secondary: the last event id read and queued ("Last event ID
    /// processed"). None on a primary.
    pub cursor_last_event_id: Option<i64>,
    /// Seconds since the oldest event not yet applied was received.
    pub lag_seconds: i64,
    #[serde(default)]
    pub cursor_updated_at: Option<String>,
    /// Seconds since the cursor last advanced.
    #[serde(default)]
    pub cursor_age_seconds: Option<i64>,
    #[serde(default)]
    pub cursor_error: Option<String>,
    /// Secondary: the last time the cursor lost its place in the primary's
    /// log (events pruned unread, another log), and what was done.
    #[serde(default)]
    pub cursor_gap: Option<String>,
    /// Events in the state file.
    #[serde(default)]
    pub stored: i64,
    /// Events stored per minute, averaged over the last ten minutes.
    #[serde(default)]
    pub per_minute: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Oldest {
    pub repository: String,
    pub since: String,
}

/// How a secondary stands, as the primary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    Healthy,
    Unhealthy,
    /// No report for longer than `status::OFFLINE_AFTER_SECONDS`.
    Offline,
}

impl NodeHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Unhealthy => "unhealthy",
            NodeHealth::Offline => "offline",
        }
    }
}

/// A secondary as the primary sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub health: NodeHealth,
    pub message: Option<String>,
    pub reported_at: String,
    pub age_seconds: i64,
    pub repositories: Counts,
    pub events: EventsStatus,
    /// What the secondary said of itself: its georeg version, where it
    /// listens, and how many repositories it has failing.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub listen: String,
    /// Its dashboard, when its `listen` names an address others can reach.
    #[serde(default)]
    pub dashboard: Option<String>,
    #[serde(default)]
    pub failing: i64,
    /// Its upstreams, nearest first (this node first), as it reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The nodes that follow it, as it reported them (a relay's tree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<NodeStatus>,
    /// What failover to it would lose, as it assessed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Its deletions held back and its burst alarm.
    #[serde(default)]
    pub deletions: DeletionSummary,
}

/// What failover would lose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// True when nothing would be lost if the primary vanished now.
    pub ready: bool,
    /// When the repository compared longest ago was compared.
    #[serde(default)]
    pub oldest_comparison_at: Option<String>,
    pub findings: Vec<Finding>,
    /// Age of the oldest change received but not applied (0: none).
    pub oldest_unapplied_seconds: i64,
    /// The highest push-to-pullable lag sampled over the last hour.
    pub recent_lag_seconds: i64,
}

/// One thing failover readiness found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// A stable name for automation: `failing`, `unverified`, `held_deletions`...
    pub check: String,
    /// True when something would be lost; false for a note.
    pub loss: bool,
    pub count: i64,
    pub message: String,
}
