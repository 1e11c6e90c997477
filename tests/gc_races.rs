//! Online GC against writes that land at the worst moment: each race is
//! driven deterministically through the public API, with the `after_mark`
//! hook and a parked writer (`Store::pause_writer`) that makes chosen jobs
//! share one group commit in a known order.

mod common;

use std::sync::{Arc, Mutex};

use common::{blob, desc, grace0, image_body, store};
use ocidb::{
    Error, ErrorKind, GcPolicy, ManifestOptions, PutOptions, Reference, Store, WriterPause,
};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A GC hook that parks the writer and leaves the pause for the test.
fn park_after_mark(s: &Arc<Store>, policy: &mut GcPolicy) -> Arc<Mutex<Option<WriterPause>>> {
    let slot: Arc<Mutex<Option<WriterPause>>> = Arc::new(Mutex::new(None));
    let (hs, hslot) = (Arc::clone(s), Arc::clone(&slot));
    *policy = policy.clone().after_mark(Arc::new(move || {
        let p = hs.pause_writer().expect("pause");
        *hslot.lock().expect("slot") = Some(p);
    }));
    slot
}

/// Waits for the GC thread to park the writer, then for `n` jobs queued
/// behind it.
fn wait_parked(slot: &Mutex<Option<WriterPause>>, n: usize) {
    loop {
        if let Some(p) = slot.lock().expect("slot").as_ref() {
            p.wait_queued(n);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn resume(slot: &Mutex<Option<WriterPause>>) {
    slot.lock()
        .expect("slot")
        .take()
        .expect("parked")
        .resume()
        .expect("resume");
}

#[test]
fn put_blobs_stores_blobs_above_the_inline_threshold() {
    let (_d, s) = store();
    let big = vec![7u8; 70_000];
    let small = b"small".to_vec();
    let want = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &big);
    let got = s
        .put_blobs(&[
            (&big[..], PutOptions::default()),
            (&small[..], PutOptions::default()),
        ])
        .expect("put_blobs");
    assert_eq!(got[0].digest, want);
    assert_eq!(got[0].size, 70_000);
    assert!(got[0].created);
    assert_eq!(s.read(&want).expect("read back"), big);
    // With the digest given, the same bytes verify.
    let (_d2, s2) = store();
    let got = s2
        .put_blobs(&[(&big[..], PutOptions::expect(want))])
        .expect("put_blobs with digest");
    assert_eq!(got[0].digest, want);
    s2.verify(&want).expect("verifies");
}

#[test]
fn a_reput_into_a_repository_that_holds_the_blob_rescues_it() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let data = b"layer bytes held by app/one".to_vec();
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &data);
    let opts = PutOptions::default().digest(d).repository("app/one");
    s.put_bytes(&data, &opts).expect("first put");
    let mut policy = grace0(true);
    let (hs, hdata, hopts) = (Arc::clone(&s), data.clone(), opts.clone());
    policy = policy.after_mark(Arc::new(move || {
        let r = hs.put_bytes(&hdata, &hopts).expect("re-put");
        assert!(!r.created);
    }));
    let report = s.gc(&policy).expect("gc");
    assert!(report.rescued >= 1, "{report:?}");
    assert!(s.exists(&d).expect("exists"), "the re-put blob was swept");
    assert!(s.is_member("app/one", &d).expect("member"));
    assert_eq!(s.read(&d).expect("read"), data);
}

#[test]
fn a_reput_under_a_lease_is_checked_and_rescued_in_one_writer_job() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let data = b"leased blob".to_vec();
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &data);
    s.put_bytes(&data, &PutOptions::default()).expect("put");
    let lease = s
        .create_lease(std::time::Duration::from_secs(600))
        .expect("lease");
    let mut policy = grace0(true);
    let slot = park_after_mark(&s, &mut policy);
    let gs = Arc::clone(&s);
    let gc = std::thread::spawn(move || gs.gc(&policy));
    // The sweep step queues behind the parked writer, then the re-put.
    wait_parked(&slot, 1);
    let (ps, pdata) = (Arc::clone(&s), data.clone());
    let put = std::thread::spawn(move || {
        ps.put_bytes(&pdata, &PutOptions::default().digest(d).lease(lease.id))
    });
    wait_parked(&slot, 2);
    resume(&slot);
    let r = put
        .join()
        .expect("put thread")
        .expect("re-put acknowledged");
    gc.join().expect("gc thread").expect("gc");
    assert_eq!(r.digest, d);
    assert!(
        s.exists(&d).expect("exists"),
        "an acknowledged re-put was swept"
    );
    assert_eq!(s.read(&d).expect("read"), data);
    // The lease holds it: a second GC keeps it too.
    s.gc(&grace0(true)).expect("gc 2");
    assert!(s.exists(&d).expect("exists after gc 2"));
}

