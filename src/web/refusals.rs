//! Refused notifications raise the alarm. A registry given the wrong
//! secret (or one that sends what georeg cannot read) retries every
//! notification forever, so a node refusing them all would otherwise look
//! healthy while nothing reaches it. Each refusal is counted by reason for
//! `/metrics`; while refusals keep coming and none is accepted, an alarm in
//! the state file names the reason and the client, and every view shows
//! the node unhealthy. The first refusal of a streak is logged at once,
//! then one line a minute says how many followed, instead of one per retry.

use std::time::{Duration, Instant};

use super::app::App;
use super::http::Reply;
use super::streak::Streak;

/// The alarm's name in the state file.
use crate::store::NOTIFICATIONS_REFUSED as ALARM;
/// How often the alarm's row is written and the log told, at most.
const WRITE_EVERY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a notification was refused: the `reason` label of
/// `georeg_notifications_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A wrong or missing `Authorization` header.
    Secret,
    /// Not an envelope georeg can read (content type, JSON).
    Malformed,
    /// Larger than the endpoint takes.
    TooLarge,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Secret => "secret",
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
        }
    }

    fn what_to_do(self) -> &'static str {
        match self {
            Refusal::Secret => {
                "the registry's notification header Authorization must be notifications.secret_file's secret"
            }
            Refusal::Malformed => "the registry's notification endpoint must be a registry's, not another client",
            Refusal::TooLarge => "a notification envelope this large is not a registry's",
        }
    }
}

/// Counts a refusal, raises the alarm (at most once a second), logs the
/// streak (its first refusal, then once a minute), and answers `status`
/// with `why`.
pub fn refused(app: &App, reason: Refusal, remote: &str, status: u16, why: &str) -> Reply {
    app.stats.notification_refused(reason.label());
    let now = Instant::now();
    let (write, log_line) = {
        let mut streak = app.refusals.streak.lock().unwrap_or_else(|p| p.into_inner());
        match streak.as_mut() {
            None => {
                *streak = Some(Streak { count: 1, written: now, logged: now, logged_count: 1 });
                (true, Some(1))
            }
            Some(s) => {
                s.count += 1;
                let write = now.duration_since(s.written) >= WRITE_EVERY;
                if write {
                    s.written = now;
                }
                let log_line = (now.duration_since(s.logged) >= LOG_EVERY).then(|| {
                    let n = s.count - s.logged_count;
                    s.logged = now;
                    s.logged_count = s.count;
                    n
                });
                (write, log_line)
            }
        }
    };
    let message = format!("{} from {remote} ({why}): {}", reason.label().replace('_', " "), reason.what_to_do());
    match log_line {
        Some(1) => log::warn!("notification refused: {message}"),
        Some(n) => log::warn!("{n} more notifications refused in the last minute; the last: {message}"),
        None => {}
    }
    if write {
        if let Err(e) = app.log.raise_alarm(ALARM, &message, Some(remote)) {
            log::error!("cannot record the refused notifications' alarm: {e}");
        }
    }
    Reply::error(status, why)
}

/// A notification was accepted: a streak of refusals, if any, is over.
pub fn accepted(app: &App) {
    let was = app.refusals.streak.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(s) = was {
        log::info!("notifications are accepted again, after {} refused", s.count);
        if let Err(e) = app.log.clear_alarm(ALARM) {
            log::error!("cannot clear the refused notifications' alarm: {e}");
        }
    }
}
