//! The health check and the report to the primary georeg. Every few
//! seconds a node checks that its registries answer and records what it
//! found in the state file, where every view (`georeg status`, the status
//! API, `/metrics`, readiness, the dashboard) reads it from the same
//! snapshot; every `replication.report_interval_seconds` (60 s by default)
//! a secondary following a primary georeg POSTs its status there
//! (`peer::NODE_STATUS_PATH`, JWT-authenticated like the event log), so the
//! primary's dashboard shows every secondary.

use std::sync::Mutex;
use std::time::Duration;

use super::snapshot::Status;
use super::stats::Stats;
use super::status;
use crate::config::{Config, Role};
use crate::peer::PrimaryNode;
use crate::registry::Client;
use crate::shutdown::Shutdown;
use crate::store::{Log, Reader};

/// The last health check's finding: written by the report thread, read by
/// the pages. `None` while nothing is wrong (or nothing was checked yet).
#[derive(Default)]
pub struct Health {
    problem: Mutex<Option<String>>,
    /// On a secondary: why it is behind the primary, as its followers are
    /// told with every page of its log (`None`: it is in step).
    behind: Mutex<Option<String>>,
}

impl Health {
    pub fn set_behind(&self, behind: Option<String>) {
        *self.behind.lock().unwrap_or_else(|p| p.into_inner()) = behind;
    }

    pub fn behind(&self) -> Option<String> {
        self.behind.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How often the health check runs (at most: the report interval if shorter).
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// What the report thread reads and where it reports.
pub struct Reporter<'a> {
    pub config: &'a Config,
    pub log: &'a Log,
    pub reader: &'a Reader,
    pub stats: &'a Stats,
    pub health: &'a Health,
    /// This node's registry.
    pub local: &'a Client,
    /// The primary registry, on a secondary.
    pub primary: Option<&'a Client>,
    /// The primary georeg, on a secondary that follows one.
    pub primary_node: Option<&'a PrimaryNode>,
    pub shutdown: &'a Shutdown,
}

impl Reporter<'_> {
    /// The report thread: check, report, sleep, until shutdown.
    pub fn run(&self) {
        let interval = Duration::from_secs(self.config.replication.report_interval_seconds);
        let check_every = CHECK_EVERY.min(interval);
        let mut last_error = String::new();
        let mut reported: Option<std::time::Instant> = None;
        loop {
            let (problem, own_registry) = self.check();
            // A state file that cannot be written is itself the problem,
            // which only this process can tell (the pages show it).
            let unwritable = self.log.record_health(problem.as_deref(), own_registry.as_deref()).err();
            let problem = match unwritable {
                Some(e) => Some(format!("state file cannot be written: {e}")),
                None => problem,
            };
            self.health.set(problem.clone());
            let report_now = reported.is_none_or(|at| at.elapsed() + check_every / 2 >= interval);
            if !report_now && self.config.role == Role::Primary {
                if !self.shutdown.sleep(check_every) {
                    return;
                }
                continue;
            }
            // One snapshot serves what followers are told, the chart's
            // sample and the report.
            let status = self.reader.read(|snap| status::collect(self.config, snap, Some(self.stats), problem));
            if self.config.role == Role::Secondary {
                self.health.set_behind(match &status {
                    Ok(s) => status::behind(self.config, s),
                    Err(e) => Some(format!("{}: cannot read its state file: {e}", self.config.node_name)),
                });
            }
            if !report_now {
                if !self.shutdown.sleep(check_every) {
                    return;
                }
                continue;
            }
            reported = Some(std::time::Instant::now());
            if self.config.role == Role::Secondary {
                self.sample(&status);
            }
            if let Some(node) = self.primary_node {
                let sent = match &status {
                    Ok(status) => node.report(status),
                    Err(e) => Err(e.to_string()),
                };
                match sent {
                    Ok(()) if !last_error.is_empty() => {
                        log::info!("reporting status to the primary georeg at {} works again", node.url());
                        last_error.clear();
                    }
                    Ok(()) => {}
                    Err(e) if e != last_error => {
                        log::warn!("{e}");
                        last_error = e;
                    }
                    Err(_) => {}
                }
            }
            if !self.shutdown.sleep(check_every) {
                return;
            }
        }
    }

    /// What keeps this node from working, if anything, and why its own
    /// registry did not answer, if it did not.
    fn check(&self) -> (Option<String>, Option<String>) {
        let mut problems = Vec::new();
        let own_registry = self.local.ping().err().map(|e| e.to_string());
        if let Some(e) = &own_registry {
            problems.push(format!("own registry: {e}"));
        }
        // A paused secondary (an air-gapped one fed by transfer bundles, too)
        // does not read the primary: its reachability is nobody's problem here.
        let replicating = self.config.role == Role::Secondary && self.config.replication.enabled;
        if let Some(primary) = self.primary.filter(|_| replicating) {
            if let Err(e) = primary.ping() {
                problems.push(format!("primary registry: {e}"));
            }
        }
        ((!problems.is_empty()).then(|| problems.join("; ")), own_registry)
    }

    /// One point of the dashboard's chart: the lag and the bytes copied.
    fn sample(&self, status: &crate::error::Result<Status>) {
        let copied = self.stats.bytes_copied.load(std::sync::atomic::Ordering::Relaxed);
        let recorded = match status {
            Ok(s) => self.log.record_sample(s.events.lag_seconds, copied),
            Err(e) => Err(crate::error::Error::Store { message: e.to_string() }),
        };
        if let Err(e) = recorded {
            log::warn!("cannot record the chart's sample: {e}");
        }
    }
}
