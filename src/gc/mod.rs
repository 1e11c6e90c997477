//! Online garbage collection: the policy, the run (mark on a snapshot,
//! sweep in the writers' commits) and its report.
//!
//! # How GC stays online
//! 1. A job in the writer thread switches on the change log; from then on
//!    every write batch logs each digest it makes reachable (a new manifest,
//!    tag, membership, lease item, or a re-put of a blob).
//! 2. Mark runs on a redb read snapshot taken after that job committed, so
//!    writers never wait for it.
//! 3. Sweep deletes the unmarked records in bounded write transactions,
//!    parents before children and subjects before referrers. Before deleting
//!    anything, each sweep transaction reads the change log and rescues every
//!    candidate reachable from a logged digest (through edges and referrers,
//!    as of that transaction). Blob files are unlinked after the commit.
//! 4. A last job switches the log off and clears it.
//!
//! So a blob committed, or leased, before or during the run is never deleted
//! if a root reaches it when the sweep transaction commits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::edges::parents_by;
use crate::index::remove::remove_blob_in;
use crate::oci::manifest::EdgeKind;
mod mark;
pub mod retention;

use crate::engine::Batch;
use crate::index::leases::live_leases;
use crate::schema::tables::{self};
use crate::store::Store;
use mark::{mark, Candidate, MarkRules, Marked};

/// Called between mark and sweep (tests use it to write while a GC runs).
pub type GcHook = std::sync::Arc<dyn Fn() + Send + Sync>;

/// What the garbage collector may delete.
#[derive(Clone)]
#[non_exhaustive]
pub struct GcPolicy {
    /// Collect manifests that no tag (and no lease) reaches. Off by default:
    /// untagged manifests are kept.
    pub delete_untagged: bool,
    /// Records younger than this are roots: an upload in progress has not
    /// been referenced yet. Default 1 hour.
    pub grace: Duration,
    /// Report only; change nothing.
    pub dry_run: bool,
    /// Most deletions per sweep transaction of the GC's own, run while
    /// writers are idle (busy writers carry the sweep instead; see
    /// [`SweepPace`]). A step stops as soon as a writer is waiting.
    pub sweep_batch: usize,
    /// How hard the sweep may lean on concurrent writers.
    pub pace: SweepPace,
    /// The undelete window: a manifest that a tag named within this long
    /// (deleted, or moved away from) is a root, so that
    /// [`Store::restore_tag`](crate::Store::restore_tag) can put the tag
    /// back. Zero (the default): no window.
    pub undelete_window: Duration,
    /// Tag history events older than this are removed after the sweep
    /// (never those the undelete window still needs). None (the default):
    /// history is kept, as the distribution spec's proposal asks.
    pub history_retention: Option<Duration>,
    /// Runs after marking, before sweeping (feature `testing`).
    pub(crate) after_mark: Option<GcHook>,
    /// Runs after the last sweep step has committed, before the run ends
    /// (feature `testing`).
    pub(crate) after_sweep: Option<GcHook>,
}

impl GcPolicy {
    /// Sets [`GcPolicy::delete_untagged`].
    #[must_use]
    pub fn delete_untagged(mut self, delete_untagged: bool) -> Self {
        self.delete_untagged = delete_untagged;
        self
    }

    /// Sets [`GcPolicy::grace`].
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`GcPolicy::dry_run`].
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`GcPolicy::sweep_batch`].
    #[must_use]
    pub fn sweep_batch(mut self, sweep_batch: usize) -> Self {
        self.sweep_batch = sweep_batch;
        self
    }

    /// Sets [`GcPolicy::pace`].
    #[must_use]
    pub fn pace(mut self, pace: SweepPace) -> Self {
        self.pace = pace;
        self
    }

    /// Sets [`GcPolicy::undelete_window`].
    #[must_use]
    pub fn undelete_window(mut self, window: Duration) -> Self {
        self.undelete_window = window;
        self
    }

    /// Sets [`GcPolicy::history_retention`].
    #[must_use]
    pub fn history_retention(mut self, retention: impl Into<Option<Duration>>) -> Self {
        self.history_retention = retention.into();
        self
    }

    /// A hook that runs after marking, before sweeping: tests use it to
    /// race writes against a run.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn after_mark(mut self, after_mark: GcHook) -> Self {
        self.after_mark = Some(after_mark);
        self
    }

    /// A hook that runs after the last sweep step has committed, before
    /// the run ends.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn after_sweep(mut self, after_sweep: GcHook) -> Self {
        self.after_sweep = Some(after_sweep);
        self
    }
}

