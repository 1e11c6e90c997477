//! Writers' latency while a retention policy runs (its plan, then its
//! apply), against the same writers with nothing running and while an
//! online GC (Steady pace: its mark, then its sweep) deletes as many
//! manifests, each for the first 15 s of its run: `cargo bench --bench
//! retention`.
//! Prints a table (criterion reports means; this needs p50/p99).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocidb::{
    GcPolicy, ManifestOptions, PutOptions, RetentionOptions, RetentionPolicy, RetentionRule, Store,
    SweepPace,
};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Durable small puts, back to back, while `during` runs; sorted latencies
/// and how long `during` took.
fn measure(store: &Arc<Store>, during: impl FnOnce(), tag: u64) -> (Vec<Duration>, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (Arc::clone(store), Arc::clone(&stop));
    let h = std::thread::spawn(move || {
        let mut lat = Vec::new();
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            let t = Instant::now();
            s.put_bytes(
                format!("probe {tag} {i}").as_bytes(),
                &PutOptions::default(),
            )
            .expect("put");
            lat.push(t.elapsed());
            i += 1;
        }
        lat
    });
    let t = Instant::now();
    during();
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = h.join().expect("writer");
    lat.sort();
    (lat, took)
}

/// Image manifests `range` in one repository, each tagged `t{n}`.
fn ingest(store: &Store, repo: &str, range: std::ops::Range<u64>, tagged: bool) {
    for start in range.clone().step_by(20_000) {
        let end = (start + 20_000).min(range.end);
        let bodies: Vec<Vec<u8>> = (start..end)
            .map(|n| common::image_manifest(n, 1000))
            .collect();
        let batch: Vec<(&[u8], ManifestOptions)> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let tags = if tagged {
                    vec![format!("t{:08}", start + i as u64)]
                } else {
                    Vec::new()
                };
                (
                    b.as_slice(),
                    ManifestOptions::default()
                        .tags(tags)
                        .children(ocidb::Children::AllowMissing),
                )
            })
            .collect();
        store.put_manifests(repo, &batch).expect("ingest");
    }
}

/// How long writers run while a retention run applies.
const WINDOW: Duration = Duration::from_secs(15);

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = std::env::var("OCIDB_RETENTION_BENCH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 100_000 });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::create(dir.path()).expect("store"));
    eprintln!(
        "building {n} tagged manifests, and {} untagged for the GC…",
        n / 2
    );
    ingest(&store, "ret/bench", 0..n, true);
    ingest(&store, "gc/bench", n..n + n / 2, false);
    let (before, _) = measure(&store, || std::thread::sleep(Duration::from_secs(5)), 1);
    // Keep the newest half: the other half of the tags and manifests go.
    let policy = RetentionPolicy {
        rules: vec![RetentionRule {
            repositories: "ret/".into(),
            keep_last_pushed: Some((n / 2) as usize),
            ..RetentionRule::default()
        }],
    };
    // Writers first: under back-to-back writes a run advances a step at a
    // time, so the writers are measured for WINDOW while it applies, then
    // stop and let it finish, as the GC bench does for SweepPace::Yield.
    let runner = {
        let (s, p) = (Arc::clone(&store), policy.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = s
                .retention(&p, &RetentionOptions::default().grace(Duration::ZERO))
                .expect("retention");
            (r, t.elapsed())
        })
    };
    let (during_retention, _) = measure(&store, || std::thread::sleep(WINDOW), 2);
    let (report, retention_wall) = runner.join().expect("retention thread");
    // The GC the same way: writers for the first WINDOW of its run (its
    // mark, then its sweep), then it finishes alone.
    let gc_runner = {
        let s = Arc::clone(&store);
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = s
                .gc(&GcPolicy::default()
                    .pace(SweepPace::Steady)
                    .delete_untagged(true)
                    .grace(Duration::ZERO))
                .expect("gc");
            (r, t.elapsed())
        })
    };
    let (during_gc, _) = measure(&store, || std::thread::sleep(WINDOW), 3);
    let (gc, gc_wall) = gc_runner.join().expect("gc thread");
    let (after, _) = measure(&store, || std::thread::sleep(Duration::from_secs(5)), 4);
    let mut baseline = before;
    baseline.extend(after);
    baseline.sort();
    println!();
    println!(
        "retention of {n} tagged manifests (keep the newest half): {} tags and {} manifests dropped in {:.1} s (plan {} ms, apply {} ms; writers ran for the first {} s of it); GC (Steady) of {} untagged manifests: {} deleted in {:.1} s (writers ran for the first {} s of it)",
        report.tags_deleted,
        report.manifests_deleted,
        retention_wall.as_secs_f64(),
        report.plan_ms,
        report.apply_ms,
        WINDOW.as_secs(),
        n / 2,
        gc.deleted_manifests + gc.deleted_blobs,
        gc_wall.as_secs_f64(),
        WINDOW.as_secs()
    );
    println!("  | while | puts | p50 | p99 | max |");
    println!("  |---|---|---|---|---|");
    for (what, lat) in [
        ("nothing (before and after)", &baseline),
        ("retention running (plan, then apply)", &during_retention),
        ("GC, Steady pace (mark, then sweep)", &during_gc),
    ] {
        println!(
            "  | {what} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            lat.len(),
            percentile(lat, 0.5).as_secs_f64() * 1e3,
            percentile(lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    let ratio = percentile(&during_retention, 0.99).as_secs_f64()
        / percentile(&during_gc, 0.99).as_secs_f64().max(1e-9);
    println!("  p99 while retention runs / p99 while GC runs: {ratio:.2}x");
}
