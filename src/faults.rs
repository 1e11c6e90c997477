//! Injected I/O failures, to test what the store does when the disk lies or
//! fails: every fsync the store makes (blob files, directories, and redb's
//! own commit sync) goes through here first.
//!
//! Pass a [`FaultInjector`] in [`crate::store::StoreOptions::faults`] and arm it;
//! with none (the default) each check is one `Option` test. Only with the
//! `testing` feature: shipped builds have no injector (see
//! `sync_points.rs`, through which every fsync goes either way).

use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{BackendError, StorageBackend};

/// redb 4.x backends report I/O failures as plain `io::Error`s.
type BackendIoError = std::io::Error;

pub use crate::sync_points::SyncTarget;
use crate::sync_points::{injected_error, Injector};

const TARGETS: usize = 3;

fn index(t: SyncTarget) -> usize {
    match t {
        SyncTarget::BlobFile => 0,
        SyncTarget::Directory => 1,
        SyncTarget::Database => 2,
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
    power: Mutex<PowerModel>,
    /// Manifest ingests to let through before the armed ones fail.
    ingest_skip: AtomicU32,
    /// How many manifest ingests fail half-way.
    ingest_armed: AtomicU32,
}

/// What a power cut would lose: redb's writes since its last good sync.
#[derive(Default)]
struct PowerModel {
    enabled: bool,
    /// Database syncs left before the power goes (None: never).
    syncs_left: Option<u32>,
    /// The power is gone: writes vanish and syncs fail.
    cut: bool,
    /// Undo records of every write since the last sync, oldest first.
    undo: Vec<Undo>,
}

enum Undo {
    /// Bytes at `offset` before a write (`len` bytes were beyond the end).
    Bytes { offset: u64, old: Vec<u8> },
    /// The file length before a resize or an extending write.
    Len(u64),
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("injected", &self.injected())
            .finish()
    }
}

impl FaultInjector {
    /// Whether the manifest ingest at its half-way point must fail (and
    /// counts it if so); see [`Self::fail_ingest_after`].
    fn should_fail_ingest(&self) -> bool {
        if self.ingest_armed.load(Ordering::SeqCst) == 0 {
            return false;
        }
        if self
            .ingest_skip
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
            .is_ok()
        {
            return false;
        }
        let fail = self
            .ingest_armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
            .is_ok();
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }

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

    /// After `skip` more manifest ingests, the next `count` fail half-way:
    /// after the record, bytes, edges and membership are written and
    /// before the referrers and tags, with an error that is not a storage
    /// failure. Tests of all-or-nothing jobs use it.
    pub fn fail_ingest_after(&self, skip: u32, count: u32) {
        self.ingest_skip.store(skip, Ordering::SeqCst);
        self.ingest_armed.store(count, Ordering::SeqCst);
    }

    /// Disarms every target.
    pub fn clear(&self) {
        for i in 0..TARGETS {
            self.armed[i].store(0, Ordering::SeqCst);
            self.skip[i].store(0, Ordering::SeqCst);
        }
    }

    /// Models power loss on the database file: from now on every redb
    /// write is recorded until the next successful sync, and after
    /// `syncs` more syncs the power goes (that sync fails, later writes
    /// vanish). Afterwards, with the store closed, [`Self::power_cut`]
    /// rewinds the file to what the disk could hold.
    pub fn cut_power_after_syncs(&self, syncs: u32) {
        if let Ok(mut p) = self.power.lock() {
            p.enabled = true;
            p.syncs_left = Some(syncs);
            p.cut = false;
            p.undo.clear();
        }
    }

    /// Whether the modelled power cut has happened.
    pub fn power_is_cut(&self) -> bool {
        self.power.lock().map(|p| p.cut).unwrap_or(false)
    }

    /// Rewinds the database file at `db_path` (closed) to a state the disk
    /// could be in after the cut: each write since the last good sync is
    /// lost or kept at random (`keep_one_in`: 0 loses all of them, n keeps
    /// about one in n), newest first, as a disk without barriers may
    /// persist any subset. Returns how many writes were lost.
    pub fn power_cut(&self, db_path: &Path, seed: u64, keep_one_in: u64) -> std::io::Result<usize> {
        use std::io::{Seek, SeekFrom, Write};
        let undo = match self.power.lock() {
            Ok(mut p) => std::mem::take(&mut p.undo),
            Err(_) => return Err(std::io::Error::other("power model lock poisoned")),
        };
        let mut f = std::fs::OpenOptions::new().write(true).open(db_path)?;
        let mut x = seed | 1;
        let mut lost = 0;
        for u in undo.into_iter().rev() {
            // xorshift: which writes reached the platter.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if keep_one_in > 0 && x.is_multiple_of(keep_one_in) {
                continue;
            }
            lost += 1;
            match u {
                Undo::Bytes { offset, old } => {
                    f.seek(SeekFrom::Start(offset))?;
                    f.write_all(&old)?;
                }
                Undo::Len(len) => f.set_len(len)?,
            }
        }
        f.sync_all()?;
        Ok(lost)
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

impl Injector for FaultInjector {
    fn fail_sync(&self, target: SyncTarget) -> bool {
        self.should_fail(target)
    }

    fn fail_ingest(&self) -> bool {
        self.should_fail_ingest()
    }

    fn open_database(
        self: Arc<Self>,
        builder: &mut redb::Builder,
        path: &Path,
    ) -> Result<redb::Database, redb::DatabaseError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = redb::backends::FileBackend::new(file)?;
        builder.create_with_backend(FaultyBackend {
            inner,
            faults: self,
        })
    }
}

/// redb's file backend with its `sync_data` routed through an injector.
#[derive(Debug)]
struct FaultyBackend {
    inner: redb::backends::FileBackend,
    faults: Arc<FaultInjector>,
}

impl FaultyBackend {
    fn power(&self) -> std::io::Result<std::sync::MutexGuard<'_, PowerModel>> {
        self.faults
            .power
            .lock()
            .map_err(|_| std::io::Error::other("power model lock poisoned"))
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let mut p = self.power()?;
        if p.cut {
            return Ok(());
        }
        if p.enabled {
            let old_len = self.inner.len()?;
            if len < old_len {
                let mut old = vec![0u8; (old_len - len) as usize];
                self.inner.read(len, &mut old)?;
                p.undo.push(Undo::Len(old_len));
                p.undo.push(Undo::Bytes { offset: len, old });
            } else {
                p.undo.push(Undo::Len(old_len));
            }
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        if self.faults.fail_sync(SyncTarget::Database) {
            return Err(injected_error(SyncTarget::Database));
        }
        let mut p = self.power()?;
        if p.cut {
            return Err(std::io::Error::other("power is cut"));
        }
        if let Some(n) = p.syncs_left {
            if n == 0 {
                p.cut = true;
                return Err(std::io::Error::other("power cut during fsync"));
            }
            p.syncs_left = Some(n - 1);
        }
        self.inner.sync_data()?;
        p.undo.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let mut p = self.power()?;
        if p.cut {
            // The machine is off: nothing reaches the file any more.
            return Ok(());
        }
        if p.enabled {
            let len = self.inner.len()?;
            let end = offset + data.len() as u64;
            if end > len {
                p.undo.push(Undo::Len(len));
            }
            if offset < len {
                let mut old = vec![0u8; (len.min(end) - offset) as usize];
                self.inner.read(offset, &mut old)?;
                p.undo.push(Undo::Bytes { offset, old });
            }
        }
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
