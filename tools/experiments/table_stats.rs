//! Where a store's pages go: redb's per-table statistics for every table of
//! an `ocidb.redb` file, and the database's totals.
//!
//! `cargo run --release -p ocidb-bench --example table_stats -- STORE_DIR`
//!
//! Also how well the inline bodies pack (`schema::body`): their stored
//! bytes against the blobs' sizes.

use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableHandle as _,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: table_stats STORE_DIR")?;
    let path = std::path::Path::new(&dir).join("ocidb.redb");
    let db = Database::open(&path)?;
    let txn = db.begin_read()?;
    println!(
        "{:<16} {:>10} {:>8} {:>8} {:>11} {:>11} {:>11} {:>6}",
        "table", "entries", "leaves", "branches", "stored MiB", "meta MiB", "frag MiB", "fill"
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for h in txn.list_tables()? {
        let name = h.name().to_string();
        let t = txn.open_untyped_table(h)?;
        let s = t.stats()?;
        let pages = s.leaf_pages() + s.branch_pages();
        let fill = s.stored_bytes() as f64 / (pages.max(1) * 4096) as f64;
        println!(
            "{:<16} {:>10} {:>8} {:>8} {:>11.1} {:>11.1} {:>11.1} {:>6.2}",
            name,
            t.len()?,
            s.leaf_pages(),
            s.branch_pages(),
            mib(s.stored_bytes()),
            mib(s.metadata_bytes()),
            mib(s.fragmented_bytes()),
            fill
        );
    }
    drop(txn);
    let w = db.begin_write()?;
    let s = w.stats()?;
    println!(
        "database: allocated {:.1} MiB, leaves {}, branches {}, stored {:.1} MiB, meta {:.1} MiB, frag {:.1} MiB",
        mib(s.allocated_pages() * s.page_size() as u64),
        s.leaf_pages(),
        s.branch_pages(),
        mib(s.stored_bytes()),
        mib(s.metadata_bytes()),
        mib(s.fragmented_bytes())
    );
    w.abort()?;
    // Stored length and packing of the inline bodies (format 4 keys them
    // by id; a body's own size is its record's, so the totals are
    // compared: what the records say against what `bodies` stores).
    const BODIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("bodies");
    let (mut count, mut packed, mut stored) = (0usize, 0usize, 0u64);
    {
        let txn = db.begin_read()?;
        for e in txn.open_table(BODIES)?.iter()? {
            let (_, v) = e?;
            let v = v.value();
            count += 1;
            stored += v.len() as u64;
            packed += usize::from(v.first() == Some(&1));
        }
    }
    drop(db);
    let size = ocidb::Store::open(&dir)?.stats()?.inline_bytes;
    println!(
        "inline bodies: {} ({} packed, {} verbatim), {:.2} MiB as put, {:.2} MiB stored: {:.1}%",
        count,
        packed,
        count - packed,
        mib(size),
        mib(stored),
        100.0 * stored as f64 / size.max(1) as f64
    );
    Ok(())
}
