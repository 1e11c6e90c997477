//! How fast could *any* redb layout ingest the graph bench's manifests into a
//! 1M-manifest store? This writes, with raw redb and no parsing or hashing,
//! the cheapest layout we know for the same data: every table keyed by a
//! sequential u64 node id (appends), plus the one table that cannot be
//! sequential, `digest -> id`, with one random 40-byte entry per new digest
//! (three per manifest here: the manifest, its config and its own layer; the
//! shared base layer is looked up). It is the evidence behind the ingest
//! floor being out of reach (issue #3; see docs/guarantees.md, "Limits").
//!
//! `cargo run --release -p ocidb-bench --example ingest_ceiling -- [MODE] [STORE] [BATCH]`
//! - MODE `ids` (default): the whole sequential-id layout;
//! - MODE `index-only`: only the `digest -> id` table;
//! - MODE `no-index`: the sequential tables without `digest -> id`;
//! - STORE manifests are built first in durable batches of 50,000
//!   (default 1,000,000), then five durable batches of BATCH (default
//!   10,000) are timed. The file goes in a temporary directory.
use std::error::Error;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, TableDefinition};

const DIGESTS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("digests");
const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
const EDGES_OUT: TableDefinition<u64, &[u8]> = TableDefinition::new("edges_out");
const EDGES_IN: TableDefinition<&[u8; 16], ()> = TableDefinition::new("edges_in");
const MEMBERS: TableDefinition<&[u8; 16], u8> = TableDefinition::new("members");
const MEMBER_OF: TableDefinition<&[u8; 16], ()> = TableDefinition::new("member_of");

/// A pseudo-random 32-byte digest for entity `x` (SplitMix64 rounds).
fn digest(x: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut s = x;
    for chunk in out.chunks_mut(8) {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    }
    out
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ids,
    IndexOnly,
    NoIndex,
}

struct Loader {
    db: Database,
    mode: Mode,
    next_id: u64,
    next_manifest: u64,
    bases: Vec<u64>,
}

impl Loader {
    /// One durable transaction of `count` manifests, as the graph bench's
    /// image manifests: a config and an own layer (new), one of 1,000 base
    /// layers (shared), about 560 bytes of manifest inline.
    fn batch(&mut self, count: u64) -> Result<(), Box<dyn Error>> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut digests = txn.open_table(DIGESTS)?;
            let mut nodes = txn.open_table(NODES)?;
            let mut edges_out = txn.open_table(EDGES_OUT)?;
            let mut edges_in = txn.open_table(EDGES_IN)?;
            let mut members = txn.open_table(MEMBERS)?;
            let mut member_of = txn.open_table(MEMBER_OF)?;
            let body = [7u8; 560];
            for _ in 0..count {
                let n = self.next_manifest;
                self.next_manifest += 1;
                let (m, config, layer) = (self.next_id, self.next_id + 1, self.next_id + 2);
                self.next_id += 3;
                let base = self.bases[(n % 1000) as usize];
                if self.mode != Mode::NoIndex {
                    for (i, id) in [(0, m), (1, config), (2, layer)] {
                        let key = digest(1_000 + n * 3 + i);
                        if digests.get(&key)?.is_none() {
                            digests.insert(&key, id)?;
                        }
                    }
                    digests.get(&digest(base))?;
                }
                if self.mode == Mode::IndexOnly {
                    continue;
                }
                nodes.insert(m, body.as_slice())?;
                nodes.insert(config, [1u8; 34].as_slice())?;
                nodes.insert(layer, [1u8; 34].as_slice())?;
                edges_out.insert(m, [2u8; 120].as_slice())?;
                for child in [config, layer, base] {
                    edges_in.insert(&pair(child, m), ())?;
                }
                members.insert(&pair(1, m), 0)?;
                member_of.insert(&pair(m, 1), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        None | Some("ids") => Mode::Ids,
        Some("index-only") => Mode::IndexOnly,
        Some("no-index") => Mode::NoIndex,
        Some(other) => {
            return Err(
                format!("unknown mode {other:?}: expected ids, index-only or no-index").into(),
            )
        }
    };
    let parse = |i: usize, default: u64| -> Result<u64, Box<dyn Error>> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("{s:?} is not a count: expected a positive integer").into()),
        }
    };
    let (store, batch) = (parse(1, 1_000_000)?, parse(2, 10_000)?.max(1));
    let dir = tempfile::tempdir()?;
    let db = Database::builder()
        .set_cache_size(1 << 30)
        .create(dir.path().join("ceiling.redb"))?;
    let mut loader = Loader {
        db,
        mode,
        next_id: 1_000,
        next_manifest: 0,
        bases: (0..1000).collect(),
    };
    let t = Instant::now();
    while loader.next_manifest < store {
        loader.batch(50_000.min(store - loader.next_manifest))?;
    }
    eprintln!(
        "built {store} manifests in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        loader.batch(batch)?;
        rates.push(batch as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{} into {store}: durable batches of {batch}: median {:.0} manifests/s (min {:.0}, max {:.0})",
        args.first().map_or("ids", String::as_str),
        rates[2],
        rates[0],
        rates[4]
    );
    Ok(())
}
