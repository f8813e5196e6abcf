//! One owner per state file: an exclusive lock on a file beside it
//! (`state.sqlite3.lock`), taken before any row is claimed and held for
//! the life of the process, as cargo locks its package cache. The kernel
//! drops the lock when the process ends, however it ends, so a kill -9
//! leaves nothing to clean up: the next owner recovers the rows the dead
//! one left `started`.
//!
//! The lock file also says who holds it (`PID COMMAND`), so that a second
//! `georeg serve` can name the running one, and `georeg sync` can hand its
//! work to it.
//!
//! And it witnesses that a state file existed: georeg never removes it, so
//! a lock file without its state file means the state file was lost, which
//! `open::writer` refuses to take for a first start (see
//! [`made_by_this_process`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The held lock; dropping it (or ending the process) releases it.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The georeg commands that take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locker {
    /// The daemon: foreground commands hand it their work.
    Serve,
    Sync,
    Backfill,
    Verify,
    Import,
    Deletions,
}

impl Locker {
    const ALL: [Locker; 6] =
        [Locker::Serve, Locker::Sync, Locker::Backfill, Locker::Verify, Locker::Import, Locker::Deletions];

    /// The command's name, as the lock file records it.
    pub fn name(self) -> &'static str {
        match self {
            Locker::Serve => "serve",
            Locker::Sync => "sync",
            Locker::Backfill => "backfill",
            Locker::Verify => "verify",
            Locker::Import => "import",
            Locker::Deletions => "deletions",
        }
    }

    fn parse(word: &str) -> Option<Locker> {
        Locker::ALL.into_iter().find(|l| l.name() == word)
    }
}

/// Who holds the lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// The georeg command that holds it; `None` when the file does not say
    /// (read-only, or written by another version).
    pub command: Option<Locker>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, self.command) {
            (Some(pid), Some(command)) => write!(f, "georeg {} (PID {pid})", command.name()),
            (Some(pid), None) => write!(f, "a georeg process (PID {pid})"),
            (None, _) => write!(f, "another georeg process"),
        }
    }
}

/// The lock file of a state file.
///
/// The lock is beside the state file's canonical path (symbolic links and
/// `..` resolved), so that two names of one file share one lock.
pub fn path_for(state_file: &Path) -> PathBuf {
    let state_file = canonical(state_file);
    let mut path = state_file.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

/// The file's canonical path; for a file not there yet, its folder's
/// canonical path and its name.
fn canonical(file: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(file) {
        return path;
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir), file.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => file.to_path_buf(),
    }
}

impl Lock {
    /// Takes the lock for `command`, or says who holds it.
    pub fn try_acquire(state_file: &Path, command: Locker) -> Result<std::result::Result<Lock, Holder>> {
        let path = path_for(state_file);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
        }
        let io = |e| Error::Io { path: path.clone(), source: e };
        if !path.exists() {
            // A lock file created now witnesses nothing yet.
            let _ = OpenOptions::new().write(true).create_new(true).open(&path).map(|_| remember_made(&path));
        }
        // Read-only is enough to lock: a lock file root created stays
        // usable by the service's user.
        let mut file = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path).map_err(io)?,
            Err(e) => return Err(io(e)),
        };
        if !flock::try_lock(&file, flock::Mode::Exclusive).map_err(io)? {
            return Ok(Err(holder(&mut file)));
        }
        // Best effort: a read-only lock file cannot name its holder.
        let _ = file.set_len(0).and_then(|()| {
            file.rewind()?;
            writeln!(file, "{} {}", std::process::id(), command.name())?;
            file.flush()
        });
        Ok(Ok(Lock { _file: file }))
    }

    /// Takes the lock, or fails naming who holds it (exit code 2).
    pub fn acquire(state_file: &Path, command: Locker) -> Result<Lock> {
        Lock::try_acquire(state_file, command)?.map_err(|holder| Error::InUse {
            state_file: state_file.to_path_buf(),
            holder: holder.to_string(),
            hint: "stop that one first; `georeg sync`, `backfill` and `verify` hand their work to a running \
                   `georeg serve`"
                .into(),
        })
    }
}

/// The lock files this process created (not found left by an earlier one).
static MADE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn remember_made(path: &Path) {
    MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(path.to_path_buf());
}

/// Whether the lock file of `state_file` is this process's own: absent, or
/// created by it. Otherwise an earlier georeg left it, so a state file
/// existed there.
pub fn made_by_this_process(state_file: &Path) -> bool {
    let path = path_for(state_file);
    !path.exists() || MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&path)
}

/// Who holds the lock of `state_file` right now, if anyone.
pub fn holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.take(200).read_to_string(&mut text));
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|p| p.parse().ok());
    let command = words.next().and_then(Locker::parse);
    Holder { pid, command }
}

/// Who holds the lock of `state_file`, without taking it: `None` when no
/// process does.
pub fn current_holder(state_file: &Path) -> Option<Holder> {
    let mut file = File::open(path_for(state_file)).ok()?;
    match flock::try_lock(&file, flock::Mode::Shared) {
        Ok(true) => None,
        _ => Some(holder(&mut file)),
    }
}

/// `flock(2)`, the lock `File::try_lock` takes on Linux (so georeg
/// versions built either way exclude each other), for toolchains older
/// than Rust 1.89, which has no `File::try_lock`. The kernel drops it when
/// the file is closed.
mod flock {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    pub enum Mode {
        Shared,
        Exclusive,
    }

    extern "C" {
        fn flock(fd: std::os::raw::c_int, operation: std::os::raw::c_int) -> std::os::raw::c_int;
    }

    const LOCK_SH: std::os::raw::c_int = 1;
    const LOCK_EX: std::os::raw::c_int = 2;
    const LOCK_NB: std::os::raw::c_int = 4;

    /// Takes the lock without waiting: `Ok(false)` when another open file
    /// holds it (exclusively, or shared when asking for exclusive).
    pub fn try_lock(file: &File, mode: Mode) -> std::io::Result<bool> {
        let operation = match mode {
            Mode::Shared => LOCK_SH,
            Mode::Exclusive => LOCK_EX,
        } | LOCK_NB;
        loop {
            // SAFETY: flock only reads its two integer arguments; the
            // descriptor is open for as long as `file` is borrowed.
            if unsafe { flock(file.as_raw_fd(), operation) } == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => return Ok(false),
                std::io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_it_is_named() {
        let dir = std::env::temp_dir().join(format!("georeg-lock-{}", crate::registry::token::random_hex(8)));
        let state = dir.join("state.sqlite3");
        let lock = Lock::try_acquire(&state, Locker::Serve).unwrap().unwrap();
        let held = Lock::try_acquire(&state, Locker::Sync).unwrap().unwrap_err();
        assert_eq!(held, Holder { pid: Some(std::process::id()), command: Some(Locker::Serve) });
        assert_eq!(current_holder(&state), Some(held.clone()));
        let e = Lock::acquire(&state, Locker::Serve).unwrap_err().to_string();
        assert!(e.contains(&format!("PID {}", std::process::id())) && e.contains("georeg serve"), "{e}");
        drop(lock);
        assert_eq!(current_holder(&state), None);
        let again = Lock::try_acquire(&state, Locker::Backfill).unwrap().unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
