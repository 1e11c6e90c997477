//! The [`Store`] facade: opening, options, and the way every write reaches
//! the writer thread. Its operations are split by concern across this
//! folder: puts, reads, manifests, tags, referrers, graph queries, leases.

pub(crate) mod delete;
pub mod events;
mod graph;
pub mod history;
mod leases;
mod manifests;
mod put;
mod read;
mod referrers;
mod replica;
mod snapshot;
mod tags;
mod uploads;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use redb::Database;

pub use crate::index::ingest::ManifestPut;
pub use events::{Event, EventKind, MAX_EVENT_PAGE};
pub use graph::{
    Edge, Inspection, Parent, Relation, WalkNode, INSPECT_TAGS, MAX_TAG_SEARCH, MAX_WALK_DEPTH,
};
pub use history::{
    HistoryPage, HistoryQuery, RestorePoint, TagAction, TagCause, TagEvent, TagRestored,
    MAX_USER_LEN,
};
pub use leases::{Lease, LeaseInfo};
pub use manifests::{Children, ManifestOptions};
pub use put::{PutOptions, PutResult};
pub use read::BlobInfo;
pub(crate) use read::{info, not_found};
pub use referrers::{ImageIndex, ReferrersPage, ReferrersQuery};
pub use uploads::{UploadOptions, UploadStatus};
pub use usage::{Quota, Usage};

use crate::blob::{BlobBackend, BlobLocation, LocalFiles};
use crate::engine::backend;
use crate::engine::open;
pub use crate::engine::open::{DB_FILE, STORE_FORMAT};
use crate::engine::{Batch, Job, Shared, SweepSlot, Writer};
use crate::error::{Error, IoContext as _, Result};

/// Tunables for a [`Store`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Blobs of at most this many bytes live inline in redb and commit
    /// atomically with their records; larger ones are files.
    pub inline_threshold: usize,
    /// redb page cache size in bytes.
    pub cache_size: usize,
    /// Where blob bytes above the inline threshold live, as a location
    /// (`local`, or an `s3://` bucket with feature `s3`). `None`: the
    /// location the store recorded, local files for a new store. A store
    /// records the first location it is opened with and refuses another.
    pub blobs: Option<BlobLocation>,
    /// A blob backend of the caller's own, instead of [`Self::blobs`]
    /// (nothing is recorded).
    pub backend: Option<Arc<dyn BlobBackend>>,
    /// Where the store ships its index log and snapshots (`crate::log`),
    /// so that it can be restored from there alone. `None`: the bucket of
    /// an `s3://` [`Self::blobs`] location (below its prefix, `index/`);
    /// no log for local files. Every commit then waits for its log object.
    pub index_log: Option<Arc<dyn crate::log::IndexLog>>,
    /// Credentials, retries and deadlines for an `s3://` location. The
    /// default takes credentials from the `AWS_*` environment.
    #[cfg(feature = "s3")]
    pub s3: crate::blob::S3Options,
    /// Injected fsync failures (set with `faults`, feature `testing`).
    pub(crate) faults: Option<Arc<dyn crate::sync_points::Injector>>,
    /// The wall clock behind record ages, lease and upload expiry and the
    /// GC grace period. [`crate::clock::SystemClock`] by default; tests inject a
    /// [`crate::clock::ManualClock`] so that nothing they check depends on the
    /// date they run on.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Write every change (pushes, deletes, tag moves, GC deletions, quota
    /// refusals) to the outbox, in the transaction of the change, for
    /// [`Store::events_after`] and its consumers. Off by default: events
    /// stay until every consumer has acknowledged them.
    pub events: bool,
    /// Who makes a log object part of the log, when more than one process
    /// may write it (a cluster; see [`crate::log::LogHead`]). `None`: this
    /// store is its log's only writer.
    pub log_head: Option<Arc<dyn crate::log::LogHead>>,
    /// Open as a replica: the store applies its index log only when told
    /// ([`Store::follow_log`]), refuses every write with
    /// [`Error::NotPrimary`], and settles nothing a crash left in flight,
    /// until [`Store::promote`]. Needs an index log.
    pub replica: bool,
    /// Rows a reverse set (`edges_in`, `member_of`) stages before the
    /// writer starts merging them into its main tree, a slice per commit
    /// (docs/format.md, "Staged reverse sets"). Larger: fewer writes of
    /// the main trees during bulk ingest, more rows every read of the sets
    /// also looks up in the staging trees. At least 1.
    pub staged_rows: u64,
}

