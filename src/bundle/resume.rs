//! Resuming an interrupted export. Beside `FILE.partial` an export keeps
//! `FILE.resume`, a journal of JSON lines: first what the export was
//! asked (its arguments, the repositories and the time it began, from
//! which the bundle's id follows), then one line per repository walked,
//! with the tags and digests and the referrers the primary had. Lines are
//! appended as repositories are walked and never rewritten, so a
//! `kill -9` at any moment leaves at worst a torn last line, which is
//! ignored.
//!
//! Run again with the same arguments, an export reads the journal
//! ([`plan`]) and does the same work again with the same time and id:
//! each repository it walks is compared with the journal's line, and the
//! tar's entries already whole in `FILE.partial` are kept rather than
//! read from the primary (`tarfile::Writer::resume`). Other arguments, a
//! catalog that changed, or a repository whose tags or referrers changed
//! since, and it starts over, saying why: a bundle says what the primary
//! held when its export began, not a mix of two moments.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::contents::{now_text, utc_text};
use crate::error::{Error, Result};
use crate::registry::Digest;

/// The journal's format, in its first line.
const JOURNAL: &str = "georeg-export-resume/1";

/// A journal larger than this is not one an export wrote: ignored.
const MAX_JOURNAL_BYTES: u64 = 1 << 30;

/// What an export was asked: a rerun with anything else starts over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arguments {
    /// `replication.primary_api_url`.
    pub primary: String,
    /// Repositories named on the command line; empty: the catalog.
    pub named: Vec<String>,
    /// `replication.include` and `exclude`, as the dashboard says them.
    pub selection: String,
    /// The inventory's id and the SHA-256 of its file.
    pub inventory: Option<String>,
    pub georeg_version: String,
}

/// The journal's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    journal: String,
    arguments: Arguments,
    created_at: String,
    repositories: Vec<String>,
    gone: Vec<String>,
}

/// One repository as an export walked it, in the primary's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walked {
    pub repository: String,
    /// (tag, digest).
    pub tags: Vec<(String, String)>,
    /// (subject, referrer).
    pub referrers: Vec<(String, String)>,
}

/// How an export begins: its time and id, and whether it goes on with
/// what an earlier run left.
pub struct Start {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as the description records it.
    pub created_at: String,
    /// The same time in seconds: every tar entry's mtime, the signature's date.
    pub mtime: u64,
    /// Derived from the time and arguments; the bundle's id is derived
    /// from it and what the export finds.
    pub id: String,
    /// The repositories an earlier run walked, when this one resumes it.
    pub resumed: Option<Vec<Walked>>,
    head: Head,
    /// The journal's whole lines, in bytes: a torn last one is cut off.
    journal_len: u64,
}

/// `FILE.resume`.
pub fn journal_path(output: &Path) -> PathBuf {
    let mut path = output.as_os_str().to_owned();
    path.push(".resume");
    PathBuf::from(path)
}

/// `SOURCE_DATE_EPOCH` (seconds since the epoch), as reproducible builds
/// set it: the export's time instead of now, so that two exports of the
/// same primary with the same arguments are the same bytes.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH is {text:?}, not a number of seconds since 1970: unset it or fix it"
            ))
        }),
    }
}

/// How the export of `arguments` to `output` begins, and what to tell
/// the operator about `FILE.partial` (resumed, or why it starts over).
/// `epoch`: [`source_date_epoch`].
pub fn plan(
    output: &Path,
    arguments: &Arguments,
    repositories: &[String],
    gone: &[String],
    epoch: Option<u64>,
) -> (Start, Option<String>) {
    let created_at = match epoch {
        Some(secs) => utc_text(secs.saturating_mul(1000)),
        None => now_text(),
    };
    let head = Head {
        journal: JOURNAL.into(),
        arguments: arguments.clone(),
        created_at,
        repositories: repositories.to_vec(),
        gone: gone.to_vec(),
    };
    let partial = super::tarfile::partial_path(output);
    if !partial.exists() {
        return (Start::new(head, None), None);
    }
    let shown = partial.display();
    let over = |why: String| format!("{shown} is left from an export {why}: starting over");
    let (old, walked, journal_len) = match read(&journal_path(output)) {
        Some(found) => found,
        None => return (Start::new(head, None), Some(over("that left no journal".into()))),
    };
    let why = if old.arguments != head.arguments {
        Some(format!("with other arguments ({})", differences(&old.arguments, &head.arguments)))
    } else if epoch.is_some() && old.created_at != head.created_at {
        Some(format!("dated {} (SOURCE_DATE_EPOCH now says {})", old.created_at, head.created_at))
    } else if old.repositories != head.repositories || old.gone != head.gone {
        Some("of another list of repositories: the primary's catalog changed since".into())
    } else {
        None
    };
    if let Some(why) = why {
        return (Start::new(head, None), Some(over(why)));
    }
    let message = format!(
        "{shown}: going on with the export begun at {} ({} of {} repositories walked then); what it holds whole \
         is kept",
        old.created_at,
        walked.len(),
        old.repositories.len()
    );
    let mut start = Start::new(old, Some(walked));
    start.journal_len = journal_len;
    (start, Some(message))
}

