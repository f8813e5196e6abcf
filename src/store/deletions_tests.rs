#![cfg(test)]

use super::*;
use crate::store::states::{Cause, DecidedBy, DeletionState};
use crate::store::Store;

const DAY: DeletionPolicy = DeletionPolicy { delay_hours: 24, burst_share: 0.5, burst_min_tags: 3 };

fn tag_deletion<'a>(tag: &'a str, digest: &'a Digest) -> NewDeletion<'a> {
    NewDeletion {
        kind: DeletionKind::Tag,
        tag: Some(tag),
        digest: Some(digest),
        cause: Cause::TagRemoved,
        tags: 1,
        bundle: None,
    }
}

#[test]
fn a_held_deletion_keeps_its_time_and_is_expected_until_the_primary_has_it_again() {
    let store = Store::open_in_memory().unwrap();
    let d = Digest::sha256_of(b"m");
    store.set_tag("app", "v1", &d).unwrap();
    store.set_tag("app", "latest", &d).unwrap();
    assert_eq!(store.open_deletion("app", Some("v1"), Some(&d)).unwrap(), Open::None);
    let applies_at = store.hold_deletion("app", &tag_deletion("v1", &d), &DAY).unwrap();
    assert!(
        applies_at.as_str()
            > store.conn().query_row(&format!("SELECT {NOW}"), [], |r| r.get::<_, String>(0)).unwrap().as_str()
    );
    assert_eq!(store.hold_deletion("app", &tag_deletion("v1", &d), &DAY).unwrap(), applies_at, "held once");
    assert_eq!(store.open_deletion("app", Some("v1"), Some(&d)).unwrap(), Open::Held { applies_at });
    let kept = store.kept_deletions("app").unwrap();
    assert!(kept.covers("v1", d.as_str()) && !kept.covers("latest", d.as_str()));
    assert!(!kept.covers("v1", Digest::sha256_of(b"other").as_str()), "a tag moved since is not expected");
    assert_eq!(store.claim_due_deletions("app").unwrap(), vec![], "not due for a day");
    let s = store.read(|s| s.deletion_summary()).unwrap();
    assert_eq!((s.held, s.held_tags, s.cancelled), (1, 1, 0));
    assert!(s.next_applies_at.is_some() && s.burst.is_none());
    // The primary has the tag again: nothing is to be removed.
    store.set_tag("app", "v1", &d).unwrap();
    assert_eq!(store.open_deletion("app", Some("v1"), Some(&d)).unwrap(), Open::None);
    assert!(store.kept_deletions("app").unwrap().is_empty());
}

#[test]
fn a_manifest_deletion_covers_the_tags_at_its_digest() {
    let store = Store::open_in_memory().unwrap();
    let d = Digest::sha256_of(b"m");
    let gone = NewDeletion {
        kind: DeletionKind::Manifest,
        tag: None,
        digest: Some(&d),
        cause: Cause::ManifestDeleted,
        tags: 2,
        bundle: None,
    };
    store.hold_deletion("app", &gone, &DAY).unwrap();
    assert!(matches!(store.open_deletion("app", Some("v1"), Some(&d)).unwrap(), Open::Held { .. }));
    assert!(store.kept_deletions("app").unwrap().covers("anything", d.as_str()));
    store.manifest_back("app", &d).unwrap();
    assert_eq!(store.open_deletion("app", None, Some(&d)).unwrap(), Open::None);
}

#[test]
fn due_deletions_are_claimed_once_and_a_crash_puts_them_back() {
    let store = Store::open_in_memory().unwrap();
    let d = Digest::sha256_of(b"m");
    let now = DeletionPolicy { delay_hours: 0, ..DAY };
    store.hold_deletion("app", &tag_deletion("v1", &d), &now).unwrap();
    store.hold_deletion("app", &tag_deletion("v2", &d), &now).unwrap();
    let due = store.claim_due_deletions("app").unwrap();
    assert_eq!(due.iter().map(|r| r.tag.clone().unwrap()).collect::<Vec<_>>(), ["v1", "v2"]);
    assert!(due.iter().all(|r| r.state == DeletionState::Applying));
    assert!(store.claim_due_deletions("app").unwrap().is_empty(), "claimed once");
    store.finish_deletion(due[0].id, true).unwrap();
    store.release_deletions(&[due[1].id], Some("registry down")).unwrap();
    let back = store.deletions_by_id(&[due[1].id]).unwrap();
    assert_eq!((back[0].state, back[0].last_error.as_deref()), (DeletionState::Held, Some("registry down")));
    let again = store.claim_due_deletions("app").unwrap();
    assert_eq!((again.len(), again[0].last_error.as_deref()), (1, None), "a new attempt");
    assert_eq!(store.recover_started().unwrap(), 0);
    assert_eq!(store.deletions_by_id(&[again[0].id]).unwrap()[0].state, DeletionState::Held, "a crash put it back");
    store.claim_due_deletions("app").unwrap();
    store.finish_deletion(again[0].id, false).unwrap();
    let done = store.deletions_by_id(&[due[0].id, due[1].id]).unwrap();
    assert_eq!((done[0].state, done[0].decided_by), (DeletionState::Applied, Some(DecidedBy::Delay)));
    assert_eq!((done[1].state, done[1].decided_by), (DeletionState::Dropped, Some(DecidedBy::Primary)));
    assert!(store.read(|s| s.open_deletions()).unwrap().is_empty());
    assert_eq!(store.prune_deletions(0).unwrap(), 0, "decided this second");
}

