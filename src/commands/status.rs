//! `georeg status [--json]`: this node's status straight from the state
//! file, so it works while the daemon is stopped (and without the key).

use std::process::ExitCode;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::status;
use crate::store::Reader;

pub fn run(config: &Config, json: bool) -> Result<ExitCode> {
    // Read-only: creates, locks and migrates nothing, so it works beside
    // the daemon, on a read-only filesystem, and during an upgrade.
    let status = Reader::open(&config.state_file)?.read(|snap| status::collect(config, snap, None, None))?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| Error::Store { message: e.to_string() })?;
        println!("{text}");
    } else {
        print!("{}", crate::health::lines::text(&status));
    }
    Ok(ExitCode::SUCCESS)
}
