//! Tag history and undelete through the library: every change of a tag is
//! recorded with the change, a tag goes back where it pointed, and GC keeps
//! what the undelete window needs, and only that.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ocidb::store::{HistoryQuery, RestorePoint, TagAction, TagCause};
use ocidb::{Digest, ErrorKind, ManifestOptions, ManualClock, Store};
use redb::ReadableTable as _;
use serde_json::Value;

/// 2025-06-15T15:06:40Z: a fixed start, so nothing here depends on the date.
const T0: u64 = 1_750_000_000_000;

fn store() -> (tempfile::TempDir, Store, Arc<ManualClock>) {
    common::clocked_store(T0)
}

/// A distinct image in `repo`, untagged; its digest.
fn image(s: &Store, repo: &str, seed: &str) -> Digest {
    let layer = common::blob(s, seed.as_bytes(), "application/vnd.oci.image.layer.v1.tar");
    let body: Value = common::image_body(s, &[layer], None);
    common::put_manifest(s, repo, &body, &[]).digest
}

fn resolve(s: &Store, repo: &str, tag: &str) -> Digest {
    s.resolve(repo, &ocidb::Reference::Tag(tag.to_string()))
        .expect("resolve")
}

fn events(s: &Store, repo: &str, tag: &str) -> Vec<(TagAction, TagCause, Digest, Option<Digest>)> {
    s.tag_history(repo, tag, &HistoryQuery::default())
        .expect("history")
        .events
        .into_iter()
        .map(|e| (e.action, e.cause, e.digest, e.previous))
        .collect()
}

