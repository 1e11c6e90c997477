//! `ocidb bench run`: every scenario, each beside its baseline measured in
//! the same run, on content from the generator.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase as _, TableDefinition};
use sha2::Digest as _;

use super::gen::{self, GenSpec, Generator, Landmarks};
use super::measure::{self, peak_rss_mb, reset_peak_rss, time_ops, Lat};
use super::report::{dur, Report, Row, ScalePoint};
use crate::{
    Digest, Error, GcPolicy, ManifestOptions, PutOptions, Reference, ReferrersQuery, Result, Store,
    StoreOptions, SweepPace,
};

const RAW: TableDefinition<&[u8; 65], &[u8]> = TableDefinition::new("raw");
/// The lookup baseline: one table of the same keys whose values are the
/// whole manifests (so its leaves are larger than ocidb's record table's).
const RAW_GET: &str = "raw redb get, same keys, manifest bytes as values";

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Small sizes and short loops (finishes in under 3 minutes on 2 cores).
    pub quick: bool,
    /// Working directory (stores, layouts and databases are made under it
    /// and removed at the end).
    pub dir: PathBuf,
    /// Generator seed.
    pub seed: u64,
    /// Manifests in the main store (default: 30k quick, 1M full).
    pub manifests: Option<u64>,
    /// Store sizes of the scaling curve (default: 10k, 30k, 100k quick;
    /// 10k, 100k, 1M full).
    pub sizes: Option<Vec<u64>>,
    /// The `ocidb` binary, to measure lookup memory in a fresh process
    /// (`ocidb bench probe-lookups`); None measures in this process, whose
    /// peak RSS then includes the harness's own data.
    pub probe_exe: Option<PathBuf>,
}

impl RunOptions {
    fn main_size(&self) -> u64 {
        self.manifests
            .unwrap_or(if self.quick { 30_000 } else { 1_000_000 })
    }

