//! `ocidb bench cluster`: what replication costs and how it recovers, on
//! one Garage node and one etcd member on 127.0.0.1, each figure beside a
//! baseline from the same run:
//! - durable pushes on a cluster primary (log shipped, head published on
//!   etcd) against the same store shipping the log alone, and against the
//!   engine on the bucket with no log;
//! - replica lag under a steady push load, against the push latency;
//! - the time from a primary's `kill -9` to the first write a new primary
//!   acknowledges, against the lease;
//! - restore time and bytes, against ingesting the same manifests.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocidb::blob::{BlobLocation, S3Blobs, S3Options};
use ocidb::{Error, Result, Store, StoreOptions};
use ocidb_bench::etcd::Etcd;
use ocidb_bench::garage::{Garage, ACCESS_KEY, SECRET_KEY};
use ocidb_server::cluster::{ClusterOptions, Member, Role};
use serde::Serialize;

/// What to run.
#[derive(Clone, Debug)]
pub struct ClusterBenchOptions {
    /// The garage executable.
    pub garage: PathBuf,
    /// The etcd executable.
    pub etcd: PathBuf,
    /// Working directory.
    pub dir: PathBuf,
    /// Manifests of the restore rows.
    pub manifests: usize,
    /// Primary kills of the failover row.
    pub failovers: usize,
}

/// One figure and its baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What is measured.
    pub what: String,
    /// ocidb's figure, formatted.
    pub ocidb: String,
    /// The baseline and its figure, formatted.
    pub baseline: String,
    /// ocidb's figure over the baseline's (times: above 1 is slower).
    pub ratio: f64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    /// The rows.
    pub rows: Vec<Row>,
}

