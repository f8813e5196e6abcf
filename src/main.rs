use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use georeg::cli::{self, Cli, Command};
use georeg::config::Config;
use georeg::error::{Error, Result};
use georeg::node::Node;

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
    let config = cli.config.clone();
    match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("georeg {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { scopes } => {
            let node = open(config.as_deref())?;
            let ttl = Duration::from_secs(node.config.registry.token_ttl_seconds);
            println!("{}", node.signer.sign(&node.config.registry.service, "georeg", ttl, &scopes).text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { once } => {
            georeg::demo::run(once)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            georeg::daemon::serve(open(config.as_deref())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { repositories } => sync(&open(config.as_deref())?, &repositories),
    }
}

fn open(config: Option<&std::path::Path>) -> Result<Node> {
    let path = Config::resolve_path(config);
    Node::open(Config::load(&path)?)
}

/// `georeg sync REPO...`: each repository in turn on up to
/// `replication.workers` threads, one result line each.
fn sync(node: &Node, repositories: &[String]) -> Result<ExitCode> {
    let replicator = node.replicator()?;
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let workers = node.config.replication.workers.min(repositories.len());
    std::thread::scope(|s| {
        for i in 0..workers {
            let (replicator, next, failed) = (&replicator, &next, &failed);
            let spawned = std::thread::Builder::new().name(format!("sync-{i}")).spawn_scoped(s, move || loop {
                let Some(repo) = repositories.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                let started = Instant::now();
                match replicator.sync(repo) {
                    Ok(report) => println!("{repo}: synced in {:.1}s: {report}", started.elapsed().as_secs_f64()),
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        println!("{repo}: FAILED: {}", failure_text(&e));
                    }
                }
            });
            if let Err(e) = spawned {
                eprintln!("georeg: cannot start a sync thread: {e}");
                failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let failed = failed.load(Ordering::SeqCst);
    if failed > 0 {
        eprintln!("georeg: {failed} of {} repositories failed; see the lines above", repositories.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn failure_text(e: &Error) -> String {
    match e {
        Error::Sync { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}
