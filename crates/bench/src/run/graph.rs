//! Lookups, referrers and graph queries, beside in-memory and peer baselines.

#[cfg(feature = "peers")]
use std::path::Path;
#[cfg(feature = "peers")]
use std::time::{Duration, Instant};

use redb::ReadableDatabase as _;

#[cfg(feature = "peers")]
use crate::measure::Lat;
use crate::measure::{self, time_ops};
use crate::report::Row;
use crate::synth;
#[cfg(feature = "peers")]
use crate::synth::{GenSpec, Generator};
use ocidb::{Digest, Error, Reference, ReferrersQuery, Result};

use super::fixture::*;

/// Lookups of `keys` through ocidb, raw redb and the HashMap, 1 and 2 threads.
pub(super) fn lookups(
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
            t.get(cold[i].to_key().as_slice())?
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

/// An error unless `who` found as many referrers of `subject` as the
/// generator made.
fn expect_referrers(who: &str, found: usize, subject: &Digest, expected: usize) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "{who} found {found} referrers of {subject}, the generator made {expected}"
        )))
    }
}

/// The referrers queries of one subject, through ocidb and the HashMap.
pub(super) fn referrers_rows(
    b: &Built,
    raw: &redb::Database,
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
            Some(synth::SBOM),
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
            Some(synth::SBOM),
            short / 10,
        ));
    }
    for (what, repo, subject, filter, reps) in cases {
        let q = ReferrersQuery::default().artifact_type(filter);
        let expected = mem.referrers.get(&subject).map_or(0, |v| {
            v.iter()
                .filter(|(_, at)| filter.is_none() || at.as_deref() == filter)
                .count()
        });
        let ours = |_| {
            let page = b.store.referrers(&repo, &subject, &q)?;
            expect_referrers("ocidb", page.index.manifests.len(), &subject, expected)
        };
        let map = |_| {
            let v: Vec<Digest> = mem.referrers.get(&subject).map_or(Vec::new(), |v| {
                v.iter()
                    .filter(|(_, at)| filter.is_none() || at.as_deref() == filter)
                    .map(|(d, _)| *d)
                    .collect()
            });
            std::hint::black_box(v);
            Ok(())
        };
        // The floor for ocidb's layout: the same keys and value bytes in a
        // table of their own, one range scan, each value decoded.
        let scan = |_| {
            let got = raw_referrers_scan(raw, mem, &repo, &subject)?;
            expect_referrers("the raw scan", got.len(), &subject, expected)
        };
        #[cfg(feature = "peers")]
        let fair = |_| peers.fair_referrers(&repo, &subject, filter, expected);
        // ocidb and the baselines its goals are ratios against run
        // interleaved: each sees the same moments of this shared machine.
        let mut ops: Vec<measure::Op<'_>> = vec![&ours, &map];
        if filter.is_none() {
            ops.push(&scan);
        }
        #[cfg(feature = "peers")]
        ops.push(&fair);
        let (lats, rss) = with_rss(|| measure::time_interleaved(reps, &ops))?;
        let (l, map) = (lats[0], lats[1]);
        rows.push(vs_latency(
            row(format!("referrers: {what}"), l, rss),
            "HashMap",
            &map,
        ));
        if filter.is_none() {
            rows.push(vs_latency(
                row(format!("referrers: {what}, against the raw scan"), l, 0.0),
                "raw redb range scan of the same keys and bytes, decoded",
                &lats[2],
            ));
        }
        #[cfg(feature = "peers")]
        if let Some(fair) = lats.last() {
            rows.push(vs_latency(
                row(
                    format!("peer sqlite same index: referrers {what}"),
                    *fair,
                    rss,
                ),
                "ocidb",
                &l,
            ));
        }
        #[cfg(feature = "peers")]
        peers.referrers_rows(&what, &repo, &subject, filter, expected, &l, quick, rows)?;
    }
    Ok(())
}

#[cfg(feature = "peers")]
pub(super) struct Peers {
    /// SQLite with ocidb's index: the fair peer.
    pub(super) index: crate::peers::SqliteIndex,
    pub(super) index_rate: f64,
    /// The generated manifests' own bytes.
    pub(super) manifest_bytes: u64,
    /// SQLite with JSON rows and `json_extract` (trow's design).
    pub(super) sqlite: crate::peers::SqliteJson,
    pub(super) ocidir: crate::peers::Ocidir,
    pub(super) oras: crate::peers::OrasGraph,
    pub(super) oras_open: Duration,
    pub(super) sqlite_rate: f64,
}

pub(super) fn graph_rows(
    b: &Built,
    mem: &MemIndex,
    quick: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
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

#[cfg(feature = "peers")]
impl Peers {
    pub(super) fn build(
        dir: &Path,
        spec: &GenSpec,
        cache_bytes: usize,
        log: &mut dyn FnMut(&str),
    ) -> Result<Peers> {
        let layout = dir.join("layout");
        let _ = std::fs::remove_dir_all(&layout);
        synth::generate_layout(&layout, spec)?;
        // The cache of the store they are measured against (build_store).
        let mut sqlite = crate::peers::SqliteJson::create(&dir.join("peer.sqlite"), cache_bytes)?;
        let mut index =
            crate::peers::SqliteIndex::create(&dir.join("peer-index.sqlite"), cache_bytes)?;
        let now_ms = crate::peers::now_ms();
        let mut g = Generator::new(spec.clone());
        let (mut t, mut t_index) = (Duration::ZERO, Duration::ZERO);
        let (mut n, mut manifest_bytes) = (0u64, 0u64);
        while let Some(items) = g.next_batch(10_000) {
            let t0 = Instant::now();
            sqlite.insert(&items)?;
            t += t0.elapsed();
            let t0 = Instant::now();
            index.insert(&items, now_ms)?;
            t_index += t0.elapsed();
            n += items.len() as u64;
            manifest_bytes += items.iter().map(|m| m.body.len() as u64).sum::<u64>();
        }
        let t0 = Instant::now();
        let oras = crate::peers::OrasGraph::open(&layout)?;
        let oras_open = t0.elapsed();
        log(&format!(
            "peers ready: sqlite {n} rows, layout of {} manifests",
            oras.manifests
        ));
        Ok(Peers {
            ocidir: crate::peers::Ocidir::open(&layout)?,
            index,
            index_rate: n as f64 / t_index.as_secs_f64(),
            manifest_bytes,
            sqlite,
            oras,
            oras_open,
            sqlite_rate: n as f64 / t.as_secs_f64(),
        })
    }

    /// One referrers query to the fair peer (SQLite, same index), checked
    /// against the generator's count.
    pub(super) fn fair_referrers(
        &self,
        repo: &str,
        subject: &Digest,
        filter: Option<&str>,
        expected: usize,
    ) -> Result<()> {
        let n = self.index.referrers(repo, subject, filter)?.len();
        expect_referrers("sqlite same index", n, subject, expected)
    }

    /// The other peers' referrers rows (the fair peer is timed beside
    /// ocidb, in `referrers_rows`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn referrers_rows(
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
        let check = |n: usize, who: &str| expect_referrers(who, n, subject, expected);
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
