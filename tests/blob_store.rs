//! The blob store through its public API: round trips, verification,
//! deduplication, durability across reopen, crash leftovers, concurrency.

use std::io::Read;
use std::sync::Arc;

use ocidb::{Algorithm, Digest, Error, Hasher, Placement, PutOptions, Store, StoreOptions};

fn small_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions::default().inline_threshold(1024);
    let store = Store::open_with(dir.path(), opts, true).expect("create");
    (dir, store)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    ocidb_testkit::deterministic_bytes(&[seed], n)
}

fn read_all(store: &Store, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .get(d)
        .expect("get")
        .read_to_end(&mut out)
        .expect("read");
    out
}

#[test]
fn inline_and_file_blobs_round_trip_with_ranges() {
    let (dir, store) = small_store();
    for (len, placement) in [
        (0, Placement::Inline),
        (1024, Placement::Inline),
        (1025, Placement::File),
        (3 << 20, Placement::File),
    ] {
        let data = bytes(len, 7);
        let put = store
            .put(data.as_slice(), &PutOptions::default())
            .expect("put");
        assert!(put.created);
        assert_eq!(put.size, len as u64);
        assert_eq!(put.digest, Hasher::digest_of(Algorithm::Sha256, &data));
        let info = store.stat(&put.digest).expect("stat");
        assert_eq!(info.placement, placement, "len {len}");
        assert_eq!(read_all(&store, &put.digest), data);
        assert!(store.exists(&put.digest).expect("exists"));
        if placement == Placement::File {
            assert!(put.digest.blob_path(dir.path()).is_file());
        }
        if len > 10 {
            let mut part = Vec::new();
            store
                .get_range(&put.digest, 3, 9)
                .expect("range")
                .read_to_end(&mut part)
                .expect("read");
            assert_eq!(part, &data[3..=9], "END is inclusive");
            // END past the blob is clamped, as HTTP does.
            let mut tail = Vec::new();
            store
                .get_range(&put.digest, len as u64 - 2, u64::MAX)
                .expect("range")
                .read_to_end(&mut tail)
                .expect("read");
            assert_eq!(tail, &data[len - 2..]);
            assert!(matches!(
                store.get_range(&put.digest, len as u64, len as u64 + 5),
                Err(Error::InvalidRange { .. })
            ));
            assert!(matches!(
                store.get_range(&put.digest, 5, 4),
                Err(Error::InvalidRange { .. })
            ));
        }
    }
}

