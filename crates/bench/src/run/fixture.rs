//! The store and baselines every scenario runs against, and row helpers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::TableDefinition;

use crate::measure::{peak_rss_mb, reset_peak_rss, Lat};
use crate::report::{dur, Row};
use crate::synth::{self, GenSpec, Generator, Landmarks};
use ocidb::internals as keys;
use ocidb::oci::manifest::{classify, Descriptor, ParserRegistry};
use ocidb::{Digest, Error, Result, Store, StoreOptions};

pub(super) const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw");

/// The referrers baseline: ocidb's referrer keys and values (repository
/// id, subject, artifact type id, referrer → the descriptor as ocidb
/// encodes it), in a table of their own.
pub(super) const RAW_REFERRERS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("raw_referrers");

/// The lookup baseline: one table of the same keys whose values are the
/// whole manifests (so its leaves are larger than ocidb's record table's).
pub(super) const RAW_GET: &str = "raw redb get, same keys, manifest bytes as values";

/// Indexes built from the generated content: the in-memory upper bound.
#[derive(Default)]
pub(super) struct MemIndex {
    pub(super) sizes: HashMap<Digest, u64>,
    pub(super) referrers: HashMap<Digest, Vec<(Digest, Option<String>)>>,
    pub(super) parents: HashMap<Digest, Vec<Digest>>,
    /// Repository ids of the raw referrers table, in order of appearance.
    pub(super) repo_ids: HashMap<String, u64>,
    /// Artifact type ids of the raw referrers table.
    pub(super) type_ids: HashMap<String, u32>,
}

