//! The single writer thread and its group commit.
//!
//! Callers hash, parse and fsync their data on their own threads, then send a
//! [`Job`] here. The writer drains everything queued, applies it in one redb
//! write transaction and commits once, so concurrent durable writers share one
//! fsync. Staged blobs are committed under their digests by this thread
//! only, which serialises them against deletions of the same digest.
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
//!
//! Blob bytes follow their records, never lead them. A job that stores a
//! staged blob writes an intent row (digest -> staged name) in the same
//! transaction as the record; the blob is committed under its digest after
//! the transaction, and the row is deleted by a later one. A job that
//! deletes a record writes a row with no staged name, and the bytes go after
//! a durable commit. At open, every row left by a crash is settled against
//! the records (`engine::open`): so no crash leaves bytes without a record
//! or a record without bytes, whatever the backend.

use redb::ReadableTable as _;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use redb::{Database, Durability};

use super::shared::Shared;
use crate::blob::{BlobBackend, Staged};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::log::ship::Shipper;
use crate::schema::reverse;
use crate::schema::tables::WriteTables;

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

/// What the batch will do to a blob's bytes once the transaction commits.
enum BlobAction {
    /// Commit the staged blob under the digest.
    Install { staged: Staged, synced: bool },
    /// Remove the bytes under the digest.
    Remove,
}

/// The state a job sees: the open tables and the file work it schedules.
pub(crate) struct Batch<'t> {
    pub t: WriteTables<'t>,
    pub now_ms: u64,
    pub shared: &'t Shared,
    files: HashMap<Digest, BlobAction>,
    discards: Vec<Staged>,
    /// Staged blobs the running job handed over: discarded if the job fails.
    job_staged: Vec<Staged>,
}

