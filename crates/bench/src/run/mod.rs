//! `ocidb bench run`: every scenario, each beside its baseline measured in
//! the same run, on content from the generator.

#[cfg(feature = "peers")]
mod fair_sqlite;
mod fixture;
mod gc;
mod graph;
mod ingest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fixture::*;
use gc::*;
use graph::*;
pub use ingest::probe_lookups;
use ingest::*;

use crate::measure::time_ops;
use crate::report::{Report, Row, ScalePoint, SizeRow};
use crate::synth::GenSpec;
use ocidb::{Digest, Error, ReferrersQuery, Result};

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
    /// The page cache of every ocidb store and of both SQLite peers, the
    /// same on each side (the CLI takes it from `OCIDB_CACHE_MIB`). The
    /// raw-redb baseline keeps redb's own default.
    pub cache_bytes: usize,
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
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
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
    let (rows, scaling, manifests, sizes) = result?;
    Ok(Report {
        quick: opts.quick,
        seed: opts.seed,
        manifests,
        peers: cfg!(feature = "peers"),
        cache_mib: (opts.cache_bytes >> 20) as u64,
        machine: machine(),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        scaling,
        sizes,
    })
}

type RunOut = (Vec<Row>, Vec<ScalePoint>, u64, Vec<SizeRow>);

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
        let b = build_store(&dir, &spec, opts.cache_bytes, log)?;
        let raw_dir = work.join(format!("scale-{size}-raw"));
        std::fs::create_dir_all(&raw_dir).map_err(|e| Error::io("creating a baseline dir", e))?;
        let (raw, _, mem) = baselines(&raw_dir, &spec)?;
        drop(raw);
        #[cfg(feature = "peers")]
        let peers = {
            let pdir = work.join(format!("scale-{size}-peers"));
            std::fs::create_dir_all(&pdir).map_err(|e| Error::io("creating the peers dir", e))?;
            Peers::build(&pdir, &spec, opts.cache_bytes, log)?
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
    let b = build_store(&work.join("main"), &spec, opts.cache_bytes, log)?;
    let base_dir = work.join("baseline");
    std::fs::create_dir_all(&base_dir).map_err(|e| Error::io("creating the baseline dir", e))?;
    let (raw, raw_rate, mem) = baselines(&base_dir, &spec)?;
    #[cfg(feature = "peers")]
    let peers = {
        let pdir = work.join("peers");
        std::fs::create_dir_all(&pdir).map_err(|e| Error::io("creating the peers dir", e))?;
        Peers::build(&pdir, &spec, opts.cache_bytes, log)?
    };
    log("ingest scenarios");
    ingest_rows(&b, &raw, raw_rate, opts.quick, &mut rows)?;
    #[cfg(feature = "peers")]
    rows.extend(fair_sqlite::ingest_rows(&b, &peers));
    log("lookups");
    lookups(&b, &raw, &mem, opts.quick, &mut rows)?;
    #[cfg(feature = "peers")]
    fair_sqlite::lookup_rows(&b, &mem, &peers, opts.quick, &mut rows)?;
    log("referrers");
    referrers_rows(
        &b,
        &raw,
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
    #[allow(unused_mut)]
    let mut sizes = Vec::new();
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
        // Last with the fresh file: it compacts the store in place.
        #[cfg(feature = "peers")]
        {
            sizes =
                fair_sqlite::size_rows(dir, marks.manifests.len(), peers.manifest_bytes, &peers)?;
        }
        Ok(())
    })?;
    log("gc");
    gc_rows(&b, opts.quick, &mut rows)?;
    let manifests = b.marks.manifests.len() as u64;
    scaling.sort_by_key(|p| p.manifests);
    Ok((rows, scaling, manifests, sizes))
}
