//! The `georeg` binary: parses the command line, runs the command, and
//! alone prints the error and picks the exit code (2: fix the input; 1:
//! anything else).

use std::process::ExitCode;

use georeg::{cli, commands};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_target(false).init();
    match cli::parse(std::env::args().skip(1)).and_then(commands::run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("georeg: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
