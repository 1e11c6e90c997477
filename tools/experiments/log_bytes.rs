//! Index-log bytes of a batch ingest, with format 5's merges of the staged
//! reverse sets (the default `staged_rows`) and without them (a threshold
//! never reached): what the merges add to what a bucket store PUTs.
//! `cargo run --release -p ocidb-bench --example log_bytes -- DIR MANIFESTS [STAGED_ROWS]`
//! (DIR must not hold a store; the log is counted, not kept).
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ocidb::log::IndexLog;
use ocidb::{Result, Store, StoreOptions};
use ocidb_bench::synth::{generate_into_store, GenSpec};

/// Counts what is put, keeps nothing: a store only reads its log back at
/// open and on restore, which this run does not do.
#[derive(Debug, Default)]
struct CountingLog {
    log_bytes: AtomicU64,
    log_objects: AtomicU64,
    snapshot_bytes: AtomicU64,
}

impl IndexLog for CountingLog {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        if name.starts_with("log/") {
            self.log_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.log_objects.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn put_file(&self, _name: &str, path: &Path) -> Result<()> {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        self.snapshot_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
    fn get(&self, _name: &str, _max_len: u64) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn get_to_file(&self, _name: &str, _path: &Path) -> Result<bool> {
        Ok(false)
    }
    fn list(&self, _dir: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn delete(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let usage = "usage: log_bytes DIR MANIFESTS [STAGED_ROWS]";
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect(usage);
    let manifests: u64 = args.next().expect(usage).parse().expect(usage);
    let staged_rows: u64 = args
        .next()
        .map_or(StoreOptions::default().staged_rows, |s| {
            s.parse().expect(usage)
        });
    let log = Arc::new(CountingLog::default());
    let store = Store::open_with(
        &dir,
        StoreOptions::default()
            .cache_size(256 << 20)
            .index_log(Arc::clone(&log) as Arc<dyn IndexLog>)
            .staged_rows(staged_rows),
        true,
    )
    .expect("a new store");
    let g =
        generate_into_store(&store, &GenSpec::sized(manifests, 1), 10_000, |_| {}).expect("ingest");
    let counts = store.counts().expect("counts");
    let log_bytes = log.log_bytes.load(Ordering::Relaxed);
    println!(
        "staged_rows {staged_rows}: {} manifests in {:.1} s ({:.0}/s); index log {} objects, {} bytes ({:.0} per manifest); {} reverse rows still staged",
        g.manifests,
        g.seconds,
        g.manifests as f64 / g.seconds,
        log.log_objects.load(Ordering::Relaxed),
        log_bytes,
        log_bytes as f64 / g.manifests as f64,
        counts.staged_reverse_rows
    );
}
