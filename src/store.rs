//! The content-addressed blob store: `Store`, its options, and blob I/O.

use std::fs;
use std::io::{self, Read, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use redb::{Database, ReadableTable as _};

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext as _, Result};
use crate::hasher::{Hasher, Verifier};
use crate::record::{BlobRecord, Placement};
use crate::tables::{self, BLOBS, INLINE, META};
use crate::writer::{self, Batch, Job, Shared, Writer, INTENT_FILE};

/// File name of the redb database inside a store directory.
pub const DB_FILE: &str = "ocidb.redb";
/// The on-disk format this release writes (see ARCHITECTURE.md).
pub const STORE_FORMAT: u8 = 1;
const FORMAT_KEY: &str = "format";

/// Size of one chunk in the streaming put pipeline.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the reading, hashing and writing stages.
const POOL: usize = 4;

/// Tunables for a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Blobs of at most this many bytes live inline in redb and commit
    /// atomically with their records; larger ones are files.
    pub inline_threshold: usize,
    /// redb page cache size in bytes.
    pub cache_size: usize,
    /// Injected fsync failures, for tests of the failure paths (see
    /// [`crate::faults`]). `None` in production.
    pub faults: Option<Arc<crate::faults::FaultInjector>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            inline_threshold: 64 * 1024,
            cache_size: 256 * 1024 * 1024,
            faults: None,
        }
    }
}

/// How to put one blob.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// The digest the content must hash to.
    pub digest: Option<Digest>,
    /// The size the content must have.
    pub size: Option<u64>,
    /// The media type to record (informational for plain blobs).
    pub media_type: Option<String>,
    /// Skip fsync: the blob may be lost on power loss until the next durable
    /// commit. Never leaves a record pointing at missing bytes after a crash
    /// (see ARCHITECTURE.md).
    pub no_sync: bool,
    /// Make the blob a member of this repository (as a registry's blob
    /// upload to `/v2/<name>/blobs/` does).
    pub repository: Option<String>,
    /// Hold the blob under this lease (see [`Store::create_lease`]).
    pub lease: Option<u64>,
}

impl PutOptions {
    /// Options that verify against an expected digest.
    pub fn expect(digest: Digest) -> PutOptions {
        PutOptions {
            digest: Some(digest),
            ..PutOptions::default()
        }
    }
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// False when the blob was already stored (nothing was written).
    pub created: bool,
}

/// Metadata of a stored blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlobInfo {
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type, when known.
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Whether the blob was indexed as a manifest.
    #[serde(skip)]
    pub manifest: bool,
    /// Where the bytes live.
    #[serde(skip)]
    pub placement: Placement,
    /// When it was first stored (milliseconds since the Unix epoch).
    #[serde(skip)]
    pub created_ms: u64,
}

/// An embedded store of OCI content. `Send + Sync`; share it with `Arc`.
pub struct Store {
    pub(crate) db: Arc<Database>,
    pub(crate) root: PathBuf,
    pub(crate) opts: StoreOptions,
    tx: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    pub(crate) shared: Arc<Shared>,
    tmp_seq: AtomicU64,
    pub(crate) parsers: crate::manifest::ParserRegistry,
    pub(crate) gc_lock: std::sync::Mutex<()>,
    /// Signs referrers cursors, so that a page is only ever continued from
    /// a cursor this store issued for the same query.
    pub(crate) cursor_key: [u8; 32],
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// The writer thread parked by [`Store::pause_writer`]; dropping it (or
/// [`WriterPause::resume`]) lets the writer go on.
#[doc(hidden)]
pub struct WriterPause {
    release: Option<crossbeam_channel::Sender<()>>,
    done: crossbeam_channel::Receiver<Result<()>>,
    shared: Arc<Shared>,
}

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

impl Drop for WriterPause {
    fn drop(&mut self) {
        self.release.take();
    }
}

/// Removes a temp file unless the put hands it over to the writer.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
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

