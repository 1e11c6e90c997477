//! `ocidb bench s3`: blob bytes on Garage (a real S3-compatible store,
//! single node on 127.0.0.1, fsync on) beside local files and beside raw
//! `object_store` calls to the same Garage, in one run.
//!
//! Rows: put and get of one large blob (random bytes: Garage compresses),
//! stat, and a GC that removes many objects. Each ocidb row carries its
//! baseline of the same run. These are loopback figures: no network
//! latency or bandwidth limit, one disk shared by client and server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, WriteMultipart};
use serde::Serialize;

use super::garage::{Garage, ACCESS_KEY, BUCKET, REGION, SECRET_KEY};
use ocidb::blob::{BlobLocation, S3Location, S3Options};
use ocidb::error::{Error, Result};
use ocidb::{GcPolicy, PutOptions, Store, StoreOptions};

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct S3BenchOptions {
    /// The `garage` executable.
    pub garage: PathBuf,
    /// Working directory (removed afterwards).
    pub dir: PathBuf,
    /// The large blob's size in MiB.
    pub blob_mib: u64,
    /// Repetitions of each large-blob row (the median is reported).
    pub reps: usize,
    /// Objects the GC row removes.
    pub gc_objects: usize,
}

impl S3BenchOptions {
    /// 256 MiB, 3 repetitions, 10,000 objects.
    pub fn new(garage: PathBuf, dir: PathBuf) -> S3BenchOptions {
        S3BenchOptions {
            garage,
            dir,
            blob_mib: 256,
            reps: 3,
            gc_objects: 10_000,
        }
    }
}

/// One row: what, ocidb's figure, the baseline's, and their ratio (ocidb
/// time over baseline time; below 1 is faster).
#[derive(Clone, Debug, Serialize)]
pub struct S3Row {
    /// What is measured.
    pub what: String,
    /// ocidb's figure, formatted.
    pub ocidb: String,
    /// The baseline and its figure, formatted.
    pub baseline: String,
    /// ocidb's time over the baseline's.
    pub ratio: f64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct S3Report {
    /// Garage's version line.
    pub garage: String,
    /// The blob size in MiB.
    pub blob_mib: u64,
    /// The rows.
    pub rows: Vec<S3Row>,
}

impl S3Report {
    /// The rows as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "Garage {} on 127.0.0.1 (single node, data_fsync and metadata_fsync on); {} MiB of random bytes\n\n| row | ocidb | baseline (same run) | ratio |\n|---|---|---|---|\n",
            self.garage, self.blob_mib
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2}× |\n",
                r.what, r.ocidb, r.baseline, r.ratio
            ));
        }
        out
    }
}

fn mib_s(bytes: u64, d: Duration) -> String {
    format!(
        "{:.0} MiB/s",
        bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn failed(what: impl std::fmt::Display) -> Error {
    Error::Internal(format!("bench s3: {what}"))
}

/// Random bytes (Garage compresses zeros away), distinct per seed.
fn random(len: usize, seed: u64) -> Vec<u8> {
    ocidb_testkit::deterministic_bytes(&seed.to_le_bytes(), len)
}

/// A blob of `base` made distinct by its first 8 bytes (so that ocidb's
/// dedup does not skip a repetition).
fn variant(base: &mut [u8], rep: usize) {
    if let Some(head) = base.get_mut(..8) {
        head.copy_from_slice(&(rep as u64 ^ 0xA5A5_5A5A).to_le_bytes());
    }
}

fn raw_store(endpoint: &str) -> Result<Arc<dyn ObjectStore>> {
    let s = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region(REGION)
        .with_endpoint(endpoint)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_virtual_hosted_style_request(false)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_timeout(Duration::from_secs(300)),
        )
        .build()
        .map_err(failed)?;
    Ok(Arc::new(s))
}

/// Raw `object_store` put: multipart in 8 MiB parts with `concurrency`
/// parts in flight (object_store's own `WriteMultipart`).
async fn raw_put(s: &dyn ObjectStore, key: &Key, data: &[u8], concurrency: usize) -> Result<()> {
    let up = s.put_multipart(key).await.map_err(failed)?;
    let mut w = WriteMultipart::new_with_chunk_size(up, 8 << 20);
    for chunk in data.chunks(8 << 20) {
        w.wait_for_capacity(concurrency).await.map_err(failed)?;
        w.write(chunk);
    }
    w.finish().await.map_err(failed)?;
    Ok(())
}

async fn raw_get(s: &dyn ObjectStore, key: &Key) -> Result<u64> {
    let mut stream = s.get(key).await.map_err(failed)?.into_stream();
    let mut n = 0u64;
    while let Some(c) = stream.next().await {
        n += c.map_err(failed)?.len() as u64;
    }
    Ok(n)
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed(), v))
}