    fn sizes(&self) -> Vec<u64> {
        let mut v = self.sizes.clone().unwrap_or_else(|| {
            if self.quick {
                vec![10_000, 30_000, 100_000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            }
        });
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Indexes built from the generated content: the in-memory upper bound.
#[derive(Default)]
struct MemIndex {
    sizes: HashMap<Digest, u64>,
    referrers: HashMap<Digest, Vec<(Digest, Option<String>)>>,
    parents: HashMap<Digest, Vec<Digest>>,
}

#[derive(serde::Deserialize)]
struct Shape {
    #[serde(default)]
    manifests: Vec<DescShape>,
    #[serde(default)]
    layers: Vec<DescShape>,
    config: Option<DescShape>,
    subject: Option<DescShape>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

#[derive(serde::Deserialize)]
struct DescShape {
    digest: String,
}

impl MemIndex {
    fn add(&mut self, m: &gen::GenManifest) -> Result<()> {
        self.sizes.insert(m.digest, m.body.len() as u64);
        let s: Shape = serde_json::from_slice(&m.body).map_err(|e| Error::InvalidArgument {
            value: format!("generated manifest {}", m.digest),
            expected: format!("valid JSON ({e})"),
        })?;
        for c in s.manifests.iter().chain(&s.layers).chain(s.config.iter()) {
            self.parents
                .entry(Digest::parse(&c.digest)?)
                .or_default()
                .push(m.digest);
        }
        if let Some(sub) = s.subject {
            self.referrers
                .entry(Digest::parse(&sub.digest)?)
                .or_default()
                .push((m.digest, s.artifact_type));
        }
        Ok(())
    }
}

/// A store of one size with what the scenarios need to query it.
struct Built {
    store: Store,
    dir: PathBuf,
    marks: Landmarks,
    ingest_rate: f64,
    ingest_rss: f64,
}

impl Built {
    /// Closes the store, runs `f` on its directory (scenarios that need
    /// the store closed: open time, a probe in another process), reopens.
    fn while_closed<T>(self, f: impl FnOnce(&Path, &Landmarks) -> Result<T>) -> Result<(Built, T)> {
        let Built {
            store,
            dir,
            marks,
            ingest_rate,
            ingest_rss,
        } = self;
        drop(store);
        let out = f(&dir, &marks)?;
        let built = Built {
            store: Store::open(&dir)?,
            dir,
            marks,
            ingest_rate,
            ingest_rss,
        };
        Ok((built, out))
    }
}

fn build_store(dir: &Path, spec: &GenSpec, log: &mut dyn FnMut(&str)) -> Result<Built> {
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open_with(dir, StoreOptions::default(), true)?;
    reset_peak_rss();
    let total = spec.manifests;
    let mut last = Instant::now();
    let g = gen::generate_into_store(&store, spec, 10_000, |n| {
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("  … {n} of ~{total} manifests");
        }
    })?;
    let rss = peak_rss_mb();
    log(&format!(
        "built {} manifests in {:.1} s ({:.0}/s)",
        g.manifests,
        g.seconds,
        g.manifests as f64 / g.seconds
    ));
    Ok(Built {
        store,
        dir: dir.to_path_buf(),
        ingest_rate: g.manifests as f64 / g.seconds,
        ingest_rss: rss,
        marks: g.landmarks,
    })
}

fn row(scenario: impl Into<String>, l: Lat, rss: f64) -> Row {
    Row {
        scenario: scenario.into(),
        ops_per_s: l.ops_per_s,
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        unit: "ops".into(),
        baseline: None,
        cost_ratio: None,
        peak_rss_mb: rss,
        note: String::new(),
    }
}

fn vs_latency(mut r: Row, name: &str, base: &Lat) -> Row {
    r.baseline = Some(format!("{name} ({})", dur(base.p50_us)));
    r.cost_ratio = Some(r.p50_us / base.p50_us.max(1e-3));
    r
}

fn vs_rate(mut r: Row, name: &str, base_rate: f64, unit: &str) -> Row {
    r.baseline = Some(format!("{name} ({:.0} {unit}/s)", base_rate));
    r.cost_ratio = Some(base_rate / r.ops_per_s.max(1e-9));
    r
}

/// Runs `op` and notes the peak RSS it reached.
fn with_rss<T>(op: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    reset_peak_rss();
    let v = op()?;
    Ok((v, peak_rss_mb()))
}

/// Replays the generator for the baselines: a raw redb table of the same
/// keys and bytes (timed insert), and the in-memory index.
fn baselines(dir: &Path, spec: &GenSpec) -> Result<(redb::Database, f64, MemIndex)> {
    let path = dir.join("raw.redb");
    let _ = std::fs::remove_file(&path);
    let db = redb::Database::create(&path).map_err(redb::Error::from)?;
    let mut mem = MemIndex::default();
    let mut g = Generator::new(spec.clone());
    let mut insert_time = Duration::ZERO;
    let mut n = 0u64;
    while let Some(items) = g.next_batch(10_000) {
        let t = Instant::now();
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut tab = txn.open_table(RAW)?;
            for m in &items {
                tab.insert(&m.digest.to_key(), m.body.as_slice())?;
            }
        }
        txn.commit()?;
        insert_time += t.elapsed();
        n += items.len() as u64;
        for m in &items {
            mem.add(m)?;
        }
    }
    // The same closing durable commit as the store's ingest.
    let t = Instant::now();
    let txn = db.begin_write()?;
    txn.commit()?;
    insert_time += t.elapsed();
    Ok((db, n as f64 / insert_time.as_secs_f64(), mem))
}

/// Picks `n` digests spread over `all`, deterministically.
fn sample(all: &[Digest], n: usize, seed: u64) -> Vec<Digest> {
    let mut r = gen::Rng::new(seed);
    (0..n)
        .map(|_| all[r.below(all.len() as u64) as usize])
        .collect()
}

/// Lookups of `keys` through ocidb, raw redb and the HashMap, 1 and 2 threads.
fn lookups(
    b: &Built,
    raw: &redb::Database,
    mem: &MemIndex,
    quick: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let n = if quick { 20_000 } else { 100_000 };
    let cold = sample(&b.marks.manifests, n, 11);
    let hot: Vec<Digest> = b.marks.manifests.iter().take(64).copied().collect();
    let s = &b.store;
    let raw_lat = {
        let txn = raw.begin_read()?;
        let t = txn.open_table(RAW)?;
        time_ops(n, 1, |i| {
            t.get(&cold[i].to_key())?
                .map(|v| v.value().len())
                .ok_or_else(|| Error::Corrupt("raw key missing".into()))?;
            Ok(())
        })?
    };
    let map_lat = time_ops(n, 1, |i| {
        mem.sizes
            .get(&cold[i])
            .copied()
            .ok_or_else(|| Error::Corrupt("map key missing".into()))?;
        Ok(())
    })?;
    for (what, keys, threads) in [
        ("stat, cold digests, 1 thread", &cold, 1),
        ("stat, cold digests, 2 threads", &cold, 2),
        ("stat, hot digests, 1 thread", &hot, 1),
    ] {
        let (l, rss) = with_rss(|| {
            time_ops(n, threads, |i| {
                s.stat(&keys[i % keys.len()])?;
                Ok(())
            })
        })?;
        rows.push(vs_latency(
            row(format!("lookup: {what}"), l, rss),
            RAW_GET,
            &raw_lat,
        ));
    }
    for threads in [1, 2] {
        let (l, rss) = with_rss(|| {
            time_ops(n, threads, |i| {
                s.read(&cold[i])?;
                Ok(())
            })
        })?;
        let what = if threads == 1 {
            "1 thread"
        } else {
            "2 threads"
        };
        rows.push(vs_latency(
            row(
                format!("lookup: get (read all bytes), cold, {what}"),
                l,
                rss,
            ),
            RAW_GET,
            &raw_lat,
        ));
    }
    let mut base = row("baseline: raw redb get, same keys", raw_lat, 0.0);
    base = vs_latency(base, "HashMap get", &map_lat);
    rows.push(base);
    Ok(())
}

/// The referrers queries of one subject, through ocidb and the HashMap.
fn referrers_rows(
    b: &Built,
    mem: &MemIndex,
    quick: bool,
    rows: &mut Vec<Row>,
    #[cfg(feature = "peers")] peers: &Peers,
) -> Result<()> {
    let (short, long) = if quick { (2_000, 20) } else { (10_000, 100) };
    let mut cases: Vec<(String, String, Digest, Option<&str>, usize)> = Vec::new();
    if let Some((r, d)) = &b.marks.one_referrer {
        cases.push(("k = 1".into(), r.clone(), *d, None, short));
    }
    if let Some((r, d)) = &b.marks.hundred_referrers {
        cases.push(("k = 100".into(), r.clone(), *d, None, short));
        cases.push((
            "k = 100, artifactType filter (1 match)".into(),
            r.clone(),
            *d,
            Some(gen::SBOM),
            short,
        ));
    }
    if let Some((r, d)) = b.marks.hot.first() {
        let k = mem.referrers.get(d).map_or(0, Vec::len);
        cases.push((format!("k = {k}"), r.clone(), *d, None, long));
        cases.push((
            format!("k = {k}, artifactType filter (1%)"),
            r.clone(),
            *d,
            Some(gen::SBOM),
            short / 10,
        ));
    }
    for (what, repo, subject, filter, reps) in cases {
        let q = ReferrersQuery {
            artifact_type: filter,
            ..ReferrersQuery::default()
        };
        let expected = mem.referrers.get(&subject).map_or(0, |v| {
            v.iter()
                .filter(|(_, at)| filter.is_none() || at.as_deref() == filter)
                .count()
        });
        let (l, rss) = with_rss(|| {
            time_ops(reps, 1, |_| {
                let page = b.store.referrers(&repo, &subject, &q)?;
                if page.index.manifests.len() != expected {
                    return Err(Error::Corrupt(format!(
                        "referrers of {subject}: {} entries, the generator made {expected}",
                        page.index.manifests.len()
                    )));
                }
                Ok(())
            })
        })?;
        let map = time_ops(reps, 1, |_| {
            let v: Vec<Digest> = mem.referrers.get(&subject).map_or(Vec::new(), |v| {
                v.iter()
                    .filter(|(_, at)| filter.is_none() || at.as_deref() == filter)
                    .map(|(d, _)| *d)
                    .collect()
            });
            std::hint::black_box(v);
            Ok(())
        })?;
        rows.push(vs_latency(
            row(format!("referrers: {what}"), l, rss),
            "HashMap",
            &map,
        ));
        #[cfg(feature = "peers")]
        peers.referrers_rows(&what, &repo, &subject, filter, expected, &l, quick, rows)?;
    }
    Ok(())
}

#[cfg(feature = "peers")]
struct Peers {
    sqlite: super::peers::Sqlite,
    ocidir: super::peers::Ocidir,
    oras: super::peers::OrasGraph,
    oras_open: Duration,
    sqlite_rate: f64,
}

#[cfg(feature = "peers")]
impl Peers {
    fn build(dir: &Path, spec: &GenSpec, log: &mut dyn FnMut(&str)) -> Result<Peers> {
        let layout = dir.join("layout");
        let _ = std::fs::remove_dir_all(&layout);
        gen::generate_layout(&layout, spec)?;
        let mut sqlite = super::peers::Sqlite::create(&dir.join("peer.sqlite"))?;
        let mut g = Generator::new(spec.clone());
        let mut t = Duration::ZERO;
        let mut n = 0u64;
        while let Some(items) = g.next_batch(10_000) {
            let t0 = Instant::now();
            sqlite.insert(&items)?;
            t += t0.elapsed();
            n += items.len() as u64;
        }
        let t0 = Instant::now();
        let oras = super::peers::OrasGraph::open(&layout)?;
        let oras_open = t0.elapsed();
        log(&format!(
            "peers ready: sqlite {n} rows, layout of {} manifests",
            oras.manifests
        ));
        Ok(Peers {
            ocidir: super::peers::Ocidir::open(&layout)?,
            sqlite,
            oras,
            oras_open,
            sqlite_rate: n as f64 / t.as_secs_f64(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn referrers_rows(
        &self,
        what: &str,
        repo: &str,
        subject: &Digest,
        filter: Option<&str>,
        expected: usize,
        ours: &Lat,
        quick: bool,
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let check = |n: usize, who: &str| {
            if n == expected {
                Ok(())
            } else {
                Err(Error::Corrupt(format!(
                    "{who} found {n} referrers of {subject}, expected {expected}"
                )))
            }
        };
        let scan_reps = 3;
        let (l, rss) = with_rss(|| {
            time_ops(scan_reps, 1, |_| {
                check(self.sqlite.referrers(repo, subject, filter)?, "sqlite")
            })
        })?;
        rows.push(vs_latency(
            row(
                format!("peer sqlite json_extract: referrers {what}"),
                l,
                rss,
            ),
            "ocidb",
            ours,
        ));
        let (l, rss) = with_rss(|| {
            time_ops(scan_reps, 1, |_| {
                check(self.ocidir.referrers(subject, filter)?, "ocidir")
            })
        })?;
        rows.push(vs_latency(
            row(format!("peer ocidir layout scan: referrers {what}"), l, rss),
            "ocidb",
            ours,
        ));
        let (l, rss) = with_rss(|| {
            time_ops(if quick { 2_000 } else { 10_000 }, 1, |_| {
                check(self.oras.referrers(subject, filter), "oras-style")
            })
        })?;
        rows.push(vs_latency(
            row(
                format!("peer oras-style in-memory graph: referrers {what}"),
                l,
                rss,
            ),
            "ocidb",
            ours,
        ));
        Ok(())
    }
}

fn graph_rows(b: &Built, mem: &MemIndex, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let reps = if quick { 300 } else { 500 };
    let (repo, image) = b
        .marks
        .images
        .first()
        .cloned()
        .ok_or_else(|| Error::Corrupt("the generator made no image".into()))?;
    let (l, rss) = with_rss(|| {
        time_ops(reps, 1, |_| {
            std::hint::black_box(b.store.walk(&repo, &Reference::Digest(image))?);
            Ok(())
        })
    })?;
    let mut r = row(
        "graph: walk of a multi-arch image with its referrers (transitive)",
        l,
        rss,
    );
    r.note = "index, platform manifests, configs, layers, signature, SBOM, attestation".into();
    rows.push(r);
    let layer = b
        .marks
        .popular_layer
        .ok_or_else(|| Error::Corrupt("no base layer".into()))?;
    let parents = mem.parents.get(&layer).map_or(0, Vec::len);
    let (l, rss) = with_rss(|| {
        time_ops(reps, 1, |_| {
            let n = b.store.predecessors(&layer)?.len();
            if n != parents {
                return Err(Error::Corrupt(format!(
                    "predecessors of {layer}: {n}, the generator made {parents}"
                )));
            }
            Ok(())
        })
    })?;
    let map = time_ops(reps, 1, |_| {
        std::hint::black_box(mem.parents.get(&layer).cloned());
        Ok(())
    })?;
    let mut r = vs_latency(
        row("graph: predecessors of the most popular base layer", l, rss),
        "HashMap",
        &map,
    );
    r.note = format!("{parents} parents");
    rows.push(r);
    Ok(())
}

/// Latencies, each with the moment its operation ended.
type TimedSamples = Vec<(Instant, Duration)>;

/// Durable small puts from one thread until `stop`: each one's latency and
/// when it ended. They are leased, so that the GC being measured does not
/// also collect the probe's own blobs.
fn probe_writer(store: &Store, stop: &AtomicBool, tag: u64) -> Result<TimedSamples> {
    let lease = store.create_lease(Duration::from_secs(3600))?;
    let mut v = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        store.put_bytes(
            format!("latency probe {tag} {i}").as_bytes(),
            &PutOptions {
                lease: Some(lease.id),
                ..PutOptions::default()
            },
        )?;
        v.push((Instant::now(), t.elapsed()));
        i += 1;
    }
    Ok(v)
}

fn with_probe<T>(
    store: &Store,
    tag: u64,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Lat, Duration)> {
    let (r, timed, wall) = with_probe_timed(store, tag, during)?;
    Ok((r, measure::summarise(latencies(timed), wall), wall))
}

fn latencies(timed: TimedSamples) -> Vec<Duration> {
    timed.into_iter().map(|(_, d)| d).collect()
}

fn with_probe_timed<T>(
    store: &Store,
    tag: u64,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, TimedSamples, Duration)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| probe_writer(store, &stop, tag));
        let t = Instant::now();
        let r = during();
        let wall = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let samples = h
            .join()
            .unwrap_or_else(|_| Err(Error::Poisoned("probe writer panicked".into())))?;
        Ok((r?, samples, wall))
    })
}

/// The probe's latencies with no GC running: `secs` before `gc` and `secs`
/// after it, pooled. On a shared machine one quiet window's p99 swings by
/// 1.5x from the next; a window on each side of the GC halves the chance
/// that the baseline is a lucky (or unlucky) moment.
fn around_gc<T>(
    store: &Store,
    tag: u64,
    secs: u64,
    gc: impl FnOnce() -> Result<T>,
) -> Result<(T, Lat)> {
    let quiet = || {
        with_probe_timed(store, tag, || {
            std::thread::sleep(Duration::from_secs(secs));
            Ok(())
        })
    };
    let (_, mut samples, mut wall) = quiet()?;
    let r = gc()?;
    let (_, after, after_wall) = quiet()?;
    samples.extend(after);
    wall += after_wall;
    Ok((r, measure::summarise(latencies(samples), wall)))
}

fn gc_rows(b: &Built, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    // Untag a slice of the images: they, their platform manifests and
    // their referrers become garbage.
    let share = if quick { 20 } else { 50 };
    let mut untagged = 0;
    for (i, (repo, _)) in b.marks.images.iter().enumerate() {
        if i % share == share - 1 {
            b.store.untag(repo, &format!("v{i}"))?;
            untagged += 1;
        }
    }
    // Steady pace first: the sweep rides on every probe commit and finishes
    // while the probe writes.
    let policy = GcPolicy {
        delete_untagged: true,
        grace: Duration::ZERO,
        pace: SweepPace::Steady,
        ..GcPolicy::default()
    };
    let quiet_secs = if quick { 2 } else { 5 };
    let ((dry, rss), _, _) = with_probe(&b.store, 2, || {
        with_rss(|| {
            b.store.gc(&GcPolicy {
                dry_run: true,
                ..policy.clone()
            })
        })
    })?;
    let mut r = row("gc: mark (dry run)", Lat::default(), rss);
    r.p50_us = dry.mark_ms as f64 * 1e3;
    r.note = format!(
        "{} records would go: {untagged} untagged images with their referrers",
        dry.digests.len()
    );
    rows.push(r);
    let (((real, rss), during, wall), without) = around_gc(&b.store, 1, quiet_secs, || {
        with_probe(&b.store, 3, || with_rss(|| b.store.gc(&policy)))
    })?;
    let deleted = real.deleted_manifests + real.deleted_blobs;
    let mut r = row(
        "gc: sweep while a writer pushes (Steady pace)",
        Lat::default(),
        rss,
    );
    r.ops_per_s = deleted as f64 / (real.sweep_ms.max(1) as f64 / 1e3);
    r.p50_us = real.sweep_ms as f64 * 1e3;
    r.note = format!(
        "{deleted} deleted, mark {} ms, wall {:.1} s",
        real.mark_ms,
        wall.as_secs_f64()
    );
    rows.push(r);
    rows.push(p99_row(
        "gc: durable small puts during GC, Steady pace",
        during,
        &without,
        "ratio of p99s".into(),
    ));

    // The default Yield pace: another slice of garbage, a fresh baseline,
    // then the probe writes for a window while the GC runs (it sweeps
    // little while the writer is busy) and stops; the sweep then finishes.
    let mut more = 0;
    for (i, (repo, _)) in b.marks.images.iter().enumerate() {
        if i % share == share - 2 {
            b.store.untag(repo, &format!("v{i}"))?;
            more += 1;
        }
    }
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    // The writer runs through the mark and the first `window` of the sweep.
    let swept_since: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let marked = std::sync::Arc::clone(&swept_since);
    let yielding = GcPolicy {
        pace: SweepPace::Yield,
        after_mark: Some(std::sync::Arc::new(move || {
            if let Ok(mut t) = marked.lock() {
                *t = Some(Instant::now());
            }
        })),
        ..policy
    };
    let ((report, during, wall), without) = around_gc(&b.store, 4, quiet_secs, || {
        std::thread::scope(|s| {
            let gc = s.spawn(|| b.store.gc(&yielding));
            let (_, during, wall) = with_probe_timed(&b.store, 5, || {
                let window_over = || {
                    swept_since
                        .lock()
                        .map_or(true, |t| t.is_some_and(|t| t.elapsed() >= window))
                };
                while !gc.is_finished() && !window_over() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })?;
            let report = gc
                .join()
                .map_err(|_| Error::Poisoned("gc thread panicked".into()))??;
            Ok::<_, Error>((report, during, wall))
        })
    })?;
    // Where the tail comes from: the puts that ended before the sweep
    // began (the mark) and those after.
    let sweep_began = swept_since.lock().ok().and_then(|t| *t);
    let (in_mark, in_sweep): (Vec<_>, Vec<_>) = during
        .iter()
        .partition(|(end, _)| sweep_began.is_none_or(|t| *end < t));
    let p99_of = |part: Vec<&(Instant, Duration)>| {
        let n = part.len();
        let lat = measure::summarise(part.into_iter().map(|(_, d)| *d).collect(), wall);
        format!("{} over {n} puts", dur(lat.p99_us))
    };
    let split = format!(
        "p99 {} during the mark, {} during the sweep",
        p99_of(in_mark),
        p99_of(in_sweep)
    );
    let during = measure::summarise(latencies(during), wall);
    rows.push(p99_row(
        "gc: durable small puts during GC, Yield pace (p99 floor ≤ 2×)",
        during,
        &without,
        format!(
            "ratio of p99s; {more} more images untagged, {} deleted, the writer ran through the mark and the first {:.1} s of the sweep; {split}",
            report.deleted_manifests + report.deleted_blobs,
            (wall.as_secs_f64() - report.mark_ms as f64 / 1e3).max(0.0)
        ),
    ));
    Ok(())
}

/// A latency row whose cost is its p99 against `without`'s.
fn p99_row(name: &str, during: Lat, without: &Lat, note: String) -> Row {
    let mut r = row(name, during, 0.0);
    r.baseline = Some(format!(
        "the same puts without GC, just before and just after it (p50 {}, p99 {})",
        dur(without.p50_us),
        dur(without.p99_us)
    ));
    r.cost_ratio = Some(during.p99_us / without.p99_us.max(1e-3));
    r.note = note;
    r
}

fn ingest_rows(
    b: &Built,
    raw_db: &redb::Database,
    raw_rate: f64,
    quick: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let mut r = row(
        "ingest: batch, 10k manifests per transaction",
        Lat {
            ops_per_s: b.ingest_rate,
            ..Lat::default()
        },
        b.ingest_rss,
    );
    r = vs_rate(
        r,
        "raw redb insert of the same keys and bytes",
        raw_rate,
        "manifests",
    );
    rows.push(r);
    // Concurrent durable single pushes: referrers onto existing images.
    let threads = 4;
    let n = if quick { 800 } else { 4_000 };
    let images = &b.marks.images;
    let seq = AtomicU64::new(0);
    let (l, rss) = with_rss(|| {
        time_ops(n, threads, |i| {
            // Their own repository: the referrers listings measured later
            // stay exactly as generated.
            let (_, subject) = &images[i % images.len()];
            let repo = "bench/pushes";
            let j = seq.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.push","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{subject}","size":1}},"annotations":{{"n":"{j}"}}}}"#
            );
            b.store
                .put_manifest(repo, body.as_bytes(), &ManifestOptions::default())?;
            Ok(())
        })
    })?;
    // The same number of durable commits of one random-key insert each,
    // into the raw table holding every generated manifest (same size).
    let raw = time_ops(n / 4, 1, |i| {
        let txn = raw_db.begin_write()?;
        {
            let mut t = txn.open_table(RAW)?;
            let d = crate::Hasher::digest_of(
                crate::Algorithm::Sha256,
                &(i as u64 + (1 << 40)).to_le_bytes(),
            );
            t.insert(&d.to_key(), [0u8; 600].as_slice())?;
        }
        txn.commit()?;
        Ok(())
    })?;
    let mut r = vs_rate(
        row(
            format!("ingest: durable single manifest pushes, {threads} threads"),
            l,
            rss,
        ),
        "raw redb, one durable random insert per commit into the same-size table, 1 thread",
        raw.ops_per_s,
        "ops",
    );
    r.note = "group commit".into();
    rows.push(r);
    // Large blobs: MB/s against raw sha256 of the same bytes.
    let mib = if quick { 64 } else { 256 };
    let data = crate::sample::deterministic_bytes(b"large blob", mib << 20);
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    h.update(&data);
    std::hint::black_box(h.finalize());
    let sha_rate = mib as f64 / t.elapsed().as_secs_f64();
    let ((), rss) = with_rss(|| {
        let t = Instant::now();
        b.store.put(data.as_slice(), &PutOptions::default())?;
        let rate = mib as f64 / t.elapsed().as_secs_f64();
        let mut r = vs_rate(
            row(
                format!("ingest: one {mib} MiB blob, durable (MiB/s)"),
                Lat {
                    ops_per_s: rate,
                    ..Lat::default()
                },
                0.0,
            ),
            "raw sha256 of the same bytes",
            sha_rate,
            "MiB",
        );
        r.unit = "MiB".into();
        rows.push(r);
        Ok(())
    })?;
    if let Some(r) = rows.last_mut() {
        r.peak_rss_mb = rss;
    }
    Ok(())
}

