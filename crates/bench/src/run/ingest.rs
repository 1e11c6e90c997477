//! Ingest rates and store open, beside raw redb and a fresh process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::measure::{self, peak_rss_mb, reset_peak_rss, time_ops, Lat};
#[cfg(feature = "peers")]
use crate::report::dur;
use crate::report::Row;
use ocidb::{Digest, Error, ManifestOptions, PutOptions, Result, Store};

use super::fixture::*;
#[cfg(feature = "peers")]
use super::graph::Peers;

pub(super) fn ingest_rows(
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
    // The pushes' empty config is in their repository, as a client pushes
    // it before its first manifest there.
    b.store
        .put_bytes(b"{}", &PutOptions::default().repository("bench/pushes"))?;
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
            let d = ocidb::Hasher::digest_of(
                ocidb::Algorithm::Sha256,
                &(i as u64 + (1 << 40)).to_le_bytes(),
            );
            t.insert(d.to_key().as_slice(), [0u8; 600].as_slice())?;
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
    let data = ocidb_testkit::deterministic_bytes(b"large blob", mib << 20);
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
pub(super) fn open_rows(
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
pub(super) fn probe_in_child(exe: &Path, dir: &Path, keys: &[Digest]) -> Result<(f64, f64)> {
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
        .collect::<std::result::Result<Vec<_>, _>>()?;
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
