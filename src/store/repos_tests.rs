//! Tests of repositories and the sync queue.
#![cfg(test)]

use crate::store::states::SyncState;
use crate::store::NewEvent;
use crate::store::Store;

fn push(repo: &str, id: &str, tag: &str) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        repository: repo.into(),
        action: crate::store::Action::Push,
        tag: Some(tag.into()),
        digest: None,
        media_type: None,
    }
}

#[test]
fn failure_backs_off_and_success_resets() {
    let store = Store::open_in_memory().unwrap();
    let job = store.claim_for_full_sync("g/app").unwrap();
    assert!(job.full);
    assert_eq!(store.repository("g/app").unwrap().unwrap().sync_state, SyncState::Started);
    store.fail_job(&job, "boom").unwrap();
    assert!(store.claim_next().unwrap().is_none(), "not before retry_at");
    let job = store.claim_for_full_sync("g/app").unwrap();
    store.fail_job(&job, "boom again").unwrap();
    let r = store.repository("g/app").unwrap().unwrap();
    assert_eq!((r.sync_state, r.retry_count), (SyncState::Failed, 2));
    assert_eq!(r.last_sync_failure.as_deref(), Some("boom again"));
    assert!(r.retry_at.is_some() && r.full_sync_requested);
    let job = store.claim_for_full_sync("g/app").unwrap();
    store.finish_job(&job, "").unwrap();
    let r = store.repository("g/app").unwrap().unwrap();
    assert_eq!((r.sync_state, r.retry_count, r.retry_at), (SyncState::Synced, 0, None));
    assert!(r.last_synced_at.is_some() && !r.full_sync_requested);
}

#[test]
fn one_worker_per_repository_and_events_mid_sync_are_not_lost() {
    let store = Store::open_in_memory().unwrap();
    store.log().record_events(&[push("a", "e1", "v1")], true).unwrap();
    let job = store.claim_next().unwrap().unwrap();
    assert_eq!((job.name.as_str(), job.full, job.after, job.through), ("a", true, 0, 1));
    assert!(store.claim_next().unwrap().is_none(), "a is taken");
    assert!(store.claim_for_full_sync("a").is_err());
    // An event arrives while a is syncing.
    store.log().record_events(&[push("a", "e2", "v2")], true).unwrap();
    assert!(store.claim_next().unwrap().is_none(), "still taken");
    store.finish_job(&job, "").unwrap();
    let again = store.claim_next().unwrap().unwrap();
    assert_eq!((again.name.as_str(), again.full, again.after, again.through), ("a", false, 1, 2));
    let events = store.events_for(&again).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tag.as_deref(), Some("v2"));
    store.finish_job(&again, "").unwrap();
    assert_eq!(store.repository("a").unwrap().unwrap().sync_state, SyncState::Synced);
}

#[test]
fn resync_during_a_sync_runs_afterwards_and_release_keeps_work() {
    let store = Store::open_in_memory().unwrap();
    let job = store.claim_for_full_sync("a").unwrap();
    store.request_full_sync("a").unwrap();
    store.finish_job(&job, "").unwrap();
    let r = store.repository("a").unwrap().unwrap();
    assert_eq!((r.sync_state, r.full_sync_requested), (SyncState::Pending, true));
    let job = store.claim_next().unwrap().unwrap();
    store.release_job(&job).unwrap();
    let r = store.repository("a").unwrap().unwrap();
    assert_eq!((r.sync_state, r.full_sync_requested), (SyncState::Pending, true));
}

#[test]
fn a_crash_during_a_full_sync_keeps_the_request() {
    let store = Store::open_in_memory().unwrap();
    store.add_repositories(&["a".into()]).unwrap();
    let job = store.claim_next().unwrap().unwrap();
    assert!(job.full);
    // kill -9 here: the next start recovers a full sync, not an empty event job.
    store.recover_started().unwrap();
    let again = store.claim_next().unwrap().unwrap();
    assert!(again.full, "the full sync request survived the crash");
}

#[test]
fn crash_recovery_and_claim_order() {
    let store = Store::open_in_memory().unwrap();
    for name in ["old", "new"] {
        let job = store.claim_for_full_sync(name).unwrap();
        if name == "old" {
            store.finish_job(&job, "").unwrap();
        }
    }
    assert_eq!(store.recover_started().unwrap(), 1);
    store.ensure_repository("never").unwrap();
    store.log().record_events(&[push("old", "e1", "v9")], true).unwrap();
    // Event work on a synced repository goes first, then never-synced ones.
    assert_eq!(store.claim_next().unwrap().unwrap().name, "old");
    let next = store.claim_next().unwrap().unwrap().name;
    assert!(next == "new" || next == "never", "{next}");
}

#[test]
fn every_name_is_read_back_across_the_pages_of_the_read() {
    let store = Store::open_in_memory().unwrap();
    let names: Vec<String> = (0..4_500).rev().map(|i| format!("team/app-{i:05}")).collect();
    assert_eq!(store.add_repositories(&names).unwrap(), 4_500);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(store.repository_names().unwrap(), sorted, "all of them, in order, each once");
}