#[test]
fn mismatches_store_nothing() {
    let (dir, store) = small_store();
    for len in [10usize, 5000] {
        let data = bytes(len, 1);
        let wrong = Hasher::digest_of(Algorithm::Sha256, b"something else");
        let err = store
            .put(data.as_slice(), &PutOptions::expect(wrong))
            .expect_err("digest mismatch");
        match err {
            Error::DigestMismatch { expected, actual } => {
                assert_eq!(*expected, wrong);
                assert_eq!(*actual, Hasher::digest_of(Algorithm::Sha256, &data));
            }
            other => panic!("expected DigestMismatch, got {other}"),
        }
        let right = Hasher::digest_of(Algorithm::Sha256, &data);
        let err = store
            .put(
                data.as_slice(),
                &PutOptions::default().digest(right).size(len as u64 - 1),
            )
            .expect_err("size mismatch");
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        // A truncated stream: the promised size is larger than what arrives.
        let err = store
            .put(
                &data[..len / 2],
                &PutOptions::default().digest(right).size(len as u64),
            )
            .expect_err("truncated");
        assert!(
            err.to_string().contains(&format!("expected {len} bytes")),
            "{err}"
        );
        assert!(!store.exists(&right).expect("exists"));
    }
    drop(store);
    let tmp_left = std::fs::read_dir(dir.path().join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(tmp_left, 0, "failed puts leave no temp files");
    let files = std::fs::read_dir(dir.path().join("blobs/sha256"))
        .expect("blobs")
        .count();
    assert_eq!(files, 0, "failed puts leave no blob files");
}

#[test]
fn sha512_blobs_are_supported() {
    let (_dir, store) = small_store();
    let data = bytes(4000, 3);
    let d = Hasher::digest_of(Algorithm::Sha512, &data);
    let put = store
        .put(data.as_slice(), &PutOptions::expect(d))
        .expect("put");
    assert_eq!(put.digest, d);
    assert_eq!(read_all(&store, &d), data);
}

#[test]
fn putting_an_existing_blob_reads_and_hashes_it_but_writes_nothing() {
    let (dir, store) = small_store();
    let data = bytes(10_000, 4);
    let first = store
        .put(data.as_slice(), &PutOptions::default().repository("app/a"))
        .expect("put");
    let path = first.digest.blob_path(dir.path());
    let before = std::fs::metadata(&path).expect("meta");
    struct Explodes;
    impl Read for Explodes {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the reader must not be read"))
        }
    }
    // To a repository that holds it, the reader is not even read: the
    // repository gains nothing.
    let again = store
        .put(
            Explodes,
            &PutOptions::expect(first.digest).repository("app/a"),
        )
        .expect("no-op");
    assert!(!again.created);
    // Anywhere else, naming the digest is not enough: the bytes are read.
    let e = store
        .put(
            Explodes,
            &PutOptions::expect(first.digest).repository("app/b"),
        )
        .expect_err("the reader is read");
    assert!(e.to_string().contains("must not be read"), "{e}");
    let e = store
        .put(
            &b""[..],
            &PutOptions::expect(first.digest).repository("app/b"),
        )
        .expect_err("an empty body");
    assert_eq!(e.kind(), ocidb::ErrorKind::InvalidDigest, "{e}");
    assert!(!store.is_member("app/b", &first.digest).expect("member"));
    // The right bytes link it, and are hashed but not rewritten.
    let again = store
        .put(
            data.as_slice(),
            &PutOptions::expect(first.digest).repository("app/b"),
        )
        .expect("verified");
    assert!(!again.created);
    assert!(store.is_member("app/b", &first.digest).expect("member"));
    // Without the digest, the content is hashed but not rewritten.
    let again = store
        .put(data.as_slice(), &PutOptions::default())
        .expect("put");
    assert!(!again.created);
    let after = std::fs::metadata(&path).expect("meta");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(before.ino(), after.ino(), "the file was not replaced");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[test]
fn delete_removes_record_and_file() {
    let (dir, store) = small_store();
    let big = store
        .put(bytes(5000, 5).as_slice(), &PutOptions::default())
        .expect("put");
    let small = store
        .put(bytes(10, 5).as_slice(), &PutOptions::default())
        .expect("put");
    store.delete(&big.digest).expect("delete");
    store.delete(&small.digest).expect("delete");
    assert!(!big.digest.blob_path(dir.path()).exists());
    for d in [big.digest, small.digest] {
        assert!(!store.exists(&d).expect("exists"));
        assert!(matches!(store.stat(&d), Err(Error::BlobUnknown { .. })));
        assert!(matches!(store.delete(&d), Err(Error::BlobUnknown { .. })));
    }
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut puts = Vec::new();
    {
        let store = Store::create(dir.path()).expect("create");
        for i in 0..20u8 {
            let data = bytes(100 + usize::from(i) * 9000, i);
            puts.push((
                store
                    .put(
                        data.as_slice(),
                        &PutOptions::default().media_type(format!("application/x-test-{i}")),
                    )
                    .expect("put"),
                data,
            ));
        }
    }
    let store = Store::open(dir.path()).expect("reopen");
    for (i, (p, data)) in puts.iter().enumerate() {
        let info = store.stat(&p.digest).expect("stat");
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(
            info.media_type.as_deref(),
            Some(format!("application/x-test-{i}").as_str())
        );
        assert_eq!(&read_all(&store, &p.digest), data);
        store.verify(&p.digest).expect("verify");
    }
}

#[test]
fn no_sync_puts_become_durable_with_the_next_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = bytes(300_000, 9);
    let d = {
        let store = Store::create(dir.path()).expect("create");
        let p = store
            .put(data.as_slice(), &PutOptions::default().no_sync(true))
            .expect("put");
        store.sync().expect("sync");
        p.digest
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(read_all(&store, &d), data);
}

#[test]
fn corruption_on_disk_is_detected_by_verified_reads() {
    let (dir, store) = small_store();
    let data = bytes(50_000, 11);
    let p = store
        .put(data.as_slice(), &PutOptions::default())
        .expect("put");
    let path = p.digest.blob_path(dir.path());
    let mut on_disk = std::fs::read(&path).expect("read");
    on_disk[1234] ^= 0x40;
    // Blob files are read-only for the store; an outside actor changes them.
    std::fs::write(&path, &on_disk).expect("corrupt it");
    let err = store.verify(&p.digest).expect_err("corrupt");
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(&p.digest.to_string()));
    let mut sink = Vec::new();
    let e = store
        .get_verified(&p.digest)
        .expect("open")
        .read_to_end(&mut sink)
        .expect_err("verified read fails");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    // A truncated file is corrupt too.
    std::fs::write(&path, &on_disk[..100]).expect("truncate");
    assert!(matches!(store.verify(&p.digest), Err(Error::Corrupt(_))));
    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(store.verify(&p.digest), Err(Error::Corrupt(_))));
}

