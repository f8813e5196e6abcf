//! `georeg status [--json]`: this node's status straight from the state
//! file, so it works while the daemon is stopped (and without the key).

use std::process::ExitCode;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::status;
use crate::store::Store;

pub fn run(config: &Config, json: bool) -> Result<ExitCode> {
    let store = Store::open(&config.state_file)?;
    let status = status::collect(config, &store, None, None)?;
    if json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| Error::Store { message: e.to_string() })?;
        println!("{text}");
    } else {
        print!("{}", status::text(&status));
    }
    Ok(ExitCode::SUCCESS)
}
