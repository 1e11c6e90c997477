//! Resumable upload sessions through the public API: chunks in order, out
//! of order, across a reopen, with either algorithm, cancelled, purged, and
//! under a running GC.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ocidb::{
    Algorithm, BlobBackend, Digest, Error, ErrorKind, Hasher, MemoryBlobs, Store, StoreOptions,
    UploadOptions,
};

fn data(n: usize) -> Vec<u8> {
    ocidb_testkit::deterministic_bytes(b"upload", n)
}

fn sha256(b: &[u8]) -> Digest {
    Hasher::digest_of(Algorithm::Sha256, b)
}

#[test]
fn chunks_in_order_make_a_blob_of_the_repository() {
    let (_dir, s) = common::store();
    let bytes = data(3_000_000);
    let up = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    assert_eq!(up.offset, 0);
    assert_eq!(up.id.len(), 32, "an unguessable id: {}", up.id);
    let mut at = 0u64;
    for chunk in bytes[..2_000_000].chunks(700_000) {
        let st = s.append_upload(&up.id, at, chunk).expect("append");
        at += chunk.len() as u64;
        assert_eq!(st.offset, at);
        assert_eq!(s.upload_status(&up.id).expect("status").offset, at);
    }
    let put = s
        .finish_upload(&up.id, &sha256(&bytes), &bytes[2_000_000..])
        .expect("finish");
    assert!(put.created);
    assert_eq!(put.size, bytes.len() as u64);
    assert_eq!(s.read(&put.digest).expect("read"), bytes);
    assert!(s.is_member("app/x", &put.digest).expect("member"));
    let gone = s.upload_status(&up.id).expect_err("finished");
    assert_eq!(gone.kind(), ErrorKind::UploadUnknown, "{gone}");
    assert!(s.uploads().expect("list").is_empty());
}

#[test]
fn an_out_of_order_chunk_is_refused_with_the_current_offset() {
    let (_dir, s) = common::store();
    let up = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&up.id, 0, &b"hello "[..]).expect("first");
    for wrong in [0u64, 3, 7, 1000] {
        let e = s
            .append_upload(&up.id, wrong, &b"world"[..])
            .expect_err("out of order");
        assert_eq!(e.kind(), ErrorKind::UploadOffset, "{e}");
        assert!(
            matches!(e, Error::UploadOffset { expected: 6, given, .. } if given == wrong),
            "{e:?}"
        );
    }
    assert_eq!(s.upload_status(&up.id).expect("status").offset, 6);
    let put = s
        .finish_upload(&up.id, &sha256(b"hello world"), &b"world"[..])
        .expect("finish");
    assert_eq!(s.read(&put.digest).expect("read"), b"hello world");
}

#[test]
fn a_wrong_digest_stores_nothing_and_keeps_the_session() {
    let (_dir, s) = common::store();
    let up = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&up.id, 0, &data(100_000)[..])
        .expect("append");
    let wrong = sha256(b"something else");
    let e = s
        .finish_upload(&up.id, &wrong, &b""[..])
        .expect_err("mismatch");
    assert_eq!(e.kind(), ErrorKind::InvalidDigest, "{e}");
    assert!(!s.exists(&wrong).expect("exists"));
    assert!(!s.exists(&sha256(&data(100_000))).expect("exists"));
    let put = s
        .finish_upload(&up.id, &sha256(&data(100_000)), &b""[..])
        .expect("the session is still open");
    assert!(put.created);
}

#[test]
fn sha512_uploads_whether_or_not_the_algorithm_was_known_up_front() {
    let (_dir, s) = common::store();
    let bytes = data(200_000);
    let want = Hasher::digest_of(Algorithm::Sha512, &bytes);
    // Known at the start: hashed as it arrives.
    let a = s
        .begin_upload(
            "app/x",
            &UploadOptions::default().algorithm(Algorithm::Sha512),
        )
        .expect("begin");
    s.append_upload(&a.id, 0, &bytes[..50_000]).expect("append");
    let put = s
        .finish_upload(&a.id, &want, &bytes[50_000..])
        .expect("finish");
    assert_eq!(put.digest, want);
    s.verify(&want).expect("verify");
    // Not known: the finish re-reads the bytes once with the digest's
    // algorithm.
    let other = data(70_000);
    let want = Hasher::digest_of(Algorithm::Sha512, &other);
    let b = s
        .begin_upload("app/y", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&b.id, 0, &other[..]).expect("append");
    let put = s.finish_upload(&b.id, &want, &b""[..]).expect("finish");
    assert_eq!(put.digest, want);
    assert_eq!(s.read(&want).expect("read"), other);
}