impl Batch<'_> {
    /// Schedules a verified staged blob to become the bytes of `digest`
    /// once this transaction commits, and records the intent with it.
    fn install_blob(&mut self, digest: Digest, staged: Staged, synced: bool) -> Result<()> {
        self.job_staged.push(staged.clone());
        self.t
            .intents
            .insert(digest.to_key().as_slice(), staged.name().as_bytes())?;
        if let Some(BlobAction::Install { staged: old, .. }) = self
            .files
            .insert(digest, BlobAction::Install { staged, synced })
        {
            self.discards.push(old);
        }
        Ok(())
    }

    /// After a blob record's insert: the staged bytes become `digest`'s
    /// when the insert `created` the record, and are discarded when the
    /// digest was already stored (its bytes are never rewritten).
    pub fn place_staged(
        &mut self,
        created: bool,
        digest: Digest,
        staged: &Staged,
        synced: bool,
    ) -> Result<()> {
        if created {
            self.install_blob(digest, staged.clone(), synced)
        } else {
            self.discard_staged(staged.clone());
            Ok(())
        }
    }

    /// Schedules the bytes of `digest` for removal after the commit.
    pub fn remove_blob_bytes(&mut self, digest: Digest) -> Result<()> {
        self.t
            .intents
            .insert(digest.to_key().as_slice(), [].as_slice())?;
        if let Some(BlobAction::Install { staged, .. }) =
            self.files.insert(digest, BlobAction::Remove)
        {
            self.discards.push(staged);
        }
        Ok(())
    }

    /// A staged blob that is no longer needed (the digest was stored).
    pub fn discard_staged(&mut self, staged: Staged) {
        self.job_staged.push(staged.clone());
        self.discards.push(staged);
    }

    /// Records that `digest` may have become reachable, for a GC that is
    /// marking from an older snapshot. A no-op when no GC runs.
    pub fn note_reachable(&mut self, digest: &Digest) -> Result<()> {
        if self.shared.gc_active.load(Ordering::Acquire) {
            self.shared
                .gc_log
                .lock()
                .map_err(|_| Error::lock("gc log lock"))?
                .push(*digest);
        }
        Ok(())
    }

    /// Whether bytes of `digest` are scheduled for install in this batch.
    pub fn pending_install(&self, digest: &Digest) -> bool {
        matches!(self.files.get(digest), Some(BlobAction::Install { .. }))
    }

    /// Whether bytes of `digest` are scheduled for install, or an intent
    /// for them is not yet settled: a blob in flight, not an orphan.
    pub fn in_flight(&mut self, digest: &Digest) -> Result<bool> {
        Ok(
            matches!(self.files.get(digest), Some(BlobAction::Install { .. }))
                || self.t.intents.get(digest.to_key().as_slice())?.is_some(),
        )
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
                    slot.lock().ok().and_then(|mut g| g.take()).ok_or_else(|| {
                        Error::Internal("a writer job finished without output".into())
                    })
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

/// Where a running GC leaves its sweep hook for the writer (set while a GC
/// sweeps and writers are active).
pub(crate) type SweepSlot = Arc<Mutex<Option<SweepHook>>>;

/// How one transaction attempt ended.
/// What a batch of jobs did: one result per job, the blob files to install
/// or remove, and the staged blobs to discard.
type Applied = (Vec<Result<()>>, HashMap<Digest, BlobAction>, Vec<Staged>);

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
    db: Arc<Database>,
    backend: Arc<dyn BlobBackend>,
    rx: Receiver<Job>,
    shared: Arc<Shared>,
    sweep_hook: SweepSlot,
    /// Staged blobs recorded by non-durable commits: a crash may still lose
    /// those commits, so the bytes stay staged (reads find them through
    /// the intent row) until the next durable commit.
    pending_installs: Vec<(Digest, Staged, bool)>,
    /// Blobs committed or removed whose names are not yet durable; synced
    /// before the next durable commit, which may make their intent rows'
    /// deletion durable.
    unsynced_names: Vec<Digest>,
    /// Non-durable commits since the last durable one.
    nondurable_streak: u32,
    /// Blobs whose records were deleted by non-durable commits: their bytes
    /// go after the next durable commit.
    pending_unlinks: Vec<Digest>,
    /// Intent rows whose work is done: deleted by the next transaction.
    settled: Vec<Digest>,
    /// Ships each transaction's changes before it commits, when the store
    /// keeps an index log (`crate::log`).
    shipper: Option<Shipper>,
    /// Staged rows at which a reverse set's staging tree starts merging.
    staged_rows: u64,
    /// The key slice the next merge moves (`schema::reverse`). Not durable:
    /// after a restart the round starts again at slice 0, which changes
    /// only which staged rows move first.
    merge_next: u8,
}

