//! The single writer thread and its group commit.
//!
//! Callers hash, parse and fsync their data on their own threads, then send a
//! [`Job`] here. The writer drains everything queued, applies it in one redb
//! write transaction and commits once, so concurrent durable writers share one
//! fsync. Blob files are renamed into place by this thread only, which
//! serialises them against deletions of the same digest.
//!
//! Every job is all or nothing. A job that returns an error, of any kind,
//! leaves no trace: the writer drops the transaction, answers that job with
//! its error, re-runs the jobs before it (which succeeded) in a fresh
//! transaction and commits them, then goes on with the jobs after it. So a
//! failing job costs its neighbours one extra transaction, never their
//! result. A storage failure still fails the whole group: the transaction
//! could not be trusted.
//!
//! Background jobs (GC sweep steps) run after every foreground job of their
//! group, so a sweep step sees, in its own transaction, everything that the
//! group's other jobs make reachable.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use redb::{Database, Durability};

use crate::digest::Digest;
use crate::error::{Error, IoContext as _, Result};
use crate::faults::{self, SyncTarget};
use crate::tables::WriteTables;

/// Largest number of jobs folded into one transaction. Bounds the latency a
/// job can wait behind others and the size of one transaction.
const MAX_BATCH: usize = 1024;

/// How long the writer waits to gather a group when writers are concurrent;
/// far below the cost of the fsync it saves.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(150);

/// redb frees the pages a `Durability::None` commit replaces only at the
/// next durable commit, so a long run of non-durable commits grows the file
/// without bound (by gigabytes over a bulk ingest).
/// Every this many non-durable commits, the writer makes one durable.
const MAX_NONDURABLE_STREAK: u32 = 8;

/// The name of the intent file: digests whose files this batch installs or
/// removes. At open, any listed digest without a record has its file removed,
/// so a crash between a rename and the commit leaves no orphan behind.
pub(crate) const INTENT_FILE: &str = "intent";

/// What the batch will do to a blob file once the transaction is settled.
enum FileAction {
    /// Rename the temp file to `blobs/<alg>/<hex>` before the commit.
    Install { tmp: PathBuf, synced: bool },
    /// Unlink `blobs/<alg>/<hex>` after the commit.
    Remove,
}

/// The state a job sees: the open tables and the file work it schedules.
pub(crate) struct Batch<'t> {
    pub t: WriteTables<'t>,
    pub now_ms: u64,
    pub shared: &'t Shared,
    files: HashMap<Digest, FileAction>,
    discards: Vec<PathBuf>,
    /// Temp files the running job handed over: removed if the job fails.
    job_tmps: Vec<PathBuf>,
}

impl Batch<'_> {
    /// Schedules a verified temp file to become the blob file of `digest`.
    pub fn install_file(&mut self, digest: Digest, tmp: PathBuf, synced: bool) {
        self.job_tmps.push(tmp.clone());
        if let Some(FileAction::Install { tmp: old, .. }) = self
            .files
            .insert(digest, FileAction::Install { tmp, synced })
        {
            self.discards.push(old);
        }
    }

    /// Schedules the blob file of `digest` for removal after the commit.
    pub fn remove_file(&mut self, digest: Digest) {
        if let Some(FileAction::Install { tmp, .. }) = self.files.insert(digest, FileAction::Remove)
        {
            self.discards.push(tmp);
        }
    }

    /// A temp file that is no longer needed (the blob was already stored).
    pub fn discard_tmp(&mut self, tmp: PathBuf) {
        self.job_tmps.push(tmp.clone());
        self.discards.push(tmp);
    }

    /// Records that `digest` may have become reachable, for a GC that is
    /// marking from an older snapshot. A no-op when no GC runs.
    pub fn note_reachable(&mut self, digest: &Digest) -> Result<()> {
        if self.shared.gc_active.load(Ordering::Acquire) {
            self.shared
                .gc_log
                .lock()
                .map_err(|_| Error::Poisoned("gc log lock".into()))?
                .push(*digest);
        }
        Ok(())
    }

    /// Whether the blob file of `digest` is scheduled for install in this batch.
    pub fn pending_install(&self, digest: &Digest) -> bool {
        matches!(self.files.get(digest), Some(FileAction::Install { .. }))
    }
}

