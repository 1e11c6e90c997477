//! Format migration: a format-1, 2, 3 and 4 store, each written by the
//! build of its format (checked in under tests/fixtures/v1-store to
//! v4-store, with what that build read back from it), are refused by
//! `Store::open` with an error naming `ocidb migrate`, upgraded by it, and
//! then read back exactly what their build read. A migration killed at any
//! point leaves a store that opens in the old format (and migrates later)
//! or in the new one, never a mix.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::cli::{command, fails, ocidb, ok};
use ocidb::store::STORE_FORMAT;
use ocidb::{ErrorKind, FsckOptions, ManifestOptions, ManualClock, Store, StoreOptions};

/// The formats with a fixture store, each written by its own build.
const OLD_FORMATS: [u8; 4] = [1, 2, 3, 4];

/// The format upgraded in place (one transaction adding empty tables):
/// no rows are copied.
const IN_PLACE: u8 = 4;

fn fixture(format: u8) -> PathBuf {
    common::repo_root().join(format!("tests/fixtures/v{format}-store"))
}

/// A writable copy of the fixture store of `format` (git keeps no
/// read-only bits, and the store must be writable anyway).
fn copy_fixture(format: u8, to: &Path) -> PathBuf {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir") {
            let e = e.expect("entry");
            let target = to.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).expect("copy");
            }
        }
    }
    let store = to.join("store");
    copy_dir(&fixture(format).join("store"), &store);
    store
}

/// A clock reading the time the fixture of `format` was written (its
/// newest record's creation time), so that what the old build read back,
/// leases and their expiry included, holds on whatever date the test runs.
fn fixture_clock(format: u8) -> Arc<ManualClock> {
    let (snap, _) = expected(format);
    let written = snap
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("created="))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .expect("the snapshot names its records' creation times");
    Arc::new(ManualClock::new(written))
}

/// Opens the (migrated) fixture store at the fixture's time.
fn open_at_fixture_time(format: u8, store: &Path) -> ocidb::Result<Store> {
    Store::open_with(
        store,
        StoreOptions::default().clock(fixture_clock(format)),
        false,
    )
}

/// The migrated store reads back what the fixture's build read: from
/// format 3 on, its tag history and usage too (older formats kept
/// neither).
fn assert_reads_back(format: u8, s: &Store, why: &str) {
    let (snap, upload) = expected(format);
    common::assert_same_text(&common::rich::snapshot(s, &upload), &snap, why);
    if format >= 3 {
        let since_v3 = std::fs::read_to_string(fixture(format).join("snapshot-since-v3.txt"))
            .expect("snapshot");
        common::assert_same_text(&common::rich::snapshot_since_v3(s), &since_v3, why);
    }
}

fn expected(format: u8) -> (String, String) {
    let snap = std::fs::read_to_string(fixture(format).join("snapshot.txt")).expect("snapshot");
    let upload = std::fs::read_to_string(fixture(format).join("upload-id")).expect("upload id");
    (snap, upload)
}

/// The store opens in the current format and reads back what the old
/// build read, or it is still in the old `format` and says so (in which
/// case it is migrated and checked). Returns whether it was still old.
fn check_either_format(format: u8, store: &Path) -> bool {
    let still_v1 = match open_at_fixture_time(format, store) {
        Ok(s) => {
            assert_reads_back(format, &s, "a migrated store lost something");
            false
        }
        Err(e) if e.kind() == ErrorKind::UpgradeRequired => {
            Store::migrate(store).expect("migrate after the crash");
            true
        }
        Err(e) => panic!("the store opens neither as v1 nor as v2: {e}"),
    };
    let s = open_at_fixture_time(format, store).expect("open migrated");
    assert_reads_back(format, &s, "migrated");
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(!store.join(ocidb::maint::migrate::MIGRATING_FILE).exists());
    still_v1
}

#[test]
fn old_stores_are_refused_then_migrated_and_read_back_the_same() {
    for format in OLD_FORMATS {
        refused_then_migrated(format);
    }
}

fn refused_then_migrated(format: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = copy_fixture(format, dir.path());
    let e = Store::open(&store).expect_err("an old format is refused");
    assert_eq!(e.kind(), ErrorKind::UpgradeRequired, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("format {format}")) && msg.contains("migrate"),
        "{msg}"
    );
    // Refused again: opening wrote nothing of the new format.
    let e = Store::open(&store).expect_err("still old");
    assert_eq!(e.kind(), ErrorKind::UpgradeRequired, "{e}");

    let report = Store::migrate(&store).expect("migrate");
    assert_eq!((report.from, report.to), (format, STORE_FORMAT));
    if format == IN_PLACE {
        assert!(report.rows.is_empty(), "{:?}", report.rows);
    } else {
        assert_copied_every_table(format, &report.rows);
    }
    after_migration(format, &store, report.rows.get("bodies").copied());
}

