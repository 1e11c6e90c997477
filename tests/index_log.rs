//! The index log (`ocidb::log`): every commit ships its changes before it
//! is acknowledged, and a store is rebuilt from the log alone. Here over
//! blobs and a log in memory; `crates/cli/tests/s3.rs` does the same on
//! Garage through the CLI.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::rich;
use ocidb::log::{IndexLog, MemoryLog};
use ocidb::{BlobBackend, ErrorKind, ManualClock, MemoryBlobs, Store, StoreOptions};

/// The options of one store over `blobs` and `log`, on a fixed clock.
fn opts(blobs: &MemoryBlobs, log: Arc<dyn IndexLog>) -> StoreOptions {
    StoreOptions::default()
        .backend(Arc::new(blobs.clone()) as Arc<dyn BlobBackend>)
        .index_log(log)
        .clock(Arc::new(ManualClock::new(1_750_000_000_000)))
}

fn open(dir: &Path, blobs: &MemoryBlobs, log: Arc<dyn IndexLog>) -> Store {
    Store::open_with(dir, opts(blobs, log), true).expect("open")
}

/// The image of the store in `dir` once it is closed and opened again:
/// what it holds with nothing left in flight.
fn settled_image(dir: &Path, blobs: &MemoryBlobs, log: Arc<dyn IndexLog>) -> Vec<u8> {
    let s = open(dir, blobs, log);
    s.index_image().expect("image")
}

fn restore(
    dir: &Path,
    blobs: &MemoryBlobs,
    log: Arc<dyn IndexLog>,
) -> (Store, ocidb::maint::index_log::RestoreReport) {
    let mut phases = Vec::new();
    let (s, report) =
        Store::restore(dir, opts(blobs, log), &mut |p| phases.push(p.phase)).expect("restore");
    assert!(phases.contains(&"snapshot"), "{phases:?}");
    (s, report)
}

#[test]
fn a_rich_store_restores_from_its_log_alone_table_for_table() {
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let s = open(&a, &blobs, Arc::new(log.clone()));
    assert!(s.has_index_log());
    let upload = rich::populate(&s);
    let text = rich::snapshot(&s, &upload);
    drop(s);
    let want = settled_image(&a, &blobs, Arc::new(log.clone()));
    std::fs::remove_dir_all(&a).expect("lose the store");

    let (r, report) = restore(&b, &blobs, Arc::new(log.clone()));
    assert_eq!(report.snapshot, 0, "the first open's snapshot: {report:?}");
    assert!(report.log_objects > 10, "{report:?}");
    assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
    assert_eq!(
        r.index_image().expect("image"),
        want,
        "every table, byte for byte"
    );
    assert_eq!(rich::snapshot(&r, &upload), text);

    // One more write and a GC on the restored store, a snapshot between
    // them (which prunes the log before it), then restore again.
    let extra = common::blob(&r, b"one more", "application/octet-stream");
    let body = common::image_body(&r, &[extra], None);
    common::put_manifest(&r, "app/web", &body, &["after-restore"]);
    let snap = r.snapshot_index().expect("snapshot");
    assert_eq!(
        snap.position,
        report.position + snap.position - report.position
    );
    assert!(snap.position > report.position);
    r.untag("app/web", "after-restore").expect("untag");
    let gc = r.gc(&common::grace0(true)).expect("gc");
    assert!(gc.deleted_manifests > 0, "{gc:?}");
    drop(r);
    let want = settled_image(&b, &blobs, Arc::new(log.clone()));
    let (r2, report2) = restore(&c, &blobs, Arc::new(log.clone()));
    assert_eq!(report2.snapshot, snap.position, "{report2:?}");
    assert!(report2.fsck.is_clean(), "{:?}", report2.fsck.problems);
    assert_eq!(r2.index_image().expect("image"), want);
    // A second snapshot keeps two: the first goes, and the log objects
    // the older kept one includes.
    let later = r2.snapshot_index().expect("snapshot");
    assert_eq!(
        (later.pruned_snapshots, later.position > snap.position),
        (1, true),
        "{later:?}"
    );
    assert!(later.pruned_log_objects > 10, "{later:?}");
    let names = log.names().expect("names");
    assert!(
        !names.iter().any(|n| n == "snapshots/00000000000000000000"),
        "{names:?}"
    );
    let first_log = names
        .iter()
        .find(|n| n.starts_with("log/"))
        .expect("log objects after it");
    assert_eq!(*first_log, format!("log/{:020}", snap.position + 1));
}