impl Start {
    fn new(head: Head, resumed: Option<Vec<Walked>>) -> Start {
        let millis = parse_millis(&head.created_at);
        let text = format!("{}\n{}", head.created_at, serde_json::to_string(&head.arguments).unwrap_or_default());
        let digest = Digest::sha256_of(text.as_bytes());
        let id = digest.as_str().trim_start_matches("sha256:").chars().take(32).collect();
        Start { created_at: head.created_at.clone(), mtime: millis / 1000, id, resumed, head, journal_len: 0 }
    }

    /// The same export, begun afresh now (the primary changed under a
    /// resumed one).
    pub fn again(&self, epoch: Option<u64>) -> Start {
        let mut head = self.head.clone();
        head.created_at = match epoch {
            Some(secs) => utc_text(secs.saturating_mul(1000)),
            None => now_text(),
        };
        Start::new(head, None)
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn parse_millis(text: &str) -> u64 {
    let n = |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm), the inverse of utc_text.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    (secs.max(0) as u64) * 1000 + n(20..23).max(0) as u64
}

/// Which arguments differ, for the message.
fn differences(old: &Arguments, new: &Arguments) -> String {
    let mut what = Vec::new();
    if old.primary != new.primary {
        what.push(format!("the primary was {}", old.primary));
    }
    if old.named != new.named {
        what.push(match old.named.is_empty() {
            true => "it exported the whole catalog".to_string(),
            false => format!("it named {}", old.named.join(" ")),
        });
    }
    if old.selection != new.selection {
        what.push(format!("its selective sync was {}", old.selection));
    }
    if old.inventory != new.inventory {
        what.push(match &old.inventory {
            Some(i) => format!("its inventory was {i}"),
            None => "it had no inventory".into(),
        });
    }
    if old.georeg_version != new.georeg_version {
        what.push(format!("georeg {} wrote it", old.georeg_version));
    }
    what.join("; ")
}

/// The journal's head and repositories, and the length of the lines
/// read, or `None` when there is no journal an export of this georeg wrote.
fn read(path: &Path) -> Option<(Head, Vec<Walked>, u64)> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_JOURNAL_BYTES {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_JOURNAL_BYTES).read_to_string(&mut text).ok()?;
    // Only whole lines: the last one may have been cut by a kill -9.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut lines = whole.split_inclusive('\n');
    let first = lines.next()?;
    let head: Head = serde_json::from_str(first).ok().filter(|h: &Head| h.journal == JOURNAL)?;
    let (mut walked, mut len) = (Vec::new(), first.len() as u64);
    for line in lines {
        let Ok(w) = serde_json::from_str(line) else { break };
        walked.push(w);
        len += line.len() as u64;
    }
    Some((head, walked, len))
}

/// The journal being written.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// What the run resumed walked, compared line by line.
    earlier: Vec<Walked>,
    next: usize,
}

impl Journal {
    /// Opens `FILE.resume` for `start`: a new one holding its head, or the
    /// one a resumed export goes on with.
    pub fn open(output: &Path, start: &Start) -> Result<Journal> {
        let path = journal_path(output);
        let io = |e| Error::Io { path: path.clone(), source: e };
        let (file, earlier) = match &start.resumed {
            Some(walked) => {
                let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
                // Appending after a torn line would tear the next one too.
                file.set_len(start.journal_len).map_err(io)?;
                (file, walked.clone())
            }
            None => {
                let mut file = File::create(&path).map_err(io)?;
                let line = serde_json::to_string(&start.head).map_err(|e| io(std::io::Error::other(e)))?;
                file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
                (file, Vec::new())
            }
        };
        Ok(Journal { path, file, earlier, next: 0 })
    }

    /// Records a repository walked; when an earlier run walked it
    /// differently, says how (the export must start over).
    pub fn walked(&mut self, w: Walked) -> Result<Option<String>> {
        self.next += 1;
        if let Some(before) = self.earlier.get(self.next - 1) {
            return Ok(change(before, &w));
        }
        let line = serde_json::to_string(&w).map_err(|e| self.io(std::io::Error::other(e)))?;
        // Whole lines, unbuffered: a kill -9 cuts at most the last one.
        self.file.write_all(format!("{line}\n").as_bytes()).map_err(|e| self.io(e))?;
        Ok(None)
    }

    /// The bundle is complete: the journal goes.
    pub fn finish(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::Io { path: self.path.clone(), source: e })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io { path: self.path.clone(), source: e }
    }
}

