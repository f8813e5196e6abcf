//! The `georeg` binary: parses the command line, runs the command, and
//! alone prints the error and picks the exit code (2: fix the input; 1:
//! anything else).

use std::process::ExitCode;

use georeg::{cli, commands};

fn main() -> ExitCode {
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_target(false).format_timestamp_millis();
    // Under systemd stderr is the journal, which stamps each line itself:
    // a syslog priority prefix instead of our own timestamp and level, so
    // that `journalctl -p warning` works.
    if std::env::var_os("JOURNAL_STREAM").is_none() && georeg::progress::on_terminal() {
        // On a terminal with a progress line, log lines print above it.
        logger.format(|buf, record| {
            use std::io::Write;
            let text = format!("[{} {:<5}] {}", buf.timestamp_millis(), record.level(), record.args());
            match georeg::progress::around_log(&text) {
                Some(framed) => write!(buf, "{framed}"),
                None => writeln!(buf, "{text}"),
            }
        });
    } else if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.format(|buf, record| {
            use std::io::Write;
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{priority}>{}", record.args())
        });
    }
    logger.init();
    match cli::parse(std::env::args().skip(1)).and_then(commands::run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("georeg: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
