//! Injected I/O failures, to test what the store does when the disk lies or
//! fails: every fsync the store makes (blob files, directories, the intent
//! file and redb's own commit sync) goes through here first.
//!
//! Pass a [`FaultInjector`] in [`crate::StoreOptions::faults`] and arm it;
//! with none (the default) each check is one `Option` test.

use std::fmt;
use std::fs::File;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use redb::{BackendError, StorageBackend};

/// redb 4.x backends report I/O failures as plain `io::Error`s.
type BackendIoError = std::io::Error;

/// What an fsync was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncTarget {
    /// A blob's data file (temporary or installed).
    BlobFile,
    /// A directory, after files were created or renamed in it.
    Directory,
    /// redb's sync of the database file inside a durable commit.
    Database,
    /// The crash-intent file written before blob files are installed.
    Intent,
}

const TARGETS: usize = 4;

fn index(t: SyncTarget) -> usize {
    match t {
        SyncTarget::BlobFile => 0,
        SyncTarget::Directory => 1,
        SyncTarget::Database => 2,
        SyncTarget::Intent => 3,
    }
}

/// Fails chosen fsyncs with `EIO`, as a failing disk or a thin-provisioned
/// volume that ran out of space does.
#[derive(Default)]
pub struct FaultInjector {
    /// Per target: how many of the next fsyncs fail.
    armed: [AtomicU32; TARGETS],
    /// Per target: fsyncs to let through before the armed ones fail.
    skip: [AtomicU32; TARGETS],
    injected: AtomicU64,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("injected", &self.injected())
            .finish()
    }
}

impl FaultInjector {
    /// An injector with nothing armed.
    pub fn new() -> Arc<FaultInjector> {
        Arc::new(FaultInjector::default())
    }

    /// The next `count` fsyncs of `target` fail.
    pub fn fail_fsync(&self, target: SyncTarget, count: u32) {
        self.fail_fsync_after(target, 0, count);
    }

    /// After `skip` more successful fsyncs of `target`, the next `count` fail.
    pub fn fail_fsync_after(&self, target: SyncTarget, skip: u32, count: u32) {
        self.skip[index(target)].store(skip, Ordering::SeqCst);
        self.armed[index(target)].store(count, Ordering::SeqCst);
    }

    /// Disarms every target.
    pub fn clear(&self) {
        for i in 0..TARGETS {
            self.armed[i].store(0, Ordering::SeqCst);
            self.skip[i].store(0, Ordering::SeqCst);
        }
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Whether this fsync of `target` must fail (and counts it if so).
    fn should_fail(&self, target: SyncTarget) -> bool {
        let i = index(target);
        if self.armed[i].load(Ordering::SeqCst) == 0 {
            return false;
        }
        let skipped = self.skip[i]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
            .is_ok();
        if skipped {
            return false;
        }
        let fail = self.armed[i]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
            .is_ok();
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }
}

fn injected_error(target: SyncTarget) -> std::io::Error {
    std::io::Error::other(format!(
        "injected fsync failure ({target:?}): Input/output error (os error 5)"
    ))
}

/// fsyncs `file` unless the injector fails it first.
pub(crate) fn sync_file(
    faults: Option<&FaultInjector>,
    target: SyncTarget,
    file: &File,
) -> std::io::Result<()> {
    if faults.is_some_and(|f| f.should_fail(target)) {
        return Err(injected_error(target));
    }
    file.sync_all()
}

/// fsyncs the file at `path` (a directory or a data file).
pub(crate) fn sync_path(
    faults: Option<&FaultInjector>,
    target: SyncTarget,
    path: &Path,
) -> std::io::Result<()> {
    let f = File::open(path)?;
    sync_file(faults, target, &f)
}

/// redb's file backend with its `sync_data` routed through an injector.
#[derive(Debug)]
pub(crate) struct FaultyBackend {
    pub inner: redb::backends::FileBackend,
    pub faults: Arc<FaultInjector>,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        if self.faults.should_fail(SyncTarget::Database) {
            return Err(injected_error(SyncTarget::Database));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_then_fails_exactly_the_armed_count() {
        let f = FaultInjector::new();
        f.fail_fsync_after(SyncTarget::BlobFile, 2, 2);
        let seen: Vec<bool> = (0..6)
            .map(|_| f.should_fail(SyncTarget::BlobFile))
            .collect();
        assert_eq!(seen, [false, false, true, true, false, false]);
        assert!(!f.should_fail(SyncTarget::Database));
        assert_eq!(f.injected(), 2);
    }
}
