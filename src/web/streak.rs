//! The state of a streak of refused notifications (see `refusals`), kept by
//! the server for as long as it runs.

use std::sync::Mutex;
use std::time::Instant;

/// The streak of refusals in progress, if any.
#[derive(Default)]
pub struct Refusals {
    pub(super) streak: Mutex<Option<Streak>>,
}

pub(super) struct Streak {
    pub(super) count: u64,
    pub(super) written: Instant,
    pub(super) logged: Instant,
    pub(super) logged_count: u64,
}
