//! Rows against the SQLite peers, the fair one (SQLite holding ocidb's
//! index) above all: batch ingest, stat, get and predecessors on the same
//! keys, and the size on disk of every contender. The referrers rows sit
//! with the other peers' in `graph.rs`.

use std::path::Path;

use super::fixture::{row, sample, vs_latency, vs_rate, with_rss, Built, MemIndex};
use super::graph::Peers;
use crate::measure::{time_ops, Lat};
use crate::report::{Row, SizeRow};
use ocidb::{Error, Result};

/// Both SQLite peers' batch ingest of the same batches, each against
/// ocidb's.
pub(super) fn ingest_rows(b: &Built, peers: &Peers) -> [Row; 2] {
    let vs_ocidb = |scenario: &str, rate: f64| {
        let r = row(
            scenario,
            Lat {
                ops_per_s: rate,
                ..Lat::default()
            },
            0.0,
        );
        vs_rate(r, "ocidb batch ingest", b.ingest_rate, "manifests")
    };
    [
        vs_ocidb(
            "peer sqlite: batch ingest, 10k rows per transaction",
            peers.sqlite_rate,
        ),
        vs_ocidb(
            "peer sqlite same index: batch ingest, 10k manifests per transaction (parse included)",
            peers.index_rate,
        ),
    ]
}

/// Stat, get and predecessors through ocidb and the fair peer, on the
/// same keys in the same run; each peer row's baseline is ocidb's figure.
pub(super) fn lookup_rows(
    b: &Built,
    mem: &MemIndex,
    peers: &Peers,
    quick: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let n = if quick { 20_000 } else { 100_000 };
    let keys = sample(&b.marks.manifests, n, 13);
    let ours = time_ops(n, 1, |i| {
        b.store.stat(&keys[i])?;
        Ok(())
    })?;
    let (l, rss) = with_rss(|| {
        time_ops(n, 1, |i| {
            peers.index.stat(&keys[i])?;
            Ok(())
        })
    })?;
    rows.push(vs_latency(
        row(
            "peer sqlite same index: stat, cold digests, 1 thread",
            l,
            rss,
        ),
        "ocidb stat",
        &ours,
    ));
    let ours = time_ops(n, 1, |i| {
        b.store.read(&keys[i])?;
        Ok(())
    })?;
    let (l, rss) = with_rss(|| {
        time_ops(n, 1, |i| {
            peers
                .index
                .get(&keys[i])?
                .ok_or_else(|| Error::Corrupt(format!("sqlite lacks {}", keys[i])))?;
            Ok(())
        })
    })?;
    rows.push(vs_latency(
        row(
            "peer sqlite same index: get (all bytes), cold, 1 thread",
            l,
            rss,
        ),
        "ocidb get",
        &ours,
    ));
    if let Some(layer) = b.marks.popular_layer {
        let parents = mem.parents.get(&layer).map_or(0, Vec::len);
        let reps = if quick { 300 } else { 500 };
        let ours = time_ops(reps, 1, |_| {
            b.store.predecessors(&layer)?;
            Ok(())
        })?;
        let (l, rss) = with_rss(|| {
            time_ops(reps, 1, |_| {
                let got = peers.index.predecessors(&layer)?;
                if got != parents {
                    return Err(Error::Corrupt(format!(
                        "sqlite: {got} predecessors of {layer}, the generator made {parents}"
                    )));
                }
                Ok(())
            })
        })?;
        let mut r = vs_latency(
            row(
                "peer sqlite same index: predecessors of the most popular base layer",
                l,
                rss,
            ),
            "ocidb predecessors",
            &ours,
        );
        r.note = format!("{parents} parents");
        rows.push(r);
    }
    Ok(())
}

/// The size on disk of ocidb fresh and compacted (the store at `dir`,
/// closed), and of both SQLite peers; each against the fair peer, and per
/// manifest. Compaction rewrites the store in place, so this runs last of
/// the scenarios that read the fresh file.
pub(super) fn size_rows(
    dir: &Path,
    manifests: usize,
    manifest_bytes: u64,
    peers: &Peers,
) -> Result<Vec<SizeRow>> {
    let db = dir.join(ocidb::internals::DB_FILE);
    let len = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("reading the size of {}", p.display()), e))
    };
    let fresh = len(&db)?;
    // The file's length counts the doubling's unwritten tail, which takes
    // no disk (a hole); the blocks allocated are what it costs on disk.
    let allocated = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&db)
            .map(|m| m.blocks() * 512)
            .map_err(|e| Error::io(format!("reading the blocks of {}", db.display()), e))?
    };
    // redb grows a file by doubling it (up to 4 GiB, then 4 GiB at a
    // time), so the fresh file's length is quantised; the pages in use are
    // what the data takes before any compaction.
    let in_use = {
        let raw = redb::Database::open(&db)?;
        let stats = raw.begin_write()?.stats()?;
        stats.allocated_pages() * stats.page_size() as u64
    };
    {
        let mut s = ocidb::Store::open(dir)?;
        s.compact()?;
    }
    let compacted = len(&db)?;
    let fair = peers.index.disk_bytes()?;
    let json = peers.sqlite.disk_bytes()?;
    let per = |bytes: u64| bytes as f64 / manifests.max(1) as f64;
    let mk = |what: &str, bytes: u64| SizeRow {
        what: what.to_string(),
        bytes,
        bytes_per_manifest: per(bytes),
        vs_fair_sqlite: bytes as f64 / fair.max(1) as f64,
        vs_manifest_bytes: bytes as f64 / manifest_bytes.max(1) as f64,
    };
    Ok(vec![
        mk("ocidb, fresh (no compact): file length", fresh),
        mk("ocidb, fresh: blocks allocated on disk (du)", allocated),
        mk(
            "ocidb, fresh: pages in use (redb's allocated pages)",
            in_use,
        ),
        mk("ocidb after `compact`", compacted),
        mk("SQLite, same index (fair peer)", fair),
        mk("SQLite, JSON rows (trow's design)", json),
    ])
}