#[derive(serde::Deserialize)]
pub(super) struct Shape {
    #[serde(default)]
    pub(super) manifests: Vec<DescShape>,
    #[serde(default)]
    pub(super) layers: Vec<DescShape>,
    pub(super) config: Option<DescShape>,
    pub(super) subject: Option<DescShape>,
    #[serde(rename = "artifactType")]
    pub(super) artifact_type: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct DescShape {
    pub(super) digest: String,
}

/// A store of one size with what the scenarios need to query it.
pub(super) struct Built {
    pub(super) store: Store,
    pub(super) dir: PathBuf,
    pub(super) marks: Landmarks,
    pub(super) ingest_rate: f64,
    pub(super) ingest_rss: f64,
}

pub(super) fn build_store(
    dir: &Path,
    spec: &GenSpec,
    cache_bytes: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Built> {
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open_with(dir, StoreOptions::default().cache_size(cache_bytes), true)?;
    reset_peak_rss();
    let total = spec.manifests;
    let mut last = Instant::now();
    let g = synth::generate_into_store(&store, spec, 10_000, |n| {
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("  … {n} of ~{total} manifests");
        }
    })?;
    let rss = peak_rss_mb();
    log(&format!(
        "built {} manifests in {:.1} s, {:.1} s in the store's batches ({:.0}/s)",
        g.manifests,
        g.wall_seconds,
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

pub(super) fn row(scenario: impl Into<String>, l: Lat, rss: f64) -> Row {
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

pub(super) fn vs_latency(mut r: Row, name: &str, base: &Lat) -> Row {
    r.baseline = Some(format!("{name} ({})", dur(base.p50_us)));
    r.cost_ratio = Some(r.p50_us / base.p50_us.max(1e-3));
    r
}

pub(super) fn vs_rate(mut r: Row, name: &str, base_rate: f64, unit: &str) -> Row {
    r.baseline = Some(format!("{name} ({base_rate:.0} {unit}/s)"));
    r.cost_ratio = Some(base_rate / r.ops_per_s.max(1e-9));
    r
}

/// Runs `op` and notes the peak RSS it reached.
pub(super) fn with_rss<T>(op: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    reset_peak_rss();
    let v = op()?;
    Ok((v, peak_rss_mb()))
}

/// Replays the generator for the baselines: a raw redb table of the same
/// keys and bytes (timed insert), and the in-memory index.
pub(super) fn baselines(dir: &Path, spec: &GenSpec) -> Result<(redb::Database, f64, MemIndex)> {
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
                tab.insert(m.digest.to_key().as_slice(), m.body.as_slice())?;
            }
        }
        txn.commit()?;
        insert_time += t.elapsed();
        n += items.len() as u64;
        for m in &items {
            mem.add(m)?;
        }
        raw_referrers(&db, &items, &mut mem.repo_ids, &mut mem.type_ids)?;
    }
    // The same closing durable commit as the store's ingest.
    let t = Instant::now();
    let txn = db.begin_write()?;
    txn.commit()?;
    insert_time += t.elapsed();
    Ok((db, n as f64 / insert_time.as_secs_f64(), mem))
}

/// Writes the batch's referrer entries into [`RAW_REFERRERS`] (untimed):
/// the same keys and value bytes that ocidb's ingest writes.
fn raw_referrers(
    db: &redb::Database,
    items: &[synth::GenManifest],
    repo_ids: &mut HashMap<String, u64>,
    types: &mut HashMap<String, u32>,
) -> Result<()> {
    let parsers = ParserRegistry::default();
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::None)?;
    {
        let mut tab = txn.open_table(RAW_REFERRERS)?;
        for m in items {
            let (mt, parsed) = classify(&parsers, Some(m.media_type), &m.body)?;
            let Some(p) = parsed else { continue };
            let Some(subject) = &p.subject else { continue };
            let next = repo_ids.len() as u64 + 1;
            let repo = *repo_ids.entry(m.repo.clone()).or_insert(next);
            let at = match p.artifact_type.as_deref() {
                None | Some("") => 0,
                Some(t) => {
                    let next = types.len() as u32 + 1;
                    *types.entry(t.to_string()).or_insert(next)
                }
            };
            let mut desc = Descriptor::new(mt.unwrap_or_default(), m.digest, m.body.len() as u64);
            desc.artifact_type = p.artifact_type.clone();
            desc.annotations = p.annotations.clone();
            tab.insert(
                keys::referrer(repo, &subject.digest, at, &m.digest).as_slice(),
                keys::encode_referrer(keys::SOURCE_SUBJECT, &desc)?.as_slice(),
            )?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Referrers of `subject` in `repo` from [`RAW_REFERRERS`]: one range
/// scan, each value decoded into a descriptor (what a listing returns).
pub(super) fn raw_referrers_scan(
    db: &redb::Database,
    mem: &MemIndex,
    repo: &str,
    subject: &Digest,
) -> Result<Vec<Descriptor>> {
    use redb::ReadableDatabase as _;
    let Some(&repo) = mem.repo_ids.get(repo) else {
        return Ok(Vec::new());
    };
    let (lo, hi) = keys::referrer_range(repo, subject, None);
    let txn = db.begin_read()?;
    let tab = txn.open_table(RAW_REFERRERS)?;
    let mut out = Vec::new();
    for e in tab.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
        let (k, v) = e?;
        out.push(keys::decode_referrer(k.value(), v.value())?.1);
    }
    Ok(out)
}

/// Picks `n` digests spread over `all`, deterministically.
pub(super) fn sample(all: &[Digest], n: usize, seed: u64) -> Vec<Digest> {
    let mut r = synth::Rng::new(seed);
    (0..n)
        .map(|_| all[r.below(all.len() as u64) as usize])
        .collect()
}

impl MemIndex {
    pub(super) fn add(&mut self, m: &synth::GenManifest) -> Result<()> {
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

impl Built {
    /// Closes the store, runs `f` on its directory (scenarios that need
    /// the store closed: open time, a probe in another process), reopens.
    pub(super) fn while_closed<T>(
        self,
        f: impl FnOnce(&Path, &Landmarks) -> Result<T>,
    ) -> Result<(Built, T)> {
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

/// Latencies, each with the moment its operation ended.
pub(super) type TimedSamples = Vec<(Instant, Duration)>;