/// Fails every put while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: MemoryLog,
    down: AtomicBool,
}

impl IndexLog for Flaky {
    fn put(&self, name: &str, bytes: Vec<u8>) -> ocidb::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ocidb::Error::Backend {
                endpoint: "test".into(),
                op: format!("PUT {name}"),
                detail: "the log is down".into(),
            });
        }
        self.inner.put(name, bytes)
    }
    fn put_file(&self, name: &str, path: &Path) -> ocidb::Result<()> {
        self.inner.put_file(name, path)
    }
    fn get(&self, name: &str, max_len: u64) -> ocidb::Result<Option<Vec<u8>>> {
        self.inner.get(name, max_len)
    }
    fn get_to_file(&self, name: &str, path: &Path) -> ocidb::Result<bool> {
        self.inner.get_to_file(name, path)
    }
    fn list(&self, dir: &str) -> ocidb::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn delete(&self, name: &str) -> ocidb::Result<()> {
        self.inner.delete(name)
    }
}

#[test]
fn a_commit_whose_log_object_fails_is_neither_acknowledged_nor_kept() {
    let blobs = MemoryBlobs::new();
    let flaky = Arc::new(Flaky {
        inner: MemoryLog::new(),
        down: AtomicBool::new(false),
    });
    let root = tempfile::tempdir().expect("tempdir");
    let s = open(&root.path().join("a"), &blobs, flaky.clone());
    let cfg = common::blob(&s, b"{}", "application/vnd.oci.image.config.v1+json");
    let body = common::image_body(&s, &[], None);
    common::push_children(&s, "app/web", &body);
    flaky.down.store(true, Ordering::SeqCst);
    let bytes = serde_json::to_vec(&body).expect("json");
    let digest = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &bytes);
    let err = s
        .put_manifest(
            "app/web",
            &bytes,
            &ocidb::ManifestOptions::default().tags(["v1"]),
        )
        .expect_err("the log is down");
    assert!(err.to_string().contains("the log is down"), "{err}");
    assert!(
        !s.is_member("app/web", &digest).expect("member"),
        "nothing of the refused push is kept"
    );
    assert!(s.tags("app/web", None, None).expect("tags").is_empty());
    flaky.down.store(false, Ordering::SeqCst);
    common::put_manifest(&s, "app/web", &body, &["v1"]);
    drop(s);
    let want = settled_image(&root.path().join("a"), &blobs, flaky.clone());
    let (r, report) = restore(&root.path().join("b"), &blobs, flaky.clone());
    assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
    assert_eq!(r.index_image().expect("image"), want);
    assert!(r.stat(&common::digest_of(&cfg)).is_ok());
}

