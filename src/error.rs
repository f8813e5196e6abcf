//! The one error type of georeg. Every message names what failed and where
//! (file and key, registry URL, repository, digest) so that an operator can
//! act on it without reading the source.

use std::fmt;
use std::path::PathBuf;

use crate::format::printable;

#[derive(Debug)]
pub enum Error {
    /// The configuration file is missing, unreadable or invalid.
    Config { file: PathBuf, key: String, message: String },
    /// The command line could not be understood.
    Usage(String),
    /// A key or certificate file could not be read or parsed.
    Key { path: PathBuf, message: String },
    /// A registry or georeg node could not be reached, or the connection broke.
    Transport { url: String, message: String },
    /// A registry answered a request with an error status.
    Registry {
        /// The request, e.g. `PUT http://host/v2/app/manifests/v1`.
        request: String,
        status: u16,
        /// The registry's error code (`MANIFEST_UNKNOWN`...), when it sent one.
        code: String,
        message: String,
    },
    /// Blob bytes read from the primary did not match the blob's descriptor.
    BlobMismatch { repository: String, digest: String, message: String },
    /// A manifest could not be used as it is.
    Manifest { repository: String, reference: String, message: String },
    /// A repository as a whole is not as it should be: several of its tags
    /// failed, or the two registries read differently after a sync.
    Repository { repository: String, message: String },
    /// Syncing a repository failed; `source` says how.
    Sync { repository: String, source: Box<Error> },
    /// The state file could not be opened, migrated, read or written, for
    /// a reason of georeg's own (a schema version from a newer georeg...).
    Store { message: String },
    /// The state file cannot be used as it is (missing, another schema
    /// version): the operator decides what to do; nothing was changed.
    StateFile { path: PathBuf, message: String },
    /// SQLite refused a statement on the state file; `source` says why
    /// (busy or locked by another connection, disk full, corrupt...).
    /// `context`, when not empty, says what georeg was doing.
    Sql { context: String, source: rusqlite::Error },
    /// A local file could not be read or written.
    Io { path: PathBuf, source: std::io::Error },
    /// A transfer bundle or inventory cannot be used; `file` names it.
    /// `refused`: not as a whole (cut short, not signed with the shared
    /// key, edited, too large, made for another primary or older than
    /// what this node holds), which running again cannot fix; else one
    /// file inside it is damaged, and the repository reading it fails.
    Bundle { file: String, message: String, refused: bool },
    /// Another georeg process owns the state file.
    InUse { state_file: PathBuf, holder: String, hint: String },
    /// Recording a job's outcome found the repository's claim no longer
    /// this process's (another process recovered it).
    ClaimLost { repository: String },
    /// Work stopped because georeg is shutting down.
    Interrupted,
    /// A repository's sync ran past `replication.sync_budget_seconds`.
    OverBudget { seconds: u64 },
    /// A read from a registry fell below `replication.min_rate` or ran
    /// past its deadline.
    TooSlow { url: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error: 2 for a bad invocation,
    /// configuration or bundle (fix the input), 1 for everything else
    /// (run it again once the cause is fixed).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. }
            | Error::Usage(_)
            | Error::Key { .. }
            | Error::InUse { .. }
            | Error::StateFile { .. } => 2,
            Error::Bundle { refused: true, .. } => 2,
            _ => 1,
        }
    }

    /// What went wrong, without the "sync REPO failed:" prefix: for a
    /// line that names the repository already, or the state file's
    /// `last_sync_failure`.
    pub fn reason(&self) -> String {
        match self {
            Error::Sync { source, .. } => source.reason(),
            Error::Repository { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// True when the state file could not be used (either state-file
    /// variant): no repository is to blame for it.
    pub fn is_state_file(&self) -> bool {
        match self {
            Error::Store { .. } | Error::Sql { .. } => true,
            Error::Sync { source, .. } => source.is_state_file(),
            _ => false,
        }
    }

    /// True when SQLite answered that the state file is busy or locked by
    /// another connection past the busy timeout: the same statement may
    /// well succeed a little later, unlike any other failure.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Sql { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::Sync { source, .. } => source.is_busy(),
            _ => false,
        }
    }

    /// Whether this error says something about what a registry holds (a
    /// damaged manifest or blob, registries that read differently), as
    /// opposed to a failure to read it at all (unreachable, refusing,
    /// stopping), which proves nothing either way.
    pub fn is_finding(&self) -> bool {
        match self {
            Error::Sync { source, .. } => source.is_finding(),
            Error::Manifest { .. } | Error::Repository { .. } | Error::BlobMismatch { .. } => true,
            _ => false,
        }
    }

    pub fn in_repository(self, repository: &str) -> Error {
        match self {
            Error::Sync { .. } | Error::Interrupted => self,
            other => Error::Sync { repository: repository.to_string(), source: Box::new(other) },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { file, key, message } if key.is_empty() => {
                write!(f, "config {}: {message}", file.display())
            }
            Error::Config { file, key, message } => {
                write!(f, "config {}: {key}: {message}", file.display())
            }
            // `sync: unknown option ...` points at that command's help.
            Error::Usage(message) => match message
                .split_once(": ")
                .map(|(command, _)| command)
                .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            {
                Some(command) => write!(f, "{message} (see georeg help {command})"),
                None => write!(f, "{message} (see georeg --help)"),
            },
            Error::Key { path, message } => write!(f, "key {}: {message}", path.display()),
            // What a registry answered (URLs from its Link headers, its
            // error codes and messages, media types) is text from outside:
            // printed escaped.
            Error::Transport { url, message } => write!(f, "cannot reach {}: {}", printable(url), printable(message)),
            Error::Registry { request, status, code, message } => {
                write!(f, "{} answered {status}", printable(request))?;
                if !code.is_empty() {
                    write!(f, " {}", printable(code))?;
                }
                if !message.is_empty() {
                    write!(f, ": {}", printable(message))?;
                }
                Ok(())
            }
            Error::BlobMismatch { repository, digest, message } => write!(
                f,
                "blob {digest} of {repository} from the primary {}; nothing referencing it was pushed",
                printable(message)
            ),
            Error::Manifest { repository, reference, message } => {
                write!(f, "manifest {repository}:{}: {}", printable(reference), printable(message))
            }
            Error::Repository { repository, message } => write!(f, "{repository}: {}", printable(message)),
            // The repository is named once: `sync corp/app failed: 3 tags failed; ...`.
            Error::Sync { repository, source } => write!(f, "sync {repository} failed: {}", source.reason()),
            Error::Store { message } => write!(f, "state file: {message}"),
            Error::StateFile { path, message } => write!(f, "state file {}: {message}", path.display()),
            Error::Sql { context, source } if context.is_empty() => write!(f, "state file: {source}"),
            Error::Sql { context, source } => write!(f, "state file: {context}: {source}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            // Its message names what the bundle holds: names from outside.
            Error::Bundle { file, message, .. } => write!(f, "{}: {}", printable(file), printable(message)),
            Error::InUse { state_file, holder, hint } => {
                write!(
                    f,
                    "{} is in use by {holder}: one georeg process owns a state file at a time; {hint}",
                    state_file.display()
                )
            }
            Error::ClaimLost { repository } => write!(
                f,
                "{repository}: this process no longer holds its claim on the repository (another georeg process \
                 recovered it); this outcome was not recorded and the repository is synced again"
            ),
            Error::Interrupted => write!(f, "interrupted by shutdown; the next run resumes"),
            Error::OverBudget { seconds } => write!(
                f,
                "stopped after {seconds}s, its time budget (replication.sync_budget_seconds): what was copied \
                 stays, the rest is tried again with backoff; if the primary is merely slow for this repository, \
                 raise the budget"
            ),
            Error::TooSlow { url, message } => write!(
                f,
                "{}: {message} (the primary registry or the link to it is too slow, or hostile; see \
                 replication.min_rate)",
                printable(url)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sql { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Sync { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(source: rusqlite::Error) -> Self {
        Error::Sql { context: String::new(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_registry_answered_is_printed_escaped() {
        let hostile = "\u{1b}[2K\u{1b}[1Aall synced\u{202e}txt.exe\n";
        let errors = [
            Error::Registry {
                request: format!("GET http://r/v2/a/tags/list?last={hostile}"),
                status: 500,
                code: hostile.into(),
                message: hostile.into(),
            },
            Error::Transport { url: hostile.into(), message: hostile.into() },
            Error::Manifest { repository: "a".into(), reference: "v1".into(), message: hostile.into() },
            Error::TooSlow { url: hostile.into(), message: "too slow".into() },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
            assert!(text.contains("\\u{1b}[2K") && text.contains("\\u{202e}"), "{text}");
        }
    }

    /// A write on a second connection while the first holds the file in
    /// an exclusive transaction: SQLite's own SQLITE_BUSY, kept as the source.
    #[test]
    fn a_locked_state_file_is_busy_and_other_failures_are_not() {
        let dir = std::env::temp_dir().join(format!("georeg-busy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.sqlite3");
        let first = rusqlite::Connection::open(&path).unwrap();
        first.execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER); BEGIN EXCLUSIVE;").unwrap();
        let second = rusqlite::Connection::open(&path).unwrap();
        second.busy_timeout(std::time::Duration::ZERO).unwrap();
        let busy = Error::from(second.execute("INSERT INTO t VALUES (1)", []).unwrap_err());
        assert!(busy.is_busy() && busy.is_state_file(), "{busy:?}");
        assert!(std::error::Error::source(&busy).is_some());
        assert!(busy.to_string().starts_with("state file: database is locked"), "{busy}");
        assert!(busy.in_repository("app").is_busy(), "busy through a sync failure too");
        first.execute_batch("COMMIT").unwrap();

        let missing = Error::from(second.execute("INSERT INTO nowhere VALUES (1)", []).unwrap_err());
        assert!(!missing.is_busy() && missing.is_state_file());
        let own = Error::Store { message: "schema version 99 was written by a newer georeg".into() };
        assert!(!own.is_busy() && own.is_state_file());
        assert!(!Error::Interrupted.is_busy());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
