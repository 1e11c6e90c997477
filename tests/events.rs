//! The outbox through the library: each change writes its event in the
//! transaction that makes it, in commit order; a failed write writes none;
//! consumers acknowledge, and the store forgets only what all have.

mod common;

use std::sync::Arc;

use ocidb::store::{Event, EventKind};
use ocidb::{ManifestOptions, ManualClock, PutOptions, Store, StoreOptions};

const T0: u64 = 1_750_000_000_000;

fn open(dir: &std::path::Path, events: bool) -> Store {
    Store::open_with(
        dir,
        StoreOptions::default()
            .events(events)
            .clock(Arc::new(ManualClock::new(T0))),
        true,
    )
    .expect("open")
}

/// (kind, repository, tag) of each event, with its digest as text.
fn summary(events: &[Event]) -> Vec<(EventKind, Option<String>, Option<String>, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.repository.clone(),
                e.tag.clone(),
                e.digest.map(|d| d.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn each_change_writes_its_event_in_commit_order_and_a_failed_one_writes_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), true);
    assert!(s.events_enabled());
    let layer = s
        .put_bytes(b"layer", &PutOptions::default().repository("e/app"))
        .expect("layer");
    let cfg = s
        .put_bytes(b"{}", &PutOptions::default().repository("e/app"))
        .expect("config");
    let body = common::image_body(
        &s,
        &[common::desc(
            "application/vnd.oci.image.layer.v1.tar",
            &layer.digest,
            layer.size,
        )],
        None,
    );
    let m = s
        .put_manifest(
            "e/app",
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(["v1"]).user("alice"),
        )
        .expect("manifest");
    s.untag("e/app", "v1").expect("untag");
    // A manifest whose layer the repository lacks: refused, no event.
    let other = s
        .put_bytes(b"elsewhere", &PutOptions::default())
        .expect("blob");
    let bad = common::image_body(
        &s,
        &[common::desc(
            "application/vnd.oci.image.layer.v1.tar",
            &other.digest,
            other.size,
        )],
        None,
    );
    let before = s.events_after(0, 100).expect("events").len();
    s.put_manifest(
        "e/app",
        bad.to_string().as_bytes(),
        &ManifestOptions::default().tags(["v2"]),
    )
    .expect_err("child not in the repository");
    assert_eq!(s.events_after(0, 100).expect("events").len(), before);
    s.unlink_blob("e/app", &layer.digest).expect("unlink");
    s.delete_manifest("e/app", &m.digest).expect("delete");
    let r = s.gc(&common::grace0(true)).expect("gc");
    assert!(r.deleted_blobs >= 1, "{r:?}");

    let all = s.events_after(0, 100).expect("events");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "commit order: {seqs:?}"
    );
    let repo = Some("e/app".to_string());
    let (l, c, md) = (
        layer.digest.to_string(),
        cfg.digest.to_string(),
        m.digest.to_string(),
    );
    let got = summary(&all);
    let head: Vec<_> = got.iter().take(7).cloned().collect();
    assert_eq!(
        head,
        vec![
            (EventKind::BlobPushed, repo.clone(), None, l.clone()),
            (EventKind::BlobPushed, repo.clone(), None, c.clone()),
            (EventKind::ManifestPushed, repo.clone(), None, md.clone()),
            (
                EventKind::TagChanged,
                repo.clone(),
                Some("v1".into()),
                md.clone()
            ),
            (
                EventKind::TagDeleted,
                repo.clone(),
                Some("v1".into()),
                md.clone()
            ),
            (EventKind::BlobDeleted, repo.clone(), None, l.clone()),
            (EventKind::ManifestDeleted, repo.clone(), None, md.clone()),
        ]
    );
    // Then GC's deletions, store-wide, each saying so.
    let gc: Vec<&Event> = all[7..].iter().collect();
    assert!(!gc.is_empty());
    for e in &gc {
        assert!(
            matches!(e.kind, EventKind::BlobDeleted | EventKind::ManifestDeleted),
            "{e:?}"
        );
        assert_eq!(
            (e.repository.as_deref(), e.detail.as_deref()),
            (None, Some("gc"))
        );
    }
    let pushed = &all[2];
    assert_eq!(pushed.user.as_deref(), Some("alice"));
    assert_eq!(
        pushed.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(pushed.time_ms, T0);
    // Pages follow the cursor.
    let page = s.events_after(all[2].seq, 2).expect("page");
    assert_eq!(page, all[3..5].to_vec());
    let e = s.events_after(0, 1_000_000).expect_err("page too large");
    assert!(e.to_string().contains("1000000"), "{e}");
}

#[test]
fn consumers_acknowledge_and_the_outbox_forgets_only_what_all_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path(), true);
        for i in 0..10u8 {
            s.put_bytes(&[i], &PutOptions::default().repository("c/app"))
                .expect("put");
        }
        let all = s.events_after(0, 100).expect("events");
        assert_eq!(all.len(), 10);
        s.ack_events("hook-b", 0).expect("register b");
        s.ack_events("hook-a", all[5].seq).expect("ack a");
        assert_eq!(
            s.events_after(0, 100).expect("events"),
            all,
            "b has none yet"
        );
        s.ack_events("hook-b", all[2].seq).expect("ack b");
        assert_eq!(s.event_cursor("hook-a").expect("cursor"), all[5].seq);
        // What b has not acknowledged stays, for a and b alike.
        assert_eq!(s.events_after(0, 100).expect("events"), all[3..].to_vec());
        // A cursor never goes back.
        s.ack_events("hook-a", all[1].seq).expect("stale ack");
        assert_eq!(s.event_cursor("hook-a").expect("cursor"), all[5].seq);
        s.remove_event_consumer("hook-b").expect("remove b");
        s.ack_events("hook-a", all[6].seq).expect("ack a");
        assert_eq!(s.events_after(0, 100).expect("events"), all[7..].to_vec());
        let e = s.ack_events("", 1).expect_err("empty name");
        assert!(e.to_string().contains("consumer name"), "{e}");
    }
    // Events and cursors outlive the process.
    let s = open(dir.path(), false);
    assert_eq!(s.events_after(0, 100).expect("events").len(), 3);
    let a = s.event_cursor("hook-a").expect("cursor");
    assert_eq!(s.events_after(a, 100).expect("events").len(), 3);
    // With events off, changes write none.
    s.put_bytes(b"quiet", &PutOptions::default().repository("c/app"))
        .expect("put");
    assert_eq!(s.events_after(0, 100).expect("events").len(), 3);
}
