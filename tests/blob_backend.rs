//! The blob backend seam: one suite for every implementation, a store that
//! runs on a backend with no filesystem under it, and the intent table's
//! recovery when the backend fails between a record's commit and its bytes'.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ocidb::blob::{BlobRead, BlobWrite, Listed, Staged, UploadWrite};
use ocidb::{
    BlobBackend, Digest, FsckOptions, GcPolicy, LocalFiles, MemoryBlobs, PutOptions, Result, Store,
    StoreOptions,
};

#[test]
fn local_files_pass_the_backend_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    common::assert_suite("LocalFiles", &|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalFiles::new(dir.path()).expect("local backend");
        dirs.lock().expect("dirs").push(dir);
        Arc::new(b)
    });
}

#[test]
fn memory_blobs_pass_the_backend_suite() {
    common::assert_suite("MemoryBlobs", &|| Arc::new(MemoryBlobs::new()));
}

/// The suite itself can fail: a backend that loses committed bytes is
/// caught.
#[test]
fn the_suite_catches_a_backend_that_forgets() {
    #[derive(Debug, Default)]
    struct Forgetful(MemoryBlobs);
    impl BlobBackend for Forgetful {
        fn stage(&self) -> Result<Box<dyn BlobWrite>> {
            self.0.stage()
        }
        fn sync_staging(&self, _: &[Staged]) -> Result<()> {
            Ok(())
        }
        fn commit(&self, staged: &Staged, _d: &Digest) -> Result<()> {
            self.0.discard(staged)
        }
        fn sync(&self, _: &[Digest]) -> Result<()> {
            Ok(())
        }
        fn discard(&self, staged: &Staged) -> Result<()> {
            self.0.discard(staged)
        }
        fn open(&self, d: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
            self.0.open(d)
        }
        fn open_staged(&self, s: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
            self.0.open_staged(s)
        }
        fn remove(&self, d: &Digest) -> Result<bool> {
            self.0.remove(d)
        }
        fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
            self.0.list(each)
        }
        fn list_staged(&self) -> Result<Vec<Staged>> {
            self.0.list_staged()
        }
        fn upload_create(&self, id: &str) -> Result<()> {
            self.0.upload_create(id)
        }
        fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
            self.0.upload_append(id, offset)
        }
        fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
            self.0.upload_open(id)
        }
        fn upload_finish(&self, id: &str) -> Result<Staged> {
            self.0.upload_finish(id)
        }
        fn upload_remove(&self, id: &str) -> Result<()> {
            self.0.upload_remove(id)
        }
        fn upload_list(&self) -> Result<Vec<String>> {
            self.0.upload_list()
        }
    }
    let outcomes = ocidb::blob::suite::run(&|| Arc::new(Forgetful::default()));
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    assert!(
        failed >= 3,
        "only {failed} checks caught a backend that drops every commit"
    );
}

fn opts_with(backend: Arc<dyn BlobBackend>) -> StoreOptions {
    StoreOptions::default().backend(backend)
}

/// Large blobs, deletion, GC and fsck all work on a backend that is not a
/// filesystem: nothing in the engine assumes blob files.
#[test]
fn a_store_runs_on_the_memory_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = MemoryBlobs::new();
    let s = Store::open_with(dir.path(), opts_with(Arc::new(mem.clone())), true).expect("open");
    let big = ocidb_testkit::deterministic_bytes(b"mem", 300_000);
    let put = s.put_bytes(&big, &PutOptions::default()).expect("put");
    assert!(put.created);
    let mut back = Vec::new();
    s.get(&put.digest)
        .expect("get")
        .read_to_end(&mut back)
        .expect("read");
    assert_eq!(back, big);
    s.verify(&put.digest).expect("verify");
    let mut n = 0;
    mem.list(&mut |_| {
        n += 1;
        Ok(())
    })
    .expect("list");
    assert_eq!(n, 1, "the bytes live in the memory backend");
    assert!(
        !dir.path().join("blobs").exists(),
        "no blob directory is made for another backend"
    );
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{report:?}");
    let gc = s.gc(&common::grace0(false)).expect("gc");
    assert_eq!(gc.deleted_blobs, 1, "an unreferenced blob is collected");
    assert!(
        mem.open(&put.digest).expect("open").is_none(),
        "its bytes went"
    );
}