    /// Opens (or with `create`, creates) a store with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, opts: StoreOptions, create: bool) -> Result<Store> {
        let root = dir.as_ref().to_path_buf();
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
        for sub in ["blobs/sha256", "blobs/sha512", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).context(|| format!("creating directory {}", p.display()))?;
        }
        let mut builder = Database::builder();
        builder.set_cache_size(opts.cache_size);
        let created = match &opts.faults {
            None => builder.create(&db_path),
            Some(faults) => fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&db_path)
                .map_err(redb::DatabaseError::from)
                .and_then(redb::backends::FileBackend::new)
                .and_then(|inner| {
                    builder.create_with_backend(crate::faults::FaultyBackend {
                        inner,
                        faults: Arc::clone(faults),
                    })
                }),
        };
        let db = created.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked { path: root.clone() },
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                Error::io(format!("opening database {}", db_path.display()), io)
            }
            other => Error::from(other),
        })?;
        let cursor_key = init_schema(&db, &root)?;
        let db = Arc::new(db);
        recover_files(&db, &root)?;

        let shared = Arc::new(Shared::new(opts.faults.clone()));
        let mut store = Store {
            db,
            root,
            opts,
            tx: None,
            writer: None,
            shared,
            tmp_seq: AtomicU64::new(0),
            parsers: crate::manifest::ParserRegistry::default(),
            gc_lock: std::sync::Mutex::new(()),
            cursor_key,
        };
        store.start_writer()?;
        Ok(store)
    }

    pub(crate) fn start_writer(&mut self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let w = Writer {
            db: Arc::clone(&self.db),
            root: self.root.clone(),
            rx,
            shared: Arc::clone(&self.shared),
            unsynced: Vec::new(),
            intent_pending: false,
            nondurable_streak: 0,
            pending_unlinks: Vec::new(),
        };
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

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Runs `f` in the writer's next group commit and waits for the result.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnMut(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.shared.note_foreground();
        self.send(durable, false, f)
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
    #[doc(hidden)]
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

    /// fsyncs a blob's temp file. A failed fsync poisons the store: the
    /// kernel may have dropped the dirty pages, so a retry that succeeds
    /// proves nothing (the fsyncgate lesson); only a reopen starts clean.
    fn sync_temp(&self, file: &fs::File, tmp: &Path) -> Result<()> {
        let r = crate::faults::sync_file(
            self.shared.faults.as_deref(),
            crate::faults::SyncTarget::BlobFile,
            file,
        )
        .context(|| format!("fsync of temp file {}", tmp.display()));
        if let Err(e) = &r {
            self.shared.poison(e);
        }
        r
    }

    fn new_tmp(&self) -> Result<(PathBuf, fs::File)> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("put-{}-{n}", std::process::id()));
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating temp file {}", path.display()))?;
        Ok((path, f))
    }

    /// Stores a blob read from `reader`, verifying it against the expected
    /// digest and size when given. On any mismatch nothing is stored.
    pub fn put(&self, mut reader: impl Read, opts: &PutOptions) -> Result<PutResult> {
        self.shared.check()?;
        if let Some(existing) = self.reput(opts)? {
            return Ok(existing);
        }
        let mut v = Verifier::new(opts.digest, opts.size, Algorithm::Sha256);
        let threshold = self.opts.inline_threshold;
        let hint = opts
            .size
            .map_or(8192, |s| s.min(threshold as u64 + 1) as usize);
        let mut head = Vec::with_capacity(hint);
        (&mut reader)
            .take(threshold as u64 + 1)
            .read_to_end(&mut head)
            .context(|| "reading blob content".to_string())?;
        if head.len() <= threshold {
            v.update(&head)?;
            let (digest, size) = v.finish()?;
            return self.commit_inline(digest, size, head, opts);
        }
        let (tmp, mut file) = self.new_tmp()?;
        let mut guard = TmpGuard(Some(tmp.clone()));
        stream_to_file(head, &mut reader, &mut file, &mut v, &tmp)?;
        let (digest, size) = v.finish()?;
        make_read_only(&file, &tmp)?;
        if !opts.no_sync {
            self.sync_temp(&file, &tmp)?;
        }
        drop(file);
        guard.0 = None;
        self.commit_file(digest, size, tmp, opts)
    }

    /// Stores a blob held in memory.
    pub fn put_bytes(&self, data: &[u8], opts: &PutOptions) -> Result<PutResult> {
        if data.len() > self.opts.inline_threshold {
            return self.put(data, opts);
        }
        self.shared.check()?;
        if let Some(existing) = self.reput(opts)? {
            return Ok(existing);
        }
        let mut v = Verifier::new(opts.digest, opts.size, Algorithm::Sha256);
        v.update(data)?;
        let (digest, size) = v.finish()?;
        self.commit_inline(digest, size, data.to_vec(), opts)
    }

    /// Stores many in-memory blobs in one transaction (one fsync for all,
    /// unless `no_sync`). Hashing happens on this thread before the writer
    /// is involved; blobs larger than the inline threshold are written as
    /// files first. On any mismatch nothing is stored.
    pub fn put_blobs(&self, items: &[(&[u8], PutOptions)]) -> Result<Vec<PutResult>> {
        self.shared.check()?;
        enum Ready {
            Inline(Vec<u8>),
            File(PathBuf),
        }
        struct Item {
            digest: Digest,
            size: u64,
            media_type: Option<String>,
            repo: Option<String>,
            lease: Option<u64>,
            synced: bool,
            data: Ready,
        }
        let mut ready = Vec::with_capacity(items.len());
        let mut guards = Vec::new();
        let mut durable = false;
        for (data, o) in items {
            check_options(o)?;
            durable |= !o.no_sync;
            let mut v = Verifier::new(o.digest, o.size, Algorithm::Sha256);
            let (digest, size, data) = if data.len() <= self.opts.inline_threshold {
                v.update(data)?;
                let (d, n) = v.finish()?;
                (d, n, Ready::Inline(data.to_vec()))
            } else {
                let (tmp, mut file) = self.new_tmp()?;
                guards.push(TmpGuard(Some(tmp.clone())));
                stream_to_file(Vec::new(), &mut &data[..], &mut file, &mut v, &tmp)?;
                let (d, n) = v.finish()?;
                make_read_only(&file, &tmp)?;
                if !o.no_sync {
                    self.sync_temp(&file, &tmp)?;
                }
                (d, n, Ready::File(tmp))
            };
            ready.push(Item {
                digest,
                size,
                media_type: o.media_type.clone(),
                repo: o.repository.clone(),
                lease: o.lease,
                synced: !o.no_sync,
                data,
            });
        }
        for g in &mut guards {
            g.0 = None;
        }
        self.submit(durable, move |b| {
            for it in &ready {
                if let Some(l) = it.lease {
                    if let Err(e) = crate::lifecycle::check_lease(b, l) {
                        for it in &ready {
                            if let Ready::File(tmp) = &it.data {
                                b.discard_tmp(tmp.clone());
                            }
                        }
                        return Err(e);
                    }
                }
            }
            let mut out = Vec::with_capacity(ready.len());
            for it in &ready {
                let created = match &it.data {
                    Ready::Inline(bytes) => {
                        insert_blob(b, &it.digest, it.size, it.media_type.clone(), Some(bytes))?
                    }
                    Ready::File(tmp) => {
                        let created =
                            insert_blob(b, &it.digest, it.size, it.media_type.clone(), None)?;
                        if created {
                            b.install_file(it.digest, tmp.clone(), it.synced);
                        } else {
                            b.discard_tmp(tmp.clone());
                        }
                        created
                    }
                };
                link(b, it.repo.as_deref(), it.lease, &it.digest)?;
                out.push(PutResult {
                    digest: it.digest,
                    size: it.size,
                    created,
                });
            }
            Ok(out)
        })
    }

    /// A put of a digest that is already stored: no bytes are read or
    /// written, but the put still counts as one. In one writer job, so that
    /// no GC sweep step can commit between the check and the rescue: the
    /// record is re-checked, its grace period restarts, a running GC is told
    /// it is reachable, and the membership and lease take effect. `None`
    /// when the digest is not stored (by then): the caller does a full put.
    fn reput(&self, opts: &PutOptions) -> Result<Option<PutResult>> {
        check_options(opts)?;
        let Some(d) = opts.digest else {
            return Ok(None);
        };
        // Cheap pre-check on a snapshot; the writer job decides.
        if !self.exists(&d)? {
            return Ok(None);
        }
        let (size, repo, lease) = (opts.size, opts.repository.clone(), opts.lease);
        self.submit(!opts.no_sync, move |b| {
            let Some(rec) = record_in(b, &d)? else {
                return Ok(None);
            };
            if let Some(want) = size {
                if want != rec.size {
                    return Err(Error::SizeMismatch {
                        what: d.to_string(),
                        expected: want,
                        actual: rec.size,
                        more: "",
                    });
                }
            }
            if let Some(l) = lease {
                crate::lifecycle::check_lease(b, l)?;
            }
            let size = rec.size;
            b.note_reachable(&d)?;
            refresh(b, &d, rec)?;
            link(b, repo.as_deref(), lease, &d)?;
            Ok(Some(PutResult {
                digest: d,
                size,
                created: false,
            }))
        })
    }

    /// Makes a stored blob a member of a repository.
    pub fn link_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        crate::names::validate_repository(repo)?;
        let (repo, d) = (repo.to_string(), *d);
        self.submit(true, move |b| {
            if b.t.blobs.get(&d.to_key())?.is_none() {
                return Err(b.shared.missing(&d, not_found(&d)));
            }
            let id = crate::graph::ensure_repo(b, &repo)?;
            crate::graph::add_member(b, id, &d, crate::graph::MEMBER_BLOB)
        })
    }

    fn commit_inline(
        &self,
        digest: Digest,
        size: u64,
        bytes: Vec<u8>,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let media_type = opts.media_type.clone();
        let repo = opts.repository.clone();
        let lease = opts.lease;
        self.submit(!opts.no_sync, move |b| {
            if let Some(l) = lease {
                crate::lifecycle::check_lease(b, l)?;
            }
            let created = insert_blob(b, &digest, size, media_type.clone(), Some(&bytes))?;
            link(b, repo.as_deref(), lease, &digest)?;
            Ok(PutResult {
                digest,
                size,
                created,
            })
        })
    }

    fn commit_file(
        &self,
        digest: Digest,
        size: u64,
        tmp: PathBuf,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let media_type = opts.media_type.clone();
        let synced = !opts.no_sync;
        let repo = opts.repository.clone();
        let lease = opts.lease;
        self.submit(synced, move |b| {
            if let Some(l) = lease {
                if let Err(e) = crate::lifecycle::check_lease(b, l) {
                    b.discard_tmp(tmp.clone());
                    return Err(e);
                }
            }
            let created = insert_blob(b, &digest, size, media_type.clone(), None)?;
            link(b, repo.as_deref(), lease, &digest)?;
            if created {
                b.install_file(digest, tmp.clone(), synced);
            } else {
                b.discard_tmp(tmp.clone());
            }
            Ok(PutResult {
                digest,
                size,
                created,
            })
        })
    }

    /// Reads a blob's record.
    pub(crate) fn record(&self, d: &Digest) -> Result<Option<BlobRecord>> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(BLOBS)?;
        let got = t.get(&d.to_key())?;
        got.map(|g| BlobRecord::decode(g.value())).transpose()
    }

    /// Size and media type of a blob.
    pub fn stat(&self, d: &Digest) -> Result<BlobInfo> {
        let rec = self.record(d)?.ok_or_else(|| not_found(d))?;
        Ok(info(d, rec))
    }

    /// Whether a blob is stored.
    pub fn exists(&self, d: &Digest) -> Result<bool> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(BLOBS)?;
        Ok(t.get(&d.to_key())?.is_some())
    }

    /// A streaming reader over the whole blob.
    pub fn get(&self, d: &Digest) -> Result<BlobReader> {
        self.open_reader(d, None)
    }

    /// A streaming reader over bytes `start..=end` (inclusive, as in HTTP
    /// Range). An `end` past the blob is clamped to its last byte.
    pub fn get_range(&self, d: &Digest, start: u64, end: u64) -> Result<BlobReader> {
        self.open_reader(d, Some((start, end)))
    }

    /// A reader that hashes while it reads and fails with `InvalidData` at
    /// the end if the bytes do not match the digest (a corrupt blob file).
    pub fn get_verified(&self, d: &Digest) -> Result<VerifiedReader<BlobReader>> {
        let r = self.get(d)?;
        Ok(VerifiedReader::new(r, *d))
    }

    /// Reads a whole blob into memory. Meant for manifests and other small
    /// content; use [`Store::get`] for layers.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut r = self.get(d)?;
        let mut out = Vec::with_capacity(r.len() as usize);
        r.read_to_end(&mut out)
            .context(|| format!("reading blob {d}"))?;
        Ok(out)
    }

    /// Re-hashes a stored blob and fails with [`Error::Corrupt`] if its bytes
    /// no longer match its digest or recorded size.
    pub fn verify(&self, d: &Digest) -> Result<()> {
        let txn = tables::begin_read(&self.db)?;
        let rec = read_record(&txn, d)?;
        let actual = match rec.placement {
            Placement::Inline => {
                let t = txn.open_table(INLINE)?;
                let g = inline_bytes(&t, d)?;
                let bytes = g.value();
                check_len(d, &rec, bytes.len() as u64)?;
                Hasher::digest_of(d.algorithm(), bytes)
            }
            Placement::File => {
                let path = d.blob_path(&self.root);
                let f = fs::File::open(&path).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Error::Corrupt(format!("{d} is recorded but {} is missing", path.display()))
                    } else {
                        Error::io(format!("opening {}", path.display()), e)
                    }
                })?;
                let len = f
                    .metadata()
                    .context(|| format!("stat of {}", path.display()))?
                    .len();
                check_len(d, &rec, len)?;
                hash_file(&f, d.algorithm(), len)
                    .context(|| format!("hashing {}", path.display()))?
            }
        };
        if actual != *d {
            return Err(Error::Corrupt(format!(
                "{d} hashes to {actual}; its bytes were changed on disk"
            )));
        }
        Ok(())
    }

    fn open_reader(&self, d: &Digest, range: Option<(u64, u64)>) -> Result<BlobReader> {
        let txn = tables::begin_read(&self.db)?;
        let rec = read_record(&txn, d)?;
        let (start, end) = match range {
            None => (0, rec.size),
            Some((s, e)) => {
                if s > e || s >= rec.size {
                    return Err(Error::InvalidRange {
                        start: s,
                        end: e,
                        digest: *d,
                        size: rec.size,
                    });
                }
                (s, e.min(rec.size - 1) + 1)
            }
        };
        match rec.placement {
            Placement::Inline => {
                let t = txn.open_table(INLINE)?;
                let g = inline_bytes(&t, d)?;
                let bytes = g.value();
                let slice = bytes.get(start as usize..end as usize).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "{d} is recorded as {} bytes but {} are stored",
                        rec.size,
                        bytes.len()
                    ))
                })?;
                Ok(BlobReader {
                    src: Source::Memory(slice.to_vec()),
                    pos: 0,
                    end: end - start,
                })
            }
            Placement::File => {
                let path = d.blob_path(&self.root);
                let f = fs::File::open(&path).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        // Deleted after our snapshot was taken.
                        not_found(d)
                    } else {
                        Error::io(format!("opening {}", path.display()), e)
                    }
                })?;
                Ok(BlobReader {
                    src: Source::File(f),
                    pos: start,
                    end,
                })
            }
        }
    }

    /// Removes a blob and its bytes. Errors with [`Error::NotFound`] if absent.
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let d = *d;
        self.submit(true, move |b| {
            let rec = record_in(b, &d)?.ok_or_else(|| not_found(&d))?;
            crate::graph::remove_blob_in(b, &d, &rec)
        })
    }
}

