//! redb 4.6's read guards, and the invariant ocidb's stress test broke
//! (issue 26, item 7). The writer thread panicked inside redb with
//! `assertion failed: !self.read_page_ref_counts.lock().unwrap()
//! .contains_key(&page)` (`page_manager.rs:2116`, in `free_helper`): a
//! page was freed while something still held it as read.
//!
//! The cause, reduced here to redb alone: in redb 4.x the inherent `get()`
//! and `range()` of a `ReadOnlyTable` return guards and iterators with a
//! `'static` lifetime, which do not keep their read transaction alive. A
//! guard still alive when its transaction is dropped holds a page the
//! writer may free at its next commit. Rust 2021 drops the temporaries of
//! a function's tail expression after its locals, so a tail such as
//! `Ok(txn.open_table(T)?.first()?.is_none())` does exactly that. ocidb
//! moved to edition 2024, which drops them first; redb 5.0 removed those
//! methods. docs/redb-nondurable-free.md has the report.
//!
//! The debug assertion exists only with debug assertions (this test's dev
//! profile, and the `stress` profile).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase as _, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
/// A second table each commit also touches, as a sweep step touches
/// several (records, edges, members).
const U: TableDefinition<u64, u64> = TableDefinition::new("u");

/// The value stored under `k` in generation `g`: a reader can tell a
/// value that belongs to no committed state.
fn value(k: u64, g: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(300);
    for i in 0..(40 + k % 5) {
        v.extend_from_slice(&(k ^ g.rotate_left(17) ^ i).to_le_bytes());
    }
    v
}

fn check(k: u64, v: &[u8]) -> bool {
    // Any generation: recover g from the first word and compare the rest.
    if v.len() < 8 || !v.len().is_multiple_of(8) {
        return false;
    }
    let first = u64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8]));
    let g = (first ^ k).rotate_right(17);
    v == value(k, g).as_slice()
}

