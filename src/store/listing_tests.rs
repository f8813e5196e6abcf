//! The list's pages walked end to end, both ways, with and without
//! filters, and while rows come and go between two pages.

use super::*;
use crate::store::Store;

const LIMIT: usize = 7;

fn filter(state: &str, name: &str) -> RepositoryFilter {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RepositoryFilter { state: some(state), name: some(name) }
}

/// 300 repositories (`team{k}/app{i:03}`), some failing to sync, some to
/// verify, some both, a few excluded, in an order that is not the names'.
fn store() -> Store {
    let store = Store::open_in_memory().unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("team{}/app{:03}", i % 3, (i * 7) % 300)).collect();
    store.add_repositories(&names).unwrap();
    store
        .conn()
        .execute_batch(
            "UPDATE repositories SET sync_state = 'synced', verification_state = 'succeeded' WHERE id % 2 = 0;
             UPDATE repositories SET sync_state = 'failed' WHERE id % 11 = 0;
             UPDATE repositories SET verification_state = 'failed' WHERE id % 13 = 0;
             UPDATE repositories SET sync_state = 'started', verification_state = 'started' WHERE id % 17 = 0;
             UPDATE repositories SET excluded = 1, verification_state = 'disabled' WHERE id % 29 = 0;",
        )
        .unwrap();
    store
}