/// How a GC run shares the writer thread with concurrent writers. Deleting
/// a manifest rewrites about three times the pages of a small put, and
/// those pages join the fsync of whichever commit carries them, so the
/// sweep trades its own speed against writers' tail latency. Either way it
/// runs at full speed while writers pause, and either way it is correct:
/// the pace decides only when deletions happen. Figures in docs/benchmarks.md
/// (`cargo bench --bench gc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SweepPace {
    /// Writers first (the default): while any writer is active (a request
    /// within the last 20 ms) only one writer commit in
    /// [`YIELD_PIGGYBACK_EVERY`] carries a deletion and the GC takes no
    /// steps of its own. Writers' tail latency stays close to what it is
    /// without a GC, but under sustained writes the sweep slows to under 1%
    /// of the commit rate and finishes in the next 20 ms pause.
    #[default]
    Yield,
    /// The sweep never stalls: every writer commit carries one deletion,
    /// and between sparse writers' requests the GC takes one-deletion steps
    /// of its own. Writers' tail latency rises while it runs (each carried
    /// deletion joins that commit's fsync).
    Steady,
}

/// Tag history events removed per writer job when pruning.
const HISTORY_PRUNE_BATCH: usize = 4096;

/// Under [`SweepPace::Yield`], one writer commit in this many carries a
/// deletion: fewer than the 1% of commits that a p99 would see.
pub const YIELD_PIGGYBACK_EVERY: u64 = 128;

impl std::fmt::Debug for GcPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcPolicy")
            .field("delete_untagged", &self.delete_untagged)
            .field("grace", &self.grace)
            .field("dry_run", &self.dry_run)
            .field("sweep_batch", &self.sweep_batch)
            .field("pace", &self.pace)
            .field("undelete_window", &self.undelete_window)
            .field("history_retention", &self.history_retention)
            .finish()
    }
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            delete_untagged: false,
            grace: Duration::from_secs(3600),
            dry_run: false,
            sweep_batch: 64,
            pace: SweepPace::Yield,
            undelete_window: Duration::ZERO,
            history_retention: None,
            after_mark: None,
            after_sweep: None,
        }
    }
}

/// What a GC run did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcReport {
    /// Manifests deleted.
    pub deleted_manifests: u64,
    /// Other blobs deleted.
    pub deleted_blobs: u64,
    /// Bytes of the deleted content.
    pub reclaimed_bytes: u64,
    /// Records kept.
    pub kept: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Candidates rescued because a writer made them reachable during the run.
    pub rescued: u64,
    /// Records kept only because the undelete window needs them (a tag
    /// named their manifest within the window): the next run past the
    /// window collects them.
    #[serde(default)]
    pub kept_for_undelete: u64,
    /// Tag history events removed past the history retention.
    #[serde(default)]
    pub history_pruned: u64,
    /// The deleted (or deletable) digests.
    pub digests: Vec<Digest>,
    /// Time spent marking.
    pub mark_ms: u64,
    /// Time spent sweeping.
    pub sweep_ms: u64,
}

/// Sweep state shared with the sweep jobs in the writer thread.
/// Writers count as active for this long after their last request.
const FOREGROUND_WINDOW: Duration = Duration::from_millis(20);
/// Writers that sent a request this recently are busy: they carry the
/// sweep alone.
const BUSY_GAP: Duration = Duration::from_millis(3);
/// How often the GC thread looks again while writers carry the sweep (at
/// Yield pace, at least this long).
const IDLE_POLL: Duration = Duration::from_millis(2);
/// Deletions carried by a writer commit while a GC sweeps: one deletion
/// costs about as much as a small put's whole commit (its pages join the
/// fsync), so a commit carries one. If that commit then fails, its
/// deletions are counted in the report but did not happen: they stay
/// garbage for the next run.
const PIGGYBACK_PER_COMMIT: usize = 1;