#[test]
fn a_synced_repository_with_a_due_deletion_is_claimed() {
    let store = Store::open_in_memory().unwrap();
    let d = Digest::sha256_of(b"m");
    store.add_repositories(&["app".into()]).unwrap();
    let job = store.claim_next().unwrap().unwrap();
    store.finish_job(&job, "").unwrap();
    assert!(store.claim_next().unwrap().is_none());
    store.hold_deletion("app", &tag_deletion("v1", &d), &DAY).unwrap();
    assert!(store.claim_next().unwrap().is_none(), "held for a day");
    let marked = store.apply_deletions_now(&Selector::All).unwrap();
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].decided_by, Some(DecidedBy::Operator));
    let job = store.claim_next().unwrap().expect("claimed to apply it");
    assert!(!job.full, "applying a deletion needs no full comparison");
}

#[test]
fn operators_cancel_and_apply_by_id_or_all() {
    let store = Store::open_in_memory().unwrap();
    let d = Digest::sha256_of(b"m");
    for tag in ["a", "b", "c"] {
        store.hold_deletion("app", &tag_deletion(tag, &d), &DAY).unwrap();
    }
    let ids: Vec<i64> = store.read(|s| s.open_deletions()).unwrap().iter().map(|r| r.id).collect();
    let cancelled = store.cancel_deletions(&Selector::Ids(vec![ids[0], 999])).unwrap();
    assert_eq!(cancelled.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
    assert!(store.cancel_deletions(&Selector::Ids(vec![ids[0]])).unwrap().is_empty(), "cancelled already");
    assert_eq!(store.open_deletion("app", Some("a"), Some(&d)).unwrap(), Open::Cancelled);
    let open = store.read(|s| s.open_deletions()).unwrap();
    assert_eq!(open.last().unwrap().state, DeletionState::Cancelled, "cancelled ones list last");
    assert_eq!(store.apply_deletions_now(&Selector::All).unwrap().len(), 2, "the held ones");
    let s = store.read(|s| s.deletion_summary()).unwrap();
    assert_eq!((s.held, s.cancelled), (2, 1));
    assert!(store.kept_deletions("app").unwrap().covers("a", d.as_str()), "cancelled: expected for good");
}

#[test]
fn a_burst_raises_the_alarm_until_an_operator_decides() {
    let store = Store::open_in_memory().unwrap();
    let digests: Vec<Digest> = (0..6).map(|i| Digest::sha256_of(&[i])).collect();
    for (i, d) in digests.iter().enumerate() {
        store.set_tag("app", &format!("v{i}"), d).unwrap();
        store.set_tag("other", &format!("v{i}"), d).unwrap();
    }
    let tags: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
    store.hold_deletion("app", &tag_deletion(&tags[0], &digests[0]), &DAY).unwrap();
    assert_eq!(store.flag_burst("app", &DAY).unwrap(), None, "one of six, below the minimum");
    for i in 1..4 {
        store.hold_deletion("app", &tag_deletion(&tags[i], &digests[i]), &DAY).unwrap();
    }
    let alarm = store.flag_burst("app", &DAY).unwrap().expect("four of six tags of app");
    assert!(alarm.contains("4 of 6 tags of app (67 %)") && alarm.contains("delete_burst_share (50 %)"), "{alarm}");
    assert_eq!(store.flag_burst("app", &DAY).unwrap(), None, "raised once");
    assert_eq!(store.read(|s| s.deletion_summary()).unwrap().burst.as_deref(), Some(alarm.as_str()));
    store.cancel_deletions(&Selector::Ids(vec![1, 2])).unwrap();
    assert!(store.read(|s| s.deletion_summary()).unwrap().burst.is_some(), "two still held");
    store.apply_deletions_now(&Selector::All).unwrap();
    assert_eq!(store.read(|s| s.deletion_summary()).unwrap().burst, None, "every one decided by an operator");
    // Applied at once (no delay), a burst stands for the hour.
    let now = DeletionPolicy { delay_hours: 0, ..DAY };
    for i in 0..4 {
        let r = tag_deletion(&tags[i], &digests[i]);
        store.record_applied_deletion("other", &r).unwrap();
        store.remove_tag("other", &tags[i]).unwrap();
    }
    let alarm = store.flag_burst("other", &now).unwrap().expect("four of six tags of other");
    assert!(alarm.contains("4 of 6 tags of other"), "{alarm}");
    assert_eq!(store.read(|s| s.deletion_summary()).unwrap().burst.as_deref(), Some(alarm.as_str()));
}