/// Blob files are read-only (0444): nothing, an export's hard link
/// included, may write the store's bytes in place.
fn make_read_only(file: &fs::File, tmp: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(fs::Permissions::from_mode(0o444))
        .context(|| format!("making {} read-only", tmp.display()))
}

/// What a put's options name is checked before any byte is read.
fn check_options(opts: &PutOptions) -> Result<()> {
    if let Some(r) = &opts.repository {
        crate::names::validate_repository(r)?;
    }
    if let Some(mt) = opts.media_type.as_deref().filter(|m| !m.is_empty()) {
        crate::names::validate_media_type(mt)?;
    }
    Ok(())
}

fn read_record(txn: &redb::ReadTransaction, d: &Digest) -> Result<BlobRecord> {
    let t = txn.open_table(BLOBS)?;
    let g = t.get(&d.to_key())?.ok_or_else(|| not_found(d))?;
    BlobRecord::decode(g.value())
}

type InlineTable = redb::ReadOnlyTable<&'static tables::DKey, &'static [u8]>;

fn inline_bytes<'t>(
    t: &'t InlineTable,
    d: &Digest,
) -> Result<redb::AccessGuard<'t, &'static [u8]>> {
    t.get(&d.to_key())?
        .ok_or_else(|| Error::Corrupt(format!("{d} is recorded inline but its bytes are missing")))
}