type RunFn = Box<dyn FnMut(&mut Batch<'_>) -> Result<()> + Send>;
type DoneFn = Box<dyn FnOnce(Result<()>) + Send>;

/// One unit of work for the writer.
pub(crate) struct Job {
    pub durable: bool,
    /// GC work: runs after the group's foreground jobs.
    pub background: bool,
    pub run: RunFn,
    pub done: DoneFn,
}

impl Job {
    /// A job whose typed output comes back through a channel. `run` may be
    /// called more than once (see the module docs): the last call's output
    /// is the one delivered.
    pub fn new<T: Send + 'static>(
        durable: bool,
        background: bool,
        mut f: impl FnMut(&mut Batch<'_>) -> Result<T> + Send + 'static,
    ) -> (Job, crossbeam_channel::Receiver<Result<T>>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let run_slot = Arc::clone(&slot);
        let job = Job {
            durable,
            background,
            run: Box::new(move |b| {
                let out = f(b)?;
                if let Ok(mut g) = run_slot.lock() {
                    *g = Some(out);
                }
                Ok(())
            }),
            done: Box::new(move |r| {
                let r = r.and_then(|()| {
                    slot.lock()
                        .ok()
                        .and_then(|mut g| g.take())
                        .ok_or_else(|| Error::Corrupt("writer job finished without output".into()))
                });
                let _ = tx.send(r);
            }),
        };
        (job, rx)
    }
}

/// GC sweep work that rides along in writers' transactions (see
/// `lifecycle::Store::gc`): called once per foreground commit, before it
/// commits. An error aborts that whole transaction.
pub(crate) type SweepHook = Box<dyn FnMut(&mut Batch<'_>) -> Result<()> + Send>;

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
    /// Injected fsync failures (tests only).
    pub faults: Option<Arc<crate::faults::FaultInjector>>,
    /// Set while a GC sweeps and writers are active.
    pub sweep_hook: Mutex<Option<SweepHook>>,
    /// The most recent GC deletions, so that a request that needed one of
    /// them gets [`Error::Swept`] (retry) rather than a plain "not found".
    pub swept: Mutex<RecentlySwept>,
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
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.set.contains(d)
    }
}