impl StoreOptions {
    /// Sets [`StoreOptions::inline_threshold`].
    #[must_use]
    pub fn inline_threshold(mut self, inline_threshold: usize) -> Self {
        self.inline_threshold = inline_threshold;
        self
    }

    /// Sets [`StoreOptions::staged_rows`] (0 is taken as 1).
    #[must_use]
    pub fn staged_rows(mut self, rows: u64) -> Self {
        self.staged_rows = rows;
        self
    }

    /// Sets [`StoreOptions::cache_size`].
    #[must_use]
    pub fn cache_size(mut self, cache_size: usize) -> Self {
        self.cache_size = cache_size;
        self
    }

    /// Sets [`StoreOptions::blobs`].
    #[must_use]
    pub fn blobs(mut self, blobs: impl Into<Option<BlobLocation>>) -> Self {
        self.blobs = blobs.into();
        self
    }

    /// Sets [`StoreOptions::s3`].
    #[cfg(feature = "s3")]
    #[must_use]
    pub fn s3(mut self, s3: crate::blob::S3Options) -> Self {
        self.s3 = s3;
        self
    }

    /// Sets [`StoreOptions::backend`].
    #[must_use]
    pub fn backend(mut self, backend: impl Into<Option<Arc<dyn BlobBackend>>>) -> Self {
        self.backend = backend.into();
        self
    }

    /// Sets [`StoreOptions::index_log`].
    #[must_use]
    pub fn index_log(mut self, log: impl Into<Option<Arc<dyn crate::log::IndexLog>>>) -> Self {
        self.index_log = log.into();
        self
    }

    /// Sets [`StoreOptions::clock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets [`StoreOptions::log_head`].
    #[must_use]
    pub fn log_head(mut self, head: impl Into<Option<Arc<dyn crate::log::LogHead>>>) -> Self {
        self.log_head = head.into();
        self
    }

    /// Sets [`StoreOptions::replica`].
    #[must_use]
    pub fn replica(mut self, replica: bool) -> Self {
        self.replica = replica;
        self
    }

    /// Sets [`StoreOptions::events`].
    #[must_use]
    pub fn events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }

    /// Injected fsync failures, for tests of the failure paths (see
    /// [`crate::faults`]).
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn faults(mut self, faults: impl Into<Option<Arc<crate::faults::FaultInjector>>>) -> Self {
        self.faults = faults
            .into()
            .map(|f| f as Arc<dyn crate::sync_points::Injector>);
        self
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            inline_threshold: 64 * 1024,
            cache_size: 256 * 1024 * 1024,
            blobs: None,
            backend: None,
            index_log: None,
            #[cfg(feature = "s3")]
            s3: crate::blob::S3Options::default(),
            faults: None,
            clock: Arc::new(crate::clock::SystemClock),
            events: false,
            log_head: None,
            replica: false,
            staged_rows: crate::schema::reverse::DEFAULT_STAGED_ROWS,
        }
    }
}

/// A string option that a builder setter takes as `&str`, `String`, or an
/// `Option` of either (`None` clears it).
pub trait OptionalString {
    /// The value as the option holds it.
    fn into_option(self) -> Option<String>;
}