/// A blob's record as the writer's transaction sees it.
pub(crate) fn record_in(b: &mut Batch<'_>, d: &Digest) -> Result<Option<BlobRecord>> {
    b.t.blobs
        .get(&d.to_key())?
        .map(|g| BlobRecord::decode(g.value()))
        .transpose()
}

fn check_len(d: &Digest, rec: &BlobRecord, len: u64) -> Result<()> {
    if len != rec.size {
        return Err(Error::Corrupt(format!(
            "{d} is recorded as {} bytes but {len} are stored",
            rec.size
        )));
    }
    Ok(())
}

/// Hashes the first `len` bytes of a file with positional reads into one
/// reused buffer. (A mapping would save the copy, but a file truncated by
/// an outside actor would then kill the process with SIGBUS instead of
/// giving an error; hashing, not copying, bounds the speed here.)
pub(crate) fn hash_file(f: &fs::File, alg: Algorithm, len: u64) -> io::Result<Digest> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let mut pos = 0u64;
    while pos < len {
        let want = usize::try_from(len - pos).map_or(buf.len(), |left| left.min(buf.len()));
        let n = f.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes early", len - pos),
            ));
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finish())
}

pub(crate) fn not_found(d: &Digest) -> Error {
    Error::NotFound {
        what: "blob",
        digest: *d,
        hint: String::new(),
    }
}