#[test]
fn open_cleans_temp_files_and_intent_listed_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept;
    {
        let store = Store::create(dir.path()).expect("create");
        kept = store
            .put(bytes(100_000, 1).as_slice(), &PutOptions::default())
            .expect("put");
    }
    // What a crash can leave: a half-written temp file, and a blob file that
    // was renamed into place but whose record never committed (listed in the
    // intent written before the rename).
    let orphan = Hasher::digest_of(Algorithm::Sha256, b"orphan");
    std::fs::write(orphan.blob_path(dir.path()), b"orphan").expect("orphan");
    std::fs::write(dir.path().join("tmp/put-1-1"), b"partial").expect("tmp");
    std::fs::write(
        dir.path().join("tmp/intent"),
        format!("{orphan}\n{}\n", kept.digest),
    )
    .expect("intent");
    let store = Store::open(dir.path()).expect("reopen");
    assert!(!orphan.blob_path(dir.path()).exists(), "orphan removed");
    assert!(
        kept.digest.blob_path(dir.path()).exists(),
        "recorded file kept"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
    store.verify(&kept.digest).expect("intact");
}

#[test]
fn open_refuses_what_is_not_a_store_and_a_second_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Store::open(dir.path().join("nope")),
        Err(Error::NotAStore { .. })
    ));
    assert!(matches!(
        Store::open(dir.path()),
        Err(Error::NotAStore { .. })
    ));
    let store = Store::create(dir.path()).expect("create");
    // A second open in the same process says so, not "another process".
    let err = Store::open(dir.path()).expect_err("already open");
    assert!(matches!(err, Error::AlreadyOpen { .. }), "{err}");
    assert!(
        err.to_string().contains("already open in this process"),
        "{err}"
    );
    let err = Store::open(
        dir.path()
            .join("../")
            .join(dir.path().file_name().expect("name")),
    )
    .expect_err("the same directory by another path");
    assert!(matches!(err, Error::AlreadyOpen { .. }), "{err}");
    assert_eq!(err.kind(), ocidb::ErrorKind::Locked);
    // Closed, it opens again.
    drop(store);
    Store::open(dir.path()).expect("reopen after close");
}

#[test]
fn many_threads_share_the_store() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let (_dir, store) = small_store();
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for t in 0..8u8 {
        let s = Arc::clone(&store);
        handles.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            for i in 0..40u8 {
                let data = bytes(50 + usize::from(i) * 60, t.wrapping_mul(41).wrapping_add(i));
                let p = s.put(data.as_slice(), &PutOptions::default()).expect("put");
                // Readers run while other threads commit.
                assert_eq!(read_all(&s, &p.digest), data);
                mine.push(p.digest);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread"));
    }
    for d in all {
        store.verify(&d).expect("verify");
    }
}
