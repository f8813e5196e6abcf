//! The one progress line a foreground command shows on a terminal, and
//! how log lines share the terminal with it: a log line clears the
//! progress line, prints above it, and the progress line is drawn again
//! below. Off a terminal, progress lines are plain lines and log lines are
//! left alone.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// The progress line on screen now (empty: none).
static LINE: Mutex<String> = Mutex::new(String::new());

/// Whether stderr is a terminal, where the line redraws in place.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Shows `line`: redrawn in place on a terminal, printed as a line
/// elsewhere.
pub fn show(line: &str) {
    let mut current = LINE.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = std::io::stderr().lock();
    if on_terminal() {
        let _ = write!(err, "\r{line}\x1b[K");
        *current = line.to_string();
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

/// Ends the progress line with `line`: it stays on screen, and log lines
/// print normally again.
pub fn finish(line: &str) {
    show(line);
    end();
}

/// Ends whatever progress line is shown, as it is.
pub fn end() {
    let mut current = LINE.lock().unwrap_or_else(|p| p.into_inner());
    if !current.is_empty() {
        eprintln!();
        current.clear();
    }
}

/// A log record's text as it must reach a terminal showing a progress
/// line: the progress line cleared, the record, the progress line again.
pub fn around_log(text: &str) -> Option<String> {
    let current = LINE.lock().unwrap_or_else(|p| p.into_inner());
    if current.is_empty() {
        return None;
    }
    Some(format!("\r\x1b[K{text}\n{current}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_print_above_the_progress_line() {
        assert_eq!(around_log("x"), None, "no progress line: the record as it is");
        *LINE.lock().unwrap() = "backfill: 1/2".into();
        assert_eq!(around_log("[INFO] a").unwrap(), "\r\x1b[K[INFO] a\nbackfill: 1/2");
        LINE.lock().unwrap().clear();
    }
}
