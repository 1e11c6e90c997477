//! Online GC: mark and sweep time, and the latency of concurrent small
//! durable puts with and without a GC running, measured in the same run.
//! Prints a table (criterion reports means; this needs p50/p99).
//!
//! `cargo bench --bench gc` (OCIDB_GC_BENCH_IMAGES sets the store size;
//! default 200,000 manifests, half of them untagged garbage). The mark time
//! on the 1M-manifest store of `benches/graph.rs` is printed when that store
//! has been built.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocidb::{GcPolicy, GcReport, ManifestOptions, PutOptions, Store, SweepPace};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Durable small puts from one thread until `stop`; returns latencies.
fn writer(store: Arc<Store>, stop: Arc<AtomicBool>, tag: u64) -> Vec<Duration> {
    let mut lat = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        store
            .put_bytes(
                format!("latency probe {tag} {i}").as_bytes(),
                &PutOptions::default(),
            )
            .expect("put");
        lat.push(t.elapsed());
        i += 1;
    }
    lat
}

/// Durable small puts at a fixed arrival rate (open loop, as pushes reach
/// a registry) until `stop`. Latency counts from the scheduled start, so a
/// stall delays every put queued behind it (no coordinated omission).
fn paced_writer(store: Arc<Store>, stop: Arc<AtomicBool>, tag: u64) -> Vec<Duration> {
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = start + PACE * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        store
            .put_bytes(
                format!("paced probe {tag} {i}").as_bytes(),
                &PutOptions::default(),
            )
            .expect("put");
        lat.push(due.elapsed());
        i += 1;
    }
    lat
}

/// One put every 5 ms: 200 durable pushes a second.
const PACE: Duration = Duration::from_millis(5);

fn measure(store: &Arc<Store>, during: impl FnOnce(), tag: u64) -> (Vec<Duration>, Duration) {
    measure_with(store, during, tag, writer)
}

fn measure_with(
    store: &Arc<Store>,
    during: impl FnOnce(),
    tag: u64,
    w: fn(Arc<Store>, Arc<AtomicBool>, u64) -> Vec<Duration>,
) -> (Vec<Duration>, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(store);
    let st = Arc::clone(&stop);
    let h = std::thread::spawn(move || w(s, st, tag));
    let t = Instant::now();
    during();
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = h.join().expect("writer");
    lat.sort();
    (lat, elapsed)
}

/// Image manifests `range`, tagged where `tagged(n)`.
fn ingest(store: &Store, range: std::ops::Range<u64>, tagged: impl Fn(u64) -> bool) {
    for start in range.clone().step_by(20_000) {
        let end = (start + 20_000).min(range.end);
        let bodies: Vec<Vec<u8>> = (start..end)
            .map(|n| common::image_manifest(n, 1000))
            .collect();
        let batch: Vec<(&[u8], ManifestOptions)> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = start + i as u64;
                let tags = if tagged(n) {
                    vec![format!("t{n}")]
                } else {
                    Vec::new()
                };
                (
                    b.as_slice(),
                    // A sparse registry: configs and layers are not stored.
                    ManifestOptions::default()
                        .tags(tags)
                        .children(ocidb::Children::AllowMissing),
                )
            })
            .collect();
        store.put_manifests("gc/bench", &batch).expect("ingest");
    }
}

