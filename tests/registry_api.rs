//! What a registry front needs beside uploads: catalog pages, reads scoped
//! to a repository in one snapshot, and mounts.

mod common;

use std::io::Read as _;

use ocidb::{ErrorKind, PutOptions};

#[test]
fn the_catalog_pages_in_name_order() {
    let (_dir, s) = common::store();
    for r in ["c/x", "a/x", "b/x", "d", "e"] {
        s.put_bytes(r.as_bytes(), &PutOptions::default().repository(r))
            .expect("put");
    }
    let (page, more) = s.repositories_page(None, Some(2)).expect("page");
    assert_eq!(
        (page.as_slice(), more),
        (&["a/x".to_string(), "b/x".into()][..], true)
    );
    let (page, more) = s.repositories_page(Some("b/x"), Some(2)).expect("page");
    assert_eq!(
        (page.as_slice(), more),
        (&["c/x".to_string(), "d".into()][..], true)
    );
    let (page, more) = s.repositories_page(Some("d"), Some(2)).expect("page");
    assert_eq!((page.as_slice(), more), (&["e".to_string()][..], false));
    let (page, more) = s.repositories_page(Some("e"), None).expect("page");
    assert!(page.is_empty() && !more);
    let (all, more) = s.repositories_page(None, None).expect("all");
    assert_eq!(all.len(), 5);
    assert!(!more);
}

#[test]
fn reads_scoped_to_a_repository_see_only_its_members() {
    let (_dir, s) = common::store();
    let data = ocidb_testkit::deterministic_bytes(b"scoped", 200_000);
    let p = s
        .put_bytes(&data, &PutOptions::default().repository("team-a/app"))
        .expect("put");
    let info = s.stat_in_repo("team-a/app", &p.digest).expect("stat");
    assert_eq!(info.size, 200_000);
    let (_, mut r) = s
        .get_in_repo("team-a/app", &p.digest, Some((10, 19)))
        .expect("range");
    let mut got = Vec::new();
    r.read_to_end(&mut got).expect("read");
    assert_eq!(got, &data[10..20]);
    for repo in ["team-b/app", "nope"] {
        let e = s.stat_in_repo(repo, &p.digest).expect_err("not a member");
        assert_eq!(e.kind(), ErrorKind::BlobUnknown, "{e}");
        let e = s
            .get_in_repo(repo, &p.digest, None)
            .err()
            .expect("not a member");
        assert_eq!(e.kind(), ErrorKind::BlobUnknown, "{e}");
        assert!(
            !e.to_string().contains("team-a"),
            "no other repository is named: {e}"
        );
    }
    let e = s
        .get_in_repo("team-a/app", &p.digest, Some((300_000, 300_010)))
        .err()
        .expect("out of range");
    assert_eq!(e.kind(), ErrorKind::RangeNotSatisfiable);
}

#[test]
fn mounts_need_the_source_to_hold_the_blob() {
    let (_dir, s) = common::store();
    let p = s
        .put_bytes(b"layer", &PutOptions::default().repository("src/app"))
        .expect("put");
    // From a repository that holds it.
    let m = s
        .mount_blob("dst/app", &p.digest, Some("src/app"))
        .expect("mount");
    assert_eq!(m.map(|i| i.size), Some(5));
    assert!(s.is_member("dst/app", &p.digest).expect("member"));
    // From one that does not, or with no source: no mount.
    assert!(s
        .mount_blob("other/app", &p.digest, Some("empty/app"))
        .expect("mount")
        .is_none());
    assert!(s
        .mount_blob("other/app", &p.digest, None)
        .expect("mount")
        .is_none());
    assert!(!s.is_member("other/app", &p.digest).expect("member"));
    // No source, but the target holds it: a no-op that succeeds.
    assert!(s
        .mount_blob("dst/app", &p.digest, None)
        .expect("mount")
        .is_some());
}