pub(crate) fn info(d: &Digest, rec: BlobRecord) -> BlobInfo {
    BlobInfo {
        digest: *d,
        size: rec.size,
        media_type: rec.media_type,
        manifest: rec.manifest,
        placement: rec.placement,
        created_ms: rec.created_ms,
    }
}

fn link(b: &mut Batch<'_>, repo: Option<&str>, lease: Option<u64>, d: &Digest) -> Result<()> {
    if let Some(l) = lease {
        crate::lifecycle::add_to_lease(b, l, d)?;
    }
    if let Some(r) = repo {
        let id = crate::graph::ensure_repo(b, r)?;
        crate::graph::add_member(b, id, d, crate::graph::MEMBER_BLOB)?;
    }
    Ok(())
}

/// A put of stored content counts as fresh: its grace period restarts, so
/// that "upload the layer, then push the manifest" is safe from a GC that
/// starts in between, without a lease. (Callers tell a running GC.)
fn refresh(b: &mut Batch<'_>, d: &Digest, mut rec: BlobRecord) -> Result<()> {
    if rec.created_ms < b.now_ms {
        rec.created_ms = b.now_ms;
        b.t.blobs.insert(&d.to_key(), rec.encode()?.as_slice())?;
    }
    Ok(())
}

/// Inserts a blob record (and inline bytes) unless the digest is already
/// stored, in which case the put refreshes it. Returns whether it was
/// inserted.
pub(crate) fn insert_blob(
    b: &mut Batch<'_>,
    digest: &Digest,
    size: u64,
    media_type: Option<String>,
    inline: Option<&[u8]>,
) -> Result<bool> {
    let key = digest.to_key();
    // A put during a GC run counts as a commit of that blob, even when the
    // bytes were already there: the running GC must not sweep it.
    b.note_reachable(digest)?;
    if let Some(rec) = record_in(b, digest)? {
        refresh(b, digest, rec)?;
        return Ok(false);
    }
    let rec = BlobRecord {
        size,
        created_ms: b.now_ms,
        placement: if inline.is_some() {
            Placement::Inline
        } else {
            Placement::File
        },
        manifest: false,
        media_type,
        artifact_type: None,
    };
    b.t.blobs.insert(&key, rec.encode()?.as_slice())?;
    if let Some(bytes) = inline {
        b.t.inline.insert(&key, bytes)?;
    }
    Ok(true)
}