impl Shared {
    pub fn new(faults: Option<Arc<crate::faults::FaultInjector>>) -> Shared {
        Shared {
            faults,
            sweep_hook: Mutex::new(None),
            swept: Mutex::new(RecentlySwept::default()),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(String::new()),
            gc_active: AtomicBool::new(false),
            gc_log: Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            last_foreground_us: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// The error for a digest a request needed and did not find: a retry
    /// when a GC deleted it recently, else `missing`.
    pub fn missing(&self, d: &Digest, missing: Error) -> Error {
        match self.swept.lock() {
            Ok(g) if g.contains(d) => Error::Swept {
                digest: Box::new(*d),
            },
            _ => missing,
        }
    }

    pub fn note_foreground(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.last_foreground_us.store(now, Ordering::Release);
    }

    /// Empties the GC change log, returning what it held.
    pub fn take_gc_log(&self) -> Result<Vec<Digest>> {
        Ok(std::mem::take(
            &mut *self
                .gc_log
                .lock()
                .map_err(|_| Error::Poisoned("gc log lock".into()))?,
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

    pub fn check(&self) -> Result<()> {
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

    pub fn poison(&self, why: &Error) {
        if let Ok(mut g) = self.poison_reason.lock() {
            *g = why.to_string();
        }
        self.poisoned.store(true, Ordering::Release);
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How one transaction attempt ended.
enum Attempt {
    /// Committed; one result per job.
    Committed(Vec<Result<()>>),
    /// Job `i` failed; nothing was committed.
    JobFailed(usize, Error),
    /// The GC's piggybacked sweep failed; nothing was committed.
    HookFailed,
    /// A storage failure; nothing can be trusted of this group.
    Failed(Error),
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub root: PathBuf,
    pub rx: Receiver<Job>,
    pub shared: Arc<Shared>,
    /// Blob files installed by non-durable batches and not yet fsynced.
    /// They are synced before the next durable commit, which is the commit
    /// that makes their records durable.
    pub unsynced: Vec<PathBuf>,
    /// An intent file from a non-durable batch is still on disk.
    pub intent_pending: bool,
    /// Non-durable commits since the last durable one.
    pub nondurable_streak: u32,
    /// Blob files whose records were deleted by non-durable commits: they
    /// are unlinked after the next durable commit.
    pub pending_unlinks: Vec<PathBuf>,
}

impl Writer {
    pub fn run(mut self) {
        let mut last_batch = 1usize;
        while let Ok(first) = self.rx.recv() {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(j) => {
                        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
                        jobs.push(j)
                    }
                    Err(_) => break,
                }
            }
            // Writers that were just answered are still on their way back
            // with their next job. When the last batch was shared, wait a
            // moment for as many to arrive: one fsync then serves them all.
            // A lone writer (last batch of one) never waits.
            if last_batch > 1 && jobs.len() < last_batch {
                let deadline = std::time::Instant::now() + GATHER_WAIT;
                while jobs.len() < last_batch {
                    match self.rx.recv_deadline(deadline) {
                        Ok(j) => {
                            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
                            jobs.push(j)
                        }
                        Err(_) => break,
                    }
                }
            }
            last_batch = jobs.len();
            // A sweep step must see what the group's other jobs make
            // reachable (stable: foreground jobs keep their order).
            jobs.sort_by_key(|j| j.background);
            self.settle(jobs);
        }
        // Closing: make what non-durable commits left pending durable, so
        // deferred unlinks happen and the intent can go.
        if self.shared.check().is_ok()
            && (!self.pending_unlinks.is_empty()
                || self.intent_pending
                || !self.unsynced.is_empty())
        {
            let _ = self.try_commit(&mut [], true);
        }
    }

    /// Commits a group, answering every job. A job that fails is answered
    /// with its error and leaves no trace; the others commit as if it had
    /// never been sent (see the module docs).
    fn settle(&mut self, jobs: Vec<Job>) {
        let mut rest = jobs;
        while !rest.is_empty() {
            let mut attempt = std::mem::take(&mut rest);
            let mut hook = true;
            loop {
                if let Err(e) = self.shared.check() {
                    let msg = e.to_string();
                    for j in attempt.into_iter().chain(rest) {
                        (j.done)(Err(Error::Poisoned(msg.clone())));
                    }
                    return;
                }
                match self.try_commit(&mut attempt, hook) {
                    Attempt::Committed(results) => {
                        for (j, r) in attempt.into_iter().zip(results) {
                            (j.done)(r);
                        }
                        break;
                    }
                    Attempt::JobFailed(i, e) => {
                        // Jobs before `i` succeeded: they commit alone, in a
                        // fresh transaction. Jobs after it run next.
                        let mut tail = attempt.split_off(i);
                        let failed = tail.remove(0);
                        (failed.done)(Err(e));
                        tail.append(&mut rest);
                        rest = tail;
                        if attempt.is_empty() {
                            break;
                        }
                    }
                    // The GC's piggybacked sweep failed: the run stops (see
                    // lifecycle::gc) and the jobs commit without it.
                    Attempt::HookFailed => hook = false,
                    Attempt::Failed(e) => {
                        let msg = e.to_string();
                        let mut first = Some(e);
                        for j in attempt.into_iter().chain(rest) {
                            let err = first.take().unwrap_or_else(|| {
                                Error::io("group commit failed", std::io::Error::other(msg.clone()))
                            });
                            (j.done)(Err(err));
                        }
                        return;
                    }
                }
            }
        }
    }

    fn try_commit(&mut self, jobs: &mut [Job], hook: bool) -> Attempt {
        match self.commit(jobs, hook) {
            Ok(a) => a,
            Err(e) => Attempt::Failed(e),
        }
    }

    fn commit(&mut self, jobs: &mut [Job], run_hook: bool) -> Result<Attempt> {
        let durable =
            jobs.iter().any(|j| j.durable) || self.nondurable_streak >= MAX_NONDURABLE_STREAK;
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        let mut results = Vec::with_capacity(jobs.len());
        let (files, discards) = {
            let mut batch = Batch {
                t: WriteTables::open(&txn)?,
                now_ms: now_ms(),
                shared: &self.shared,
                files: HashMap::new(),
                discards: Vec::new(),
                job_tmps: Vec::new(),
            };
            for (i, j) in jobs.iter_mut().enumerate() {
                batch.job_tmps.clear();
                if let Err(e) = (j.run)(&mut batch) {
                    // Only the failed job's temp files go; the others' are
                    // handed over again when their jobs re-run.
                    for tmp in batch.job_tmps.drain(..) {
                        let _ = fs::remove_file(tmp);
                    }
                    if e.is_storage_failure() {
                        return Err(e);
                    }
                    // Dropping the transaction un-does everything the job
                    // wrote, whatever its kind of error.
                    return Ok(Attempt::JobFailed(i, e));
                }
                results.push(Ok(()));
            }
            // A foreground commit carries a little of a running GC's
            // sweep: its cost shares this commit (and fsync) instead of
            // queueing a transaction of its own in front of writers.
            if run_hook && !jobs.is_empty() {
                let mut slot = self
                    .shared
                    .sweep_hook
                    .lock()
                    .map_err(|_| Error::Poisoned("sweep hook lock".into()))?;
                if let Some(hook) = slot.as_mut() {
                    if let Err(e) = hook(&mut batch) {
                        if e.is_storage_failure() {
                            return Err(e);
                        }
                        // The GC run sees the hook gone and stops; this
                        // transaction is dropped and its jobs re-run.
                        *slot = None;
                        return Ok(Attempt::HookFailed);
                    }
                }
            }
            (batch.files, batch.discards)
        };
        if durable {
            self.nondurable_streak = 0;
        } else {
            self.nondurable_streak += 1;
        }
        for tmp in discards {
            let _ = fs::remove_file(tmp);
        }

        let touched: Vec<Digest> = files.keys().copied().collect();
        if !touched.is_empty() {
            if let Err(e) = self.write_intent(&touched, durable) {
                if durable {
                    // Its fsync failed: see Store::sync_temp on why that poisons.
                    self.shared.poison(&e);
                }
                return Err(e);
            }
        }
        let mut installed = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut removes = Vec::new();
        for (digest, action) in files {
            let fin = digest.blob_path(&self.root);
            match action {
                FileAction::Install { tmp, synced } => {
                    // Re-put after a deferred delete: the new file must stay.
                    self.pending_unlinks.retain(|p| p != &fin);
                    if let Err(e) = fs::rename(&tmp, &fin) {
                        let _ = fs::remove_file(&tmp);
                        self.undo_installs(&installed);
                        return Err(Error::io(
                            format!("installing blob file {}", fin.display()),
                            e,
                        ));
                    }
                    if let Some(parent) = fin.parent() {
                        if !dirs.iter().any(|d| d == parent) {
                            dirs.push(parent.to_path_buf());
                        }
                    }
                    if !synced {
                        self.unsynced.push(fin.clone());
                    }
                    installed.push(fin);
                }
                FileAction::Remove => removes.push(fin),
            }
        }
        if durable {
            let r = self.sync_before_durable_commit(&dirs);
            if let Err(e) = r {
                self.shared.poison(&e);
                self.undo_installs(&installed);
                return Err(e);
            }
        }
        if let Err(e) = txn.commit() {
            // The installed files stay: a commit whose sync failed may
            // still have reached the disk (redb writes its header before its
            // one sync), and its records would then point at nothing.
            // The intent lists them; the next open keeps those recorded as
            // files and removes the rest. Poisoning stops writes until then.
            let e = Error::from(e);
            self.shared.poison(&e);
            return Err(e);
        }
        // A file may go only once the deletion is durable: a non-durable
        // commit can still be lost, and its record would then point at
        // nothing. Deferred unlinks wait for the next durable commit.
        self.pending_unlinks.extend(removes);
        if !durable {
            return self
                .finish_intent(durable, &touched, results)
                .map(Attempt::Committed);
        }
        for fin in std::mem::take(&mut self.pending_unlinks) {
            if let Err(e) = fs::remove_file(&fin) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // The record is gone; the file is an orphan that fsck
                    // --repair or the next open (via the intent) removes.
                    log::warn!("could not remove blob file {}: {e}", fin.display());
                }
            }
        }
        self.finish_intent(durable, &touched, results)
            .map(Attempt::Committed)
    }

    fn finish_intent(
        &mut self,
        durable: bool,
        touched: &[Digest],
        results: Vec<Result<()>>,
    ) -> Result<Vec<Result<()>>> {
        // A non-durable commit may still be lost, so its intent stays until
        // a durable commit covers it.
        if durable && (!touched.is_empty() || self.intent_pending) {
            let _ = fs::remove_file(self.root.join("tmp").join(INTENT_FILE));
            self.intent_pending = false;
        } else if !touched.is_empty() {
            self.intent_pending = true;
        }
        Ok(results)
    }

    /// Blob files must reach the disk before the records that point to them.
    fn sync_before_durable_commit(&mut self, dirs: &[PathBuf]) -> Result<()> {
        let injector = self.shared.faults.clone();
        for f in self.unsynced.drain(..) {
            match fs::File::open(&f) {
                Ok(file) => faults::sync_file(injector.as_deref(), SyncTarget::BlobFile, &file)
                    .context(|| format!("fsync of blob file {}", f.display()))?,
                // Removed since (a later delete): nothing to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("opening {}", f.display()), e)),
            }
        }
        for d in dirs {
            faults::sync_path(self.faults(), SyncTarget::Directory, d)
                .context(|| format!("fsync of directory {}", d.display()))?;
        }
        Ok(())
    }

    fn faults(&self) -> Option<&faults::FaultInjector> {
        self.shared.faults.as_deref()
    }

    fn undo_installs(&self, installed: &[PathBuf]) {
        for fin in installed {
            let _ = fs::remove_file(fin);
        }
    }

    fn write_intent(&self, digests: &[Digest], durable: bool) -> Result<()> {
        let path = self.root.join("tmp").join(INTENT_FILE);
        let mut text = String::with_capacity(digests.len() * 72);
        for d in digests {
            text.push_str(&d.to_string());
            text.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())
            .context(|| format!("writing {}", path.display()))?;
        if durable {
            faults::sync_file(self.faults(), SyncTarget::Intent, &f)
                .context(|| format!("fsync of {}", path.display()))?;
        }
        Ok(())
    }
}

/// fsync a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .context(|| format!("fsync of directory {}", dir.display()))
}
