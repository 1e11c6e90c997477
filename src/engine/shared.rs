//! State shared between the store handle, the GC and the writer thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// State shared between the store handle and the writer thread.
pub(crate) struct Shared {
    pub poisoned: AtomicBool,
    pub poison_reason: Mutex<String>,
    /// Set while a GC runs; writers then log what they make reachable.
    pub gc_active: AtomicBool,
    /// What writers made reachable since the sweep last looked, for the
    /// sweep to rescue. Only the writer thread touches it (jobs append, the
    /// sweep drains), so it needs no redb table: a table cost every commit
    /// during a GC a page, and a GC run does not outlive its process. An
    /// entry from a job whose transaction then failed only rescues a
    /// candidate needlessly (it waits for the next run).
    pub gc_log: Mutex<Vec<Digest>>,
    /// Jobs sent and not yet taken by the writer: long jobs (GC sweep steps)
    /// yield when this is non-zero.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// When a foreground job (anything but a GC sweep step) was last sent,
    /// in microseconds since `epoch`: a running GC hands its deletions to
    /// writers' commits while they are busy (see `lifecycle`).
    pub last_foreground_us: std::sync::atomic::AtomicU64,
    pub epoch: std::time::Instant,
    /// Set when the blob backend was unreachable at open: (location,
    /// reason). Every write is refused with it until the backend is
    /// reconnected.
    unavailable: std::sync::RwLock<Option<(String, String)>>,
    /// Whether `unavailable` is set: every write checks it, so the common
    /// case (a reachable backend) is one atomic load, not a lock.
    is_unavailable: AtomicBool,
    /// Injected fsync failures (tests only).
    pub faults: Option<Arc<dyn crate::sync_points::Injector>>,
    /// The most recent GC deletions, so that a request that needed one of
    /// them gets [`Error::Swept`] (retry) rather than a plain "not found".
    pub swept: Mutex<RecentlySwept>,
    /// Repository name → id for reads (see `engine::repo_ids`).
    pub repo_ids: super::repo_ids::RepoIds,
    /// The store's wall clock ([`crate::store::StoreOptions::clock`]).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Whether changes are written to the outbox
    /// ([`crate::store::StoreOptions::events`]).
    pub events: bool,
    /// Why every write is refused, for a read-only store (a point-in-time
    /// copy).
    pub read_only: std::sync::OnceLock<String>,
    /// The quotas in force ([`crate::Store::set_quotas`]).
    quotas: std::sync::RwLock<Arc<Vec<Quota>>>,
    /// Why writes are refused, for a replica: cleared when it is promoted.
    replica: std::sync::RwLock<Option<(String, String)>>,
    /// Whether `replica` is set (one atomic load per write).
    is_replica: AtomicBool,
}

/// A bounded memory of the last [`RecentlySwept::CAPACITY`] GC deletions.
#[derive(Default)]
pub(crate) struct RecentlySwept {
    order: std::collections::VecDeque<Digest>,
    set: std::collections::HashSet<Digest>,
}

impl RecentlySwept {
    const CAPACITY: usize = 65_536;

    pub fn insert(&mut self, d: Digest) {
        if self.set.insert(d) {
            self.order.push_back(d);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.set.contains(d)
    }
}

impl Shared {
    /// The quotas in force.
    pub fn quotas(&self) -> Arc<Vec<Quota>> {
        self.quotas
            .read()
            .map(|q| Arc::clone(&q))
            .unwrap_or_default()
    }

    /// Puts `quotas` in force for the next writes.
    pub fn set_quotas(&self, quotas: Vec<Quota>) -> Result<()> {
        *self.quotas.write().map_err(|_| Error::lock("quota lock"))? = Arc::new(quotas);
        Ok(())
    }

    /// Now, by the store's clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn new(
        faults: Option<Arc<dyn crate::sync_points::Injector>>,
        clock: Arc<dyn crate::clock::Clock>,
        events: bool,
    ) -> Shared {
        Shared {
            clock,
            events,
            quotas: Default::default(),
            read_only: std::sync::OnceLock::new(),
            replica: std::sync::RwLock::new(None),
            is_replica: AtomicBool::new(false),
            faults,
            swept: Mutex::new(RecentlySwept::default()),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(String::new()),
            gc_active: AtomicBool::new(false),
            gc_log: Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            last_foreground_us: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            unavailable: std::sync::RwLock::new(None),
            is_unavailable: AtomicBool::new(false),
            repo_ids: Default::default(),
        }
    }