/// Runs every row; `say` hears progress.
pub fn run(opts: &S3BenchOptions, say: &mut dyn FnMut(&str)) -> Result<S3Report> {
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::io(format!("creating {}", opts.dir.display()), e))?;
    let version = std::process::Command::new(&opts.garage)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let garage = Garage::single(&opts.garage, &opts.dir.join("garage"))?;
    let endpoint = garage.endpoint(0)?;
    let result = rows(opts, &garage, &endpoint, say);
    drop(garage);
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(S3Report {
        garage: version,
        blob_mib: opts.blob_mib,
        rows: result?,
    })
}

fn rows(
    opts: &S3BenchOptions,
    garage: &Garage,
    endpoint: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<S3Row>> {
    let len = (opts.blob_mib << 20) as usize;
    let mut data = random(len, 0x5EED);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime", e))?;
    let raw = raw_store(endpoint)?;
    let s3_opts = S3Options {
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        ..S3Options::default()
    };
    let loc: S3Location = garage.location(0, "bench")?;
    let on_s3 = Store::open_with(
        opts.dir.join("s3-store"),
        StoreOptions::default()
            .blobs(BlobLocation::S3(loc))
            .s3(s3_opts.clone()),
        true,
    )?;
    let local = Store::create(opts.dir.join("local-store"))?;
    let mut rows = Vec::new();

    // Put: raw object_store (best of 2 and 8 parts in flight), ocidb on
    // Garage, ocidb on local files; each the median of `reps`.
    let (mut raw2, mut raw8, mut ours, mut loc_t) = (vec![], vec![], vec![], vec![]);
    let mut raw_hashed = vec![];
    let mut digests = Vec::new();
    for rep in 0..opts.reps {
        say(&format!(
            "put {} MiB, repetition {}",
            opts.blob_mib,
            rep + 1
        ));
        variant(&mut data, rep);
        let key = Key::from(format!("raw/blob-{rep}"));
        raw2.push(time(|| rt.block_on(raw_put(&*raw, &key, &data, 2)))?.0);
        raw8.push(time(|| rt.block_on(raw_put(&*raw, &key, &data, 8)))?.0);
        // The same put while another thread hashes the bytes: the floor of
        // any store that verifies what it is given (2 cores here, shared
        // with Garage).
        raw_hashed.push(
            time(|| {
                std::thread::scope(|sc| {
                    let h = sc.spawn(|| ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &data));
                    let r = rt.block_on(raw_put(&*raw, &key, &data, 2));
                    let _ = h.join();
                    r
                })
            })?
            .0,
        );
        let (t, p) = time(|| on_s3.put(&data[..], &PutOptions::default().repository("bench/s3")))?;
        ours.push(t);
        digests.push(p.digest);
        loc_t.push(
            time(|| local.put(&data[..], &PutOptions::default().repository("bench/local")))?.0,
        );
    }
    // What the commit's server-side copy costs alone (ocidb's put pays it
    // after the upload: S3 has no rename).
    let (t_copy, _) = time(|| {
        rt.block_on(async {
            raw.copy(&Key::from("raw/blob-0"), &Key::from("raw/copy-0"))
                .await
                .map_err(failed)
        })
    })?;
    let (raw2, raw8) = (median(raw2), median(raw8));
    let (raw_best, raw_label) = if raw8 < raw2 {
        (raw8, "8 parts in flight")
    } else {
        (raw2, "2 parts in flight")
    };
    let ours = median(ours);
    let bytes = len as u64;
    rows.push(S3Row {
        what: format!("put {} MiB (durable)", opts.blob_mib),
        ocidb: mib_s(bytes, ours),
        baseline: format!(
            "raw object_store multipart, 8 MiB parts, {raw_label}: {} (with 2: {}, with 8: {})",
            mib_s(bytes, raw_best),
            mib_s(bytes, raw2),
            mib_s(bytes, raw8)
        ),
        ratio: ours.as_secs_f64() / raw_best.as_secs_f64(),
    });
    let raw_hashed = median(raw_hashed);
    rows.push(S3Row {
        what: format!("put {} MiB (durable), against a hashing raw put", opts.blob_mib),
        ocidb: mib_s(bytes, ours),
        baseline: format!(
            "raw object_store multipart (2 parts in flight) while another thread hashes the same bytes: {}",
            mib_s(bytes, raw_hashed)
        ),
        ratio: ours.as_secs_f64() / raw_hashed.as_secs_f64(),
    });
    rows.push(S3Row {
        what: format!(
            "the commit's server-side copy of {} MiB, alone",
            opts.blob_mib
        ),
        ocidb: format!("{:.2} s (part of each put above)", t_copy.as_secs_f64()),
        baseline: format!("the raw put: {:.2} s", raw_best.as_secs_f64()),
        ratio: t_copy.as_secs_f64() / raw_best.as_secs_f64(),
    });
    let loc_t = median(loc_t);
    rows.push(S3Row {
        what: format!("put {} MiB: Garage against local files", opts.blob_mib),
        ocidb: mib_s(bytes, ours),
        baseline: format!("ocidb on local files: {}", mib_s(bytes, loc_t)),
        ratio: ours.as_secs_f64() / loc_t.as_secs_f64(),
    });

    // Get: whole-blob reads into a sink.
    let (mut raw_g, mut ours_g, mut loc_g) = (vec![], vec![], vec![]);
    let local_digest = local
        .members("bench/local")?
        .first()
        .map(|m| m.0)
        .ok_or_else(|| failed("no local blob"))?;
    for rep in 0..opts.reps {
        say(&format!(
            "get {} MiB, repetition {}",
            opts.blob_mib,
            rep + 1
        ));
        let key = Key::from(format!("raw/blob-{rep}"));
        let (t, n) = time(|| rt.block_on(raw_get(&*raw, &key)))?;
        if n != bytes {
            return Err(failed(format!("raw get read {n} of {bytes} bytes")));
        }
        raw_g.push(t);
        let d = digests[rep % digests.len()];
        ours_g.push(time(|| drain(on_s3.get(&d)?))?.0);
        loc_g.push(time(|| drain(local.get(&local_digest)?))?.0);
    }
    let (raw_g, ours_g, loc_g) = (median(raw_g), median(ours_g), median(loc_g));
    rows.push(S3Row {
        what: format!("get {} MiB", opts.blob_mib),
        ocidb: mib_s(bytes, ours_g),
        baseline: format!("raw object_store GET, streamed: {}", mib_s(bytes, raw_g)),
        ratio: ours_g.as_secs_f64() / raw_g.as_secs_f64(),
    });
    rows.push(S3Row {
        what: format!("get {} MiB: Garage against local files", opts.blob_mib),
        ocidb: mib_s(bytes, ours_g),
        baseline: format!("ocidb on local files: {}", mib_s(bytes, loc_g)),
        ratio: ours_g.as_secs_f64() / loc_g.as_secs_f64(),
    });
    drop(data);

    // Stat: ocidb answers from its index; the baseline is a HEAD.
    say("stat");
    let n = 1000;
    let d = digests[0];
    let key = Key::from("raw/blob-0");
    let (t_ours, _) = time(|| {
        for _ in 0..n {
            on_s3.stat(&d)?;
        }
        Ok(())
    })?;
    let (t_head, _) = time(|| {
        rt.block_on(async {
            for _ in 0..n {
                raw.head(&key).await.map_err(failed)?;
            }
            Ok(())
        })
    })?;
    rows.push(S3Row {
        what: "stat of a blob on Garage".into(),
        ocidb: format!("{:.1} µs", t_ours.as_secs_f64() * 1e6 / n as f64),
        baseline: format!(
            "raw object_store HEAD: {:.0} µs",
            t_head.as_secs_f64() * 1e6 / n as f64
        ),
        ratio: t_ours.as_secs_f64() / t_head.as_secs_f64(),
    });

    // GC: `gc_objects` unreferenced blobs (just above the inline
    // threshold, so each is an object) collected online; the baseline
    // deletes as many raw objects with object_store's bulk delete.
    say(&format!("gc of {} objects: writing them", opts.gc_objects));
    let small: Vec<Vec<u8>> = (0..opts.gc_objects)
        .map(|i| random(70_000, 0x6C00 + i as u64))
        .collect();
    for chunk in small.chunks(500) {
        let items: Vec<(&[u8], PutOptions)> = chunk
            .iter()
            .map(|b| (b.as_slice(), PutOptions::default()))
            .collect();
        on_s3.put_blobs(&items)?;
    }
    rt.block_on(async {
        let mut tasks = futures_util::stream::iter(small.iter().enumerate().map(|(i, b)| {
            let raw = Arc::clone(&raw);
            let body = bytes::Bytes::copy_from_slice(b);
            async move {
                raw.put(&Key::from(format!("raw/gc/{i}")), body.into())
                    .await
                    .map(drop)
                    .map_err(failed)
            }
        }))
        .buffer_unordered(16);
        while let Some(r) = tasks.next().await {
            r?;
        }
        Ok::<(), Error>(())
    })?;
    drop(small);
    say("gc: collecting");
    let (t_gc, report) = time(|| on_s3.gc(&GcPolicy::default().grace(Duration::ZERO)))?;
    // (The large blobs of the rows above are unreferenced too.)
    if report.deleted_blobs < opts.gc_objects as u64 {
        return Err(failed(format!(
            "gc removed {} of {} blobs: {report:?}",
            report.deleted_blobs, opts.gc_objects
        )));
    }
    let (t_del, _) = time(|| {
        rt.block_on(async {
            let keys: Vec<object_store::Result<Key>> = (0..opts.gc_objects)
                .map(|i| Ok(Key::from(format!("raw/gc/{i}"))))
                .collect();
            let mut out = raw.delete_stream(futures_util::stream::iter(keys).boxed());
            while let Some(r) = out.next().await {
                r.map_err(failed)?;
            }
            Ok(())
        })
    })?;
    rows.push(S3Row {
        what: format!("gc of {} unreferenced blobs on Garage", opts.gc_objects),
        ocidb: format!("{:.2} s (mark, sweep, object deletes)", t_gc.as_secs_f64()),
        baseline: format!(
            "raw object_store bulk delete of as many objects: {:.2} s",
            t_del.as_secs_f64()
        ),
        ratio: t_gc.as_secs_f64() / t_del.as_secs_f64(),
    });
    say("durable pushes with and without the index log");
    let plain = Store::open_with(
        opts.dir.join("no-log-store"),
        StoreOptions::default().backend(Arc::new(ocidb::blob::S3Blobs::with_options(
            &garage.location(0, "no-log")?,
            &s3_opts,
        )?) as Arc<dyn ocidb::BlobBackend>),
        true,
    )?;
    rows.extend(shipping_rows(&on_s3, &plain)?);
    Ok(rows)
}

