//! The index log for operators: snapshots on demand, and restoring a
//! store from its log alone (`crate::log`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::backend;
use crate::error::{Error, Result};
use crate::log::{restore, snapshot, IndexLog, RestoreProgress, SnapshotInfo};
use crate::maint::fsck::FsckOptions;
use crate::store::{Store, StoreOptions};

/// What [`crate::Store::restore`] did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestoreReport {
    /// The position of the snapshot it started from.
    pub snapshot: u64,
    /// The snapshot's rows.
    pub rows: u64,
    /// Log objects applied after it.
    pub log_objects: u64,
    /// Bytes read from the log (snapshot and log objects).
    pub bytes: u64,
    /// The position the restored store holds.
    pub position: u64,
    /// The full fsck that ended the restore.
    pub fsck: crate::maint::fsck::FsckReport,
}

impl Store {
    /// Writes a snapshot of the index to the store's index log now, from a
    /// read transaction (writers go on), then prunes: the newest two
    /// snapshots are kept, and the log objects after the older of them.
    /// Fails with [`Error::InvalidArgument`] on a store without a log.
    pub fn snapshot_index(&self) -> Result<SnapshotInfo> {
        let Some(s) = &self.shipper else {
            return Err(Error::InvalidArgument {
                value: self.root.display().to_string(),
                expected: "a store with an index log: blobs in a bucket (`--blobs s3://…`) or StoreOptions::index_log".into(),
            });
        };
        self.shared.check()?;
        snapshot::take(
            &self.db,
            &**s.log(),
            s.store_id(),
            &self.root,
            self.shared.now_ms(),
        )
    }

    /// Every row of every table, encoded as a snapshot with a fixed header
    /// (feature `testing`): two stores whose images are equal hold
    /// identical tables, the log position included.
    #[cfg(feature = "testing")]
    pub fn index_image(&self) -> Result<Vec<u8>> {
        snapshot::image(&self.db)
    }

    /// The rows in which two [`Store::index_image`]s differ, at most
    /// `limit` (feature `testing`), each as `table key: a / b` in hex.
    #[cfg(feature = "testing")]
    pub fn index_image_diff(a: &[u8], b: &[u8], limit: usize) -> Result<Vec<String>> {
        snapshot::image_diff(a, b, limit)
    }

    /// Whether the store ships an index log.
    pub fn has_index_log(&self) -> bool {
        self.shipper.is_some()
    }

    /// Rebuilds a store in `dir` (which must not exist, or be empty) from
    /// the index log that `opts` names (the bucket of its `s3://` blob
    /// location, or [`StoreOptions::index_log`]) and nothing else: the
    /// newest snapshot, then every log object after it. The tables are
    /// built in a directory beside `dir` and renamed into place only when
    /// whole, so a failed or interrupted restore leaves no store behind.
    /// The store is then opened (settling what was in flight against the
    /// bucket) and checked by a full fsck, whose report comes back.
    pub fn restore(
        dir: impl AsRef<Path>,
        opts: StoreOptions,
        progress: &mut dyn FnMut(RestoreProgress),
    ) -> Result<(Store, RestoreReport)> {
        Store::restore_to(dir, opts, RestoreTarget::Newest, progress)
    }

    /// [`Store::restore`] to a point in time: the store as it was after
    /// the commit at a log position, or the last commit written at or
    /// before a time (ms since the epoch), from the newest snapshot at or
    /// before it. The point must lie in the log kept (after the older of
    /// the two snapshots the log keeps).
    pub fn restore_to(
        dir: impl AsRef<Path>,
        opts: StoreOptions,
        target: RestoreTarget,
        progress: &mut dyn FnMut(RestoreProgress),
    ) -> Result<(Store, RestoreReport)> {
        let dir = dir.as_ref();
        check_target(dir)?;
        let log = log_of(&opts)?;
        let upto = match target {
            RestoreTarget::Newest => None,
            RestoreTarget::Position(p) => Some(p),
            RestoreTarget::Time(ms) => Some(restore::position_at(&*log, ms)?),
        };
        let mut report = build_into(dir, &*log, opts.cache_size, upto, true, progress)?;
        let store = Store::open_with(dir, opts, false)?;
        report.fsck = store.fsck(&FsckOptions::default())?;
        Ok((store, report))
    }
}

/// Whether the index log `opts` names holds a snapshot to start a store
/// from (a bucket where no store has run yet holds none).
pub fn log_has_snapshot(opts: &StoreOptions) -> Result<bool> {
    let log = log_of(opts)?;
    Ok(!crate::log::positions(&*log, crate::log::SNAPSHOT_DIR)?.is_empty())
}