struct SweepState {
    dead: HashMap<Digest, Candidate>,
    /// Next position in the sweep order.
    pos: usize,
    rescued: u64,
    /// Why a deletion carried by a writer's commit failed.
    failed: Option<String>,
    report: GcReport,
}

impl Store {
    /// Collects garbage online: writers and readers keep going throughout.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport> {
        let _one_at_a_time = self.gc_lock.lock().map_err(|_| Error::lock("gc lock"))?;
        // Switch the change log on from inside the writer, so that every
        // batch after this one logs, and every batch before it is visible
        // to the snapshot taken next.
        self.submit(true, |b| {
            b.shared.take_gc_log()?;
            b.shared.gc_active.store(true, Ordering::Release);
            Ok(())
        })?;
        let result = self.gc_inner(policy);
        let off = self.submit(true, |b| {
            b.shared.gc_active.store(false, Ordering::Release);
            b.shared.take_gc_log()?;
            Ok(())
        });
        let report = result?;
        off?;
        Ok(report)
    }

    fn gc_inner(&self, policy: &GcPolicy) -> Result<GcReport> {
        let started = Instant::now();
        let Marked {
            dead,
            order,
            total,
            kept_for_undelete,
        } = self.mark_phase(policy)?;
        let mut report = GcReport {
            dry_run: policy.dry_run,
            mark_ms: started.elapsed().as_millis() as u64,
            kept_for_undelete,
            ..GcReport::default()
        };
        if policy.dry_run {
            for d in &order {
                if let Some(c) = dead.get(d) {
                    count(&mut report, d, c);
                }
            }
            report.kept = total - report.digests.len() as u64;
            return Ok(report);
        }
        if let Some(hook) = &policy.after_mark {
            hook();
        }
        let sweep_started = Instant::now();
        let state = Arc::new(Mutex::new(SweepState {
            dead,
            pos: 0,
            rescued: 0,
            failed: None,
            report,
        }));
        let order = Arc::new(order);
        self.install_sweep_hook(policy, &state, &order)?;
        let swept = self.sweep(policy, &state, &order);
        if let Ok(mut slot) = self.sweep_hook.lock() {
            *slot = None;
        }
        swept?;
        self.sync()?;
        if let Some(hook) = &policy.after_sweep {
            hook();
        }
        let mut st = state.lock().map_err(|_| Error::lock("gc state lock"))?;
        let mut report = std::mem::take(&mut st.report);
        report.rescued = st.rescued;
        report.kept = total - report.digests.len() as u64;
        report.sweep_ms = sweep_started.elapsed().as_millis() as u64;
        // Expired leases protect nothing; their records would otherwise
        // pile up (every upload session takes one).
        self.drop_expired_leases()?;
        if let Some(keep) = policy.history_retention {
            report.history_pruned = self.prune_history(keep.max(policy.undelete_window))?;
        }
        Ok(report)
    }

    /// Marks on a read snapshot, on a thread of its own at the lowest CPU
    /// priority: on a small machine it would otherwise compete with the
    /// writer thread for a core.
    fn mark_phase(&self, policy: &GcPolicy) -> Result<Marked> {
        let txn = tables::begin_read(&self.db)?;
        let now = self.shared.now_ms();
        let rules = MarkRules {
            now_ms: now,
            grace_ms: u64::try_from(policy.grace.as_millis()).unwrap_or(u64::MAX),
            delete_untagged: policy.delete_untagged,
            leases: live_leases(&txn, now)?.iter().map(|l| l.id).collect(),
            undelete_since_ms: (!policy.undelete_window.is_zero()).then(|| {
                now.saturating_sub(
                    u64::try_from(policy.undelete_window.as_millis()).unwrap_or(u64::MAX),
                )
            }),
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                lower_thread_priority();
                mark(&txn, &rules)
            })
            .join()
            .map_err(|_| Error::Internal("the gc mark thread panicked".into()))?
        })
    }

    /// Removes tag history events older than `keep`, a bounded batch per
    /// writer job so that no job holds the writer long.
    fn prune_history(&self, keep: Duration) -> Result<u64> {
        let before = self
            .shared
            .now_ms()
            .saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        let mut total = 0;
        loop {
            let (n, more) = self.submit(true, move |b| {
                crate::index::history::prune(b, before, HISTORY_PRUNE_BATCH)
            })?;
            total += n;
            if !more {
                return Ok(total);
            }
        }
    }

    /// While writers are active they carry the sweep: their commits (every
    /// one at Steady pace, one in YIELD_PIGGYBACK_EVERY at Yield) delete a
    /// little (PIGGYBACK_PER_COMMIT) in their own transaction, so no sweep
    /// transaction ever queues in front of them.
    fn install_sweep_hook(
        &self,
        policy: &GcPolicy,
        state: &Arc<Mutex<SweepState>>,
        order: &Arc<Vec<Digest>>,
    ) -> Result<()> {
        let (hook_state, hook_order) = (Arc::clone(state), Arc::clone(order));
        let every = match policy.pace {
            SweepPace::Steady => 1,
            SweepPace::Yield => YIELD_PIGGYBACK_EVERY,
        };
        let mut commits = 0u64;
        let hook: crate::engine::SweepHook = Box::new(move |b| {
            commits += 1;
            if !commits.is_multiple_of(every) {
                return Ok(());
            }
            let mut st = hook_state
                .lock()
                .map_err(|_| Error::lock("gc state lock"))?;
            let r = sweep_some(b, &mut st, &hook_order, PIGGYBACK_PER_COMMIT, false);
            if let Err(e) = &r {
                st.failed = Some(e.to_string());
            }
            r
        });
        *self
            .sweep_hook
            .lock()
            .map_err(|_| Error::lock("sweep hook lock"))? = Some(hook);
        Ok(())
    }

    /// The GC's own sweep steps, until every candidate is decided: large
    /// and non-durable with writers idle (files are unlinked only after a
    /// durable commit, and the run ends with one); between sparse writers'
    /// requests one durable deletion, then a rest as long as it ran, so
    /// that its pages do not wait in redb's write buffer for the next
    /// writer's fsync and the writer thread stays idle half the time for
    /// arrivals. Either way a writer that arrives stops a step before its
    /// next deletion.
    fn sweep(
        &self,
        policy: &GcPolicy,
        state: &Arc<Mutex<SweepState>>,
        order: &Arc<Vec<Digest>>,
    ) -> Result<()> {
        let batch = policy.sweep_batch.max(1);
        loop {
            if state.lock().map_err(|_| Error::lock("gc state lock"))?.pos >= order.len() {
                return Ok(());
            }
            let hooked = self
                .sweep_hook
                .lock()
                .map_err(|_| Error::lock("sweep hook lock"))?
                .is_some();
            if !hooked {
                // A writer's commit ran the hook and it failed; that
                // transaction was dropped whole.
                let why = state
                    .lock()
                    .map_err(|_| Error::lock("gc state lock"))?
                    .failed
                    .take()
                    .unwrap_or_default();
                return Err(Error::Corrupt(format!(
                    "gc sweep stopped: a deletion failed inside a writer's transaction ({why}); run fsck"
                )));
            }
            let step = self.step_size(policy.pace, batch);
            if step == 0 {
                std::thread::sleep(self.nap(policy.pace));
                continue;
            }
            let sparse = step < batch;
            let (step_state, order) = (Arc::clone(state), Arc::clone(order));
            let step_started = Instant::now();
            self.submit_background(sparse, move |b| {
                let mut st = step_state
                    .lock()
                    .map_err(|_| Error::lock("gc state lock"))?;
                sweep_some(b, &mut st, &order, step, true)
            })?;
            if sparse {
                std::thread::sleep(step_started.elapsed());
            }
        }
    }

    /// Deletions the GC's next step of its own may take: none while busy
    /// writers (a request within the last few ms) carry the sweep; between
    /// the requests of sparse writers one at Steady pace (none at Yield);
    /// `batch` with writers idle.
    fn step_size(&self, pace: SweepPace, batch: usize) -> usize {
        if self.shared.foreground_within(BUSY_GAP) {
            0
        } else if self.shared.foreground_within(FOREGROUND_WINDOW) {
            match pace {
                SweepPace::Steady => 1,
                SweepPace::Yield => 0,
            }
        } else {
            batch
        }
    }

    /// How long to wait when writers keep the GC from a step. At Yield pace
    /// nothing can happen before writers have been quiet for the whole
    /// window, so sleep until then rather than wake every IDLE_POLL: each
    /// wake-up is a thread that can land on a writer's core.
    fn nap(&self, pace: SweepPace) -> Duration {
        match pace {
            SweepPace::Yield => FOREGROUND_WINDOW
                .saturating_sub(self.shared.since_foreground())
                .max(IDLE_POLL),
            SweepPace::Steady => IDLE_POLL,
        }
    }
}