/// Steady pace: the sweep rides on every writer commit.
fn gc_policy() -> GcPolicy {
    GcPolicy::default()
        .pace(SweepPace::Steady)
        .delete_untagged(true)
        .grace(Duration::ZERO)
        .sweep_batch(
            std::env::var("OCIDB_SWEEP_BATCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(GcPolicy::default().sweep_batch),
        )
}

/// How long writers keep going while a [`SweepPace::Yield`] GC sweeps:
/// under a saturating writer it sweeps slowly, so the writer stops after
/// this window and the rest of the sweep runs at full speed.
const YIELD_WINDOW: Duration = Duration::from_secs(20);

/// Starts a yield-paced GC and waits until it ends or has swept for
/// [`YIELD_WINDOW`]. Returns the still-running GC, how many of the garbage
/// manifests `garbage` were gone when the wait ended, and how long it had
/// swept by then.
fn yield_gc(
    store: &Arc<Store>,
    garbage: std::ops::Range<u64>,
) -> (std::thread::JoinHandle<GcReport>, u64, Duration) {
    let runner = Arc::clone(store);
    let swept_since: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let marked = Arc::clone(&swept_since);
    let gc = std::thread::spawn(move || {
        runner
            .gc(&gc_policy()
                .pace(SweepPace::Yield)
                .after_mark(Arc::new(move || {
                    *marked.lock().expect("lock") = Some(Instant::now());
                })))
            .expect("gc")
    });
    // The writer runs through the mark and the first YIELD_WINDOW of the
    // sweep.
    let sweeping = || *swept_since.lock().expect("lock");
    while !gc.is_finished() && sweeping().is_none_or(|t| t.elapsed() < YIELD_WINDOW) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = sweeping().map_or(Duration::ZERO, |t| t.elapsed());
    let gone = garbage
        .filter(|&n| {
            let d = ocidb::Hasher::digest_of(
                ocidb::Algorithm::Sha256,
                &common::image_manifest(n, 1000),
            );
            !store.exists(&d).expect("exists")
        })
        .count() as u64;
    (gc, gone, waited)
}

fn print_latencies(rows: &[(&str, &Vec<Duration>)]) {
    println!("  | while | puts | p50 | p99 | max |");
    println!("  |---|---|---|---|---|");
    for (what, l) in rows {
        println!(
            "  | {what} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            l.len(),
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
}

/// A fresh baseline, then a [`SweepPace::Yield`] GC with the same writer
/// for at most [`YIELD_WINDOW`]; prints the rows and how far the sweep got
/// while the writer ran.
fn yield_run(
    store: &Arc<Store>,
    garbage: std::ops::Range<u64>,
    w: fn(Arc<Store>, Arc<AtomicBool>, u64) -> Vec<Duration>,
    tag: u64,
    what: &str,
) {
    let mut base = quiet(store, tag, w);
    let total = garbage.end - garbage.start;
    let mut started = None;
    let (during, _) = measure_with(
        store,
        || started = Some(yield_gc(store, garbage)),
        tag + 100,
        w,
    );
    let (gc, gone, waited) = started.expect("gc started");
    let t = Instant::now();
    let report = gc.join().expect("gc thread");
    let swept_in = t.elapsed();
    base.extend(quiet(store, tag + 200, w));
    base.sort();
    println!(
        "  durable small puts {what}, GC with SweepPace::Yield: {gone} of {total} untagged manifests swept in the first {:.1} s of the sweep, with the writer running ({:.0}/s); the rest in {:.1} s once it stopped ({} deleted in all):",
        waited.as_secs_f64(),
        gone as f64 / waited.as_secs_f64().max(1e-3),
        swept_in.as_secs_f64(),
        report.deleted_manifests + report.deleted_blobs
    );
    print_latencies(&[
        ("no GC (just before and just after)", &base),
        ("GC running (Yield)", &during),
    ]);
    let ratio = percentile(&during, 0.99).as_secs_f64() / percentile(&base, 0.99).as_secs_f64();
    println!("  Yield: p99 with GC / p99 without: {ratio:.2}x (floor: <= 2x)");
}

/// The writer's latencies with no GC running, for [`QUIET`]. Every
/// baseline pools one window just before a GC and one just after: on a
/// shared machine one quiet window's p99 swings by 1.5x from the next.
fn quiet(
    store: &Arc<Store>,
    tag: u64,
    w: fn(Arc<Store>, Arc<AtomicBool>, u64) -> Vec<Duration>,
) -> Vec<Duration> {
    measure_with(store, || std::thread::sleep(QUIET), tag, w).0
}

const QUIET: Duration = Duration::from_secs(6);

fn main() {
    // `cargo bench` passes --bench; `--quick` shrinks the store.
    let quick = std::env::args().any(|a| a == "--quick");
    let images: u64 = std::env::var("OCIDB_GC_BENCH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 50_000 } else { 200_000 });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::create(dir.path()).expect("store"));
    eprintln!("building {images} manifests (half tagged)…");
    ingest(&store, 0..images, |n| n.is_multiple_of(2));
    let mut baseline = quiet(&store, 1, writer);
    let mut dry = None;
    let (during_mark, _) = measure(
        &store,
        || {
            dry = Some(
                store
                    .gc(&GcPolicy::default()
                        .dry_run(true)
                        .delete_untagged(true)
                        .grace(Duration::ZERO))
                    .expect("dry run"),
            );
        },
        3,
    );
    let dry = dry.expect("dry run");
    let mut report = None;
    let (during, gc_wall) = measure(
        &store,
        || report = Some(store.gc(&gc_policy()).expect("gc")),
        2,
    );
    let report = report.expect("report");
    baseline.extend(quiet(&store, 11, writer));
    baseline.sort();
    println!();
    println!(
        "GC of {images} manifests ({} untagged), same run:",
        images / 2
    );
    println!(
        "  mark (dry run, includes ordering): {} ms; real run: mark {} ms, sweep {} ms, {} deleted, wall {:.2} s",
        dry.mark_ms,
        report.mark_ms,
        report.sweep_ms,
        report.deleted_manifests + report.deleted_blobs,
        gc_wall.as_secs_f64()
    );
    println!("  durable small puts from one writer thread, back to back (closed loop):");
    print_latencies(&[
        ("no GC (just before and just after)", &baseline),
        ("GC marking only (dry run)", &during_mark),
        ("GC running, Steady pace (mark and sweep)", &during),
    ]);
    let ratio = percentile(&during, 0.99).as_secs_f64() / percentile(&baseline, 0.99).as_secs_f64();
    println!("  closed loop, Steady: p99 with GC / p99 without: {ratio:.2}x (floor: <= 2x)");

    // Writers first (SweepPace::Yield): fresh garbage, a fresh baseline,
    // then the same closed loop for at most YIELD_WINDOW while it sweeps.
    let garbage = images..images + images / 2;
    ingest(&store, garbage.clone(), |_| false);
    yield_run(&store, garbage, writer, 6, "back to back (closed loop)");

    // The same again with pushes arriving at a fixed rate, as they reach a
    // registry: fresh garbage, then a paced baseline and a paced GC run.
    ingest(&store, images * 2..images * 2 + images / 2, |_| false);
    let mut paced_base = quiet(&store, 4, paced_writer);
    let mut paced_report = None;
    let (paced, paced_wall) = measure_with(
        &store,
        || paced_report = Some(store.gc(&gc_policy()).expect("gc")),
        5,
        paced_writer,
    );
    let paced_report = paced_report.expect("report");
    paced_base.extend(quiet(&store, 14, paced_writer));
    paced_base.sort();
    println!(
        "  durable small puts arriving every {} ms (open loop; latency from the scheduled time); GC (Steady pace) of {} untagged: sweep {} ms, {} deleted, wall {:.2} s:",
        PACE.as_millis(),
        images / 2,
        paced_report.sweep_ms,
        paced_report.deleted_manifests + paced_report.deleted_blobs,
        paced_wall.as_secs_f64()
    );
    print_latencies(&[
        ("no GC (just before and just after)", &paced_base),
        ("GC running, Steady pace (mark and sweep)", &paced),
    ]);
    let paced_ratio =
        percentile(&paced, 0.99).as_secs_f64() / percentile(&paced_base, 0.99).as_secs_f64();
    println!("  open loop, Steady: p99 with GC / p99 without: {paced_ratio:.2}x (floor: <= 2x)");

    let garbage = images * 3..images * 3 + images / 2;
    ingest(&store, garbage.clone(), |_| false);
    yield_run(
        &store,
        garbage,
        paced_writer,
        8,
        &format!("arriving every {} ms (open loop)", PACE.as_millis()),
    );

    let big = common::bench_dir("graph-1m");
    if common::is_built(&big) {
        drop(store);
        let s = Store::open(big.join("store")).expect("open 1M store");
        let r = s
            .gc(&GcPolicy::default()
                .dry_run(true)
                .delete_untagged(true)
                .grace(Duration::ZERO))
            .expect("dry run");
        println!(
            "  1M-manifest store (benches/graph.rs): mark + ordering {} ms (dry run; {} records would go)",
            r.mark_ms,
            r.digests.len()
        );
    }
}