impl ClusterReport {
    /// The rows as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "Garage (single node, fsync on) and etcd 3.4 (one member) on 127.0.0.1\n\n| row | ocidb | baseline (same run) | ratio |\n|---|---|---|---|\n",
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

fn failed(what: impl Into<String>) -> Error {
    Error::Internal(what.into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(failed(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Bench {
    garage: Garage,
    etcd: Etcd,
    s3: S3Options,
    dir: PathBuf,
}

impl Bench {
    fn store_options(&self, prefix: &str) -> Result<StoreOptions> {
        Ok(StoreOptions::default()
            .blobs(BlobLocation::S3(self.garage.location(0, prefix)?))
            .s3(self.s3.clone()))
    }

    /// A member of the cluster on `prefix`, in this process, its loop
    /// running; returns once it is `want` (primary or replica).
    fn member(
        &self,
        name: &str,
        prefix: &str,
        want_primary: bool,
    ) -> Result<(Arc<Member>, Arc<Store>)> {
        let etcd = ocidb_server::cluster::Etcd::parse(&self.etcd.url())
            .map_err(|why| failed(format!("etcd: {why}")))?;
        let mut o = ClusterOptions::new(
            etcd,
            format!("http://127.0.0.1:1/{name}"),
            format!("ocidb/{prefix}"),
        );
        o.lease_ttl = Duration::from_secs(2);
        let m = Member::new(o);
        let store = Arc::new(super::open_member(
            &self.dir.join(name),
            self.store_options(prefix)?,
            &m,
        )?);
        let (mm, s) = (Arc::clone(&m), Arc::clone(&store));
        std::thread::spawn(move || mm.run(s));
        wait_for(
            &format!("{name} to take its role"),
            Duration::from_secs(30),
            || match m.role() {
                Role::Primary { .. } if want_primary => Some(()),
                Role::Replica { primary: Some(_) } if !want_primary && m.lag() == 0 => Some(()),
                _ => None,
            },
        )?;
        Ok((m, store))
    }
}

/// Runs every row.
pub fn run(o: &ClusterBenchOptions, say: &mut dyn FnMut(&str)) -> Result<ClusterReport> {
    let _ = std::fs::remove_dir_all(&o.dir);
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| Error::io(format!("creating {}", o.dir.display()), e))?;
    say("starting Garage and etcd");
    let b = Bench {
        garage: Garage::single(&o.garage, &o.dir.join("garage"))?,
        etcd: Etcd::start(&o.etcd, &o.dir.join("etcd"), 1)?,
        s3: S3Options {
            credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
            ..S3Options::default()
        },
        dir: o.dir.clone(),
    };
    let mut rows = Vec::new();
    say("durable pushes: cluster primary, log alone, no log");
    let (member, primary) = b.member("a", "cluster", true)?;
    rows.extend(push_rows(&b, &primary)?);
    say("replica lag under a steady push load");
    let (replica_member, replica) = b.member("b", "cluster", false)?;
    rows.push(lag_row(&primary, &replica)?);
    replica_member.resign();
    member.resign();
    say(&format!("failover: {} kills of the primary", o.failovers));
    rows.push(failover_row(&b, o.failovers)?);
    say(&format!("restore of {} manifests", o.manifests));
    rows.extend(restore_rows(&b, o.manifests)?);
    let _ = std::fs::remove_dir_all(&o.dir);
    Ok(ClusterReport { rows })
}

fn push_rows(b: &Bench, primary: &Store) -> Result<Vec<Row>> {
    let solo = Store::open_with(b.dir.join("solo"), b.store_options("solo")?, true)?;
    let plain = Store::open_with(
        b.dir.join("no-log"),
        StoreOptions::default().backend(Arc::new(S3Blobs::with_options(
            &b.garage.location(0, "no-log")?,
            &b.s3,
        )?) as Arc<dyn ocidb::BlobBackend>),
        true,
    )?;
    let mut rows = Vec::new();
    for (writers, each) in [(1usize, 150usize), (8, 40)] {
        let repo = format!("push/w{writers}");
        let (c, c99) = ocidb_bench::s3::pushes(primary, &repo, writers, each)?;
        let (l, l99) = ocidb_bench::s3::pushes(&solo, &repo, writers, each)?;
        let (n, n99) = ocidb_bench::s3::pushes(&plain, &repo, writers, each)?;
        let plural = if writers == 1 { "" } else { "s" };
        rows.push(Row {
            what: format!("durable image pushes (3 commits each), {writers} writer{plural}, cluster primary (log + etcd head)"),
            ocidb: format!("{c:.0} pushes/s, p99 {:.1} ms", ms(c99)),
            baseline: format!("the same store shipping the log with no etcd: {l:.0} pushes/s, p99 {:.1} ms", ms(l99)),
            ratio: l / c,
        });
        rows.push(Row {
            what: format!("the same, {writers} writer{plural}, against no log at all"),
            ocidb: format!("{c:.0} pushes/s, p99 {:.1} ms", ms(c99)),
            baseline: format!("the engine on the bucket without a log (cannot be restored): {n:.0} pushes/s, p99 {:.1} ms", ms(n99)),
            ratio: n / c,
        });
    }
    Ok(rows)
}

/// Pushes on the primary for a few seconds, one writer back to back; the
/// replica's position is sampled every 100 µs; a push's lag is from its
/// acknowledgement to the replica holding its last commit.
fn lag_row(primary: &Store, replica: &Store) -> Result<Row> {
    let stop = AtomicBool::new(false);
    let (acks, seen, push_lat) = std::thread::scope(|sc| -> Result<_> {
        let sampler = sc.spawn(|| -> Result<Vec<(u64, Instant)>> {
            let mut seen = Vec::new();
            let mut last = replica.log_position()?;
            while !stop.load(Ordering::Acquire) {
                let p = replica.log_position()?;
                if p > last {
                    seen.push((p, Instant::now()));
                    last = p;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(seen)
        });
        let mut acks = Vec::new();
        let mut lat = Vec::new();
        let until = Instant::now() + Duration::from_secs(8);
        let mut i = 0;
        while Instant::now() < until {
            let t = Instant::now();
            ocidb_bench::s3::pushes(primary, &format!("lag/{i}"), 1, 1)?;
            lat.push(t.elapsed());
            acks.push((primary.log_position()?, Instant::now()));
            i += 1;
        }
        // Let the replica catch the last ones.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Release);
        let seen = sampler
            .join()
            .map_err(|_| failed("the sampler panicked"))??;
        Ok((acks, seen, lat))
    })?;
    let mut lags: Vec<Duration> = acks
        .iter()
        .filter_map(|&(p, at)| {
            let (_, when) = seen.iter().find(|(q, _)| *q >= p)?;
            Some(when.saturating_duration_since(at))
        })
        .collect();
    if lags.len() < acks.len() {
        return Err(failed(format!(
            "the replica never applied {} of {} acknowledged pushes",
            acks.len() - lags.len(),
            acks.len()
        )));
    }
    lags.sort();
    let mut push_lat = push_lat;
    push_lat.sort();
    Ok(Row {
        what: format!(
            "replica lag under a steady load ({} durable image pushes, one writer back to back, 8 s)",
            acks.len()
        ),
        ocidb: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms after the acknowledgement",
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99)),
            ms(lags.last().copied().unwrap_or_default())
        ),
        baseline: format!(
            "the push itself on the primary: p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&push_lat, 0.5)),
            ms(percentile(&push_lat, 0.99))
        ),
        ratio: percentile(&lags, 0.99).as_secs_f64() / percentile(&push_lat, 0.99).as_secs_f64().max(1e-9),
    })
}

/// `ocidb serve --cluster` as a child process.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_status(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

fn spawn_member(b: &Bench, name: &str, port: u16) -> Result<Proc> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this executable", e))?;
    let addr = format!("127.0.0.1:{port}");
    let loc = b.garage.location(0, "failover")?.to_string();
    let child = Command::new(exe)
        .arg("--store")
        .arg(b.dir.join(name))
        .args([
            "serve",
            "--addr",
            &addr,
            "--blobs",
            &loc,
            "--cluster",
            &b.etcd.url(),
        ])
        .args([
            "--advertise",
            &format!("http://{addr}"),
            "--cluster-lease",
            "2s",
        ])
        .args(["--snapshot-interval", "0"])
        .envs(Garage::env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("starting a cluster member", e))?;
    let p = Proc { child, addr };
    wait_for(
        &format!("member {name} to be ready"),
        Duration::from_secs(60),
        || http_status(&p.addr, "GET", "/readyz", b"").filter(|(s, _)| *s == 200),
    )?;
    Ok(p)
}

fn is_primary(p: &Proc) -> bool {
    http_status(&p.addr, "GET", "/readyz", b"")
        .is_some_and(|(s, t)| s == 200 && t.contains("primary"))
}

fn failover_row(b: &Bench, reps: usize) -> Result<Row> {
    let ports = [
        ocidb_bench::ports::free_port()?,
        ocidb_bench::ports::free_port()?,
    ];
    let mut procs = vec![Some(spawn_member(b, "f0", ports[0])?)];
    wait_for("a primary", Duration::from_secs(30), || {
        procs[0].as_ref().filter(|p| is_primary(p)).map(drop)
    })?;
    procs.push(Some(spawn_member(b, "f1", ports[1])?));
    let mut times = Vec::new();
    for rep in 0..reps {
        let p = wait_for("a primary", Duration::from_secs(30), || {
            procs
                .iter()
                .position(|m| m.as_ref().is_some_and(is_primary))
        })?;
        let r = 1 - p;
        let survivor = procs[r]
            .as_ref()
            .map(|m| m.addr.clone())
            .ok_or_else(|| failed("no replica"))?;
        drop(procs[p].take());
        let killed = Instant::now();
        let body = format!("failover {rep}");
        let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, body.as_bytes());
        let path = format!("/v2/f/blobs/uploads/?digest={d}");
        wait_for(
            "a write acknowledged by the new primary",
            Duration::from_secs(60),
            || http_status(&survivor, "POST", &path, body.as_bytes()).filter(|(s, _)| *s == 201),
        )?;
        times.push(killed.elapsed());
        procs[p] = Some(spawn_member(b, &format!("f{p}"), ports[p])?);
    }
    times.sort();
    Ok(Row {
        what: format!("kill -9 of the primary to the first write a new primary acknowledges ({reps} kills, 2 members)"),
        ocidb: format!(
            "median {:.2} s, max {:.2} s",
            percentile(&times, 0.5).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64()
        ),
        baseline: "the primary's etcd lease: 2.00 s".into(),
        ratio: percentile(&times, 0.5).as_secs_f64() / 2.0,
    })
}

/// `n` image manifests, tagged, in batches: the time it took.
fn ingest(s: &Store, n: usize) -> Result<Duration> {
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let bodies: Vec<Vec<u8>> = (i..end).map(manifest).collect();
        let batch: Vec<(&[u8], ocidb::ManifestOptions)> = bodies
            .iter()
            .enumerate()
            .map(|(k, b)| {
                (
                    b.as_slice(),
                    ocidb::ManifestOptions::default()
                        .tags([format!("t{}", i + k)])
                        .children(ocidb::Children::AllowMissing),
                )
            })
            .collect();
        s.put_manifests("restore/app", &batch)?;
        i = end;
    }
    Ok(t.elapsed())
}

