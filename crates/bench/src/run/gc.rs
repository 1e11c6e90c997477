//! Online GC: writer latency around a run, and the run's own speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{self, Lat};
use crate::report::{dur, Row};
use ocidb::{Error, GcPolicy, PutOptions, Result, Store, SweepPace};

use super::fixture::*;

/// Durable small puts from one thread until `stop`: each one's latency and
/// when it ended. They are leased, so that the GC being measured does not
/// also collect the probe's own blobs.
pub(super) fn probe_writer(store: &Store, stop: &AtomicBool, tag: u64) -> Result<TimedSamples> {
    let lease = store.create_lease(Duration::from_secs(3600))?;
    let mut v = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        store.put_bytes(
            format!("latency probe {tag} {i}").as_bytes(),
            &PutOptions::default().lease(lease.id),
        )?;
        v.push((Instant::now(), t.elapsed()));
        i += 1;
    }
    Ok(v)
}

pub(super) fn with_probe<T>(
    store: &Store,
    tag: u64,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Lat, Duration)> {
    let (r, timed, wall) = with_probe_timed(store, tag, during)?;
    Ok((r, measure::summarise(latencies(timed), wall), wall))
}

pub(super) fn latencies(timed: TimedSamples) -> Vec<Duration> {
    timed.into_iter().map(|(_, d)| d).collect()
}

pub(super) fn with_probe_timed<T>(
    store: &Store,
    tag: u64,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, TimedSamples, Duration)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| probe_writer(store, &stop, tag));
        let t = Instant::now();
        let r = during();
        let wall = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let samples = h
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the probe writer panicked".into())))?;
        Ok((r?, samples, wall))
    })
}

/// The probe's latencies with no GC running: `secs` before `gc` and `secs`
/// after it, pooled. On a shared machine one quiet window's p99 swings by
/// 1.5x from the next; a window on each side of the GC halves the chance
/// that the baseline is a lucky (or unlucky) moment.
pub(super) fn around_gc<T>(
    store: &Store,
    tag: u64,
    secs: u64,
    gc: impl FnOnce() -> Result<T>,
) -> Result<(T, Lat)> {
    let quiet = || {
        with_probe_timed(store, tag, || {
            std::thread::sleep(Duration::from_secs(secs));
            Ok(())
        })
    };
    let (_, mut samples, mut wall) = quiet()?;
    let r = gc()?;
    let (_, after, after_wall) = quiet()?;
    samples.extend(after);
    wall += after_wall;
    Ok((r, measure::summarise(latencies(samples), wall)))
}

