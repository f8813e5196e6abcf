//! The repository list's pages, found by key rather than by offset: a page
//! starts after (or ends before) the key of a row, and is read from the
//! listing index from there (schema versions 10 and 16), so the first, a
//! middle and the last page each cost the same at 100,000 repositories as
//! at 100. An offset made SQLite walk every row before the page (77 ms for
//! the first, 131 ms for the last at 100,000).
//!
//! The order: repositories whose sync and verification failed, those whose
//! sync failed, those whose verification failed, then the others, each
//! group by name. The key of a
//! row is its group and its name; a link carries both, so a repository
//! that changes state between two pages does not move the walk.

use rusqlite::params;

use super::handles::Snapshot;
use super::read_side::{repository_row, RepositoryRow, ROW_COLUMNS};
use crate::error::Result;

/// Filter of the repository list: by state (a sync or verification state)
/// and by a part of the name.
#[derive(Debug, Clone, Default)]
pub struct RepositoryFilter {
    pub state: Option<String>,
    pub name: Option<String>,
}

/// Where a row stands in the list's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// 0: sync and verification failed; 1: sync failed; 2: verification
    /// failed; 3: the others ([`GROUPS`]).
    pub group: u8,
    pub name: String,
}

/// Which page of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    First,
    /// The rows after this key.
    After(Key),
    /// The rows before this key.
    Before(Key),
    Last,
}

/// One page, and whether rows come before and after it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub rows: Vec<RepositoryRow>,
    pub more_before: bool,
    pub more_after: bool,
    /// This is the list's first page (its rows are the first ones).
    pub is_first: bool,
}

/// How many repositories match a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Exactly(i64),
    /// More than this many (a name filter is counted only so far).
    MoreThan(i64),
}

/// The groups of the list's order, failing ones first.
pub const GROUPS: u8 = 4;

/// How far a name filter's matches are counted, and below which they are
/// sorted in memory rather than read in the index's order.
pub const NAME_MATCHES: usize = 1000;

const SYNC_STATES: [&str; 4] = ["failed", "pending", "started", "synced"];
const VERIFICATION_STATES: [&str; 5] = ["failed", "pending", "started", "succeeded", "disabled"];

/// The group of a row in (sync state, verification state).
fn group(sync: &str, verification: &str) -> u8 {
    2 * u8::from(sync != "failed") + u8::from(verification != "failed")
}

impl Key {
    pub fn of(row: &RepositoryRow) -> Key {
        Key { group: group(row.sync_state.as_str(), row.verification_state.as_str()), name: row.name.clone() }
    }
}

impl Page {
    pub fn first_key(&self) -> Option<Key> {
        self.rows.first().map(Key::of)
    }

    pub fn last_key(&self) -> Option<Key> {
        self.rows.last().map(Key::of)
    }
}

impl RepositoryFilter {
    /// The (sync state, verification state) pairs the state filter lets
    /// through, each a range of the listing index.
    fn pairs(&self) -> Vec<(&'static str, &'static str)> {
        let state = self.state.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for s in SYNC_STATES {
            for v in VERIFICATION_STATES {
                let kept = state.is_empty() || state == s || state.strip_prefix("verification_") == Some(v);
                if kept {
                    out.push((s, v));
                }
            }
        }
        out
    }

    /// The name filter as a LIKE pattern (its own wildcards dropped), if any.
    fn pattern(&self) -> Option<String> {
        let name = self.name.as_deref().unwrap_or("").replace(['%', '_'], "");
        (!name.is_empty()).then(|| format!("%{name}%"))
    }

    /// Whether the names' trigram index can find the matches: a part of
    /// the name of three characters or more.
    fn by_trigrams(&self) -> bool {
        self.pattern().is_some_and(|p| p.chars().count() >= 5)
    }
}

/// A row's key and id, as the index gives them.
type Found = (Key, i64);