impl Writer {
    pub fn new(
        db: Arc<Database>,
        backend: Arc<dyn BlobBackend>,
        rx: Receiver<Job>,
        shared: Arc<Shared>,
        sweep_hook: SweepSlot,
        shipper: Option<Shipper>,
        staged_rows: u64,
    ) -> Writer {
        Writer {
            db,
            backend,
            rx,
            shared,
            sweep_hook,
            pending_installs: Vec::new(),
            unsynced_names: Vec::new(),
            nondurable_streak: 0,
            pending_unlinks: Vec::new(),
            settled: Vec::new(),
            shipper,
            staged_rows,
            merge_next: 0,
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending_unlinks.is_empty()
            || !self.pending_installs.is_empty()
            || !self.unsynced_names.is_empty()
            || !self.settled.is_empty()
    }

    pub fn run(mut self) {
        let mut last_batch = 1usize;
        while let Ok(first) = self.rx.recv() {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(j) => {
                        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
                        jobs.push(j);
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
                            jobs.push(j);
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
        // that deferred removals happen, then settle their intent rows
        // (rows left behind are settled at the next open).
        for _ in 0..2 {
            if self.shared.check().is_ok() && self.has_pending() {
                let _ = self.try_commit(&mut [], true);
            }
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

    /// One group commit: apply the jobs, sync what the commit will name,
    /// commit, then install and remove blob bytes.
    fn commit(&mut self, jobs: &mut [Job], run_hook: bool) -> Result<Attempt> {
        let durable =
            jobs.iter().any(|j| j.durable) || self.nondurable_streak >= MAX_NONDURABLE_STREAK;
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        let (results, files, discards) = match self.apply(&txn, jobs, run_hook)? {
            Ok(applied) => applied,
            Err(stopped) => return Ok(stopped),
        };
        for s in &discards {
            let _ = self.backend.discard(s);
        }
        let mut installs = Vec::new();
        let mut removes = Vec::new();
        for (digest, action) in files {
            match action {
                BlobAction::Install { staged, synced } => installs.push((digest, staged, synced)),
                BlobAction::Remove => removes.push(digest),
            }
        }
        if durable {
            self.sync_before_durable_commit(&installs)?;
        }
        let committed = txn.commit();
        // Even a failed commit may have landed a repository removal.
        self.shared.repo_ids.after_commit();
        if let Err(e) = committed {
            // A commit whose sync failed may still have reached the disk
            // (redb writes its header before its one sync); its intent rows
            // then settle at the next open. Poisoning stops writes until then.
            let e = Error::from(e);
            self.shared.poison(&e);
            return Err(e);
        }
        self.settled.clear();
        self.after_commit(durable, installs, removes);
        Ok(Attempt::Committed(results))
    }

    /// Runs the jobs (and a running GC's piggybacked sweep) in `txn`.
    /// `Ok(Err(attempt))`: a job or the sweep failed, and the transaction
    /// must be dropped; `Err`: a storage failure.
    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        jobs: &mut [Job],
        run_hook: bool,
    ) -> Result<std::result::Result<Applied, Attempt>> {
        let mut results = Vec::with_capacity(jobs.len());
        let mut batch = Batch {
            t: WriteTables::open(txn, self.shipper.is_some())?,
            now_ms: self.shared.now_ms(),
            shared: &self.shared,
            files: HashMap::new(),
            discards: Vec::new(),
            job_staged: Vec::new(),
        };
        // What the jobs stage, a merge at the end moves at least as much of.
        let staged_before = batch.t.staged_lens()?;
        // Before the jobs: a job of this batch may write a new intent for
        // one of these digests.
        for d in &self.settled {
            batch.t.intents.remove(d.to_key().as_slice())?;
        }
        for (i, j) in jobs.iter_mut().enumerate() {
            batch.job_staged.clear();
            if let Err(e) = (j.run)(&mut batch) {
                // Only the failed job's staged blobs go; the others' are
                // handed over again when their jobs re-run.
                for s in batch.job_staged.drain(..) {
                    let _ = self.backend.discard(&s);
                }
                if e.is_storage_failure() {
                    return Err(e);
                }
                // Dropping the transaction un-does everything the job
                // wrote, whatever its kind of error.
                return Ok(Err(Attempt::JobFailed(i, e)));
            }
            results.push(Ok(()));
        }
        // A foreground commit carries a little of a running GC's sweep: its
        // cost shares this commit (and fsync) instead of queueing a
        // transaction of its own in front of writers.
        if run_hook && !jobs.is_empty() {
            let mut slot = self
                .sweep_hook
                .lock()
                .map_err(|_| Error::lock("sweep hook lock"))?;
            if let Some(hook) = slot.as_mut()
                && let Err(e) = hook(&mut batch)
            {
                if e.is_storage_failure() {
                    return Err(e);
                }
                // The GC run sees the hook gone and stops; this transaction
                // is dropped and its jobs re-run.
                *slot = None;
                return Ok(Err(Attempt::HookFailed));
            }
        }
        // New reverse-set rows went to the staging trees; once one holds
        // enough, each commit moves a slice of it into the main tree (see
        // schema::reverse for why), whatever the commit's own jobs were.
        let merge = batch
            .t
            .merge_slice(self.merge_next, self.staged_rows, &staged_before)?;
        if merge == reverse::Merge::SliceDone {
            self.merge_next = (self.merge_next + 1) % reverse::SLICES;
        }
        // Last: the log object holds everything this transaction wrote,
        // and goes before the commit, so that nothing is acknowledged that
        // the log lacks. A failed ship fails the group (nothing commits).
        if let Some(s) = &self.shipper {
            s.ship(&mut batch.t, batch.now_ms)?;
        }
        Ok(Ok((results, batch.files, batch.discards)))
    }

    /// Before a durable commit: it also makes every earlier non-durable one
    /// durable, so the bytes and names all of them refer to go first. A
    /// failed sync poisons the store: the kernel may have dropped the dirty
    /// pages, so a retry that succeeds proves nothing (the fsyncgate
    /// lesson); only a reopen starts clean.
    fn sync_before_durable_commit(&mut self, installs: &[(Digest, Staged, bool)]) -> Result<()> {
        let unsynced: Vec<Staged> = self
            .pending_installs
            .iter()
            .chain(installs)
            .filter(|(_, _, synced)| !synced)
            .map(|(_, s, _)| s.clone())
            .collect();
        let synced = self
            .backend
            .sync_staging(&unsynced)
            .and_then(|()| self.backend.sync(&self.unsynced_names));
        if let Err(e) = synced {
            self.shared.poison(&e);
            return Err(e);
        }
        self.unsynced_names.clear();
        Ok(())
    }

    /// After the commit: bytes a durable commit names become final under
    /// their digests, and bytes of deleted records go once a durable
    /// commit made the deletion stick.
    fn after_commit(
        &mut self,
        durable: bool,
        installs: Vec<(Digest, Staged, bool)>,
        removes: Vec<Digest>,
    ) {
        for d in removes {
            // Recorded by a non-durable commit and deleted before any
            // durable one: the bytes never left staging.
            if let Some(i) = self.pending_installs.iter().position(|(p, _, _)| *p == d) {
                let (_, staged, _) = self.pending_installs.swap_remove(i);
                let _ = self.backend.discard(&staged);
            }
            // Bytes may go only once the deletion is durable: a
            // non-durable commit can still be lost, and its record would
            // then name nothing.
            self.pending_unlinks.push(d);
        }
        if !durable {
            self.nondurable_streak += 1;
            self.pending_installs.extend(installs);
            return;
        }
        self.nondurable_streak = 0;
        let items: Vec<(Staged, Digest)> = std::mem::take(&mut self.pending_installs)
            .into_iter()
            .chain(installs)
            .map(|(d, staged, _)| (staged, d))
            .collect();
        // Re-put after a deferred delete: the new bytes stay.
        self.pending_unlinks
            .retain(|p| !items.iter().any(|(_, d)| d == p));
        for ((_, d), r) in items.iter().zip(self.backend.commit_all(&items)) {
            if let Err(e) = r {
                // The record and its intent are durable, and reads fall
                // back to the staged bytes; the next open rolls the commit
                // forward. Writes stop until then.
                tracing::error!("could not commit the bytes of {d}: {e}");
                self.shared.poison(&e);
                continue;
            }
            self.unsynced_names.push(*d);
            self.settled.push(*d);
        }
        let unlinks = std::mem::take(&mut self.pending_unlinks);
        if !unlinks.is_empty() {
            match self.backend.remove_all(&unlinks) {
                Ok(()) => {
                    self.unsynced_names.extend_from_slice(&unlinks);
                    self.settled.extend_from_slice(&unlinks);
                }
                // The records are gone and their intent rows stay: the next
                // open removes the bytes.
                Err(e) => {
                    let n = unlinks.len();
                    tracing::warn!("could not remove the bytes of {n} blobs: {e}");
                }
            }
        }
    }
}