impl OptionalString for &str {
    fn into_option(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl OptionalString for String {
    fn into_option(self) -> Option<String> {
        Some(self)
    }
}

impl OptionalString for &String {
    fn into_option(self) -> Option<String> {
        Some(self.clone())
    }
}

impl OptionalString for Option<String> {
    fn into_option(self) -> Option<String> {
        self
    }
}

impl OptionalString for Option<&str> {
    fn into_option(self) -> Option<String> {
        self.map(str::to_string)
    }
}

/// An embedded store of OCI content. `Send + Sync`; share it with `Arc`.
///
/// Its calls block: a durable write waits for its group commit's fsync, a
/// read may wait for the disk or the blob backend. From async code (an
/// axum handler), call it through `tokio::task::spawn_blocking`, as
/// `ocidb-server` does; a call on an async worker stalls every task of
/// that worker. A store on S3 must not be called from the runtime its
/// backend owns.
///
/// Its methods, by concern (one file each under `src/store/` unless named):
///
/// | concern | methods |
/// |---|---|
/// | opening (`mod.rs`) | [`open`](Store::open), [`create`](Store::create), [`open_with`](Store::open_with), [`sync`](Store::sync), [`root`](Store::root), [`options`](Store::options), [`store_id`](Store::store_id), [`blob_location`](Store::blob_location), [`unavailable`](Store::unavailable) |
/// | blobs in (`put.rs`, `uploads.rs`) | [`put`](Store::put), [`put_bytes`](Store::put_bytes), [`put_blobs`](Store::put_blobs), [`mount_blob`](Store::mount_blob); [`begin_upload`](Store::begin_upload), [`append_upload`](Store::append_upload), [`finish_upload`](Store::finish_upload), [`cancel_upload`](Store::cancel_upload), [`uploads`](Store::uploads), [`purge_uploads`](Store::purge_uploads) |
/// | reading (`read.rs`) | [`stat`](Store::stat), [`exists`](Store::exists), [`get`](Store::get), [`get_range`](Store::get_range), [`get_verified`](Store::get_verified), [`read`](Store::read), [`verify`](Store::verify), [`get_in_repo`](Store::get_in_repo), [`stat_in_repo`](Store::stat_in_repo), [`resolve_digest`](Store::resolve_digest), [`is_empty`](Store::is_empty) |
/// | manifests (`manifests.rs`) | [`put_manifest`](Store::put_manifest), [`put_manifests`](Store::put_manifests), [`put_manifest_batch`](Store::put_manifest_batch), [`get_manifest`](Store::get_manifest), [`resolve`](Store::resolve), [`register_parser`](Store::register_parser) |
/// | tags and repositories (`tags.rs`) | [`tag`](Store::tag), [`set_tags`](Store::set_tags), [`untag`](Store::untag), [`tags`](Store::tags), [`tag_map`](Store::tag_map), [`is_member`](Store::is_member), [`members`](Store::members), [`repositories`](Store::repositories), [`repositories_page`](Store::repositories_page), [`repositories_of`](Store::repositories_of) |
/// | referrers (`referrers.rs`) | [`referrers`](Store::referrers), [`referrers_tag_index`](Store::referrers_tag_index) |
/// | the graph (`graph.rs`) | [`successors`](Store::successors), [`predecessors`](Store::predecessors), [`walk`](Store::walk), [`inspect`](Store::inspect), [`tags_reaching`](Store::tags_reaching) |
/// | leases (`leases.rs`) | [`create_lease`](Store::create_lease), [`lease_add`](Store::lease_add), [`release_lease`](Store::release_lease), [`leases`](Store::leases), [`drop_expired_leases`](Store::drop_expired_leases) |
/// | deleting (`delete.rs`) | [`delete`](Store::delete), [`delete_manifest`](Store::delete_manifest), [`unlink_blob`](Store::unlink_blob) |
/// | maintenance (`src/gc/`, `src/maint/`) | [`gc`](Store::gc), [`fsck`](Store::fsck), [`stats`](Store::stats), [`compact`](Store::compact), [`migrate`](Store::migrate), [`snapshot_index`](Store::snapshot_index), [`restore`](Store::restore) (and, with `s3`, `maint::migrate_blobs`) |
/// | layouts (`src/layout/`) | [`import_layout`](Store::import_layout), [`export_layout`](Store::export_layout) |
pub struct Store {
    pub(crate) db: Arc<Database>,
    pub(crate) root: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) backend: Arc<dyn BlobBackend>,
    /// The backend again, when its bucket did not answer at open: what
    /// [`Store::check_backend`] reconnects.
    unreachable: Option<Arc<backend::Unreachable>>,
    /// Where every commit ships its changes first (`crate::log`), if the
    /// store keeps an index log.
    pub(crate) shipper: Option<crate::log::ship::Shipper>,
    tx: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sweep_hook: SweepSlot,
    uploads_busy: uploads::BusyUploads,
    pub(crate) parsers: crate::oci::manifest::ParserRegistry,
    pub(crate) gc_lock: std::sync::Mutex<()>,
    /// Signs referrers cursors, so that a page is only ever continued from
    /// a cursor this store issued for the same query.
    pub(crate) cursor_key: [u8; 32],
    /// Serializes a replica's log application and its promotion.
    follow_lock: std::sync::Mutex<()>,
    /// This process's claim on the directory; last, so that it is released
    /// after everything else of the store is closed.
    _claim: open::OpenClaim,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_writer();
        open::clear_holder(&self.root);
    }
}

