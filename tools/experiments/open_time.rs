//! Time to open a store (the 1M-manifest bench store by default) and answer
//! a first query. `cargo run --release -p ocidb-bench --example open_time -- [STORE]`
use std::time::Instant;

fn main() -> ocidb::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/ocidb-bench/graph-1m-f2/store".into());
    for _ in 0..3 {
        let t = Instant::now();
        let store = ocidb::Store::open(&path)?;
        let opened = t.elapsed();
        let repos = store.repositories()?;
        println!(
            "open {:.2} ms, first query {:.2} ms ({} repositories)",
            opened.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3,
            repos.len()
        );
    }
    Ok(())
}