#[test]
fn an_open_applies_the_log_the_local_file_lacks() {
    // A store whose local file lost its last commits (a non-durable commit
    // lost in a crash, or a commit that failed after its log object
    // landed): the log has them, and the next open applies them.
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let root = tempfile::tempdir().expect("tempdir");
    let (a, old) = (root.path().join("a"), root.path().join("old"));
    let s = open(&a, &blobs, Arc::new(log.clone()));
    common::put_manifest(&s, "app/web", &common::image_body(&s, &[], None), &["v1"]);
    drop(s);
    copy_dir(&a, &old);
    // A snapshot a crash interrupted left its staging file: the next open
    // removes it.
    std::fs::write(old.join(".snapshot-1-2-3"), b"half").expect("stale");
    let s = open(&a, &blobs, Arc::new(log.clone()));
    let l = common::blob(&s, b"layer two", "application/vnd.oci.image.layer.v1.tar");
    common::put_manifest(&s, "app/db", &common::image_body(&s, &[l], None), &["v2"]);
    drop(s);
    let want = settled_image(&a, &blobs, Arc::new(log.clone()));
    std::fs::remove_dir_all(&a).expect("rm");
    std::fs::rename(&old, &a).expect("put the old file back");
    let s = open(&a, &blobs, Arc::new(log.clone()));
    assert!(
        !a.join(".snapshot-1-2-3").exists(),
        "the stale staging file went"
    );
    assert_eq!(
        s.tags("app/db", None, None).expect("tags"),
        vec!["v2".to_string()]
    );
    assert_eq!(s.index_image().expect("image"), want);
}