/// The writer thread parked by [`Store::pause_writer`]; dropping it (or
/// [`WriterPause::resume`]) lets the writer go on (feature `testing`).
#[cfg(feature = "testing")]
pub struct WriterPause {
    release: Option<crossbeam_channel::Sender<()>>,
    done: crossbeam_channel::Receiver<Result<()>>,
    shared: Arc<Shared>,
}

#[cfg(feature = "testing")]
impl WriterPause {
    /// Jobs sent to the writer and not yet taken by it.
    pub fn queued(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// Waits (polling) until at least `n` jobs are queued behind the pause.
    pub fn wait_queued(&self, n: usize) {
        while self.queued() < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Lets the writer go on and waits for the parked job to commit.
    pub fn resume(mut self) -> Result<()> {
        self.release.take();
        self.done.recv().map_err(|_| Error::Closed)?
    }
}

#[cfg(feature = "testing")]
impl Drop for WriterPause {
    fn drop(&mut self) {
        self.release.take();
    }
}

/// What an open does before the writer starts, once the blob backend
/// answers: apply the index log beyond the local position (the log, not
/// the local file, records what was acknowledged), make sure the log has
/// a snapshot to start from, then settle what a crash left in flight
/// (shipping those changes too).
fn recover(
    db: &Database,
    root: &Path,
    backend: &dyn BlobBackend,
    legacy: &[crate::digest::Digest],
    shipper: Option<&crate::log::ship::Shipper>,
    now_ms: u64,
) -> Result<()> {
    if let Some(s) = shipper {
        crate::log::snapshot::remove_stale_files(root);
        let id = s.store_id();
        // Only up to the head: objects past it are a deposed writer's.
        let head = s.head()?;
        crate::log::restore::catch_up(db, &**s.log(), id, head, &mut |_| {})?;
        replica::start_epoch(db, s)?;
        crate::log::snapshot::ensure_base(db, &**s.log(), id, root, now_ms)?;
    }
    open::settle_intents(db, backend, legacy, shipper, now_ms)?;
    open::settle_uploads(db, backend, shipper, now_ms)?;
    Ok(())
}

impl Store {
    /// Opens an existing store. Fails with [`Error::NotAStore`] if `dir` does not hold one.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default(), false)
    }

    /// Creates a store in `dir` (made if missing), or opens the one already there.
    pub fn create(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default(), true)
    }

    /// Opens (or with `create`, creates) a store with explicit options. A
    /// create that fails (an unreachable bucket, missing credentials)
    /// leaves nothing behind: the database file, and the directory when
    /// it made it, are removed again, so the next open does not find a
    /// half-made store and take it for a local one.
    pub fn open_with(dir: impl AsRef<Path>, opts: StoreOptions, create: bool) -> Result<Store> {
        let root = dir.as_ref();
        let dir_existed = root.exists();
        let db_existed = root.join(DB_FILE).exists();
        let opened = Store::open_inner(root, opts, create);
        if opened.is_err() && create && !db_existed {
            if dir_existed {
                let _ = std::fs::remove_file(root.join(DB_FILE));
            } else {
                let _ = std::fs::remove_dir_all(root);
            }
        }
        opened
    }