/// Reads, hashes and writes in a pipeline: this thread reads and writes the
/// file while a helper hashes, so a put runs at the speed of the slower of
/// the two instead of their sum.
fn stream_to_file(
    head: Vec<u8>,
    reader: &mut impl Read,
    file: &mut fs::File,
    v: &mut Verifier,
    tmp: &Path,
) -> Result<()> {
    let mut hasher = v.take_hasher();
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(POOL + 1);
    let (hash_tx, hash_rx) = crossbeam_channel::bounded::<Arc<Vec<u8>>>(POOL);
    for _ in 0..POOL {
        let _ = free_tx.send(Vec::with_capacity(CHUNK));
    }
    let result = std::thread::scope(|s| -> Result<()> {
        let recycle = free_tx.clone();
        let hashing = s.spawn(move || {
            for chunk in hash_rx {
                hasher.update(&chunk);
                if let Some(buf) = Arc::into_inner(chunk) {
                    let _ = recycle.send(buf);
                }
            }
            hasher
        });
        let feed = || -> Result<()> {
            // An empty head is no end of stream: the reader has it all.
            let mut next = Some(head).filter(|h| !h.is_empty());
            loop {
                let buf = match next.take() {
                    Some(b) => b,
                    None => {
                        let mut buf = free_rx.recv().unwrap_or_default();
                        buf.clear();
                        (&mut *reader)
                            .take(CHUNK as u64)
                            .read_to_end(&mut buf)
                            .context(|| "reading blob content".to_string())?;
                        buf
                    }
                };
                if buf.is_empty() {
                    return Ok(());
                }
                v.check_size(buf.len())?;
                v.account(buf.len());
                let chunk = Arc::new(buf);
                hash_tx
                    .send(Arc::clone(&chunk))
                    .map_err(|_| Error::io("hashing", io::Error::other("hash thread stopped")))?;
                file.write_all(&chunk)
                    .context(|| format!("writing temp file {}", tmp.display()))?;
                if let Some(buf) = Arc::into_inner(chunk) {
                    let _ = free_tx.send(buf);
                }
            }
        };
        let r = feed();
        drop(hash_tx);
        match hashing.join() {
            Ok(h) => v.restore_hasher(h),
            Err(_) => {
                return Err(Error::io(
                    "hashing",
                    io::Error::other("hash thread panicked"),
                ))
            }
        }
        r
    });
    result
}