/// How a repository changed on the primary between two walks.
fn change(before: &Walked, now: &Walked) -> Option<String> {
    let repo = &now.repository;
    if before.repository != now.repository {
        return Some(format!("the export walked {} where it walked {} before", repo, before.repository));
    }
    let first = |a: &[(String, String)], b: &[(String, String)]| {
        a.iter().zip(b).find(|(x, y)| x != y).map(|(x, y)| (x.clone(), y.clone()))
    };
    if before.tags != now.tags {
        return Some(match first(&before.tags, &now.tags) {
            Some(((t, d), (t2, d2))) if t == t2 => format!("{repo}:{t} was {d} and is now {d2} on the primary"),
            Some(((t, _), (t2, _))) => format!("{repo}: the primary lists the tag {t2} where it listed {t}"),
            None => format!("{repo}: the primary has {} tags, and had {}", now.tags.len(), before.tags.len()),
        });
    }
    if before.referrers != now.referrers {
        return Some(format!(
            "{repo}: the primary lists {} referrers, and listed {} (or others)",
            now.referrers.len(),
            before.referrers.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments() -> Arguments {
        Arguments {
            primary: "http://primary.example".into(),
            named: vec![],
            selection: "every repository".into(),
            inventory: None,
            georeg_version: "0".into(),
        }
    }

    fn walked(tag: &str, digest: char) -> Walked {
        Walked {
            repository: "g/app".into(),
            tags: vec![(tag.into(), format!("sha256:{}", digest.to_string().repeat(64)))],
            referrers: vec![],
        }
    }

    #[test]
    fn an_export_resumes_with_the_same_arguments_and_starts_over_otherwise() {
        let dir = std::env::temp_dir().join(format!("georeg-resume-{}", crate::registry::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("b.tar");
        let repos = vec!["g/app".to_string(), "g/lib".to_string()];
        let (start, said) = plan(&out, &arguments(), &repos, &[], Some(1_700_000_000));
        assert!(said.is_none() && start.resumed.is_none());
        assert_eq!((start.mtime, start.created_at.as_str()), (1_700_000_000, "2023-11-14T22:13:20.000Z"));
        assert_eq!(parse_millis("2026-11-30T00:53:19.123Z"), 1_795_999_999_123);
        let mut journal = Journal::open(&out, &start).unwrap();
        assert_eq!(journal.walked(walked("v1", 'a')).unwrap(), None);
        drop(journal);
        // A torn last line (a kill -9 while writing it) is ignored.
        let mut file = OpenOptions::new().append(true).open(journal_path(&out)).unwrap();
        file.write_all(b"{\"repository\":\"g/l").unwrap();
        std::fs::write(dir.join("b.tar.partial"), b"").unwrap();

        // The same arguments, without SOURCE_DATE_EPOCH: the same time and id.
        let (again, said) = plan(&out, &arguments(), &repos, &[], None);
        assert!(said.unwrap().contains("going on with the export begun at 2023-11-14T22:13:20.000Z (1 of 2"));
        assert_eq!((again.created_at.as_str(), again.id.as_str()), (start.created_at.as_str(), start.id.as_str()));
        let mut journal = Journal::open(&out, &again).unwrap();
        assert_eq!(journal.walked(walked("v1", 'a')).unwrap(), None, "walked the same");
        assert_eq!(journal.walked(walked("v2", 'b')).unwrap(), None, "a new line");
        let (_, walked_now, _) = read(&journal_path(&out)).unwrap();
        assert_eq!(walked_now.len(), 2);

        // A tag that moved since: said, naming it.
        let mut journal = Journal::open(&out, &plan(&out, &arguments(), &repos, &[], None).0).unwrap();
        let why = journal.walked(walked("v1", 'c')).unwrap().unwrap();
        assert!(why.contains("g/app:v1 was sha256:aaaa") && why.contains("is now sha256:cccc"), "{why}");

        // Other arguments, another catalog: starting over, saying why.
        let mut other = arguments();
        other.named = vec!["g/app".into()];
        let (fresh, said) = plan(&out, &other, &repos, &[], None);
        assert!(fresh.resumed.is_none());
        let said = said.unwrap();
        assert!(
            said.contains("with other arguments (it exported the whole catalog)") && said.contains("starting over")
        );
        let (_, said) = plan(&out, &arguments(), &repos[..1], &[], None);
        assert!(said.unwrap().contains("catalog changed"));
        let (_, said) = plan(&out, &arguments(), &repos, &[], Some(1_800_000_000));
        assert!(said.unwrap().contains("SOURCE_DATE_EPOCH"));
        std::fs::remove_file(journal_path(&out)).unwrap();
        let (_, said) = plan(&out, &arguments(), &repos, &[], None);
        assert!(said.unwrap().contains("left no journal"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