/// Open time of the (closed) store at `dir` against a raw redb open.
fn open_rows(
    dir: &Path,
    manifests: usize,
    raw: &Path,
    rows: &mut Vec<Row>,
    #[cfg(feature = "peers")] peers: &Peers,
) -> Result<()> {
    let mut samples = Vec::new();
    let mut rss = 0.0;
    for _ in 0..5 {
        reset_peak_rss();
        let t = Instant::now();
        let s = Store::open(dir)?;
        samples.push(t.elapsed());
        rss = peak_rss_mb();
        drop(s);
    }
    let ours = measure::summarise(samples, Duration::from_secs(1));
    let mut raw_samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let db = redb::Database::open(raw).map_err(redb::Error::from)?;
        raw_samples.push(t.elapsed());
        drop(db);
    }
    let base = measure::summarise(raw_samples, Duration::from_secs(1));
    let mut r = vs_latency(
        row(
            format!("open: a store of {manifests} manifests (floor < 100 ms)"),
            Lat {
                ops_per_s: 0.0,
                ..ours
            },
            rss,
        ),
        "raw redb open",
        &base,
    );
    r.note = "no graph loaded at open".into();
    rows.push(r);
    #[cfg(feature = "peers")]
    {
        let us = peers.oras_open.as_secs_f64() * 1e6;
        let mut r = row(
            "peer oras-style: open (re-parse every manifest)",
            Lat {
                p50_us: us,
                p99_us: us,
                ..Lat::default()
            },
            0.0,
        );
        r.baseline = Some(format!("ocidb open ({})", dur(ours.p50_us)));
        r.cost_ratio = Some(us / ours.p50_us.max(1e-3));
        rows.push(r);
    }
    Ok(())
}