enum Source {
    Memory(Vec<u8>),
    File(fs::File),
}

/// A streaming reader over a blob or a range of it. File-backed blobs are
/// read with `pread`, so memory stays bounded whatever the blob size.
pub struct BlobReader {
    src: Source,
    pos: u64,
    end: u64,
}

impl BlobReader {
    /// Bytes left to read.
    pub fn len(&self) -> u64 {
        self.end - self.pos.min(self.end)
    }

    /// Whether nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.len().min(buf.len() as u64)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = match &self.src {
            Source::Memory(data) => {
                let start = self.pos as usize;
                let src = data.get(start..start + want).unwrap_or_default();
                buf[..src.len()].copy_from_slice(src);
                src.len()
            }
            Source::File(f) => f.read_at(&mut buf[..want], self.pos)?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob ended {} bytes early", self.len()),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Wraps a reader and checks, at its end, that the bytes hash to `expected`.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
}

impl<R: Read> VerifiedReader<R> {
    /// Verifies `inner` against `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifiedReader {
            inner,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected,
        }
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty() {
            if let Some(h) = self.hasher.take() {
                let actual = h.finish();
                if actual != self.expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt blob: {} hashes to {actual}", self.expected),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// The META key of the secret that signs referrers cursors.
const CURSOR_KEY: &str = "cursor_key";

/// 32 bytes from the OS's random source, by way of std's randomly keyed
/// SipHash (no extra dependency for one key per store).
fn random_key() -> [u8; 32] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// Creates the tables, checks the format, and returns the cursor key.
fn init_schema(db: &Database, root: &Path) -> Result<[u8; 32]> {
    let txn = db.begin_write()?;
    let mut cursor_key = [0u8; 32];
    // Earlier builds kept the GC change log in a table; it is dead weight.
    txn.delete_table(tables::RETIRED_GC_LOG)?;
    {
        tables::create_all(&txn)?;
        let mut meta = txn.open_table(META)?;
        let found = meta.get(FORMAT_KEY)?.map(|g| g.value().to_vec());
        match found.as_deref() {
            None => {
                meta.insert(FORMAT_KEY, [STORE_FORMAT].as_slice())?;
            }
            Some([STORE_FORMAT]) => {}
            Some(other) => {
                return Err(Error::NotAStore {
                    path: root.to_path_buf(),
                    reason: format!(
                        "on-disk format {other:?} is not supported; this build reads format [{STORE_FORMAT}]"
                    ),
                })
            }
        }
        let stored = meta.get(CURSOR_KEY)?.map(|g| g.value().to_vec());
        match stored {
            Some(k) if k.len() == 32 => cursor_key.copy_from_slice(&k),
            _ => {
                cursor_key = random_key();
                meta.insert(CURSOR_KEY, cursor_key.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(cursor_key)
}

/// Finishes what a crash interrupted: removes blob files listed in the
/// intent that have no record, then empties `tmp/`. O(size of tmp/), never
/// O(store).
fn recover_files(db: &Database, root: &Path) -> Result<()> {
    let tmp = root.join("tmp");
    let intent = tmp.join(INTENT_FILE);
    if let Ok(text) = fs::read_to_string(&intent) {
        let txn = tables::begin_read(db)?;
        let t = txn.open_table(BLOBS)?;
        for line in text.lines() {
            let Ok(d) = Digest::parse(line.trim()) else {
                continue;
            };
            let recorded_as_file = match t.get(&d.to_key())? {
                Some(g) => BlobRecord::decode(g.value())?.placement == Placement::File,
                None => false,
            };
            if !recorded_as_file {
                let _ = fs::remove_file(d.blob_path(root));
            }
        }
        writer::sync_dir(&root.join("blobs").join("sha256"))?;
        writer::sync_dir(&root.join("blobs").join("sha512"))?;
    }
    let entries = fs::read_dir(&tmp).context(|| format!("listing {}", tmp.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        let _ = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
    }
    Ok(())
}
