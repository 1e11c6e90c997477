//! Accounting and quotas through the library: exclusive and shared bytes
//! per repository and namespace, counters that follow every change, and
//! quotas enforced in the writer job, whole or not at all, under
//! concurrent pushers.

mod common;

use std::sync::Arc;

use ocidb::store::{EventKind, Quota};
use ocidb::{ErrorKind, ManifestOptions, PutOptions, Store, StoreOptions};

fn put(s: &Store, repo: &str, data: &[u8]) -> ocidb::Digest {
    s.put_bytes(data, &PutOptions::default().repository(repo))
        .expect("put")
        .digest
}

#[test]
fn exclusive_and_shared_bytes_per_repository_and_namespace() {
    let (_dir, s) = common::store();
    let base = vec![1u8; 1000];
    let (a_only, b_only) = (vec![2u8; 300], vec![3u8; 50]);
    put(&s, "team/a", &base);
    put(&s, "team/a", &a_only);
    put(&s, "team/b", &base);
    put(&s, "team/b", &b_only);
    put(&s, "other/c", &base);
    let a = s.usage("team/a").expect("usage");
    assert_eq!(
        (a.repositories, a.members, a.logical_bytes, a.unique_bytes),
        (1, 2, 1300, 1300)
    );
    assert_eq!((a.exclusive_bytes, a.shared_bytes), (300, 1000));
    // The namespace: base counts twice as its repositories see it, once
    // as content; other/c shares it.
    let team = s.usage("team/").expect("usage");
    assert_eq!(
        (
            team.repositories,
            team.members,
            team.logical_bytes,
            team.unique_bytes
        ),
        (2, 4, 2350, 1350)
    );
    assert_eq!((team.exclusive_bytes, team.shared_bytes), (350, 1000));
    // Without other/c, the namespace holds base alone.
    s.unlink_blob(
        "other/c",
        &ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &base),
    )
    .expect("unlink");
    let team = s.usage("team/").expect("usage");
    assert_eq!((team.exclusive_bytes, team.shared_bytes), (1350, 0));
    assert_eq!(s.usage("other/c").expect("usage").logical_bytes, 0);
    // A scope that holds nothing is empty, not an error; a bad one is.
    assert_eq!(s.usage("nobody/").expect("usage").repositories, 0);
    let e = s.usage("Bad Name/").expect_err("bad scope");
    assert!(e.to_string().contains("Bad Name/"), "{e}");
    let f = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(f.problems.is_empty(), "{:?}", f.problems);
}

#[test]
fn a_push_over_quota_is_refused_whole_and_says_which_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open_with(dir.path(), StoreOptions::default().events(true), true).expect("open");
    s.set_quotas(vec![
        Quota {
            scope: "q/".into(),
            max_bytes: 2000,
        },
        Quota {
            scope: "q/small".into(),
            max_bytes: 500,
        },
    ])
    .expect("quotas");
    put(&s, "q/small", &[1u8; 400]);
    let e = s
        .put_bytes(&[2u8; 200], &PutOptions::default().repository("q/small"))
        .expect_err("over the repository's quota");
    assert_eq!(e.kind(), ErrorKind::OverQuota, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("`q/small`") && text.contains("500") && text.contains("600"),
        "{text}"
    );
    let refused = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &[2u8; 200]);
    assert!(!s.exists(&refused).expect("exists"), "nothing half-stored");
    // The namespace's quota holds across its repositories.
    put(&s, "q/big", &[3u8; 1500]);
    let e = s
        .put_bytes(&[4u8; 200], &PutOptions::default().repository("q/other"))
        .expect_err("over the namespace's quota");
    assert!(e.to_string().contains("`q/`"), "{e}");
    assert!(s
        .repositories()
        .expect("repos")
        .iter()
        .all(|r| r != "q/other"));
    // A manifest that would pass the quota is refused with its tag.
    let cfg = put(&s, "q/small", b"{}");
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
        "layers": [],
        "annotations": {"pad": "x".repeat(200)},
    });
    let e = s
        .put_manifest(
            "q/small",
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(["v1"]),
        )
        .expect_err("manifest over quota");
    assert_eq!(e.kind(), ErrorKind::OverQuota);
    assert!(s.tags("q/small", None, None).expect("tags").is_empty());
    // Each refusal is an event.
    let refusals: Vec<_> = s
        .events_after(0, 1000)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == EventKind::QuotaRefused)
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert_eq!(refusals[0].digest, Some(refused));
    assert!(refusals[0]
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("q/small")));
    let e = s
        .set_quotas(vec![Quota {
            scope: "q/".into(),
            max_bytes: 0,
        }])
        .expect_err("zero quota");
    assert!(e.to_string().contains("q/=0"), "{e}");
}

#[test]
fn quotas_hold_under_8_concurrent_pushers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(Store::create(dir.path()).expect("create"));
    let quota = 100_000u64;
    s.set_quotas(vec![Quota {
        scope: "c/".into(),
        max_bytes: quota,
    }])
    .expect("quotas");
    let size = 1000usize;
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                for i in 0..40u8 {
                    let mut data = vec![t; size];
                    data[0] = i;
                    match s.put_bytes(&data, &PutOptions::default().repository(format!("c/r{t}"))) {
                        Ok(p) => accepted.push(p.digest),
                        Err(e) => assert_eq!(e.kind(), ErrorKind::OverQuota, "{e}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: Vec<ocidb::Digest> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("pusher"))
        .collect();
    let u = s.usage("c/").expect("usage");
    assert_eq!(accepted.len() as u64 * size as u64, u.logical_bytes);
    assert!(u.logical_bytes <= quota, "{u:?}");
    // 320 pushes of 1000 bytes against 100,000: exactly 100 fit.
    assert_eq!(accepted.len(), 100);
    let f = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(f.problems.is_empty(), "{:?}", f.problems);
}

/// A store from a build before the counters: opening it fills them once
/// from membership, and fsck agrees.
#[test]
fn an_older_store_gets_its_counters_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = {
        let s = Store::create(dir.path()).expect("create");
        put(&s, "old/a", &[1u8; 700]);
        put(&s, "old/b", &[1u8; 700]);
        put(&s, "old/b", &[2u8; 90]);
        s.usage("old/").expect("usage")
    };
    {
        // What an older build left: no counters, no reverse names.
        let db = redb::Database::open(dir.path().join("ocidb.redb")).expect("redb");
        let txn = db.begin_write().expect("txn");
        txn.delete_table(redb::TableDefinition::<&str, &[u8]>::new("usage"))
            .expect("drop usage");
        txn.delete_table(redb::TableDefinition::<u64, &str>::new("repo_names"))
            .expect("drop repo_names");
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .expect("meta");
            meta.remove("usage_version").expect("remove marker");
        }
        txn.commit().expect("commit");
    }
    let s = Store::open(dir.path()).expect("open");
    assert_eq!(s.usage("old/").expect("usage"), before);
    assert_eq!(s.usage("old/b").expect("usage").logical_bytes, 790);
    let f = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(f.problems.is_empty(), "{:?}", f.problems);
}