/// Durable manifest pushes (an image of one inline config and one inline
/// layer, tagged) from `writers` threads: pushes a second and the p99
/// latency of one push.
pub fn pushes(s: &Store, repo: &str, writers: usize, each: usize) -> Result<(f64, Duration)> {
    let t = Instant::now();
    let lat = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                sc.spawn(move || -> Result<Vec<Duration>> {
                    let mut lat = Vec::with_capacity(each);
                    for i in 0..each {
                        let layer = format!("layer {repo} {w} {i}");
                        let t = Instant::now();
                        let l = s.put_bytes(layer.as_bytes(), &PutOptions::default().repository(repo))?;
                        let c = s.put_bytes(b"{}", &PutOptions::default().repository(repo))?;
                        let m = format!(
                            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
                            c.digest,
                            l.digest,
                            l.size
                        );
                        s.put_manifest(
                            repo,
                            m.as_bytes(),
                            &ocidb::ManifestOptions::default().tags([format!("w{w}-{i}")]),
                        )?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| failed("a pusher panicked"))??);
        }
        Ok::<_, Error>(all)
    })?;
    let elapsed = t.elapsed();
    let mut lat = lat;
    lat.sort();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len().saturating_sub(1))];
    Ok((lat.len() as f64 / elapsed.as_secs_f64(), p99))
}

