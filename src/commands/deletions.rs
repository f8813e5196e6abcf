//! `georeg deletions [--json]`, `--apply ID...|--all`, `--cancel
//! ID...|--all`: the deletions held back by `replication.delete_delay_hours`.
//!
//! Listing and cancelling only read and write the state file, so they work
//! whether or not the daemon runs (and before the key is in place).
//! Applying removes from the secondary registry: like `georeg sync`, it
//! does the work itself when no `georeg serve` holds the state file, and
//! otherwise marks the deletions due, lets the daemon apply them, and
//! follows them to the end.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use super::node::Node;
use super::owner::{Owner, INTERRUPTED};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::lock::{current_holder, Lock, Locker};
use crate::store::{Deletion, DeletionKind, DeletionState, Reader, Selector, Store};

/// How often a follower looks at the state file.
const POLL: Duration = Duration::from_millis(250);

/// `georeg deletions [--json]`: held deletions (soonest first), then cancelled ones.
pub fn list(config: &Config, json: bool) -> Result<ExitCode> {
    let open = Reader::open(&config.state_file)?.read(|snap| snap.open_deletions())?;
    if json {
        let text = serde_json::to_string_pretty(&open).map_err(|e| Error::Store { message: e.to_string() })?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let delay = config.replication.delete_delay_hours;
    if open.is_empty() {
        println!(
            "no deletions held back or cancelled (replication.delete_delay_hours = {delay}{})",
            if delay == 0 { ": deletions apply at once" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["ID", "REPOSITORY", "REMOVES", "SEEN AT", "APPLIES AT", "STATE"].map(String::from)];
    for r in &open {
        rows.push([
            r.id.to_string(),
            r.repository.clone(),
            r.what(),
            r.seen_at.clone(),
            if r.state == DeletionState::Cancelled { "never".into() } else { r.applies_at.clone() },
            state(r),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let held = open.iter().filter(|r| r.state != DeletionState::Cancelled).count();
    println!(
        "{held} held, {} cancelled; apply early with `georeg deletions --apply ID|--all`, keep with `--cancel ID|--all`",
        open.len() - held
    );
    Ok(ExitCode::SUCCESS)
}

/// `held: tag removed`, `cancelled 2026-...`, `held: tag removed; last attempt failed: ...`.
fn state(r: &Deletion) -> String {
    match r.state.as_str() {
        "cancelled" => format!("cancelled {}", r.decided_at.as_deref().unwrap_or("")),
        state => {
            let mut s = format!("{state}: {}", r.cause);
            if let Some(bundle) = &r.bundle {
                s.push_str(&format!(" (import of bundle {bundle})"));
            }
            if let Some(e) = &r.last_error {
                s.push_str(&format!("; last attempt failed: {e}"));
            }
            s
        }
    }
}

/// `georeg deletions --cancel ID...|--all`: the secondary keeps them.
pub fn cancel(config: &Config, which: &Selector) -> Result<ExitCode> {
    let store = Store::open(&config.state_file)?;
    let done = store.queue().cancel_deletions(which)?;
    for r in &done {
        let kept = match r.kind {
            DeletionKind::Overwrite => format!(
                "the tag goes back to {} on the secondary at its repository's next sync (queued now; without \
                 `georeg serve` running, `georeg sync {}`) and stays there while the primary has it where it \
                 moved it",
                r.digest.as_deref().unwrap_or("its previous digest"),
                r.repository
            ),
            _ => "kept on the secondary".into(),
        };
        println!("{} {} {}: cancelled: {kept}; verification expects the difference", r.id, r.repository, r.what());
    }
    Ok(report_missing(which, &done, "cancelled"))
}

/// IDs that named no held deletion fail the command; `--all` with none
/// held says so.
fn report_missing(which: &Selector, done: &[Deletion], what: &str) -> ExitCode {
    match which {
        Selector::All if done.is_empty() => {
            println!("no deletions held back: nothing {what}");
            ExitCode::SUCCESS
        }
        Selector::All => ExitCode::SUCCESS,
        Selector::Ids(ids) => {
            let found: BTreeSet<i64> = done.iter().map(|r| r.id).collect();
            let missing: Vec<&i64> = ids.iter().filter(|id| !found.contains(id)).collect();
            for id in &missing {
                println!("{id}: FAILED: no held deletion has this ID (georeg deletions lists them)");
            }
            if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `georeg deletions --apply ID...|--all`: removes them from the
/// secondary now (what the primary has again is dropped instead).
pub fn apply(node: &Node, which: &Selector) -> Result<ExitCode> {
    node.replicator()?;
    let (which, excluded) = leave_out_excluded(node, which)?;
    if matches!(&which, Selector::Ids(ids) if ids.is_empty()) && excluded > 0 {
        return Ok(ExitCode::from(1));
    }
    let which = &which;
    let (marked, outcome) = match Owner::take(node, Locker::Deletions)? {
        Owner::Itself(_lock) => {
            let marked = node.queue.apply_deletions_now(which)?;
            let outcome = apply_here(node, &marked)?;
            (marked, outcome)
        }
        Owner::Daemon(holder) => {
            let marked = node.queue.apply_deletions_now(which)?;
            let mut left: Vec<i64> = marked.iter().map(|r| r.id).collect();
            let mut outcome = Outcome::default();
            while !left.is_empty() {
                if node.shutdown.requested() {
                    eprintln!("georeg: stopped following; {holder} applies the {} deletions left", left.len());
                    outcome.interrupted = true;
                    break;
                }
                let rows = node.queue.deletions_by_id(&left)?;
                left = rows.iter().filter(|r| !outcome.print(r)).map(|r| r.id).collect();
                if !left.is_empty() && current_holder(&node.config.state_file).is_none() {
                    eprintln!("georeg: {holder} stopped before applying them; this command takes over");
                    let _lock = Lock::acquire(&node.config.state_file, Locker::Deletions)?;
                    super::owner::recover(node)?;
                    let rest = apply_here(node, &node.queue.deletions_by_id(&left)?)?;
                    outcome.failed += rest.failed;
                    outcome.interrupted |= rest.interrupted;
                    break;
                }
                node.shutdown.sleep(POLL);
            }
            (marked, outcome)
        }
    };
    if outcome.interrupted {
        return Ok(ExitCode::from(INTERRUPTED));
    }
    let code = report_missing(which, &marked, "applied");
    Ok(if outcome.failed + excluded > 0 { ExitCode::from(1) } else { code })
}

/// Held deletions in repositories that selective sync now excludes are
/// not applied: georeg no longer touches those repositories, so no sync
/// would ever take them up, and the command would wait for ever. Each is
/// answered at once with the reason; the rest go on. Returns the
/// selection left and how many were left out.
fn leave_out_excluded(node: &Node, which: &Selector) -> Result<(Selector, usize)> {
    let selection = node.config.replication.selection();
    let selected = match which {
        Selector::All => node.reader.read(|s| s.open_deletions())?,
        Selector::Ids(ids) => node.queue.deletions_by_id(ids)?,
    };
    let held = |r: &&Deletion| r.state == DeletionState::Held;
    let excluded: Vec<&Deletion> =
        selected.iter().filter(held).filter(|r| !selection.includes(&r.repository)).collect();
    for r in &excluded {
        println!(
            "{} {} {}: FAILED: {} is excluded by selective sync ({}), so georeg no longer applies anything \
             there; include it again to apply this, or keep it with `georeg deletions --cancel {}`",
            r.id,
            r.repository,
            r.what(),
            r.repository,
            selection.describe(),
            r.id
        );
    }
    if excluded.is_empty() {
        return Ok((which.clone(), 0));
    }
    let left_out: BTreeSet<i64> = excluded.iter().map(|r| r.id).collect();
    let rest = match which {
        Selector::All => selected.iter().filter(held).map(|r| r.id).filter(|id| !left_out.contains(id)).collect(),
        Selector::Ids(ids) => ids.iter().copied().filter(|id| !left_out.contains(id)).collect(),
    };
    Ok((Selector::Ids(rest), excluded.len()))
}

/// How applying went.
#[derive(Default)]
struct Outcome {
    failed: usize,
    interrupted: bool,
}

impl Outcome {
    /// Prints a deletion's outcome once it has one; false while it has not.
    fn print(&mut self, r: &Deletion) -> bool {
        let line = match (r.state.as_str(), &r.last_error) {
            ("applied", _) if r.kind == DeletionKind::Overwrite => {
                "applied: the digest the tag left is no longer kept on the secondary".to_string()
            }
            ("applied", _) => "removed from the secondary".to_string(),
            ("dropped", _) => "not removed: the primary has it again".to_string(),
            ("cancelled", _) => "cancelled meanwhile: kept on the secondary".to_string(),
            ("held", Some(e)) => {
                self.failed += 1;
                format!("FAILED: {e}")
            }
            _ => return false,
        };
        println!("{} {} {}: {line}", r.id, r.repository, r.what());
        true
    }
}

/// Applies the marked deletions, repository by repository (this process
/// holds the lock), and prints each one's outcome.
fn apply_here(node: &Node, marked: &[Deletion]) -> Result<Outcome> {
    let replicator = node.replicator()?;
    let repositories: BTreeSet<&str> = marked.iter().map(|r| r.repository.as_str()).collect();
    let mut outcome = Outcome::default();
    for repo in repositories {
        if node.shutdown.requested() {
            outcome.interrupted = true;
            break;
        }
        match replicator.apply_deletions(repo) {
            Ok(_) => {}
            Err(Error::Interrupted) => outcome.interrupted = true,
            Err(e) => log::debug!("{repo}: {e}"), // each deletion's line says why
        }
    }
    let ids: Vec<i64> = marked.iter().map(|r| r.id).collect();
    for r in node.queue.deletions_by_id(&ids)? {
        if !outcome.print(&r) && !outcome.interrupted {
            println!("{} {} {}: still {}", r.id, r.repository, r.what(), r.state);
            outcome.failed += 1;
        }
    }
    Ok(outcome)
}