/// An image manifest with its own layer and one of 100 configs.
fn manifest(n: usize) -> Vec<u8> {
    let d = |s: String| ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, s.as_bytes());
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":100}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1000}}]}}"#,
        d(format!("config {}", n % 100)),
        d(format!("layer {n}"))
    )
    .into_bytes()
}

fn restore_rows(b: &Bench, n: usize) -> Result<Vec<Row>> {
    let s = Store::open_with(b.dir.join("r-src"), b.store_options("restore")?, true)?;
    let with_log = ingest(&s, n)?;
    let snap = s.snapshot_index()?;
    drop(s);
    let local = Store::create(b.dir.join("r-local"))?;
    let local_t = ingest(&local, n)?;
    drop(local);
    let t = Instant::now();
    let (r, report) = Store::restore(
        b.dir.join("r-dst"),
        b.store_options("restore")?,
        &mut |_| {},
    )?;
    let restore_t = t.elapsed();
    // The synthetic manifests name blobs no one pushed (sparse, as `bench
    // gen`'s): those are the only problems fsck may find.
    let other: Vec<_> = report
        .fsck
        .problems
        .iter()
        .filter(|p| p.kind != "missing-child")
        .take(3)
        .collect();
    if !other.is_empty() {
        return Err(failed(format!(
            "the restored store is not clean: {other:?}"
        )));
    }
    drop(r);
    let per_million = 1e6 / n as f64;
    Ok(vec![
        Row {
            what: format!("restore of {n} manifests from the bucket alone (snapshot {} of {} bytes, then fsck)", snap.position, snap.bytes),
            ocidb: format!(
                "{:.1} s, {} bytes read; per million manifests (scaled): {:.0} s, {:.0} MB",
                restore_t.as_secs_f64(),
                report.bytes,
                restore_t.as_secs_f64() * per_million,
                report.bytes as f64 * per_million / 1e6
            ),
            baseline: format!("ingesting the same manifests into a local store: {:.1} s", local_t.as_secs_f64()),
            ratio: restore_t.as_secs_f64() / local_t.as_secs_f64(),
        },
        Row {
            what: format!("ingest of the same {n} manifests into the store on the bucket (log shipped, batches of 10,000)"),
            ocidb: format!("{:.1} s", with_log.as_secs_f64()),
            baseline: format!("into a local store: {:.1} s", local_t.as_secs_f64()),
            ratio: with_log.as_secs_f64() / local_t.as_secs_f64(),
        },
    ])
}