/// Every repository the filter lets through, in the list's order, counted
/// the slow way.
fn expected(store: &Store, f: &RepositoryFilter) -> Vec<String> {
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT name FROM repositories WHERE excluded = 0
               AND (?1 = '' OR sync_state = ?1 OR ('verification_' || verification_state) = ?1)
               AND name LIKE ?2
             ORDER BY sync_state <> 'failed', verification_state <> 'failed', name",
        )
        .unwrap();
    let state = f.state.clone().unwrap_or_default();
    let pattern = format!("%{}%", f.name.clone().unwrap_or_default());
    let rows = stmt.query_map(rusqlite::params![state, pattern], |r| r.get(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn page(store: &Store, f: &RepositoryFilter, at: &Position) -> Page {
    store.read(|s| s.repository_page(f, at, LIMIT)).unwrap()
}

fn names(p: &Page) -> Vec<String> {
    p.rows.iter().map(|r| r.name.clone()).collect()
}

/// Next from the first page to the end, then Previous from the last page
/// to the start: every repository once, in order, both ways.
fn walk_both_ways(store: &Store, f: &RepositoryFilter) {
    let want = expected(store, f);
    let mut seen = Vec::new();
    let mut p = page(store, f, &Position::First);
    assert!(p.is_first && !p.more_before);
    loop {
        assert!(p.rows.len() <= LIMIT);
        seen.extend(names(&p));
        if !p.more_after {
            break;
        }
        p = page(store, f, &Position::After(p.last_key().unwrap()));
        assert!(p.more_before);
    }
    assert_eq!(seen, want, "forward, {f:?}");
    let mut back = Vec::new();
    let mut p = page(store, f, &Position::Last);
    assert!(!p.more_after);
    assert_eq!(names(&p), want[want.len().saturating_sub(LIMIT)..], "the last page, {f:?}");
    loop {
        let mut these = names(&p);
        if !p.more_before {
            // The start was reached: the first page, full, may overlap the
            // page after it.
            assert!(p.is_first);
            these.retain(|n| !back.contains(n));
        }
        these.reverse();
        back.extend(these);
        if !p.more_before {
            break;
        }
        p = page(store, f, &Position::Before(p.first_key().unwrap()));
    }
    back.reverse();
    assert_eq!(back, want, "backward, {f:?}");
}

#[test]
fn every_page_forward_and_backward_lists_each_repository_once_in_order() {
    let store = store();
    for (state, name) in [
        ("", ""),
        ("failed", ""),
        ("synced", ""),
        ("pending", ""),
        ("started", ""),
        ("verification_failed", ""),
        ("verification_succeeded", ""),
        ("", "team1"),
        ("", "app1"),
        ("", "p0"),
        ("", "1/app2"),
        ("synced", "app0"),
        ("failed", "team2"),
        ("", "no such name"),
        ("no such state", ""),
    ] {
        let f = filter(state, name);
        assert!(!expected(&store, &f).is_empty() || name == "no such name" || state == "no such state");
        walk_both_ways(&store, &f);
    }
}

#[test]
fn failing_ones_come_first_and_totals_come_from_the_kept_counts() {
    let store = store();
    let all = expected(&store, &filter("", ""));
    let first = page(&store, &filter("", ""), &Position::First);
    assert_eq!(names(&first), all[..LIMIT]);
    assert_eq!(first.rows[0].sync_state.as_str(), "failed");
    let total = |state: &str, name: &str| store.read(|s| s.repository_total(&filter(state, name))).unwrap();
    for (state, name) in [("", ""), ("failed", ""), ("verification_pending", ""), ("synced", "app1"), ("", "p")] {
        let n = expected(&store, &filter(state, name)).len() as i64;
        assert_eq!(total(state, name), Total::Exactly(n), "{state:?} {name:?}");
    }
    // A name filter is counted only so far.
    let many: Vec<String> = (0..NAME_MATCHES + 5).map(|i| format!("many/r{i:05}")).collect();
    store.add_repositories(&many).unwrap();
    assert_eq!(total("", "many/"), Total::MoreThan(NAME_MATCHES as i64));
    assert_eq!(total("", "y/"), Total::MoreThan(NAME_MATCHES as i64));
    walk_both_ways(&store, &filter("pending", "many/r00"));
    walk_both_ways(&store, &filter("", "many/"));
}

#[test]
fn a_walk_goes_on_when_repositories_are_added_renamed_or_removed_between_pages() {
    let store = store();
    let f = filter("", "");
    let before = expected(&store, &f);
    let mut seen: Vec<String> = Vec::new();
    let mut p = page(&store, &f, &Position::First);
    let mut step = 0;
    loop {
        seen.extend(names(&p));
        if !p.more_after {
            break;
        }
        let last = p.last_key().unwrap();
        // Between two reads: a repository behind the walk and one ahead
        // of it, renamed, added, removed, failing.
        let conn = store.conn();
        match step % 4 {
            0 => conn.execute("UPDATE repositories SET name = 'zz/renamed' || id WHERE name = ?1", [&last.name]),
            1 => conn.execute("INSERT INTO repositories (name) VALUES (?1 || '-new')", [&last.name]),
            2 => conn.execute("DELETE FROM repositories WHERE name = ?1", [&last.name]),
            _ => conn.execute("UPDATE repositories SET sync_state = 'failed' WHERE name = ?1", [&last.name]),
        }
        .unwrap();
        drop(conn);
        step += 1;
        p = page(&store, &f, &Position::After(last));
    }
    // Each repository there before and after the walk appears once, in
    // order; those added ahead of the walk appear too.
    let after = expected(&store, &f);
    let kept: Vec<&String> = before.iter().filter(|n| after.contains(n)).collect();
    let shown: Vec<&String> = seen.iter().filter(|n| kept.contains(n)).collect();
    assert_eq!(shown, kept);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a repository shown twice");
    assert!(seen.iter().any(|n| n.ends_with("-new")), "an added repository ahead of the walk");
    assert!(seen.iter().any(|n| n.starts_with("zz/renamed")), "a renamed repository ahead of the walk");
}

#[test]
fn old_and_odd_positions_answer_a_page() {
    let store = store();
    let f = filter("", "");
    let all = expected(&store, &f);
    // After the last repository: the last page.
    let past = Key { group: GROUPS - 1, name: "zzzz".into() };
    assert_eq!(names(&page(&store, &f, &Position::After(past))), all[all.len() - LIMIT..]);
    // Before the first: the first page.
    let before = Key { group: 0, name: String::new() };
    assert_eq!(names(&page(&store, &f, &Position::Before(before))), all[..LIMIT]);
    // The key of a repository that no longer exists still places the page.
    let gone = Key { group: GROUPS - 1, name: "team1/app150x".into() };
    let p = page(&store, &f, &Position::After(gone.clone()));
    assert!(p.rows.iter().all(|r| Key::of(r) > gone));
}

/// Each read of a page walks the listing index or the names' trigrams,
/// never the whole table.
#[test]
fn pages_read_indexes_not_the_table() {
    let store = store();
    let conn = store.conn();
    for sql in [
        "SELECT id, name FROM repositories
         WHERE excluded = 0 AND sync_state = 'synced' AND verification_state = 'pending' AND name > 'a' AND name LIKE '%b%'
         ORDER BY name DESC LIMIT 8",
        "SELECT r.id FROM repository_names f CROSS JOIN repositories r ON r.id = f.rowid
         WHERE f.name LIKE '%app1%' AND r.name LIKE '%app1%' AND r.excluded = 0",
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!plan.iter().any(|s| s.starts_with("SCAN repositories") || s.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}