impl Store {
    /// A cluster replica's first start: builds `dir` (which must not
    /// exist, or be empty) from the newest snapshot and the log up to
    /// `head` (the cluster's; `None`: all of it), as [`Store::restore`]
    /// does, and opens it as a replica ([`StoreOptions::replica`]): it
    /// settles nothing and is not checked by fsck (the primary owns the
    /// bucket; a check races its GC).
    pub fn restore_replica(
        dir: impl AsRef<Path>,
        opts: StoreOptions,
        head: Option<u64>,
        progress: &mut dyn FnMut(RestoreProgress),
    ) -> Result<(Store, RestoreReport)> {
        let dir = dir.as_ref();
        check_target(dir)?;
        let log = log_of(&opts)?;
        let report = build_into(dir, &*log, opts.cache_size, head, false, progress)?;
        let store = Store::open_with(dir, opts.replica(true), false)?;
        Ok((store, report))
    }
}

/// Where [`Store::restore_to`] brings a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Everything the log holds.
    Newest,
    /// After the commit at this log position.
    Position(u64),
    /// After the last commit written at or before this time (ms since the
    /// epoch).
    Time(u64),
}

/// Builds the tables in a directory beside `dir` and renames it into
/// place only when whole: a failed build leaves nothing behind.
fn build_into(
    dir: &Path,
    log: &dyn IndexLog,
    cache_size: usize,
    upto: Option<u64>,
    detach: bool,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<RestoreReport> {
    let staging = staging_dir(dir)?;
    match build(&staging, log, cache_size, upto, detach, progress) {
        Ok(report) => {
            put_in_place(&staging, dir)?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Renames the tables built in `staging` to `dir` (empty, or absent).
fn put_in_place(staging: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir(dir)
            .map_err(|e| Error::io(format!("replacing {}", dir.display()), e))?;
    }
    std::fs::rename(staging, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(staging);
        Error::io(
            format!("renaming {} to {}", staging.display(), dir.display()),
            e,
        )
    })?;
    Ok(())
}

/// A restore writes only into a directory that holds nothing.
fn check_target(dir: &Path) -> Result<()> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut it) => it.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    if empty {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        value: dir.display().to_string(),
        expected:
            "a directory that does not exist or is empty: a restore never writes over a store"
                .into(),
    })
}

/// The index log a restore reads.
fn log_of(opts: &StoreOptions) -> Result<Arc<dyn IndexLog>> {
    if let Some(l) = &opts.index_log {
        return Ok(Arc::clone(l));
    }
    match &opts.blobs {
        #[cfg(feature = "s3")]
        Some(crate::blob::BlobLocation::S3(s3)) => {
            Ok(crate::blob::S3Blobs::with_options(s3, &opts.s3)?.index_log())
        }
        other => Err(Error::InvalidArgument {
            value: other
                .as_ref()
                .map_or_else(|| "no blob location".into(), ToString::to_string),
            expected:
                "the bucket of the store to restore (`--blobs s3://…`): its index log is there"
                    .into(),
        }),
    }
}

/// A fresh directory beside `dir`, on the same file system, for the
/// restore to build in.
fn staging_dir(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::InvalidArgument {
            value: dir.display().to_string(),
            expected: "a directory path that ends in a name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
    Ok(staging)
}

/// Builds the tables in `staging` from the log.
fn build(
    staging: &Path,
    log: &dyn IndexLog,
    cache_size: usize,
    upto: Option<u64>,
    detach: bool,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<RestoreReport> {
    // The snapshot's rows create the tables they fill; `init_schema`
    // creates the rest and checks the format the snapshot recorded.
    let db = crate::engine::open::open_database(staging, cache_size, None)?;
    let at = restore::newest_snapshot(log, upto)?;
    let (store_id, rows, snap_bytes) = restore::load_snapshot(&db, log, at, staging, progress)?;
    let cursor_key = crate::engine::open::init_schema(&db, staging)?;
    if backend::store_id(&cursor_key) != store_id {
        return Err(Error::Corrupt(format!(
            "snapshot {at} names store {store_id}, but its tables are another store's"
        )));
    }
    let (log_objects, log_bytes) = restore::catch_up(&db, log, &store_id, upto, progress)?;
    if let Some(p) = upto {
        if at + log_objects != p {
            return Err(Error::InvalidArgument {
                value: format!("position {p}"),
                expected: format!(
                    "a position the index log reaches: it ends at {}",
                    at + log_objects
                ),
            });
        }
        // A copy of the past: it must never follow the log again, write
        // to it, or change the bucket it shares with the live store.
        if detach {
            let txn = db.begin_write()?;
            txn.open_table(crate::schema::tables::META)?
                .insert(crate::log::ship::DETACHED_KEY, p.to_le_bytes().as_slice())?;
            txn.commit()?;
        }
    }
    Ok(RestoreReport {
        snapshot: at,
        rows,
        log_objects,
        bytes: snap_bytes + log_bytes,
        position: at + log_objects,
        fsck: Default::default(),
    })
}