/// The cost of shipping every commit to the index log before it is
/// acknowledged: the same pushes on the same Garage, with the log (the
/// default for a store on S3) and without (a store given the bucket as its
/// own backend, which ships nothing and cannot be restored).
fn shipping_rows(with_log: &Store, without: &Store) -> Result<Vec<S3Row>> {
    let mut rows = Vec::new();
    for (writers, each) in [(1usize, 200usize), (8, 60)] {
        let (ours, ours_p99) = pushes(with_log, &format!("ship/w{writers}"), writers, each)?;
        let (base, base_p99) = pushes(without, &format!("ship/w{writers}"), writers, each)?;
        rows.push(S3Row {
            what: format!(
                "durable image pushes (3 commits each), {writers} writer{}, shipping the index log",
                if writers == 1 { "" } else { "s" }
            ),
            ocidb: format!(
                "{ours:.0} pushes/s, p99 {:.1} ms",
                ours_p99.as_secs_f64() * 1e3
            ),
            baseline: format!(
                "the same store on the same bucket without the log: {base:.0} pushes/s, p99 {:.1} ms",
                base_p99.as_secs_f64() * 1e3
            ),
            // As every row: ocidb's time over the baseline's.
            ratio: base / ours,
        });
    }
    Ok(rows)
}

fn drain(mut r: impl std::io::Read) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) => return Err(Error::io("reading a blob", e)),
        }
    }
}