#[test]
fn nondurable_commits_that_free_pages_beside_live_readers() {
    let secs = common::env_u64("OCIDB_REDB_STRESS_SECS", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(
        Database::builder()
            .set_cache_size(8 << 20)
            .create(dir.path().join("db.redb"))
            .expect("create"),
    );
    const KEYS: u64 = 20_000;
    {
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(T).expect("table");
            for k in 0..KEYS {
                t.insert(k, value(k, 0).as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..6u64 {
        let (db, stop, reads) = (Arc::clone(&db), Arc::clone(&stop), Arc::clone(&reads));
        readers.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rng = common::Rng(0x9E37_79B9 ^ (r + 1));
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let txn = db.begin_read().map_err(|e| e.to_string())?;
                let t = match txn.open_table(T) {
                    Ok(t) => t,
                    Err(e) => return Err(e.to_string()),
                };
                // A range and a few point reads, then keep some snapshots
                // alive across the writer's next commits.
                let start = rng.next() % KEYS;
                for e in t.range(start..start + 50).map_err(|e| e.to_string())? {
                    let (k, v) = e.map_err(|e| e.to_string())?;
                    if !check(k.value(), v.value()) {
                        return Err(format!(
                            "reader {r}: key {} read a value no commit wrote",
                            k.value()
                        ));
                    }
                }
                for _ in 0..5 {
                    let k = rng.next() % KEYS;
                    if let Some(v) = t.get(k).map_err(|e| e.to_string())?
                        && !check(k, v.value())
                    {
                        return Err(format!("reader {r}: key {k} read a value no commit wrote"));
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                held.push((Instant::now(), txn, t));
                // Reader 0 keeps snapshots for up to two seconds, across
                // hundreds of commits, as a GC mark does; the others let
                // go after a few of their own reads.
                if r == 0 {
                    held.retain(|(at, _, _)| {
                        at.elapsed() < Duration::from_millis(rng.below(2000) as u64)
                    });
                } else if held.len() > 1 + rng.below(6) {
                    held.remove(rng.below(held.len()));
                }
            }
            Ok(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = common::Rng(0xC0FF_EE11);
    let mut generation = 1u64;
    let mut commits = 0u64;
    let writer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while Instant::now() < deadline {
            let txn = db.begin_write().expect("write");
            // Mostly non-durable: big deletes and rewrites, as a GC sweep
            // step is; now and then durable, as a push is.
            let durable = rng.chance(12);
            if !durable {
                let mut txn2 = txn;
                txn2.set_durability(Durability::None).expect("durability");
                {
                    let mut u = txn2.open_table(U).expect("table");
                    for i in 0..50 {
                        u.insert(rng.next() % KEYS, generation + i).expect("insert");
                    }
                    drop(u);
                    let mut t = txn2.open_table(T).expect("table");
                    let lo = rng.next() % KEYS;
                    let n = 200 + rng.below(3000) as u64;
                    for k in lo..(lo + n).min(KEYS) {
                        if rng.chance(2) {
                            t.remove(k).expect("remove");
                        } else {
                            t.insert(k, value(k, generation).as_slice())
                                .expect("insert");
                        }
                    }
                }
                txn2.commit().expect("commit");
            } else {
                {
                    let mut t = txn.open_table(T).expect("table");
                    for _ in 0..20 {
                        let k = rng.next() % KEYS;
                        t.insert(k, value(k, generation).as_slice())
                            .expect("insert");
                    }
                }
                txn.commit().expect("commit");
            }
            generation += 1;
            commits += 1;
        }
    }));
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for r in readers {
        match r.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a reader panicked".to_string()),
        }
    }
    eprintln!(
        "{commits} commits, {} read transactions in {secs} s",
        reads.load(Ordering::Relaxed)
    );
    assert!(
        writer.is_ok(),
        "the writer panicked inside redb (see above)"
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(commits > 10 && reads.load(Ordering::Relaxed) > 10);
}

/// The hazard itself: a guard that outlives the read transaction it came
/// from. With debug assertions redb's writer panics on the page the guard
/// still holds; this is the reproduction of the stress test's panic.
#[cfg(debug_assertions)]
#[test]
fn a_guard_outliving_its_transaction_trips_redbs_page_accounting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::create(dir.path().join("db.redb")).expect("create"));
    fill(&db);
    let tripped = readers_and_writer(&db, |db, k| {
        // The guard escapes the block that owns its transaction.
        let g = {
            let txn = db.begin_read().expect("read");
            let t = txn.open_table(T).expect("table");
            t.get(k).expect("get")
        };
        std::thread::sleep(Duration::from_micros(200));
        drop(g);
    });
    assert!(
        tripped,
        "redb 4.6 no longer trips on a guard outliving its transaction: check whether the \
         hazard is gone (then this test and docs/redb-nondurable-free.md can go)"
    );
}

/// The same load with every guard dropped before its transaction, as
/// ocidb's reads now do: no trip.
#[test]
fn guards_dropped_before_their_transaction_are_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::create(dir.path().join("db.redb")).expect("create"));
    fill(&db);
    let tripped = readers_and_writer(&db, |db, k| {
        let txn = db.begin_read().expect("read");
        let t = txn.open_table(T).expect("table");
        let g = t.get(k).expect("get");
        std::thread::sleep(Duration::from_micros(200));
        drop(g);
    });
    assert!(
        !tripped,
        "the writer panicked though every guard died first"
    );
}

fn fill(db: &Database) {
    let w = db.begin_write().expect("write");
    {
        let mut t = w.open_table(T).expect("table");
        for k in 0..5_000u64 {
            t.insert(k, value(k, 0).as_slice()).expect("insert");
        }
    }
    w.commit().expect("commit");
}

/// Runs `read` in a loop on a reader thread while this thread commits
/// 3,000 small write transactions; whether the writer panicked.
fn readers_and_writer(db: &Arc<Database>, read: fn(&Database, u64)) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    let (db2, stop2) = (Arc::clone(db), Arc::clone(&stop));
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            read(&db2, n % 5_000);
            n += 1;
        }
    });
    let writer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..3_000u64 {
            let w = db.begin_write().expect("write");
            {
                let mut t = w.open_table(T).expect("table");
                for k in 0..50u64 {
                    let k = (i * 37 + k * 101) % 5_000;
                    t.insert(k, value(k, i).as_slice()).expect("insert");
                }
            }
            w.commit().expect("commit");
        }
    }));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    writer.is_err()
}
