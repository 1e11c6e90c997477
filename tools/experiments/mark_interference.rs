//! How much a GC mark slows a concurrent writer on a large store.
//!
//! Back-to-back small durable puts run throughout, in alternating windows:
//! WINDOW_S seconds with no GC, then WINDOW_S seconds of back-to-back
//! dry-run GCs (mark and sweep ordering, nothing deleted), ROUNDS times.
//! Single windows on a shared machine swing by 1.5x in p99 on their own, so
//! the verdict is the pooled p99 of every GC window against the pooled p99
//! of every no-GC window, with the per-round figures shown for the spread.
//!
//! `cargo run --release -p ocidb-bench --example mark_interference -- STORE` (`ROUNDS`,
//! default 4; `WINDOW_S`, default 8; `CACHE_MB`, default 256). STORE is an
//! existing store, such as a synthetic registry from `ocidb --store STORE
//! bench gen --preset large` (about 1M manifests, tagged, with referrers)
//! or a copy of `target/ocidb-bench/graph-1m-f3/store`; the puts add small
//! blobs to it.
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ocidb::{GcPolicy, PutOptions, Store, StoreOptions};

type Latencies = Result<Vec<Duration>, ocidb::Error>;

fn writer(store: &Store, stop: &AtomicBool, run: u64) -> Latencies {
    let mut lat = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        store.put_bytes(
            format!("mark interference {run} {i}").as_bytes(),
            &PutOptions::default(),
        )?;
        lat.push(t.elapsed());
        i += 1;
    }
    lat.sort();
    Ok(lat)
}

/// The writer's sorted latencies while `during` runs.
fn with_writer(store: &Store, run: u64, during: impl FnOnce()) -> Latencies {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| writer(store, &stop, run));
        during();
        stop.store(true, Ordering::Relaxed);
        h.join()
            .unwrap_or_else(|_| Err(ocidb::Error::Poisoned("writer panicked".into())))
    })
}

fn ms(lat: &[Duration], q: f64) -> f64 {
    let i = ((lat.len().saturating_sub(1)) as f64 * q).round() as usize;
    lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn env_num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: mark_interference STORE")?;
    let rounds = env_num("ROUNDS", 4)?;
    let window = Duration::from_secs(env_num("WINDOW_S", 8)?);
    let cache_mb = env_num("CACHE_MB", 256)? as usize;
    let store = Store::open_with(
        &dir,
        StoreOptions::default().cache_size(cache_mb << 20),
        false,
    )?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        * 1000;
    let policy = GcPolicy::default()
        .dry_run(true)
        .delete_untagged(true)
        .grace(Duration::ZERO);
    let (mut quiet_all, mut gc_all) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let quiet = with_writer(&store, run + 2 * round, || std::thread::sleep(window))?;
        let mut marks = Vec::new();
        let mut failed = None;
        let during = with_writer(&store, run + 2 * round + 1, || {
            let started = Instant::now();
            while started.elapsed() < window {
                match store.gc(&policy) {
                    Ok(r) => marks.push(r.mark_ms),
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        println!(
            "round {round}: no GC p50 {:.2} ms p99 {:.2} ms ({} puts) | {} marks of {:?} ms: p50 {:.2} ms p99 {:.2} ms ({} puts) | p99 ratio {:.2}",
            ms(&quiet, 0.5),
            ms(&quiet, 0.99),
            quiet.len(),
            marks.len(),
            marks,
            ms(&during, 0.5),
            ms(&during, 0.99),
            during.len(),
            ms(&during, 0.99) / ms(&quiet, 0.99).max(1e-9),
        );
        quiet_all.extend(quiet);
        gc_all.extend(during);
    }
    quiet_all.sort();
    gc_all.sort();
    println!(
        "pooled over {rounds} rounds: no GC p50 {:.2} ms p99 {:.2} ms | during marks p50 {:.2} ms p99 {:.2} ms | p99 ratio {:.2}",
        ms(&quiet_all, 0.5),
        ms(&quiet_all, 0.99),
        ms(&gc_all, 0.5),
        ms(&gc_all, 0.99),
        ms(&gc_all, 0.99) / ms(&quiet_all, 0.99).max(1e-9),
    );
    Ok(())
}