/// Stat lookups of `keys` in a fresh `ocidb bench probe-lookups` process
/// on the (closed) store at `dir`, so that its peak RSS is the lookups'
/// alone. Returns (p50 µs, peak RSS in MiB).
fn probe_in_child(exe: &Path, dir: &Path, keys: &[Digest]) -> Result<(f64, f64)> {
    let keys_file = dir.with_extension("probe-keys");
    let text: String = keys.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(&keys_file, text).map_err(|e| Error::io("writing probe keys", e))?;
    let out = std::process::Command::new(exe)
        .arg("--store")
        .arg(dir)
        .args(["bench", "probe-lookups", "--keys"])
        .arg(&keys_file)
        .output()
        .map_err(|e| Error::io(format!("running {}", exe.display()), e))?;
    let _ = std::fs::remove_file(&keys_file);
    if !out.status.success() {
        return Err(Error::InvalidArgument {
            value: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            expected: "the lookup probe to succeed".into(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::InvalidArgument {
            value: String::from_utf8_lossy(&out.stdout).into_owned(),
            expected: format!("the probe's JSON ({e})"),
        })?;
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok((num("p50_us"), num("peak_rss_mb")))
}

/// What `ocidb bench probe-lookups` does: open the store, stat every key,
/// report the p50 and this process's peak RSS.
pub fn probe_lookups(store_dir: &Path, keys_file: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(keys_file)
        .map_err(|e| Error::io(format!("reading {}", keys_file.display()), e))?;
    let keys = text
        .lines()
        .map(Digest::parse)
        .collect::<Result<Vec<_>>>()?;
    let store = Store::open(store_dir)?;
    let l = time_ops(keys.len(), 1, |i| {
        store.stat(&keys[i])?;
        Ok(())
    })?;
    Ok(serde_json::json!({
        "p50_us": l.p50_us,
        "p99_us": l.p99_us,
        "lookups": l.ops,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Stat and referrers p50 at one store size (and the peers' referrers).
fn scale_point(
    b: &Built,
    mem: &MemIndex,
    #[cfg(feature = "peers")] peers: Option<&Peers>,
) -> Result<(ScalePoint, Vec<Digest>)> {
    let n = 5_000;
    let keys = sample(&b.marks.manifests, n, 5);
    // In this process; replaced by a fresh process's figures (see
    // `probe_in_child`) once the store is closed.
    let (l, rss) = with_rss(|| {
        time_ops(n, 1, |i| {
            b.store.stat(&keys[i])?;
            Ok(())
        })
    })?;
    let stat = l.p50_us;
    let mut p = BTreeMap::new();
    p.insert("ocidb stat".to_string(), stat);
    if let Some((repo, d)) = &b.marks.one_referrer {
        let l = time_ops(2_000, 1, |_| {
            b.store.referrers(repo, d, &ReferrersQuery::default())?;
            Ok(())
        })?;
        p.insert("ocidb referrers k=1".to_string(), l.p50_us);
        let m = time_ops(2_000, 1, |_| {
            std::hint::black_box(mem.referrers.get(d).cloned());
            Ok(())
        })?;
        p.insert("HashMap referrers k=1".to_string(), m.p50_us);
        #[cfg(feature = "peers")]
        if let Some(peers) = peers {
            let l = time_ops(3, 1, |_| {
                peers.sqlite.referrers(repo, d, None)?;
                Ok(())
            })?;
            p.insert("sqlite referrers k=1".to_string(), l.p50_us);
            let l = time_ops(3, 1, |_| {
                peers.ocidir.referrers(d, None)?;
                Ok(())
            })?;
            p.insert("ocidir scan referrers k=1".to_string(), l.p50_us);
        }
    }
    Ok((
        ScalePoint {
            manifests: b.marks.manifests.len() as u64,
            p50_us: p,
            lookup_rss_mb: rss,
        },
        keys,
    ))
}

/// Replaces a point's in-process stat figures with a fresh process's.
fn reprobe(p: &mut ScalePoint, exe: Option<&Path>, dir: &Path, keys: &[Digest]) -> Result<()> {
    if let Some(exe) = exe {
        let (p50, rss) = probe_in_child(exe, dir, keys)?;
        p.p50_us.insert("ocidb stat".to_string(), p50);
        p.lookup_rss_mb = rss;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// Runs every scenario and returns the report. `log` hears progress.
pub fn run(opts: &RunOptions, log: &mut dyn FnMut(&str)) -> Result<Report> {
    let started = Instant::now();
    let work = opts.dir.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
    let result = run_in(opts, &work, log);
    let _ = std::fs::remove_dir_all(&work);
    let (rows, scaling, manifests) = result?;
    Ok(Report {
        quick: opts.quick,
        seed: opts.seed,
        manifests,
        peers: cfg!(feature = "peers"),
        machine: machine(),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        scaling,
    })
}

type RunOut = (Vec<Row>, Vec<ScalePoint>, u64);

fn run_in(opts: &RunOptions, work: &Path, log: &mut dyn FnMut(&str)) -> Result<RunOut> {
    let mut rows = Vec::new();
    let mut scaling = Vec::new();
    let main = opts.main_size();
    let mut sizes = opts.sizes();
    // Smaller sizes of the curve first, each on a store of its own.
    let mut main_point = None;
    for &size in sizes.iter().filter(|&&s| s != main) {
        let spec = GenSpec::sized(size, opts.seed);
        log(&format!("scaling point: {size} manifests"));
        let dir = work.join(format!("scale-{size}"));
        let b = build_store(&dir, &spec, log)?;
        let raw_dir = work.join(format!("scale-{size}-raw"));
        std::fs::create_dir_all(&raw_dir).map_err(|e| Error::io("creating a baseline dir", e))?;
        let (raw, _, mem) = baselines(&raw_dir, &spec)?;
        drop(raw);
        #[cfg(feature = "peers")]
        let peers = {
            let pdir = work.join(format!("scale-{size}-peers"));
            std::fs::create_dir_all(&pdir).map_err(|e| Error::io("creating the peers dir", e))?;
            Peers::build(&pdir, &spec, log)?
        };
        let (mut p, keys) = scale_point(
            &b,
            &mem,
            #[cfg(feature = "peers")]
            Some(&peers),
        )?;
        drop(b);
        reprobe(&mut p, opts.probe_exe.as_deref(), &dir, &keys)?;
        scaling.push(p);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&raw_dir);
    }
    sizes.retain(|&s| s == main);
    let spec = GenSpec::sized(main, opts.seed);
    log(&format!("main store: {main} manifests"));
    let b = build_store(&work.join("main"), &spec, log)?;
    let base_dir = work.join("baseline");
    std::fs::create_dir_all(&base_dir).map_err(|e| Error::io("creating the baseline dir", e))?;
    let (raw, raw_rate, mem) = baselines(&base_dir, &spec)?;
    #[cfg(feature = "peers")]
    let peers = {
        let pdir = work.join("peers");
        std::fs::create_dir_all(&pdir).map_err(|e| Error::io("creating the peers dir", e))?;
        Peers::build(&pdir, &spec, log)?
    };
    log("ingest scenarios");
    ingest_rows(&b, &raw, raw_rate, opts.quick, &mut rows)?;
    #[cfg(feature = "peers")]
    {
        let mut r = row(
            "peer sqlite: batch ingest, 10k rows per transaction",
            Lat {
                ops_per_s: peers.sqlite_rate,
                ..Lat::default()
            },
            0.0,
        );
        r = vs_rate(r, "ocidb batch ingest", b.ingest_rate, "manifests");
        rows.push(r);
    }
    log("lookups");
    lookups(&b, &raw, &mem, opts.quick, &mut rows)?;
    log("referrers");
    referrers_rows(
        &b,
        &mem,
        opts.quick,
        &mut rows,
        #[cfg(feature = "peers")]
        &peers,
    )?;
    log("graph");
    graph_rows(&b, &mem, opts.quick, &mut rows)?;
    if !sizes.is_empty() {
        main_point = Some(scale_point(
            &b,
            &mem,
            #[cfg(feature = "peers")]
            Some(&peers),
        )?);
    }
    log("open");
    drop(raw);
    // With the store closed: its open time, and lookup memory in a fresh
    // process (before gc deletes some of the sampled digests).
    let (b, ()) = b.while_closed(|dir, marks| {
        open_rows(
            dir,
            marks.manifests.len(),
            &base_dir.join("raw.redb"),
            &mut rows,
            #[cfg(feature = "peers")]
            &peers,
        )?;
        if let Some((mut p, keys)) = main_point {
            reprobe(&mut p, opts.probe_exe.as_deref(), dir, &keys)?;
            scaling.push(p);
        }
        Ok(())
    })?;
    log("gc");
    gc_rows(&b, opts.quick, &mut rows)?;
    let manifests = b.marks.manifests.len() as u64;
    scaling.sort_by_key(|p| p.manifests);
    Ok((rows, scaling, manifests))
}
