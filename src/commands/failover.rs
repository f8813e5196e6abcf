//! `georeg failover-check [--json]`: what would be lost if the primary
//! vanished now, one line per finding, read from the state file (it works
//! while the daemon is stopped, and without the key). Exit 0 when nothing
//! would be lost, 1 otherwise. The same assessment is the `failover`
//! object of `/api/v1/status` and `georeg_failover_ready` in `/metrics`.

use std::process::ExitCode;

use crate::config::{Config, Role};
use crate::error::{Error, Result};
use crate::health::{failover, status};
use crate::store::Reader;

pub fn run(config: &Config, json: bool) -> Result<ExitCode> {
    if config.role != Role::Secondary {
        return Err(Error::Usage(
            "failover-check runs on a secondary: it says what that secondary would lose if the primary vanished".into(),
        ));
    }
    let status = Reader::open(&config.state_file)?.read(|snap| status::collect(config, snap, None, None))?;
    let failover = status.failover.unwrap_or_default();
    if json {
        let text = serde_json::to_string_pretty(&failover).map_err(|e| Error::Store { message: e.to_string() })?;
        println!("{text}");
    } else {
        for line in failover::lines(&failover) {
            println!("{line}");
        }
    }
    Ok(if failover.ready { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
