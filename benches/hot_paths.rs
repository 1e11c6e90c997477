//! Hot paths of the blob store, each next to its baseline in the same run:
//! digest parse/format, hashing vs raw sha2, put vs raw sha256, stat/get vs
//! a raw redb get, group commit vs one fsync per put, and manifest parsing
//! (with its hostile-input checks) vs a bare serde_json parse.
//!
//! `cargo bench --bench hot_paths` (add `-- --quick` for a short run).

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ocidb::{Algorithm, Digest, Hasher, PutOptions, Store};
use redb::{ReadableDatabase as _, TableDefinition};
use sha2::Digest as _;

const STORE_BLOBS: u64 = 1_000_000;
const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw");

fn small_blob(i: u64) -> Vec<u8> {
    format!("{{\"blob\":{i},\"pad\":\"{i:0>80}\"}}").into_bytes()
}

fn digest_bench(c: &mut Criterion) {
    let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let d = Digest::parse(s).expect("valid");
    let mut g = c.benchmark_group("digest");
    g.bench_function("parse", |b| b.iter(|| Digest::parse(black_box(s))));
    g.bench_function("format_to_string", |b| b.iter(|| black_box(&d).to_string()));
    g.bench_function("format_no_alloc", |b| {
        let mut buf = [0u8; ocidb::digest::MAX_DIGEST_STR_LEN];
        b.iter(|| black_box(black_box(&d).encode(&mut buf).len()));
    });
    // Baseline: what the hex crate-free std approach costs (format!("{:02x}")).
    g.bench_function("baseline_std_format_hex", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(71);
            out.push_str("sha256:");
            for byte in black_box(&d).hash_bytes() {
                use std::fmt::Write as _;
                let _ = write!(out, "{byte:02x}");
            }
            out
        });
    });
    g.finish();
}

fn hash_bench(c: &mut Criterion) {
    let data = ocidb_testkit::deterministic_bytes(b"hash", 64 << 20);
    let mut g = c.benchmark_group("hash_64MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("baseline_raw_sha2", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            h.update(black_box(&data));
            h.finalize()
        });
    });
    g.bench_function("ocidb_verifier", |b| {
        b.iter(|| {
            let mut v = ocidb::Verifier::new(None, Some(data.len() as u64), Algorithm::Sha256);
            for chunk in data.chunks(1 << 20) {
                v.update(chunk).expect("fits");
            }
            v.finish().expect("ok")
        });
    });
    g.finish();
}

