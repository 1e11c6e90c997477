//! How much a GC mark slows a concurrent writer on a large store: p50/p99
//! of back-to-back small durable puts for 8 s, then during a dry-run GC
//! (mark and sweep ordering, nothing deleted), then for 8 s again.
//!
//! `cargo run --release --example mark_interference -- STORE` (`CACHE_MB`
//! sets the redb cache). STORE is an existing store, such as a copy of
//! `target/ocidb-bench/graph-1m-f3/store` that `cargo bench --bench graph`
//! builds; the puts add small blobs to it.
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

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: mark_interference STORE")?;
    let cache_mb: usize = match std::env::var("CACHE_MB") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("CACHE_MB={v:?}: expected a number of MiB"))?,
        Err(_) => 256,
    };
    let store = Store::open_with(
        &dir,
        StoreOptions {
            cache_size: cache_mb << 20,
            ..StoreOptions::default()
        },
        false,
    )?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let before = with_writer(&store, run, || std::thread::sleep(Duration::from_secs(8)))?;
    let mut report = None;
    let during = with_writer(&store, run + 1, || {
        report = Some(store.gc(&GcPolicy {
            dry_run: true,
            delete_untagged: true,
            grace: Duration::ZERO,
            ..GcPolicy::default()
        }));
    })?;
    let report = report.ok_or("the dry run did not run")??;
    let after = with_writer(&store, run + 2, || {
        std::thread::sleep(Duration::from_secs(8))
    })?;
    println!(
        "no GC p50 {:.2} ms p99 {:.2} ms | during a {:.1} s mark p50 {:.2} ms p99 {:.2} ms | no GC again p50 {:.2} ms p99 {:.2} ms",
        ms(&before, 0.5),
        ms(&before, 0.99),
        report.mark_ms as f64 / 1e3,
        ms(&during, 0.5),
        ms(&during, 0.99),
        ms(&after, 0.5),
        ms(&after, 0.99)
    );
    Ok(())
}
