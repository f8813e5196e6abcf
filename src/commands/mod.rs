//! The subcommands, one file each, run from here; `node` builds [`Node`]:
//! everything a command needs, built once from the configuration. Each
//! part of georeg gets only the pieces it uses from it: the server an
//! `App`, the workers a `Replicator`, the report thread a `Reporter`.

mod backfill;
mod check;
mod deletions;
mod demo;
mod drill;
mod export;
mod failover;
mod import;
mod inventory;
mod node;
mod owner;
mod serve;
mod service_files;
mod status;
mod sync;
mod token;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{self, Cli, Command, DeletionsAction};
use crate::config::Config;
use crate::error::Result;
use crate::store::lock::{Lock, Locker};
use node::Node;

/// Runs one command line; the exit code on success.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Help { topic: None } => {
            print!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Help { topic: Some(topic) } => {
            print!("{}", crate::help::page(&topic).map(crate::help::text).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            print!("{}", crate::help::man_page());
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("georeg {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check::run(&Config::resolve_path(config))),
        Command::Demo { once } => demo::run(once).map(|()| ExitCode::SUCCESS),
        Command::Serve => {
            let config = Config::load(&Config::resolve_path(config))?;
            config.check_admin_exposure()?;
            let lock = Lock::acquire(&config.state_file, Locker::Serve)?;
            serve::run(Node::open(config)?, lock).map(|()| ExitCode::SUCCESS)
        }
        Command::Status { json } => status::run(&Config::load_for_status(&Config::resolve_path(config))?, json),
        Command::Sync { repositories } => sync::run(&open_stoppable(config)?, &repositories),
        Command::Backfill => backfill::run(&open_stoppable(config)?),
        Command::Verify { blobs, bundle: None, repositories } => {
            verify::run(&open_stoppable(config)?, blobs, &repositories)
        }
        Command::Verify { blobs, bundle: Some(file), repositories } => {
            verify::against_bundle(&open_stoppable(config)?, &file, blobs, &repositories)
        }
        Command::Export { output, inventory, repositories } => {
            export::run(&Config::load(&Config::resolve_path(config))?, &output, inventory.as_deref(), &repositories)
        }
        Command::Lacks { inventory, repositories } => {
            export::lacks(&Config::load(&Config::resolve_path(config))?, &inventory, &repositories)
        }
        Command::Import { bundle, force_primary, force_older } => {
            import::run(&open_stoppable(config)?, &bundle, force_primary, force_older)
        }
        Command::Inventory { output } => inventory::run(&open_stoppable(config)?, &output),
        Command::Token { scopes } => token::run(&open(config)?, &scopes),
        Command::Deletions { action, json } => {
            let path = Config::resolve_path(config);
            match action {
                DeletionsAction::List => deletions::list(&Config::load_for_status(&path)?, json),
                DeletionsAction::Cancel(which) => deletions::cancel(&Config::load_for_status(&path)?, &which),
                DeletionsAction::Apply(which) => deletions::apply(&open_stoppable(config)?, &which),
            }
        }
        Command::FailoverCheck { json } => {
            failover::run(&Config::load_for_status(&Config::resolve_path(config))?, json)
        }
        Command::Drill { sample } => drill::run(&open_stoppable(config)?, sample),
    }
}

fn open(config: Option<&Path>) -> Result<Node> {
    Node::open(Config::load(&Config::resolve_path(config))?)
}

/// A node for a command that stops cleanly on SIGINT and SIGTERM.
fn open_stoppable(config: Option<&Path>) -> Result<Node> {
    let node = open(config)?;
    node.shutdown.on_signals()?;
    Ok(node)
}