/// A copying migration wrote rows of every table the fixture fills.
fn assert_copied_every_table(format: u8, rows: &std::collections::BTreeMap<String, u64>) {
    assert!(rows["blobs"] > 200, "{rows:?}");
    for table in [
        "edges_out",
        "edges_in",
        "referrers",
        "tags",
        "tagged",
        "members",
        "member_of",
        "leases",
        "lease_items",
        "uploads",
        "bodies",
        "artifact_types",
        "repos",
    ]
    .into_iter()
    .chain(
        if format >= 3 {
            &["tag_history", "tag_history_time", "repo_names", "usage"][..]
        } else {
            &[]
        }
        .iter()
        .copied(),
    ) {
        assert!(rows.get(table).is_some_and(|n| *n > 0), "{table}: {rows:?}");
    }
}

/// The migrated store reads back what its old build read, and keeps
/// working. `bodies`: the rows a copying migration wrote to `bodies`.
fn after_migration(format: u8, store: &Path, bodies_copied: Option<u64>) {
    // Every inline body moved to `bodies`: nothing is left keyed by digest.
    {
        use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableDefinition};
        const INLINE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inline");
        const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
        let db = redb::Database::open(store.join("ocidb.redb")).expect("raw open");
        let txn = db.begin_read().expect("read");
        match txn.open_table(INLINE) {
            Ok(t) => assert_eq!(t.len().expect("len"), 0, "inline rows left"),
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => panic!("{e}"),
        }
        let bodies = txn.open_table(BODIES).expect("bodies").len().expect("len");
        assert!(bodies > 0, "no bodies");
        if let Some(n) = bodies_copied {
            assert_eq!(bodies, n);
        }
    }
    let (_, upload) = expected(format);
    let s = open_at_fixture_time(format, store).expect("open migrated");
    assert_reads_back(format, &s, "migrated");
    let fsck = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
    // The migrated store keeps working: a new referrer, an upload finished,
    // and a GC that takes nothing it should keep.
    let subject = s
        .resolve("app/web", &ocidb::Reference::Tag("v0".into()))
        .expect("v0");
    let body = serde_json::json!({
        "schemaVersion": 2, "mediaType": ocidb::manifest::OCI_MANIFEST,
        "artifactType": "application/vnd.after.migration",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [],
        "subject": {"mediaType": ocidb::manifest::OCI_MANIFEST, "digest": subject.to_string(), "size": s.stat(&subject).expect("stat").size},
    });
    s.put_manifest(
        "app/web",
        body.to_string().as_bytes(),
        &ManifestOptions::default(),
    )
    .expect("referrer after migration");
    let listed = s
        .referrers(
            "app/web",
            &subject,
            &ocidb::ReferrersQuery::default().artifact_type("application/vnd.after.migration"),
        )
        .expect("referrers");
    assert_eq!(listed.index.manifests.len(), 1);
    let tail = b" and the rest";
    let mut all = b"first part of an upload".to_vec();
    all.extend_from_slice(tail);
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &all);
    s.finish_upload(&upload, &d, &tail[..])
        .expect("finish the old format's upload");
    assert_eq!(s.read(&d).expect("read"), all);
    s.gc(&common::grace0(false)).expect("gc");
    drop(s);
    let s = open_at_fixture_time(format, store).expect("reopen");
    let fsck = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
    drop(s);
    // Migrating again does nothing.
    let again = Store::migrate(store).expect("again");
    assert_eq!((again.from, again.to), (STORE_FORMAT, STORE_FORMAT));
    assert!(again.rows.is_empty());
}

#[test]
fn the_cli_names_the_command_and_runs_it() {
    for format in OLD_FORMATS {
        cli_migrates(format);
    }
}