fn put_bench(c: &mut Criterion) {
    let data = ocidb_testkit::deterministic_bytes(b"put", 256 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(dir.path()).expect("store");
    let mut g = c.benchmark_group("put_256MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("baseline_raw_sha256", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            h.update(black_box(&data));
            h.finalize()
        });
    });
    let last: std::cell::Cell<Option<Digest>> = std::cell::Cell::new(None);
    g.bench_function("ocidb_put_no_sync", |b| {
        b.iter_batched(
            || {
                // Each put must store new bytes, so drop the previous copy
                // outside the timed section.
                if let Some(d) = last.take() {
                    store.delete(&d).expect("delete");
                }
            },
            |()| {
                let p = store
                    .put(data.as_slice(), &PutOptions::default().no_sync(true))
                    .expect("put");
                last.set(Some(p.digest));
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

struct LookupFixture {
    store: Store,
    raw: redb::Database,
    keys: Vec<Digest>,
}

fn lookup_fixture() -> LookupFixture {
    let dir = common::bench_dir("blobs-1m");
    let keys: Vec<Digest> = (0..STORE_BLOBS)
        .map(|i| Hasher::digest_of(Algorithm::Sha256, &small_blob(i)))
        .collect();
    if !common::is_built(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        eprintln!(
            "building a {STORE_BLOBS}-blob store in {} (once)",
            dir.display()
        );
        let store = Store::create(dir.join("store")).expect("store");
        let raw = redb::Database::create(dir.join("raw.redb")).expect("raw");
        let chunk = 20_000u64;
        for start in (0..STORE_BLOBS).step_by(chunk as usize) {
            let blobs: Vec<Vec<u8>> = (start..start + chunk).map(small_blob).collect();
            let items: Vec<(&[u8], PutOptions)> = blobs
                .iter()
                .map(|b| {
                    (
                        b.as_slice(),
                        PutOptions::default()
                            .no_sync(true)
                            .media_type("application/octet-stream"),
                    )
                })
                .collect();
            store.put_blobs(&items).expect("batch");
            let mut txn = raw.begin_write().expect("txn");
            txn.set_durability(redb::Durability::None)
                .expect("durability");
            {
                let mut t = txn.open_table(RAW).expect("table");
                for i in start..start + chunk {
                    // Same key width and a record-sized value.
                    let v = [7u8; 45];
                    t.insert(keys[i as usize].to_key().as_slice(), v.as_slice())
                        .expect("insert");
                }
            }
            txn.commit().expect("commit");
        }
        store.sync().expect("sync");
        let mut txn = raw.begin_write().expect("txn");
        txn.set_durability(redb::Durability::Immediate).expect("d");
        txn.commit().expect("commit");
        drop(store);
        drop(raw);
        common::mark_built(&dir);
    }
    LookupFixture {
        store: Store::open(dir.join("store")).expect("open"),
        raw: redb::Database::open(dir.join("raw.redb")).expect("raw"),
        keys,
    }
}

fn lookup_bench(c: &mut Criterion) {
    let f = lookup_fixture();
    let n = f.keys.len() as u64;
    let mut g = c.benchmark_group("lookup_1M");
    let next = AtomicU64::new(0);
    let pick = || {
        // A fixed pseudo-random walk over the keys, the same for every function.
        let i = next.fetch_add(1, Ordering::Relaxed);
        &f.keys[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n) as usize]
    };
    g.bench_function("baseline_raw_redb_get", |b| {
        b.iter(|| {
            let txn = f.raw.begin_read().expect("read");
            let t = txn.open_table(RAW).expect("table");
            let v = t
                .get(pick().to_key().as_slice())
                .expect("get")
                .expect("present");
            black_box(v.value().len())
        });
    });
    next.store(0, Ordering::Relaxed);
    g.bench_function("ocidb_stat", |b| {
        b.iter(|| black_box(f.store.stat(pick()).expect("stat").size));
    });
    next.store(0, Ordering::Relaxed);
    g.bench_function("ocidb_exists", |b| {
        b.iter(|| black_box(f.store.exists(pick()).expect("exists")));
    });
    next.store(0, Ordering::Relaxed);
    g.bench_function("ocidb_get_small", |b| {
        b.iter(|| black_box(f.store.read(pick()).expect("read").len()));
    });
    g.finish();
}

fn group_commit_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::create(dir.path()).expect("store"));
    let counter = Arc::new(AtomicU64::new(0));
    const PUTS: u64 = 256;
    let mut g = c.benchmark_group("durable_small_puts");
    g.throughput(Throughput::Elements(PUTS));
    g.sample_size(10);
    g.bench_function("baseline_fsync_per_put_1_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..PUTS {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    store
                        .put_bytes(&small_blob(u64::MAX - i), &PutOptions::default())
                        .expect("put");
                }
            }
            start.elapsed()
        });
    });
    g.bench_function("group_commit_8_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::thread::scope(|s| {
                    for _ in 0..8 {
                        let store = Arc::clone(&store);
                        let counter = Arc::clone(&counter);
                        s.spawn(move || {
                            for _ in 0..PUTS / 8 {
                                let i = counter.fetch_add(1, Ordering::Relaxed);
                                store
                                    .put_bytes(&small_blob(u64::MAX - i), &PutOptions::default())
                                    .expect("put");
                            }
                        });
                    }
                });
            }
            start.elapsed()
        });
    });
    g.finish();
}

/// Parsing a near-4 MiB index of 25,000 entries: every check (key casing,
/// depth, media types, duplicates) against a bare parse of the same bytes
/// into a `serde_json::Value`. Linear either way: the duplicate check was
/// once quadratic (4.2 s of CPU for 44k entries).
fn classify_bench(c: &mut Criterion) {
    let entries: Vec<serde_json::Value> = (0..25_000u32)
        .map(|i| {
            let d = Hasher::digest_of(Algorithm::Sha256, &i.to_le_bytes());
            serde_json::json!({"mediaType": ocidb::manifest::OCI_MANIFEST, "digest": d.to_string(), "size": 1})
        })
        .collect();
    let body = serde_json::json!({"schemaVersion": 2, "mediaType": ocidb::manifest::OCI_INDEX, "manifests": entries}).to_string();
    let reg = ocidb::manifest::ParserRegistry::default();
    let mut g = c.benchmark_group("classify_index_25k");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body.as_bytes())));
    });
    g.bench_function("ocidb_classify", |b| {
        b.iter(|| ocidb::manifest::classify(&reg, None, black_box(body.as_bytes())));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = digest_bench, hash_bench, put_bench, lookup_bench, group_commit_bench, classify_bench
}
criterion_main!(benches);
