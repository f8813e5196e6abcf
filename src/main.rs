use std::path::Path;
use std::process::ExitCode;

use georeg::cli::{self, Cli, Command};
use georeg::config::Config;
use georeg::error::Result;
use georeg::node::Node;
use georeg::{check, commands, daemon, demo};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_target(false).init();
    match cli::parse(std::env::args().skip(1)).and_then(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("georeg: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("georeg {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check::run(&Config::resolve_path(config))),
        Command::Demo { once } => demo::run(once).map(|()| ExitCode::SUCCESS),
        Command::Serve => daemon::serve(open(config)?).map(|()| ExitCode::SUCCESS),
        Command::Status { json } => commands::status(&Config::load(&Config::resolve_path(config))?, json),
        Command::Sync { repositories } => commands::sync(&open(config)?, &repositories),
        Command::Backfill => commands::backfill(&open(config)?),
        Command::Verify { blobs, repositories } => commands::verify(&open(config)?, blobs, &repositories),
        Command::Token { scopes } => commands::token(&open(config)?, &scopes),
    }
}

fn open(config: Option<&Path>) -> Result<Node> {
    Node::open(Config::load(&Config::resolve_path(config))?)
}