#[test]
fn a_sweep_step_never_deletes_what_its_own_group_commit_tags() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let layer = blob(&s, b"layer that the tag will reach", LAYER);
    let layer_d = common::digest_of(&layer);
    let body = image_body(&s, std::slice::from_ref(&layer), None);
    let mut policy = grace0(true);
    let slot = park_after_mark(&s, &mut policy);
    let gs = Arc::clone(&s);
    let gc = std::thread::spawn(move || gs.gc(&policy));
    wait_parked(&slot, 1);
    let ms = Arc::clone(&s);
    let put = std::thread::spawn(move || {
        ms.put_manifest(
            "app/two",
            body.to_string().as_bytes(),
            &ManifestOptions::default()
                .tags(vec!["latest".to_string()])
                .children(ocidb::Children::AllowMissing),
        )
    });
    wait_parked(&slot, 2);
    resume(&slot);
    let m = put.join().expect("put thread").expect("manifest put");
    gc.join().expect("gc thread").expect("gc");
    let tagged = s
        .resolve("app/two", &Reference::Tag("latest".into()))
        .expect("tag");
    assert_eq!(tagged, m.digest);
    assert!(
        s.exists(&layer_d).expect("exists"),
        "the layer of a tagged image was deleted in the commit that tagged it"
    );
}

#[test]
fn a_reupload_restarts_the_grace_period() {
    let (_d, s) = store();
    let data = b"uploaded long ago, uploaded again now".to_vec();
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &data);
    s.put_bytes(&data, &PutOptions::default()).expect("put");
    let first = s.stat(&d).expect("stat").created_ms;
    std::thread::sleep(std::time::Duration::from_millis(30));
    s.put_bytes(&data, &PutOptions::expect(d)).expect("re-put");
    let second = s.stat(&d).expect("stat").created_ms;
    assert!(second > first, "{second} <= {first}");
    // A GC whose grace covers the re-put but not the first put keeps it.
    let policy = GcPolicy::default()
        .grace(std::time::Duration::from_millis(20 + (second - first) / 2))
        .delete_untagged(true);
    let r = s.gc(&policy).expect("gc");
    assert!(s.exists(&d).expect("exists"), "{r:?}");
}

#[test]
fn lease_add_says_which_digests_are_not_stored() {
    let (_d, s) = store();
    let stored = s.put_bytes(b"here", &PutOptions::default()).expect("put");
    let absent = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"not here");
    let lease = s
        .create_lease(std::time::Duration::from_secs(60))
        .expect("lease");
    let missing = s
        .lease_add(lease.id, &[stored.digest, absent])
        .expect("lease_add");
    assert_eq!(missing, vec![absent]);
}

#[test]
fn a_manifest_whose_child_a_running_gc_swept_gets_a_retry_error() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let layer = blob(&s, b"garbage until the manifest arrives", LAYER);
    let layer_d = common::digest_of(&layer);
    let body = image_body(&s, &[layer], None);
    // The sweep commits before the manifest arrives: the layer is gone and
    // the push must say "upload again", not a plain MANIFEST_BLOB_UNKNOWN.
    let mut policy = grace0(true);
    let (hs, hbody) = (Arc::clone(&s), body.clone());
    let outcome: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let hout = Arc::clone(&outcome);
    policy = policy.after_sweep(Arc::new(move || {
        let e = hs
            .put_manifest(
                "app/three",
                hbody.to_string().as_bytes(),
                &ManifestOptions::default(),
            )
            .expect_err("the layer was swept");
        *hout.lock().expect("outcome") = Some(e);
    }));
    s.gc(&policy).expect("gc");
    assert!(!s.exists(&layer_d).expect("exists"));
    let e = outcome.lock().expect("outcome").take().expect("hook ran");
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(e.to_string().contains("upload it again"), "{e}");
    // A digest never stored is a plain unknown child.
    let never = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"never stored");
    let body = image_body(&s, &[desc(LAYER, &never, 12)], None);
    let e = s
        .put_manifest(
            "app/three",
            body.to_string().as_bytes(),
            &ManifestOptions::default(),
        )
        .expect_err("missing child");
    assert_eq!(e.kind(), ErrorKind::ChildUnknown, "{e}");
}