/// Background work yields the CPU to writers (nice 19 for this thread):
/// of the schedulings tried, this one disturbed writers least (the
/// measurements are in docs/benchmarks.md). One of the engine's two places
/// of unsafe code (with `blob::mapped`).
#[allow(unsafe_code)]
pub(crate) fn lower_thread_priority() {
    // SAFETY: plain syscalls on the calling thread; failure only means the
    // priority stays as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

fn count(report: &mut GcReport, d: &Digest, c: &Candidate) {
    if c.manifest {
        report.deleted_manifests += 1;
    } else {
        report.deleted_blobs += 1;
    }
    report.reclaimed_bytes += c.size;
    report.digests.push(*d);
}

/// Rescues what writers made reachable, then deletes up to `max` of the
/// remaining candidates in sweep order. With `yield_to_writers`, stops
/// before a deletion when a writer is queued (it then waits for at most one
/// deletion).
fn sweep_some(
    b: &mut Batch<'_>,
    st: &mut SweepState,
    order: &[Digest],
    max: usize,
    yield_to_writers: bool,
) -> Result<()> {
    rescue_logged(b, st)?;
    let end = (st.pos + max).min(order.len());
    while st.pos < end {
        if yield_to_writers && b.shared.waiting.load(Ordering::Acquire) > 0 {
            break;
        }
        let d = order[st.pos];
        st.pos += 1;
        if let Some(c) = st.dead.remove(&d)
            && let Some(rec) = crate::index::blobs::record_in(b, &d)?
        {
            remove_blob_in(b, &d, &rec)?;
            crate::index::events::emit(b, crate::store::delete::store_deletion(&d, &rec, "gc"))?;
            count(&mut st.report, &d, &c);
            if let Ok(mut swept) = b.shared.swept.lock() {
                swept.insert(d);
            }
        }
    }
    Ok(())
}

/// Rescues every candidate reachable, as of this transaction, from what
/// writers logged since the last sweep transaction.
fn rescue_logged(b: &mut Batch<'_>, st: &mut SweepState) -> Result<()> {
    let mut queue: VecDeque<Digest> = b.shared.take_gc_log()?.into();
    let mut visited: HashSet<Digest> = HashSet::new();
    while let Some(d) = queue.pop_front() {
        if !visited.insert(d) {
            continue;
        }
        if st.dead.remove(&d).is_some() {
            st.rescued += 1;
        }
        for (kind, child, _) in crate::index::edges::edges_of(&*b.t.edges_out, &d)? {
            if kind != EdgeKind::Subject && st.dead.contains_key(&child) {
                queue.push_back(child);
            }
        }
        for referrer in parents_by(b, &d, EdgeKind::Subject)? {
            if st.dead.contains_key(&referrer) {
                queue.push_back(referrer);
            }
        }
    }
    Ok(())
}

/// Parses `0s`, `30m`, `1h`, `2d`, `500ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidArgument {
        value: s.to_string(),
        expected: "a duration like 0s, 90s, 30m, 1h or 2d".into(),
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000).ok_or_else(bad)?,
        "m" => n.checked_mul(60_000).ok_or_else(bad)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s").expect("0s"), Duration::ZERO);
        assert_eq!(
            parse_duration("30m").expect("30m"),
            Duration::from_secs(1800)
        );
        assert_eq!(parse_duration("1h").expect("1h"), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        for bad in ["", "h", "1x", "-1s", "1.5h", "99999999999999999999d"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains("duration like"), "{e}");
        }
    }
}