#[test]
fn every_change_of_a_tag_is_in_its_history_newest_first() {
    let (_dir, s, clock) = store();
    let (a, b) = (image(&s, "h/app", "a"), image(&s, "h/app", "b"));
    s.set_tags_by("h/app", vec![("v1".into(), a)], Some("alice"))
        .expect("tag");
    clock.advance(Duration::from_secs(1));
    // A push by tag that moves it reports the move.
    let layer = common::blob(&s, b"c", "application/vnd.oci.image.layer.v1.tar");
    let body = common::image_body(&s, &[layer], None);
    common::push_children(&s, "h/app", &body);
    let put = s
        .put_manifest(
            "h/app",
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(["v1"]).user("bob"),
        )
        .expect("push");
    let c = put.digest;
    assert_eq!(put.moved, vec![("v1".to_string(), a)]);
    clock.advance(Duration::from_secs(1));
    s.tag("h/app", "v1", &c).expect("same target: no event");
    s.untag_by("h/app", "v1", Some("carol")).expect("untag");
    clock.advance(Duration::from_secs(1));
    s.tag("h/app", "v1", &b).expect("tag again");
    s.delete_manifest("h/app", &b).expect("delete");
    let got = events(&s, "h/app", "v1");
    assert_eq!(
        got,
        vec![
            (TagAction::Deleted, TagCause::ManifestDeleted, b, None),
            (TagAction::Created, TagCause::Tagged, b, None),
            (TagAction::Deleted, TagCause::Untagged, c, None),
            (TagAction::Created, TagCause::Tagged, c, Some(a)),
            (TagAction::Created, TagCause::Tagged, a, None),
        ]
    );
    let page = s
        .tag_history("h/app", "v1", &HistoryQuery::default())
        .expect("history");
    let users: Vec<Option<&str>> = page.events.iter().map(|e| e.user.as_deref()).collect();
    assert_eq!(
        users,
        [None, None, Some("carol"), Some("bob"), Some("alice")]
    );
    let times: Vec<u64> = page.events.iter().map(|e| e.time_ms).collect();
    assert_eq!(times, [T0 + 3000, T0 + 3000, T0 + 2000, T0 + 1000, T0]);
    let first = page.events.last().expect("first event");
    assert_eq!(
        first.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert!(first.size > 0);
    // Another tag's history is its own, and one never tagged is empty.
    assert!(events(&s, "h/app", "v10").is_empty());
    assert!(events(&s, "nowhere", "v1").is_empty());

    // Filters and pages.
    let q = |q: HistoryQuery| {
        s.tag_history("h/app", "v1", &q)
            .expect("history")
            .events
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    let all = q(HistoryQuery::default());
    assert_eq!(all.len(), 5);
    assert_eq!(q(HistoryQuery::default().digest(c)).len(), 2);
    assert_eq!(q(HistoryQuery::default().before_ms(T0 + 2000)).len(), 2);
    assert_eq!(q(HistoryQuery::default().since_ms(T0 + 2000)).len(), 2);
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .tag_history(
                "h/app",
                "v1",
                &HistoryQuery::default().limit(2).cursor(cursor),
            )
            .expect("page");
        assert!(page.events.len() <= 2);
        paged.extend(page.events.iter().map(|e| e.seq));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, all, "pages cover the history once, in order");

    let e = s
        .tag_history("h/app", "v1", &HistoryQuery::default().limit(1_000_000))
        .expect_err("too large a page");
    assert!(e.to_string().contains("1000000"), "{e}");
    let e = s
        .untag_by("h/app", "v1", Some(&"x".repeat(300)))
        .expect_err("user too long");
    assert!(e.to_string().contains("255 bytes"), "{e}");
}

#[test]
fn a_tag_goes_back_to_a_former_target_or_to_where_it_was_at_a_time() {
    let (_dir, s, clock) = store();
    let (a, b, other) = (
        image(&s, "r/app", "a"),
        image(&s, "r/app", "b"),
        image(&s, "r/app", "other"),
    );
    s.tag("r/app", "latest", &a).expect("tag a");
    clock.advance(Duration::from_secs(10));
    s.tag("r/app", "latest", &b).expect("move to b");
    clock.advance(Duration::from_secs(10));
    s.untag("r/app", "latest").expect("delete");
    clock.advance(Duration::from_secs(10));

    // Where it was at a time.
    let r = s
        .restore_tag("r/app", "latest", RestorePoint::At(T0 + 5_000), Some("ops"))
        .expect("restore at a time");
    assert_eq!((r.digest, r.previous), (a, None));
    assert_eq!(resolve(&s, "r/app", "latest"), a);
    // A former target by digest.
    let r = s
        .restore_tag("r/app", "latest", RestorePoint::Digest(b), None)
        .expect("restore b");
    assert_eq!((r.digest, r.previous), (b, Some(a)));
    let newest = &s
        .tag_history("r/app", "latest", &HistoryQuery::default())
        .expect("history")
        .events[0];
    assert_eq!(
        (newest.cause, newest.previous),
        (TagCause::Restored, Some(a))
    );

    // What the history cannot justify is refused, naming the value.
    let e = s
        .restore_tag("r/app", "latest", RestorePoint::Digest(other), None)
        .expect_err("never its target");
    assert!(e.to_string().contains(&other.to_string()), "{e}");
    let e = s
        .restore_tag("r/app", "latest", RestorePoint::At(T0 - 1), None)
        .expect_err("before its first tag");
    assert!(e.to_string().contains("first tagged"), "{e}");
    let e = s
        .restore_tag("r/app", "latest", RestorePoint::At(T0 + 25_000), None)
        .expect_err("deleted then");
    assert!(e.to_string().contains("deleted at"), "{e}");
    // A manifest deleted since cannot come back by a restore.
    s.delete_manifest("r/app", &a).expect("delete a");
    let e = s
        .restore_tag("r/app", "latest", RestorePoint::Digest(a), None)
        .expect_err("deleted manifest");
    assert_eq!(e.kind(), ErrorKind::ManifestUnknown, "{e}");
    assert!(e.to_string().contains("push it again"), "{e}");
    assert_eq!(resolve(&s, "r/app", "latest"), b);
}

#[test]
fn gc_keeps_what_the_undelete_window_needs_and_collects_it_after() {
    let (_dir, s, clock) = store();
    let (a, b) = (image(&s, "g/app", "a"), image(&s, "g/app", "b"));
    s.tag("g/app", "v1", &a).expect("tag a");
    s.tag("g/app", "v1", &b)
        .expect("move to b: a is a former target");
    s.tag("g/app", "gone", &a).expect("tag");
    s.untag("g/app", "gone").expect("untag");
    let window = Duration::from_secs(3600);
    let policy = common::grace0(true).undelete_window(window);

    clock.advance(Duration::from_secs(60));
    let dry = s.gc(&policy.clone().dry_run(true)).expect("dry run");
    let r = s.gc(&policy).expect("gc within the window");
    assert_eq!(r.deleted_manifests, 0, "{r:?}");
    // a and its layer: kept for the window alone (their config is b's
    // too, which v1 keeps anyway).
    assert_eq!(r.kept_for_undelete, 2, "{r:?}");
    assert_eq!(dry.kept_for_undelete, r.kept_for_undelete);
    s.restore_tag("g/app", "gone", RestorePoint::Digest(a), None)
        .expect("undelete after a GC in the window");
    s.untag("g/app", "gone").expect("untag again");

    // Without a window the same GC would have collected a.
    let none = s
        .gc(&common::grace0(true).dry_run(true))
        .expect("dry run without window");
    assert!(none.digests.contains(&a), "{none:?}");

    // Past the window, GC collects it and the undelete says why it cannot.
    clock.advance(window + Duration::from_secs(1));
    let r = s.gc(&policy).expect("gc past the window");
    assert!(r.digests.contains(&a), "{r:?}");
    assert_eq!(r.kept_for_undelete, 0);
    let e = s
        .restore_tag("g/app", "gone", RestorePoint::Digest(a), None)
        .expect_err("collected");
    assert_eq!(e.kind(), ErrorKind::ManifestUnknown, "{e}");
    assert!(e.to_string().contains("undelete window"), "{e}");
    assert_eq!(resolve(&s, "g/app", "v1"), b);
    // History outlives the manifests it names.
    assert_eq!(events(&s, "g/app", "gone").len(), 4);
}

#[test]
fn history_past_its_retention_is_pruned_and_nothing_else() {
    let (_dir, s, clock) = store();
    let a = image(&s, "p/app", "a");
    for i in 0..10 {
        s.tag("p/app", &format!("t{i}"), &a).expect("tag");
    }
    clock.advance(Duration::from_secs(7200));
    s.untag("p/app", "t0").expect("untag");
    let r = s
        .gc(&common::grace0(false).history_retention(Duration::from_secs(3600)))
        .expect("gc");
    assert_eq!(r.history_pruned, 10, "{r:?}");
    assert_eq!(events(&s, "p/app", "t0").len(), 1, "the recent event stays");
    assert!(events(&s, "p/app", "t1").is_empty());
    assert_eq!(s.tags("p/app", None, None).expect("tags").len(), 9);
    let f = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(f.problems.is_empty(), "{:?}", f.problems);
}

#[test]
fn fsck_finds_a_history_event_without_its_time_entry_and_one_that_does_not_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = Store::create(dir.path()).expect("create");
        let a = image(&s, "f/app", "a");
        s.tag("f/app", "v1", &a).expect("tag");
        s.untag("f/app", "v1").expect("untag");
        let clean = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
        assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    }
    {
        let db = redb::Database::open(dir.path().join("ocidb.redb")).expect("redb");
        let txn = db.begin_write().expect("txn");
        {
            let by_time: redb::TableDefinition<&[u8], &[u8]> =
                redb::TableDefinition::new("tag_history_time");
            let history: redb::TableDefinition<&[u8], &[u8]> =
                redb::TableDefinition::new("tag_history");
            let mut t = txn.open_table(by_time).expect("time index");
            let first = t
                .first()
                .expect("first")
                .map(|(k, _)| k.value().to_vec())
                .expect("an entry");
            t.remove(first.as_slice()).expect("remove");
            let mut h = txn.open_table(history).expect("history");
            let last = h
                .last()
                .expect("last")
                .map(|(k, _)| k.value().to_vec())
                .expect("an event");
            h.insert(last.as_slice(), [2u8, 9].as_slice())
                .expect("garble");
        }
        txn.commit().expect("commit");
    }
    let s = Store::open(dir.path()).expect("open");
    let r = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    let kinds: Vec<&str> = r.problems.iter().map(|p| p.kind.as_str()).collect();
    assert!(kinds.contains(&"history-mismatch"), "{:?}", r.problems);
    assert!(kinds.contains(&"bad-history"), "{:?}", r.problems);
    assert!(
        r.problems.iter().any(|p| p.detail.contains("`f/app:v1`")),
        "{:?}",
        r.problems
    );
}