/// A backend whose commit fails on demand, to stand for a crash between
/// the commit of a record and the commit of its bytes.
#[derive(Debug)]
struct FailingCommit {
    inner: LocalFiles,
    fail: AtomicBool,
}

impl BlobBackend for FailingCommit {
    fn stage(&self) -> Result<Box<dyn BlobWrite>> {
        self.inner.stage()
    }
    fn sync_staging(&self, unsynced: &[Staged]) -> Result<()> {
        self.inner.sync_staging(unsynced)
    }
    fn commit(&self, staged: &Staged, d: &Digest) -> Result<()> {
        if self.fail.load(Ordering::Acquire) {
            return Err(ocidb::Error::io(
                "committing (injected)",
                std::io::Error::other("injected failure"),
            ));
        }
        self.inner.commit(staged, d)
    }
    fn sync(&self, names: &[Digest]) -> Result<()> {
        self.inner.sync(names)
    }
    fn discard(&self, staged: &Staged) -> Result<()> {
        self.inner.discard(staged)
    }
    fn open(&self, d: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
        self.inner.open(d)
    }
    fn open_staged(&self, s: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
        self.inner.open_staged(s)
    }
    fn remove(&self, d: &Digest) -> Result<bool> {
        self.inner.remove(d)
    }
    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
        self.inner.list(each)
    }
    fn list_staged(&self) -> Result<Vec<Staged>> {
        self.inner.list_staged()
    }
    fn upload_create(&self, id: &str) -> Result<()> {
        self.inner.upload_create(id)
    }
    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
        self.inner.upload_append(id, offset)
    }
    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
        self.inner.upload_open(id)
    }
    fn upload_finish(&self, id: &str) -> Result<Staged> {
        self.inner.upload_finish(id)
    }
    fn upload_remove(&self, id: &str) -> Result<()> {
        self.inner.upload_remove(id)
    }
    fn upload_list(&self) -> Result<Vec<String>> {
        self.inner.upload_list()
    }
}

fn blob_file(root: &Path, d: &Digest) -> std::path::PathBuf {
    root.join("blobs/sha256").join(d.hex())
}

#[test]
fn bytes_whose_commit_failed_are_read_from_staging_and_rolled_forward_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Arc::new(FailingCommit {
        inner: LocalFiles::new(dir.path()).expect("local"),
        fail: AtomicBool::new(true),
    });
    let big = ocidb_testkit::deterministic_bytes(b"roll forward", 200_000);
    let d = {
        let s = Store::open_with(dir.path(), opts_with(backend), true).expect("open");
        // The record commits; the bytes stay staged, and the store stops
        // taking writes (what a crash at that point leaves, minus the exit).
        let put = s
            .put_bytes(&big, &PutOptions::default())
            .expect("acknowledged");
        assert!(!blob_file(dir.path(), &put.digest).exists());
        let mut back = Vec::new();
        s.get(&put.digest)
            .expect("get falls back to the staged bytes")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, big);
        let err = s
            .put_bytes(b"next", &PutOptions::default())
            .expect_err("poisoned");
        assert_eq!(err.kind(), ocidb::ErrorKind::Poisoned, "{err}");
        put.digest
    };
    let s = Store::open(dir.path()).expect("reopen");
    assert!(
        blob_file(dir.path(), &d).exists(),
        "the open rolled the staged bytes forward"
    );
    s.verify(&d).expect("verify");
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{report:?}");
    let staged_left = std::fs::read_dir(dir.path().join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(staged_left, 0, "nothing is left staged");
}

#[test]
fn a_gc_on_another_backend_honours_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mem = MemoryBlobs::new();
    let s = Store::open_with(dir.path(), opts_with(Arc::new(mem)), true).expect("open");
    let put = s
        .put_bytes(&vec![7u8; 100_000], &PutOptions::default())
        .expect("put");
    let report = s.gc(&GcPolicy::default()).expect("gc");
    assert_eq!(report.deleted_blobs, 0, "a fresh upload is a root");
    assert!(s.exists(&put.digest).expect("exists"));
}