    /// Whether a recent GC deleted `d`.
    pub fn recently_swept(&self, d: &Digest) -> Result<bool> {
        Ok(self
            .swept
            .lock()
            .map_err(|_| Error::lock("swept set lock"))?
            .contains(d))
    }

    pub fn note_foreground(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.last_foreground_us.store(now, Ordering::Release);
    }

    /// Empties the GC change log, returning what it held.
    pub fn take_gc_log(&self) -> Result<Vec<Digest>> {
        Ok(std::mem::take(
            &mut *self.gc_log.lock().map_err(|_| Error::lock("gc log lock"))?,
        ))
    }

    /// How long ago the last foreground job was sent (`Duration::MAX` if
    /// none was).
    pub fn since_foreground(&self) -> std::time::Duration {
        let now = self.epoch.elapsed().as_micros() as u64;
        match self.last_foreground_us.load(Ordering::Acquire) {
            0 => std::time::Duration::MAX,
            last => std::time::Duration::from_micros(now.saturating_sub(last)),
        }
    }

    /// Whether a foreground job was sent within `window`.
    pub fn foreground_within(&self, window: std::time::Duration) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        let last = self.last_foreground_us.load(Ordering::Acquire);
        last != 0 && now.saturating_sub(last) <= window.as_micros() as u64
    }

    /// Makes the store read-only: its blob backend was unreachable at open.
    pub fn set_unavailable(&self, location: String, reason: String) {
        match self.unavailable.write() {
            Ok(mut g) => *g = Some((location, reason)),
            Err(p) => *p.into_inner() = Some((location, reason)),
        }
        self.is_unavailable.store(true, Ordering::Release);
    }

    /// Lets writes through again: the backend answers.
    pub fn clear_unavailable(&self) {
        self.is_unavailable.store(false, Ordering::Release);
        match self.unavailable.write() {
            Ok(mut g) => *g = None,
            Err(p) => *p.into_inner() = None,
        }
    }

    /// The error every write gets while the backend is unavailable.
    pub fn unavailable(&self) -> Option<Error> {
        if !self.is_unavailable.load(Ordering::Acquire) {
            return None;
        }
        let g = match self.unavailable.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.as_ref().map(|(location, reason)| Error::Unavailable {
            location: location.clone(),
            reason: reason.clone(),
            refused: crate::engine::backend::REFUSED_WHEN_UNAVAILABLE.into(),
        })
    }

    /// Refuses writes as a replica (store directory, why), or takes them
    /// again (`None`).
    pub fn set_replica(&self, why: Option<(String, String)>) {
        let mut g = self
            .replica
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.is_replica.store(why.is_some(), Ordering::Release);
        *g = why;
    }

    /// Whether writes are refused because this store is a replica.
    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Acquire)
    }

    pub fn check(&self) -> Result<()> {
        if self.is_replica.load(Ordering::Acquire) {
            let g = self
                .replica
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((store, why)) = &*g {
                return Err(Error::NotPrimary {
                    store: store.clone(),
                    why: why.clone(),
                });
            }
        }
        if let Some(why) = self.read_only.get() {
            return Err(Error::InvalidArgument {
                value: why.clone(),
                expected: "a store that accepts writes".into(),
            });
        }
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        if self.poisoned.load(Ordering::Acquire) {
            let why = self
                .poison_reason
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default();
            return Err(Error::Poisoned(why));
        }
        Ok(())
    }

    /// Poisons the store after bytes failed to become durable, unless an
    /// object store failed: a refused PUT leaves nothing behind to
    /// distrust, unlike a failed fsync (the kernel may have dropped the
    /// dirty pages, so a retry that succeeds proves nothing).
    pub fn poison_failed_write(&self, why: &Error) {
        if !matches!(why, Error::Backend { .. }) {
            self.poison(why);
        }
    }

    pub fn poison(&self, why: &Error) {
        if let Ok(mut g) = self.poison_reason.lock() {
            *g = why.to_string();
        }
        self.poisoned.store(true, Ordering::Release);
    }
}

/// A limit on what a repository or a namespace holds (checked by the
/// writer, in the transaction of each membership change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// A repository name, or a namespace prefix ending in `/`.
    pub scope: String,
    /// At most this many bytes.
    pub max_bytes: u64,
}