    fn open_inner(dir: &Path, opts: StoreOptions, create: bool) -> Result<Store> {
        let root = dir.to_path_buf();
        let db_path = root.join(DB_FILE);
        if !create {
            if !root.is_dir() {
                return Err(Error::NotAStore {
                    path: root,
                    reason: "no such directory".into(),
                });
            }
            if !db_path.is_file() {
                return Err(Error::NotAStore {
                    path: root,
                    reason: format!("{DB_FILE} is missing"),
                });
            }
        }
        std::fs::create_dir_all(&root)
            .context(|| format!("creating directory {}", root.display()))?;
        let claim = open::OpenClaim::take(&root)?;
        let db = open::open_database(&root, opts.cache_size, opts.faults.as_ref())?;
        let cursor_key = open::init_schema(&db, &root)?;
        let shared = Arc::new(Shared::new(
            opts.faults.clone(),
            Arc::clone(&opts.clock),
            opts.events,
        ));
        let (backend, legacy, location, unreachable, bucket_log) = match &opts.backend {
            Some(b) => (Arc::clone(b), Vec::new(), None, None, None),
            None => {
                let wanted = backend::Wanted {
                    location: opts.blobs.as_ref(),
                    faults: opts.faults.clone(),
                    #[cfg(feature = "s3")]
                    s3: &opts.s3,
                };
                let o = backend::open(&db, &root, &wanted, &cursor_key, &shared)?;
                (
                    o.backend,
                    o.legacy,
                    Some(o.location),
                    o.unreachable,
                    o.index_log,
                )
            }
        };
        let detached = crate::log::ship::detached_at(&db)?;
        if let Some(p) = detached {
            let _ = shared.read_only.set(format!(
                "{} is a point-in-time copy at index log position {p}: read-only, since it shares its bucket with the store it was copied from",
                root.display()
            ));
        }
        let shipper = opts
            .index_log
            .clone()
            .or(bucket_log)
            .filter(|_| detached.is_none())
            .map(|log| {
                let poisoned = Arc::clone(&shared);
                crate::log::ship::Shipper::new(
                    log,
                    backend::store_id(&cursor_key),
                    opts.log_head.clone(),
                    Arc::new(move |e: &Error| poisoned.poison(e)),
                )
            });
        if opts.replica {
            if shipper.is_none() {
                return Err(Error::InvalidArgument {
                    value: root.display().to_string(),
                    expected: "a store with an index log to follow (blobs in a bucket, or StoreOptions::index_log) for a replica".into(),
                });
            }
            shared.set_replica(Some((
                root.display().to_string(),
                "it is a replica following the index log".into(),
            )));
        } else if shared.check().is_ok() {
            recover(
                &db,
                &root,
                &*backend,
                &legacy,
                shipper.as_ref(),
                shared.now_ms(),
            )?;
            if !legacy.is_empty() {
                LocalFiles::with_faults(&root, None)?.clear_legacy_intent();
            }
        }
        let mut opts = opts;
        if location.is_some() {
            opts.blobs = location;
        }
        let mut store = Store {
            db: Arc::new(db),
            root,
            opts,
            backend,
            unreachable,
            shipper,
            tx: None,
            writer: None,
            shared,
            sweep_hook: SweepSlot::default(),
            uploads_busy: uploads::BusyUploads::default(),
            parsers: crate::oci::manifest::ParserRegistry::default(),
            gc_lock: std::sync::Mutex::new(()),
            cursor_key,
            follow_lock: std::sync::Mutex::new(()),
            _claim: claim,
        };
        store.start_writer()?;
        open::write_holder(&store.root);
        Ok(store)
    }

    pub(crate) fn start_writer(&mut self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let w = Writer::new(
            Arc::clone(&self.db),
            Arc::clone(&self.backend),
            rx,
            Arc::clone(&self.shared),
            Arc::clone(&self.sweep_hook),
            self.shipper.clone(),
            self.opts.staged_rows.max(1),
        );
        let writer = std::thread::Builder::new()
            .name("ocidb-writer".into())
            .spawn(move || w.run())
            .context(|| "starting the writer thread".to_string())?;
        self.tx = Some(tx);
        self.writer = Some(writer);
        Ok(())
    }

