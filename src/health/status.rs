//! One picture of a node's state, shared by the dashboard, `GET
//! /api/v1/status`, `/metrics`, `georeg status` and the reports secondaries
//! send to the primary: the same numbers everywhere, read from the state
//! file (plus, in the daemon, what is being copied right now).

use super::failover;
use super::snapshot::{EventsStatus, Failing, NodeHealth, NodeInfo, NodeStatus, Oldest, Status};
use super::stats::Stats;
use crate::config::{Config, Role};
use crate::error::Result;
use crate::store::{BundleRow, DeletionSummary, DrillSummary, Snapshot};

/// The daemon checks its registries every few seconds: a check older than
/// this is not the daemon's word any more.
const CHECK_STALE_SECONDS: i64 = 90;
/// A refusal alarm not raised again for this long has stopped.
const ALARM_STANDS_SECONDS: i64 = 600;

/// A secondary whose last report is older than this is shown offline.
pub const OFFLINE_AFTER_SECONDS: i64 = 600;

/// What a page's header says of the node (its name, role, version...),
/// read alone: the repository list shows no more of the status, and reads
/// the cursor's row rather than the whole snapshot.
pub fn node(config: &Config, store: &Snapshot) -> Result<NodeInfo> {
    Ok(node_info(config, store.cursor()?.upstream_chain))
}

fn node_info(config: &Config, chain: Vec<String>) -> NodeInfo {
    let primary = config.role == Role::Primary;
    NodeInfo {
        name: config.node_name.clone(),
        role: config.role,
        version: env!("CARGO_PKG_VERSION").into(),
        replication_enabled: !primary && config.replication.enabled,
        listen: config.listen.clone(),
        dashboard: dashboard_url(config),
        chain: if primary { Vec::new() } else { chain },
        selection: (!primary).then(|| config.replication.selection().describe()),
        follows: if primary {
            None
        } else {
            config.replication.primary_node_url.clone().or_else(|| config.replication.primary_api_url.clone())
        },
    }
}