impl Snapshot<'_> {
    /// One page of the repository list (see the module docs), `limit` rows
    /// at most. A page after the last row is the last page; a page before
    /// the first rows is the first page, full.
    pub fn repository_page(&self, filter: &RepositoryFilter, at: &Position, limit: usize) -> Result<Page> {
        let limit = limit.max(1);
        let found = match self.name_matches(filter)? {
            Some(all) => in_memory(all, at, limit + 1),
            None => match at {
                Position::First => self.walk(filter, None, true, limit + 1)?,
                Position::After(key) => self.walk(filter, Some(key), true, limit + 1)?,
                Position::Before(key) => self.walk(filter, Some(key), false, limit + 1)?,
                Position::Last => self.walk(filter, None, false, limit + 1)?,
            },
        };
        let more = found.len() > limit;
        let mut found = found;
        let mut page = Page::default();
        match at {
            Position::First => {
                found.truncate(limit);
                (page.more_after, page.is_first) = (more, true);
            }
            Position::After(_) if found.is_empty() => return self.repository_page(filter, &Position::Last, limit),
            Position::After(_) => {
                found.truncate(limit);
                (page.more_before, page.more_after) = (true, more);
            }
            Position::Before(_) if found.len() < limit => return self.repository_page(filter, &Position::First, limit),
            Position::Before(_) | Position::Last => {
                found.truncate(limit);
                found.reverse();
                page.more_before = more;
                page.more_after = matches!(at, Position::Before(_));
                page.is_first = !more;
            }
        }
        page.rows = self.rows(&found)?;
        Ok(page)
    }

    /// How many repositories match: from the kept counts (schema version
    /// 15) without a name filter, else counted up to [`NAME_MATCHES`].
    pub fn repository_total(&self, filter: &RepositoryFilter) -> Result<Total> {
        let conn = self.conn();
        let state = filter.state.clone().unwrap_or_default();
        if filter.pattern().is_none() {
            let n = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(n), 0) FROM repository_counts WHERE is_excluded = 0
                     AND (?1 = '' OR sync_state = ?1 OR ('verification_' || verification_state) = ?1)",
                )?
                .query_row([state], |r| r.get(0))?;
            return Ok(Total::Exactly(n));
        }
        let n = match self.name_matches(filter)? {
            Some(all) => all.len(),
            None => {
                let sql = format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM repositories WHERE excluded = 0
                       AND (?1 = '' OR sync_state = ?1 OR ('verification_' || verification_state) = ?1)
                       AND name LIKE ?2 LIMIT {})",
                    NAME_MATCHES + 1
                );
                let n: i64 = conn.prepare_cached(&sql)?.query_row(params![state, filter.pattern()], |r| r.get(0))?;
                n as usize
            }
        };
        Ok(if n > NAME_MATCHES { Total::MoreThan(NAME_MATCHES as i64) } else { Total::Exactly(n as i64) })
    }

    /// Every match of a name filter, when the trigram index finds them and
    /// they are at most [`NAME_MATCHES`]; `None` otherwise (no name
    /// filter, a part too short for trigrams, or so many matches that the
    /// index's order finds a page of them sooner).
    fn name_matches(&self, filter: &RepositoryFilter) -> Result<Option<Vec<Found>>> {
        if !filter.by_trigrams() {
            return Ok(None);
        }
        // From the names' index outwards (CROSS JOIN keeps that order).
        let sql = format!(
            "SELECT r.id, r.name, r.sync_state, r.verification_state
             FROM repository_names f CROSS JOIN repositories r ON r.id = f.rowid
             WHERE f.name LIKE ?1 AND r.name LIKE ?1 AND r.excluded = 0
               AND (?2 = '' OR r.sync_state = ?2 OR ('verification_' || r.verification_state) = ?2)
             LIMIT {}",
            NAME_MATCHES + 1
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let state = filter.state.clone().unwrap_or_default();
        let rows = stmt.query_map(params![filter.pattern(), state], |r| {
            let (id, name, sync, verification): (i64, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok((Key { group: group(&sync, &verification), name }, id))
        })?;
        let all: Vec<Found> = rows.collect::<rusqlite::Result<_>>()?;
        Ok((all.len() <= NAME_MATCHES).then_some(all))
    }

    /// Up to `want` rows from `from` (excluded) onwards, or backwards,
    /// nearest first: per group in order, the first `want` of each (sync
    /// state, verification state) range of the listing index, merged by
    /// name. A group that fills the page ends the walk.
    fn walk(&self, filter: &RepositoryFilter, from: Option<&Key>, forward: bool, want: usize) -> Result<Vec<Found>> {
        let pattern = filter.pattern();
        let sql = format!(
            "SELECT id, name FROM repositories
             WHERE excluded = 0 AND sync_state = ?1 AND verification_state = ?2 AND name {op} ?3 {like}
             ORDER BY name {dir} LIMIT ?4",
            op = if forward { ">" } else { "<" },
            dir = if forward { "ASC" } else { "DESC" },
            like = if pattern.is_some() { "AND name LIKE ?5" } else { "" },
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let pairs = filter.pairs();
        let groups: Vec<u8> = if forward { (0..GROUPS).collect() } else { (0..GROUPS).rev().collect() };
        let mut out: Vec<Found> = Vec::new();
        for g in groups {
            // Groups on the far side of the key are skipped; the key's own
            // group starts after (before) its name; the others from their
            // start (end): every name is above "" and below U+10FFFF.
            let bound = match from {
                Some(k) if forward && g < k.group => continue,
                Some(k) if !forward && g > k.group => continue,
                Some(k) if g == k.group => k.name.as_str(),
                _ if forward => "",
                _ => "\u{10FFFF}",
            };
            let mut in_group: Vec<Found> = Vec::new();
            for (s, v) in pairs.iter().filter(|(s, v)| group(s, v) == g) {
                let rows = match &pattern {
                    Some(p) => stmt.query_map(params![s, v, bound, want as i64, p], found_row(g))?,
                    None => stmt.query_map(params![s, v, bound, want as i64], found_row(g))?,
                };
                for row in rows {
                    in_group.push(row?);
                }
            }
            in_group.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            if !forward {
                in_group.reverse();
            }
            out.extend(in_group);
            if out.len() >= want {
                break;
            }
        }
        out.truncate(want);
        Ok(out)
    }

    /// The rows of the page's ids, in the page's order.
    fn rows(&self, found: &[Found]) -> Result<Vec<RepositoryRow>> {
        let mut stmt = self.conn().prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM repositories WHERE id = ?1"))?;
        let mut out = Vec::with_capacity(found.len());
        for (_, id) in found {
            out.push(stmt.query_row([id], repository_row)?);
        }
        Ok(out)
    }
}

fn found_row(g: u8) -> impl Fn(&rusqlite::Row) -> rusqlite::Result<Found> {
    move |r| Ok((Key { group: g, name: r.get(1)? }, r.get(0)?))
}

/// The page's rows among every match (a name filter's few), as the walk
/// reads them: `want` at most, nearest the position first.
fn in_memory(mut all: Vec<Found>, at: &Position, want: usize) -> Vec<Found> {
    all.sort();
    match at {
        Position::First => all.into_iter().take(want).collect(),
        Position::After(key) => all.into_iter().filter(|f| &f.0 > key).take(want).collect(),
        Position::Before(key) => all.into_iter().rev().filter(|f| &f.0 < key).take(want).collect(),
        Position::Last => all.into_iter().rev().take(want).collect(),
    }
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