#[test]
fn an_altered_log_object_fails_the_restore_by_name_and_leaves_nothing() {
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let root = tempfile::tempdir().expect("tempdir");
    let s = open(&root.path().join("a"), &blobs, Arc::new(log.clone()));
    common::put_manifest(&s, "app/web", &common::image_body(&s, &[], None), &["v1"]);
    drop(s);
    let name = log
        .names()
        .expect("names")
        .into_iter()
        .rfind(|n| n.starts_with("log/"))
        .expect("a log object");
    let mut bytes = log.get(&name, u64::MAX).expect("get").expect("there");
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    log.put(&name, bytes).expect("put");
    let target = root.path().join("b");
    let err = Store::restore(&target, opts(&blobs, Arc::new(log.clone())), &mut |_| {})
        .map(|_| ())
        .expect_err("altered");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(!target.exists(), "no half-restored store");
    let stray: Vec<_> = std::fs::read_dir(root.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // A restore never writes over a store.
    let err = Store::restore(
        root.path().join("a"),
        opts(&blobs, Arc::new(log)),
        &mut |_| {},
    )
    .map(|_| ())
    .expect_err("not empty");
    assert!(
        err.to_string().contains("does not exist or is empty"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn snapshots_taken_at_once_do_not_share_a_file() {
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let root = tempfile::tempdir().expect("tempdir");
    let s = open(&root.path().join("a"), &blobs, Arc::new(log.clone()));
    rich::populate(&s);
    std::thread::scope(|sc| {
        let takers: Vec<_> = (0..4).map(|_| sc.spawn(|| s.snapshot_index())).collect();
        for t in takers {
            t.join().expect("thread").expect("snapshot");
        }
    });
    drop(s);
    let want = settled_image(&root.path().join("a"), &blobs, Arc::new(log.clone()));
    let (r, report) = restore(&root.path().join("b"), &blobs, Arc::new(log));
    assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
    assert_eq!(r.index_image().expect("image"), want);
}

#[test]
fn a_store_restores_to_a_log_position_or_a_time() {
    use ocidb::maint::index_log::RestoreTarget;
    const T0: u64 = 1_750_000_000_000;
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let clock = Arc::new(ManualClock::new(T0));
    let o = || {
        StoreOptions::default()
            .backend(Arc::new(blobs.clone()) as Arc<dyn BlobBackend>)
            .index_log(Arc::new(log.clone()) as Arc<dyn IndexLog>)
            .clock(Arc::clone(&clock) as Arc<dyn ocidb::Clock>)
    };
    let root = tempfile::tempdir().expect("tempdir");
    let s = Store::open_with(root.path().join("a"), o(), true).expect("open");
    let image = |seed: &[u8]| {
        let layer = common::blob(&s, seed, "application/vnd.oci.image.layer.v1.tar");
        let body = common::image_body(&s, &[layer], None);
        common::put_manifest(&s, "r/app", &body, &[]).digest
    };
    let (x, y) = (image(b"x"), image(b"y"));
    s.tag("r/app", "v1", &x).expect("tag");
    let at_a = s.snapshot_index().expect("snapshot").position;
    clock.advance(std::time::Duration::from_secs(60));
    s.tag("r/app", "v1", &y).expect("move");
    s.tag("r/app", "v2", &y).expect("tag");
    clock.advance(std::time::Duration::from_secs(60));
    s.untag("r/app", "v2").expect("untag");
    drop(s);
    let tags = |dir: &str, target: RestoreTarget| {
        let (r, report) =
            Store::restore_to(root.path().join(dir), o(), target, &mut |_| {}).expect("restore");
        assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
        drop(r);
        // Opened again with the same log, a copy of the past stays there,
        // and refuses writes: it shares its bucket with the live store.
        let r = Store::open_with(root.path().join(dir), o(), false).expect("reopen");
        if target != RestoreTarget::Newest {
            let e = r.untag("r/app", "v1").expect_err("read-only");
            assert!(e.to_string().contains("point-in-time copy"), "{e}");
            assert!(!r.has_index_log());
        }
        (r.tag_map("r/app").expect("tags"), report.position)
    };
    let (at_snapshot, p) = tags("b", RestoreTarget::Position(at_a));
    assert_eq!((at_snapshot, p), (vec![("v1".to_string(), x)], at_a));
    // One commit past the snapshot: the move of v1.
    let (moved, p) = tags("c", RestoreTarget::Position(at_a + 1));
    assert_eq!((moved, p), (vec![("v1".to_string(), y)], at_a + 1));
    // By time: after the second tag, before the untag.
    let (mid, _) = tags("d", RestoreTarget::Time(T0 + 90_000));
    assert_eq!(mid, vec![("v1".to_string(), y), ("v2".to_string(), y)]);
    let (newest, end) = tags("e", RestoreTarget::Newest);
    assert_eq!(newest, vec![("v1".to_string(), y)]);
    // Past the end, or before the log kept: refused by name, no store left.
    let e = Store::restore_to(
        root.path().join("f"),
        o(),
        RestoreTarget::Position(end + 5),
        &mut |_| {},
    )
    .expect_err("past the end");
    assert!(e.to_string().contains(&format!("it ends at {end}")), "{e}");
    assert!(!root.path().join("f").exists());
    let e = Store::restore_to(
        root.path().join("g"),
        o(),
        RestoreTarget::Time(T0 - 1),
        &mut |_| {},
    )
    .expect_err("before the log");
    assert!(e.to_string().contains("starts at position"), "{e}");
}

/// The diff a failed image comparison prints names each row that differs:
/// its table, its key, and each side's value (`-` for a missing row).
#[test]
fn an_image_diff_names_the_rows_that_differ() {
    let (blobs, log) = (MemoryBlobs::new(), MemoryLog::new());
    let root = tempfile::tempdir().expect("tempdir");
    let s = open(root.path(), &blobs, Arc::new(log));
    let before = s.index_image().expect("image");
    assert_eq!(
        Store::index_image_diff(&before, &before, 20).expect("diff"),
        Vec::<String>::new()
    );
    common::blob(&s, b"one blob", "application/octet-stream");
    let after = s.index_image().expect("image");
    let diff = Store::index_image_diff(&before, &after, 20).expect("diff");
    let blob_rows: Vec<&String> = diff.iter().filter(|r| r.starts_with("blobs ")).collect();
    assert_eq!(blob_rows.len(), 1, "{diff:#?}");
    assert!(blob_rows[0].contains(": - / "), "{diff:#?}");
    assert!(
        diff.iter()
            .any(|r| r.starts_with("meta 6c6f675f706f736974696f6e: ")),
        "the log position moved: {diff:#?}"
    );
    assert_eq!(
        Store::index_image_diff(&before, &after, 1)
            .expect("diff")
            .len(),
        1
    );
    let err = Store::index_image_diff(b"not an image", &after, 1).expect_err("not an image");
    assert!(err.to_string().contains("image a"), "{err}");
}