    /// Closing the channel lets the writer finish what is queued and exit.
    pub(crate) fn stop_writer(&mut self) {
        self.tx.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }

    /// The store directory (the database, and blob files when they are
    /// local).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Where blob bytes above the inline threshold live.
    pub fn backend(&self) -> &Arc<dyn BlobBackend> {
        &self.backend
    }

    /// The id with which the store claims an object-store prefix.
    pub fn store_id(&self) -> String {
        backend::store_id(&self.cursor_key)
    }

    /// The blob location in force (`None` with a caller's own backend).
    pub fn blob_location(&self) -> Option<&BlobLocation> {
        self.opts.blobs.as_ref()
    }

    /// The error writes get when the blob backend was unreachable at
    /// open ([`Error::Unavailable`], naming what is refused); `None` when it
    /// was reachable.
    pub fn unavailable(&self) -> Option<Error> {
        self.shared.unavailable()
    }

    /// Whether the store takes writes now: `Err` says why not (a failed
    /// write poisoned it until it is reopened, or its blob backend was
    /// unreachable at open). What a readiness probe asks.
    pub fn check_writable(&self) -> Result<()> {
        self.shared.check()?;
        if self.tx.is_none() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Asks the blob backend for one cheap answer now (a bucket: a HEAD
    /// with no retries; local files: the blob directory's metadata). `Err`
    /// names the backend and why it did not answer. A readiness probe calls
    /// it, since a bucket that answered at open may have gone since.
    ///
    /// A store whose bucket did not answer at open connects to it here
    /// once it answers: the crash recovery that open skipped runs, then
    /// writes resume, with no reopen.
    pub fn check_backend(&self) -> Result<()> {
        if let Some(u) = &self.unreachable
            && self.shared.unavailable().is_some()
        {
            let db = Arc::clone(&self.db);
            // Writes are refused until the flag is lifted below, so the
            // recovery's transactions meet no writer's.
            let replica = self.shared.is_replica();
            let back = u.reconnect(|b| {
                if replica {
                    // A replica settles nothing: the primary does.
                    return Ok(());
                }
                recover(
                    &db,
                    &self.root,
                    b,
                    &[],
                    self.shipper.as_ref(),
                    self.shared.now_ms(),
                )
            })?;
            if back {
                self.shared.clear_unavailable();
                tracing::info!("the bucket {} answers again: writes resume", u.location);
            }
        }
        self.backend.check()
    }

    /// Jobs sent to the writer and not yet taken by it.
    pub(crate) fn writer_queue(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// Runs `f` in the writer's next group commit and waits for the result.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnMut(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.shared.note_foreground();
        let r = self.send(durable, false, f);
        if let Err(e @ Error::OverQuota { .. }) = &r {
            self.note_refusal(e);
        }
        r
    }

    /// Like [`Store::submit`], for background work (GC sweep steps) that
    /// must not count as writer activity.
    pub(crate) fn submit_background<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnMut(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.send(durable, true, f)
    }

    fn send<T: Send + 'static>(
        &self,
        durable: bool,
        background: bool,
        f: impl FnMut(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.shared.check()?;
        let (job, rx) = Job::new(durable, background, f);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        if tx.send(job).is_err() {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Closed);
        }
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Test hook: parks the writer thread inside a job until the returned
    /// guard is dropped, so that a test can queue jobs and have them land
    /// in one group commit, in a known order. Production code has no use
    /// for it: every write waits while the writer is parked.
    #[cfg(feature = "testing")]
    pub fn pause_writer(&self) -> Result<WriterPause> {
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (job, done) = Job::new(true, true, move |_| {
            let _ = entered_tx.send(());
            // Woken by the guard's release or its drop.
            let _ = release_rx.recv();
            Ok(())
        });
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        tx.send(job).map_err(|_| Error::Closed)?;
        entered_rx.recv().map_err(|_| Error::Closed)?;
        Ok(WriterPause {
            release: Some(release_tx),
            done,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Waits until everything acknowledged so far is durable (a durable
    /// commit of nothing, which also fsyncs files of earlier `no_sync` puts).
    pub fn sync(&self) -> Result<()> {
        self.submit(true, |_| Ok(()))
    }
}
