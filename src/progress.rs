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

/// Runs `work` while a thread named `progress` shows `line()`: every
/// second on a terminal, every 10 s elsewhere; then shows the last line
/// and ends it. For foreground commands whose work is one long call.
pub fn while_running<T>(line: impl Fn() -> String + Sync, work: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    /// Stops the progress thread however `work` ends (a panic included).
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let done = AtomicBool::new(false);
    let every = if on_terminal() { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let result = std::thread::scope(|s| {
        let shown = std::thread::Builder::new().name("progress".into()).spawn_scoped(s, || {
            let mut last = Instant::now();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= every && !done.load(Ordering::SeqCst) {
                    last = Instant::now();
                    show(&line());
                }
            }
        });
        if let Err(e) = shown {
            log::debug!("no progress line: {e}");
        }
        let _done = Done(&done);
        work()
    });
    finish(&line());
    result
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