/// Reads the status from the state file. In the daemon, `stats` adds live
/// activity and `problem` the last health check's finding.
pub fn collect(config: &Config, store: &Snapshot, stats: Option<&Stats>, problem: Option<String>) -> Result<Status> {
    let primary = config.role == Role::Primary;
    let cursor = store.cursor()?;
    let local_last = store.last_event_id()?;
    let following = config.replication.primary_node_url.is_some();
    let events = EventsStatus {
        last_event_id: if following { cursor.primary_last_event_id } else { local_last },
        cursor_last_event_id: match (primary, following) {
            (true, _) => None,
            (false, true) => Some(cursor.last_event_id),
            (false, false) => Some(local_last),
        },
        lag_seconds: if primary { 0 } else { lag(store, &cursor, following)? },
        cursor_updated_at: cursor.updated_at.clone(),
        cursor_age_seconds: cursor.updated_at.as_deref().map(|at| store.age_seconds(at)).transpose()?,
        cursor_error: cursor.last_error.clone().filter(|_| following),
        cursor_gap: match (&cursor.gap_detected_at, &cursor.gap_message) {
            (Some(at), Some(message)) => {
                Some(format!("{at}: {message}; every repository was queued for a full comparison"))
            }
            _ => None,
        },
        stored: store.event_count()?,
        per_minute: store.events_since(600)? as f64 / 10.0,
    };
    let (last_bundle, unfinished_bundle) = if primary { (None, None) } else { store.bundle_status()? };
    let (count, oldest) = store.failing()?;
    let failing = match oldest {
        Some(o) => Failing {
            repositories: count,
            oldest: Some(o.name),
            since: Some(o.since),
            seconds: o.seconds,
            reason: o.reason,
        },
        None => Failing::default(),
    };
    let alert = config.replication.failing_alert_seconds as i64;
    let failing_too_long = (!primary && failing.seconds > alert).then(|| {
        format!(
            "{} failing, {} for {} min (over replication.failing_alert_seconds): {}",
            crate::format::count(failing.repositories as u64, "repository", "repositories"),
            failing.oldest.clone().unwrap_or_default(),
            failing.seconds / 60,
            failing.reason.clone().unwrap_or_default()
        )
    });
    let mut deletions = if primary { DeletionSummary::default() } else { store.deletion_summary()? };
    deletions.delay_hours = config.replication.delete_delay_hours;
    let burst =
        deletions.burst.as_ref().map(|b| format!("{b}; review them with `georeg deletions`, then --apply or --cancel"));
    let holder = crate::store::lock::current_holder(&config.state_file);
    // In the daemon (`stats`), this process is the one serving.
    let serving =
        stats.is_some() || holder.as_ref().is_some_and(|h| h.command == Some(crate::store::lock::Locker::Serve));
    // The daemon's last health check, as long as a daemon is there to
    // repeat it: `georeg status` tells what the daemon found.
    let check = store.health_check()?.filter(|c| serving && c.age_seconds <= CHECK_STALE_SECONDS);
    let alarms = store.alarms()?;
    let refused = alarms
        .iter()
        .find(|a| a.name == crate::store::NOTIFICATIONS_REFUSED && a.age_seconds <= ALARM_STANDS_SECONDS)
        .map(|a| {
            format!(
                "{} notifications refused since {}, the last {} s ago: {}",
                a.count, a.first_at, a.age_seconds, a.message
            )
        });
    let health_message = problem
        .or_else(|| check.as_ref().and_then(|c| c.problem.clone()))
        .or(refused)
        .or(burst)
        .or_else(|| events.cursor_error.as_ref().map(|e| format!("cannot read the primary's event log: {e}")))
        .or(failing_too_long)
        .or_else(|| bundle_too_old(config, last_bundle.as_ref()));
    let ready_message = match &check {
        _ if !serving => Some("no georeg serve owns the state file".to_string()),
        None => Some("the daemon has not checked its registry yet".to_string()),
        Some(c) => c.own_registry.as_ref().map(|e| format!("this node's registry does not answer: {e}")),
    }
    .or_else(|| {
        // A follower is no closer to the primary than the node it follows.
        let upstream = cursor.upstream_behind.as_ref().filter(|_| following && !primary)?;
        Some(format!("the node it follows is behind the primary: {upstream}"))
    });
    let reconcile = if primary { None } else { Some(store.comparison(config.replication.reconcile_interval_seconds)?) };
    let (last_sync_at, last_event_at, last_verified_at) = store.last_activity()?;
    let daemon = holder.map(|h| h.to_string());
    // A primary lists its secondaries; a relay, the followers that report to it.
    let reports = store.nodes()?;
    let nodes = if primary || !reports.is_empty() {
        Some(
            reports
                .into_iter()
                .map(|r| {
                    let reported: Option<Status> = serde_json::from_str(&r.status).ok();
                    let health = if r.age_seconds > OFFLINE_AFTER_SECONDS {
                        NodeHealth::Offline
                    } else if r.healthy {
                        NodeHealth::Healthy
                    } else {
                        NodeHealth::Unhealthy
                    };
                    NodeStatus {
                        name: r.name,
                        health,
                        message: if health == NodeHealth::Offline {
                            Some(format!("no report for {} minutes", r.age_seconds / 60))
                        } else {
                            r.health_message
                        },
                        reported_at: r.reported_at,
                        age_seconds: r.age_seconds,
                        repositories: reported.as_ref().map(|s| s.repositories.clone()).unwrap_or_default(),
                        version: reported.as_ref().map(|s| s.node.version.clone()).unwrap_or_default(),
                        listen: reported.as_ref().map(|s| s.node.listen.clone()).unwrap_or_default(),
                        dashboard: reported.as_ref().and_then(|s| s.node.dashboard.clone()),
                        failing: reported.as_ref().map(|s| s.failing.repositories).unwrap_or_default(),
                        chain: reported.as_ref().map(|s| s.node.chain.clone()).unwrap_or_default(),
                        followers: reported.as_ref().and_then(|s| s.nodes.clone()).unwrap_or_default(),
                        failover: reported.as_ref().and_then(|s| s.failover.clone()),
                        deletions: reported.as_ref().map(|s| s.deletions.clone()).unwrap_or_default(),
                        events: reported.map(|s| s.events).unwrap_or_default(),
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    let mut status = Status {
        node: node_info(config, cursor.upstream_chain.clone()),
        healthy: health_message.is_none(),
        health_message,
        ready: ready_message.is_none(),
        ready_message,
        reconcile_blocked: match (&config.replication.primary_node_url, &cursor.updated_at) {
            (Some(url), None) if !primary => Some(format!(
                "the primary georeg at {url} never answered, so nothing was compared through its event log and \
                 fingerprints"
            )),
            _ => None,
        },
        reconcile,
        alarms,
        repositories: store.counts()?,
        events,
        oldest_unsynced: store.oldest_unsynced()?.map(|(repository, since)| Oldest { repository, since }),
        copying: stats.map(Stats::copying).unwrap_or_default(),
        uploads: if primary { Vec::new() } else { store.uploads()? },
        recent_failures: store.recent_failures(10)?,
        nodes,
        failing,
        daemon,
        last_sync_at,
        last_event_at: if following { cursor.updated_at.clone() } else { last_event_at },
        last_verified_at,
        last_bundle,
        unfinished_bundle,
        deletions,
        drill: if primary { DrillSummary::default() } else { store.drill_summary()? },
        failover: None,
    };
    if !primary {
        status.failover = Some(failover::assess(config, store, &status)?);
    }
    Ok(status)
}

/// Why this secondary is behind the primary, as its followers are told
/// with every page of its log (their readiness includes it): what keeps it
/// from being ready or healthy, or changes waiting longer than
/// `replication.failing_alert_seconds`. Named after this node, so that a
/// message that travels down a chain says which hop it is about.
pub fn behind(config: &Config, s: &Status) -> Option<String> {
    let alert = config.replication.failing_alert_seconds as i64;
    let why = s.ready_message.as_ref().map(|m| format!("not ready: {m}")).or_else(|| s.health_message.clone()).or_else(
        || {
            (s.events.lag_seconds > alert).then(|| {
                format!(
                    "its oldest change not yet applied is {} s old (over replication.failing_alert_seconds)",
                    s.events.lag_seconds
                )
            })
        },
    );
    why.map(|why| format!("{}: {why}", config.node_name))
}

/// The age of the oldest event not yet applied, leaving out failing
/// repositories; on a follower with events not yet read from the primary,
/// at least the time since the cursor last advanced.
fn lag(store: &Snapshot, cursor: &crate::store::Cursor, following: bool) -> Result<i64> {
    let applied = store.lag_seconds()?;
    let unread = match &cursor.updated_at {
        Some(at) if following && cursor.primary_last_event_id > cursor.last_event_id => store.age_seconds(at)?,
        _ => 0,
    };
    Ok(applied.max(unread))
}

/// On a secondary fed by transfer bundles: the alarm when its copy of the
/// primary (the last bundle's export) is older than
/// `replication.bundle_max_age_hours`.
fn bundle_too_old(config: &Config, last: Option<&BundleRow>) -> Option<String> {
    let max_hours = config.replication.bundle_max_age_hours;
    if config.role != crate::config::Role::Secondary || config.replication.enabled || max_hours == 0 {
        return None;
    }
    let b = last?;
    (b.age_seconds > max_hours as i64 * 3600).then(|| {
        format!(
            "the last transfer bundle imported ({}) was exported {} h ago, more than replication.bundle_max_age_hours \
             ({max_hours}): this node's copy of the primary is that old; carry a new bundle across (georeg export, \
             georeg import)",
            b.id,
            b.age_seconds / 3600
        )
    })
}

/// This node's dashboard as other hosts reach it, when `listen` says: an
/// address that is neither loopback nor every interface.
fn dashboard_url(config: &Config) -> Option<String> {
    let ip = config.listen.parse::<std::net::SocketAddr>().ok()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    let scheme = if config.tls.cert_file.is_some() { "https" } else { "http" };
    Some(format!("{scheme}://{}/admin/geo/nodes", config.listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_link_only_where_listen_names_an_address_others_reach() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let config = |listen: &str| {
            let text = format!(
                "node_name = \"n\"\nrole = \"secondary\"\nlisten = \"{listen}\"\nadmin_open = true\n\
                 [registry]\nurl = \"http://127.0.0.1:1\"\nkey_file = \"test-key-pkcs1.pem\"\n\
                 [replication]\nprimary_api_url = \"http://127.0.0.2:1\"\n"
            );
            Config::parse(&data.join("route-test.toml"), &text).unwrap()
        };
        assert_eq!(dashboard_url(&config("10.1.2.3:5050")).as_deref(), Some("http://10.1.2.3:5050/admin/geo/nodes"));
        for listen in ["127.0.0.1:5050", "0.0.0.0:5050", "[::]:5050"] {
            assert_eq!(dashboard_url(&config(listen)), None, "{listen}");
        }
    }
}
