//! The ceiling that ingest runs into: raw redb inserts of random vs
//! sequential 65-byte keys, 30 batches of 30,000.
//! `cargo run --release -p ocidb-bench --example redb_random_inserts [seq]`
use redb::{Database, ReadableDatabase, TableDefinition};
use std::time::Instant;
const T: TableDefinition<&[u8; 65], &[u8]> = TableDefinition::new("t");
fn main() {
    let _ = std::fs::remove_file("/tmp/raw.redb");
    let seq = std::env::args().nth(1).is_some();
    let db = Database::builder()
        .set_cache_size(256 << 20)
        .create("/tmp/raw.redb")
        .expect("experiment step");
    let t0 = Instant::now();
    let mut n: u64 = 0;
    for batch in 0..30 {
        let t = Instant::now();
        let txn = db.begin_write().expect("experiment step");
        {
            let mut tab = txn.open_table(T).expect("experiment step");
            for _ in 0..30_000 {
                let mut k = [0u8; 65];
                let x = if seq {
                    n
                } else {
                    n.wrapping_mul(0x9E3779B97F4A7C15)
                };
                k[1..9].copy_from_slice(&x.to_be_bytes());
                tab.insert(&k, [7u8; 100].as_slice())
                    .expect("experiment step");
                n += 1;
            }
        }
        txn.commit().expect("experiment step");
        if batch % 5 == 0 {
            eprintln!(
                "batch {batch}: {:.0} inserts/s",
                30_000.0 / t.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("total {:.0}/s", n as f64 / t0.elapsed().as_secs_f64());
    let _ = db.begin_read();
}