#[test]
fn a_session_resumes_after_a_reopen_and_drops_unacknowledged_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = data(1_500_000);
    let id = {
        let s = Store::create(dir.path()).expect("create");
        let up = s
            .begin_upload("app/x", &UploadOptions::default())
            .expect("begin");
        s.append_upload(&up.id, 0, &bytes[..1_000_000])
            .expect("append");
        up.id
    };
    // What a write cut off by a crash leaves: bytes past the acknowledged
    // offset.
    let file = dir.path().join("uploads").join(&id);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("upload file");
    std::io::Write::write_all(&mut f, b"garbage that was never acknowledged").expect("write");
    drop(f);
    let s = Store::open(dir.path()).expect("reopen");
    let st = s.upload_status(&id).expect("the session survived");
    assert_eq!(st.offset, 1_000_000);
    let put = s
        .finish_upload(&id, &sha256(&bytes), &bytes[1_000_000..])
        .expect("finish from the reported offset");
    s.verify(&put.digest).expect("verify");
    assert!(s
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
}

#[test]
fn cancel_and_purge_remove_the_bytes_and_release_the_lease() {
    let (dir, s) = common::store();
    let a = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&a.id, 0, &b"abc"[..]).expect("append");
    let leases = s.leases().expect("leases").len();
    s.cancel_upload(&a.id).expect("cancel");
    assert!(!dir.path().join("uploads").join(&a.id).exists());
    assert_eq!(s.leases().expect("leases").len(), leases - 1);
    let e = s.append_upload(&a.id, 3, &b"d"[..]).expect_err("cancelled");
    assert_eq!(e.kind(), ErrorKind::UploadUnknown);
    let b = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    let _c = s
        .begin_upload("app/y", &UploadOptions::default())
        .expect("begin");
    assert_eq!(
        s.purge_uploads(Duration::from_secs(3600)).expect("purge"),
        0
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(s.purge_uploads(Duration::from_millis(1)).expect("purge"), 2);
    assert!(s.uploads().expect("list").is_empty());
    assert!(!dir.path().join("uploads").join(&b.id).exists());
}

#[test]
fn hostile_ids_and_repositories_are_refused() {
    let (dir, s) = common::store();
    for id in ["../../etc/passwd", "", "x/y", &"a".repeat(5000)] {
        let e = s.append_upload(id, 0, &b"x"[..]).expect_err(id);
        assert!(
            matches!(
                e.kind(),
                ErrorKind::UploadUnknown | ErrorKind::InvalidArgument
            ),
            "{id}: {e}"
        );
        assert!(e.to_string().len() < 600, "the message quotes a bounded id");
    }
    let e = s
        .begin_upload("Bad Name", &UploadOptions::default())
        .expect_err("grammar");
    assert_eq!(e.kind(), ErrorKind::InvalidName);
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .expect("dir")
            .count(),
        0,
        "nothing was begun"
    );
}

#[test]
fn gc_leaves_open_sessions_and_their_finished_blobs_alone() {
    let (_dir, s) = common::store();
    let bytes = data(120_000);
    let up = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&up.id, 0, &bytes[..60_000])
        .expect("append");
    s.gc(&common::grace0(true)).expect("gc");
    assert_eq!(s.upload_status(&up.id).expect("status").offset, 60_000);
    let put = s
        .finish_upload(&up.id, &sha256(&bytes), &bytes[60_000..])
        .expect("finish");
    // No tag reaches it and the grace period is zero: the session's lease
    // holds it until a manifest does.
    let report = s.gc(&common::grace0(true)).expect("gc");
    assert_eq!(report.deleted_blobs, 0, "{report:?}");
    assert!(s.exists(&put.digest).expect("exists"));
}

#[test]
fn sessions_work_on_a_backend_that_is_not_a_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mem: Arc<dyn BlobBackend> = Arc::new(MemoryBlobs::new());
    let opts = StoreOptions::default().backend(mem);
    let s = Store::open_with(dir.path(), opts, true).expect("open");
    let bytes = data(300_000);
    let up = s
        .begin_upload("app/x", &UploadOptions::default())
        .expect("begin");
    s.append_upload(&up.id, 0, &bytes[..100_000])
        .expect("append");
    let put = s
        .finish_upload(&up.id, &sha256(&bytes), &bytes[100_000..])
        .expect("finish");
    assert_eq!(s.read(&put.digest).expect("read"), bytes);
}