pub(super) fn gc_rows(b: &Built, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    // Untag a slice of the images: they, their platform manifests and
    // their referrers become garbage.
    let share = if quick { 20 } else { 50 };
    let mut untagged = 0;
    for (i, (repo, _)) in b.marks.images.iter().enumerate() {
        if i % share == share - 1 {
            b.store.untag(repo, &format!("v{i}"))?;
            untagged += 1;
        }
    }
    // Steady pace first: the sweep rides on every probe commit and finishes
    // while the probe writes.
    let policy = GcPolicy::default()
        .delete_untagged(true)
        .grace(Duration::ZERO)
        .pace(SweepPace::Steady);
    let quiet_secs = if quick { 2 } else { 5 };
    let ((dry, rss), _, _) = with_probe(&b.store, 2, || {
        with_rss(|| b.store.gc(&policy.clone().dry_run(true)))
    })?;
    let mut r = row("gc: mark (dry run)", Lat::default(), rss);
    r.p50_us = dry.mark_ms as f64 * 1e3;
    r.note = format!(
        "{} records would go: {untagged} untagged images with their referrers",
        dry.digests.len()
    );
    rows.push(r);
    let (((real, rss), during, wall), without) = around_gc(&b.store, 1, quiet_secs, || {
        with_probe(&b.store, 3, || with_rss(|| b.store.gc(&policy)))
    })?;
    let deleted = real.deleted_manifests + real.deleted_blobs;
    let mut r = row(
        "gc: sweep while a writer pushes (Steady pace)",
        Lat::default(),
        rss,
    );
    r.ops_per_s = deleted as f64 / (real.sweep_ms.max(1) as f64 / 1e3);
    r.p50_us = real.sweep_ms as f64 * 1e3;
    r.note = format!(
        "{deleted} deleted, mark {} ms, wall {:.1} s",
        real.mark_ms,
        wall.as_secs_f64()
    );
    rows.push(r);
    rows.push(p99_row(
        "gc: durable small puts during GC, Steady pace",
        during,
        &without,
        "ratio of p99s".into(),
    ));

    // The default Yield pace: another slice of garbage, a fresh baseline,
    // then the probe writes for a window while the GC runs (it sweeps
    // little while the writer is busy) and stops; the sweep then finishes.
    let mut more = 0;
    for (i, (repo, _)) in b.marks.images.iter().enumerate() {
        if i % share == share - 2 {
            b.store.untag(repo, &format!("v{i}"))?;
            more += 1;
        }
    }
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    // The writer runs through the mark and the first `window` of the sweep.
    let swept_since: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let marked = std::sync::Arc::clone(&swept_since);
    let yielding = policy
        .pace(SweepPace::Yield)
        .after_mark(std::sync::Arc::new(move || {
            if let Ok(mut t) = marked.lock() {
                *t = Some(Instant::now());
            }
        }));
    let ((report, during, wall), without) = around_gc(&b.store, 4, quiet_secs, || {
        std::thread::scope(|s| {
            let gc = s.spawn(|| b.store.gc(&yielding));
            let (_, during, wall) = with_probe_timed(&b.store, 5, || {
                let window_over = || {
                    swept_since
                        .lock()
                        .map_or(true, |t| t.is_some_and(|t| t.elapsed() >= window))
                };
                while !gc.is_finished() && !window_over() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })?;
            let report = gc
                .join()
                .map_err(|_| Error::Internal("the gc thread panicked".into()))??;
            Ok::<_, Error>((report, during, wall))
        })
    })?;
    // Where the tail comes from: the puts that ended before the sweep
    // began (the mark) and those after.
    let sweep_began = swept_since.lock().ok().and_then(|t| *t);
    let (in_mark, in_sweep): (Vec<_>, Vec<_>) = during
        .iter()
        .partition(|(end, _)| sweep_began.is_none_or(|t| *end < t));
    let p99_of = |part: Vec<&(Instant, Duration)>| {
        let n = part.len();
        let lat = measure::summarise(part.into_iter().map(|(_, d)| *d).collect(), wall);
        format!("{} over {n} puts", dur(lat.p99_us))
    };
    let split = format!(
        "p99 {} during the mark, {} during the sweep",
        p99_of(in_mark),
        p99_of(in_sweep)
    );
    let during = measure::summarise(latencies(during), wall);
    rows.push(p99_row(
        "gc: durable small puts during GC, Yield pace (p99 floor ≤ 2×)",
        during,
        &without,
        format!(
            "ratio of p99s; {more} more images untagged, {} deleted, the writer ran through the mark and the first {:.1} s of the sweep; {split}",
            report.deleted_manifests + report.deleted_blobs,
            (wall.as_secs_f64() - report.mark_ms as f64 / 1e3).max(0.0)
        ),
    ));
    Ok(())
}

/// A latency row whose cost is its p99 against `without`'s.
pub(super) fn p99_row(name: &str, during: Lat, without: &Lat, note: String) -> Row {
    let mut r = row(name, during, 0.0);
    r.baseline = Some(format!(
        "the same puts without GC, just before and just after it (p50 {}, p99 {})",
        dur(without.p50_us),
        dur(without.p99_us)
    ));
    r.cost_ratio = Some(during.p99_us / without.p99_us.max(1e-3));
    r.note = note;
    r
}