fn cli_migrates(format: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = copy_fixture(format, dir.path());
    let err = fails(&ocidb(&store, &["repos"]));
    assert!(
        err.contains("migrate") && err.contains(&store.display().to_string()),
        "{err}"
    );
    let out = ok(&ocidb(&store, &["migrate", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (report["from"].as_u64(), report["to"].as_u64()),
        (Some(u64::from(format)), Some(u64::from(STORE_FORMAT)))
    );
    assert!(report["bytes_after"].as_u64() > Some(0));
    assert_eq!(ok(&ocidb(&store, &["repos"])).lines().count(), 3);
    assert!(ok(&ocidb(&store, &["migrate"])).contains("nothing to do"));
}

/// The migration aborted (as by kill -9: no destructor, no flush) at each
/// of its steps in turn: after each, the store is whole in one format.
#[test]
fn a_migration_aborted_at_every_step_leaves_one_format() {
    for format in OLD_FORMATS {
        aborted_at_every_step(format);
    }
}

fn aborted_at_every_step(format: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut old, mut new) = (0, 0);
    let mut at = 1;
    loop {
        let store = copy_fixture(format, &dir.path().join(format!("step{at}")));
        let status = command(&store)
            .args([
                "debug",
                "migrate-abort",
                "--batch",
                "64",
                "--at",
                &at.to_string(),
            ])
            .stderr(Stdio::null())
            .status()
            .expect("run");
        let finished = status.success();
        if check_either_format(format, &store) {
            old += 1;
        } else {
            new += 1;
        }
        std::fs::remove_dir_all(dir.path().join(format!("step{at}"))).ok();
        if finished {
            // The step count ran past the last step: the run completed.
            break;
        }
        at += 1;
        assert!(at < 500, "the migration never finished");
    }
    eprintln!(
        "from format {format}, aborted at each of {at} steps: {old} found format {format}, \
         {new} format {STORE_FORMAT}"
    );
    // In place, the one step before the commit; copying, every batch.
    let before = if format == IN_PLACE { 1 } else { 10 };
    assert!(old >= before, "aborts before the rename or commit: {old}");
    // Aborting at the last step (after the rename), and the completed run.
    assert!(new >= 2, "aborts after the rename: {new}");
}

/// SIGKILL at random moments during `ocidb migrate`.
#[test]
fn migrations_killed_at_random_moments_leave_one_format() {
    for format in OLD_FORMATS {
        killed_at_random_moments(format);
    }
}

fn killed_at_random_moments(format: u8) {
    let cycles = common::env_u64("OCIDB_MIGRATE_CYCLES", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    // How long a whole migration takes here, to spread the kills over it.
    let store = copy_fixture(format, &dir.path().join("timing"));
    let t = std::time::Instant::now();
    ok(&ocidb(&store, &["migrate"]));
    let span = t.elapsed().as_micros() as u64 + 1;
    let mut rng = common::Rng(0xC0FF_EE00_D15E_A5E5);
    let mut outcomes = [0u32; 2];
    for cycle in 0..cycles {
        let root = dir.path().join(format!("c{cycle}"));
        let store = copy_fixture(format, &root);
        let mut child = command(&store)
            .arg("migrate")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(rng.next() % (span + span / 5)));
        child.kill().ok();
        child.wait().expect("reap");
        outcomes[usize::from(check_either_format(format, &store))] += 1;
        std::fs::remove_dir_all(&root).ok();
    }
    eprintln!(
        "killed migrations from format {format}: {} found format {STORE_FORMAT}, {} found format {format}",
        outcomes[0], outcomes[1]
    );
}

/// Stores written by early builds kept the GC change log in a `gc_log`
/// table; the migration leaves it behind, and GC works as before.
#[test]
fn the_retired_gc_log_table_is_not_carried_over() {
    use redb::{ReadableDatabase as _, TableDefinition, TableHandle as _};
    const OLD: TableDefinition<u64, &[u8; 65]> = TableDefinition::new("gc_log");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = copy_fixture(1, dir.path());
    let file = store.join("ocidb.redb");
    {
        let db = redb::Database::open(&file).expect("raw open");
        let txn = db.begin_write().expect("txn");
        txn.open_table(OLD)
            .expect("table")
            .insert(7, &[1u8; 65])
            .expect("insert");
        txn.commit().expect("commit");
    }
    Store::migrate(&store).expect("migrate");
    let s = Store::open(&store).expect("open");
    s.put_bytes(b"orphan", &ocidb::PutOptions::default())
        .expect("orphan");
    let r = s.gc(&common::grace0(true)).expect("gc");
    assert!(r.deleted_blobs >= 1, "{r:?}");
    drop(s);
    let db = redb::Database::open(&file).expect("raw open");
    let names: Vec<String> = db
        .begin_read()
        .expect("read")
        .list_tables()
        .expect("tables")
        .map(|t| t.name().to_string())
        .collect();
    assert!(!names.iter().any(|n| n == "gc_log"), "{names:?}");
    assert!(names.iter().any(|n| n == "blobs"), "{names:?}");
}

/// A format-1 store last opened by an early format-1 build lacks the
/// tables added later (`intents`, `uploads`): they migrate as empty.
#[test]
fn a_v1_store_without_the_later_tables_migrates() {
    use redb::TableDefinition;
    const INTENTS: TableDefinition<&[u8; 65], &[u8]> = TableDefinition::new("intents");
    const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = copy_fixture(1, dir.path());
    {
        let db = redb::Database::open(store.join("ocidb.redb")).expect("raw open");
        let txn = db.begin_write().expect("txn");
        assert!(txn.delete_table(INTENTS).expect("delete intents"));
        assert!(txn.delete_table(UPLOADS).expect("delete uploads"));
        txn.commit().expect("commit");
    }
    let report = Store::migrate(&store).expect("migrate");
    assert!(!report.rows.contains_key("uploads") && !report.rows.contains_key("intents"));
    let s = Store::open(&store).expect("open v2");
    assert_eq!(s.repositories().expect("repos").len(), 3);
    // The upload's bytes had no session left: removed at open.
    assert!(s.uploads().expect("uploads").is_empty());
    let fsck = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
}
