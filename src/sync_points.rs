//! Every fsync the store makes, and the half-way point of a manifest
//! ingest, go through here, so that tests (feature `testing`) can fail
//! them with an injector.

use std::fs::File;
use std::path::Path;

/// What a fault injector decides at each sync point. Only the `testing`
/// feature's `faults::FaultInjector` implements it: in a shipped build the
/// store's injector is always `None`, and each check is one `Option` test.
pub(crate) trait Injector: Send + Sync + std::fmt::Debug {
    /// Whether this fsync of `target` must fail.
    fn fail_sync(&self, target: SyncTarget) -> bool;
    /// Whether the manifest ingest at its half-way point must fail.
    fn fail_ingest(&self) -> bool;
    /// Opens the database file through a backend that routes redb's syncs
    /// through the injector.
    fn open_database(
        self: std::sync::Arc<Self>,
        builder: &mut redb::Builder,
        path: &Path,
    ) -> Result<redb::Database, redb::DatabaseError>;
}

/// What an fsync was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncTarget {
    /// A blob's data file (temporary or installed).
    BlobFile,
    /// A directory, after files were created or renamed in it.
    Directory,
    /// redb's sync of the database file inside a durable commit (which
    /// also carries the intent rows of blob bytes in flight). Only the
    /// injector's redb backend syncs through here.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Database,
}

/// The error an injected fsync failure reports: what a failing disk says.
pub(crate) fn injected_error(target: SyncTarget) -> std::io::Error {
    std::io::Error::other(format!(
        "injected fsync failure ({target:?}): Input/output error (os error 5)"
    ))
}

/// fsyncs `file` unless the injector fails it first.
pub(crate) fn sync_file(
    faults: Option<&dyn Injector>,
    target: SyncTarget,
    file: &File,
) -> std::io::Result<()> {
    if faults.is_some_and(|f| f.fail_sync(target)) {
        return Err(injected_error(target));
    }
    file.sync_all()
}

/// fsyncs the file at `path` (a directory or a data file).
pub(crate) fn sync_path(
    faults: Option<&dyn Injector>,
    target: SyncTarget,
    path: &Path,
) -> std::io::Result<()> {
    let f = File::open(path)?;
    sync_file(faults, target, &f)
}

/// The half-way point of a manifest ingest: after the record, bytes, edges
/// and membership are written, before the referrers and tags. An armed
/// injector fails it with an error that is not a storage failure.
pub(crate) fn ingest_checkpoint(faults: Option<&dyn Injector>) -> crate::error::Result<()> {
    if faults.is_some_and(Injector::fail_ingest) {
        return Err(crate::error::Error::InvalidArgument {
            value: "injected".into(),
            expected: "no injected failure half-way through a manifest ingest".into(),
        });
    }
    Ok(())
}
