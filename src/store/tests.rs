//! The statements that run on every work-bell ring, every idle worker's
//! few seconds or every page view must cost the same with 5,000
//! repositories as with 5: each is stepped on a state of 5,000 synced and
//! verified repositories (a few pending, failed or with unapplied events)
//! and must take a few hundred virtual-machine steps, where reading every
//! repository takes tens of thousands. A new index can change a plan for
//! the worse: this catches it.

use rusqlite::StatementStatus;

use super::handles::Store;
use super::read_side::{LAG, UNSUPPORTED};
use super::repos::NEXT_JOB;
use super::verification::NEXT_VERIFICATION;

const REPOSITORIES: usize = 5_000;

fn steps(store: &Store, sql: &str, params: &[&dyn rusqlite::ToSql]) -> i32 {
    let conn = store.conn();
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query(params).unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    stmt.get_status(StatementStatus::VmStep)
}

#[test]
fn hot_statements_do_not_read_every_repository() {
    let store = Store::open_in_memory().unwrap();
    store
        .conn()
        .execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {REPOSITORIES})
             INSERT INTO repositories (name, sync_state, full_sync_requested, last_synced_at, verification_state,
                                       verified_at)
             SELECT printf('ns%03d/repo%06d', i / 100, i), 'synced', 0,
                    strftime('%Y-%m-%dT%H:%M:%SZ', 'now', printf('-%d seconds', i * 60)), 'succeeded',
                    strftime('%Y-%m-%dT%H:%M:%SZ', 'now', printf('-%d seconds', i * 60)) FROM n;
             UPDATE repositories SET sync_state = 'failed', retry_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+1 day')
               WHERE id % 1000 = 0;
             UPDATE repositories SET sync_state = 'pending' WHERE id % 1000 = 1;
             INSERT INTO events (event_id, repository, action, tag) VALUES ('e1', 'ns000/repo000001', 'push', 'v1');"
        ))
        .unwrap();
    let week = "-604800 seconds";
    for (what, sql, params) in [
        ("the next job", NEXT_JOB, vec![&true as &dyn rusqlite::ToSql]),
        ("the next verification", NEXT_VERIFICATION, vec![&week as &dyn rusqlite::ToSql]),
        ("the lag", LAG, vec![]),
        ("the unsupported tags", UNSUPPORTED, vec![]),
    ] {
        let n = steps(&store, sql, &params);
        assert!(n < 500, "{what}: {n} steps for {REPOSITORIES} repositories:\n{sql}");
    }
    // What they found is right, too.
    assert_eq!(store.claim_next().unwrap().unwrap().name, "ns000/repo000001");
    assert!(store.read(|s| s.lag_seconds()).unwrap() >= 0);
    // Everything queued at once, then everything asked for by an operator:
    // the claim still reads one entry, not the queue.
    for queued in [
        "UPDATE repositories SET sync_state = 'pending', full_sync_requested = 1 WHERE sync_state <> 'started'",
        "UPDATE repositories SET sync_priority = 1, retry_at = NULL WHERE sync_state <> 'started'",
    ] {
        store.conn().execute_batch(queued).unwrap();
        let n = steps(&store, NEXT_JOB, &[&true]);
        assert!(n < 500, "the next job of {REPOSITORIES} queued: {n} steps ({queued})");
    }
}
