//! `ocidb bench registry`: `ocidb serve` beside Debian's `docker-registry`
//! (distribution 2.8.2), each started on a fresh directory on 127.0.0.1 and
//! driven by the same client in one run. Each row carries both figures and
//! their ratio; the blob rows also carry two baselines of the same run:
//! reading the bytes from the page cache, and pushing them through a
//! loopback TCP socket with no HTTP.
//!
//! docker-registry runs with its recommended settings: filesystem storage,
//! the in-memory blob descriptor cache, deletes on, access log off (as
//! `ocidb serve` runs here with `OCIDB_LOG=warn`).

mod client;
mod servers;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use client::{expect, failed, Conn};
use ocidb::error::{Error, Result};
use ocidb::{Algorithm, Hasher};

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistryBenchOptions {
    /// The `ocidb` executable to serve with.
    pub ocidb_exe: PathBuf,
    /// The peer's executable (`docker-registry`); `None` measures ocidb
    /// alone.
    pub peer_exe: Option<PathBuf>,
    /// The `oras` CLI, for the `oras discover` row (`None`: no such row).
    pub oras: Option<PathBuf>,
    /// Working directory (the stores go under it and are removed).
    pub dir: PathBuf,
    /// Smaller sizes: a 64 MiB blob, 1,000 tags and repositories.
    pub quick: bool,
    /// The blob's size in MiB (overrides `quick`'s and the default 256).
    pub blob_mib: Option<u64>,
    /// Tags and repositories listed (overrides `quick`'s and the default
    /// 10,000).
    pub entries: Option<u64>,
}

impl RegistryBenchOptions {
    /// Options with the defaults (`peer_exe` and `oras` unset).
    pub fn new(ocidb_exe: PathBuf, dir: PathBuf) -> RegistryBenchOptions {
        RegistryBenchOptions {
            ocidb_exe,
            peer_exe: None,
            oras: None,
            dir,
            quick: false,
            blob_mib: None,
            entries: None,
        }
    }

    /// Sets [`RegistryBenchOptions::blob_mib`].
    #[must_use]
    pub fn blob_mib(mut self, mib: Option<u64>) -> Self {
        self.blob_mib = mib.map(|m| m.max(1));
        self
    }

    /// Sets [`RegistryBenchOptions::entries`].
    #[must_use]
    pub fn entries(mut self, n: Option<u64>) -> Self {
        self.entries = n.map(|n| n.max(1));
        self
    }

    /// Sets [`RegistryBenchOptions::peer_exe`].
    #[must_use]
    pub fn peer_exe(mut self, exe: Option<PathBuf>) -> Self {
        self.peer_exe = exe;
        self
    }

    /// Sets [`RegistryBenchOptions::oras`].
    #[must_use]
    pub fn oras(mut self, exe: Option<PathBuf>) -> Self {
        self.oras = exe;
        self
    }

    /// Sets [`RegistryBenchOptions::quick`].
    #[must_use]
    pub fn quick(mut self, quick: bool) -> Self {
        self.quick = quick;
        self
    }
}

/// Whether a row's figure is better high or low.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency.
    Lower,
}

/// One row: the figure of each registry, in [`RegistryReport::columns`]
/// order (`None`: not measured there).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured, with its unit.
    pub name: String,
    /// One figure per column.
    pub values: Vec<Option<f64>>,
    /// Which way is better.
    pub better: Better,
    /// How the peer does it, where that differs from ocidb.
    pub note: String,
}

impl Row {
    /// How much better ocidb (column 0) is than the peer (column 1): above
    /// 1 means ahead, whichever way the row is better.
    pub fn advantage(&self) -> Option<f64> {
        let (ours, peer) = (
            self.values.first()?.as_ref()?,
            self.values.get(1)?.as_ref()?,
        );
        if *ours <= 0.0 || *peer <= 0.0 {
            return None;
        }
        Some(match self.better {
            Better::Higher => ours / peer,
            Better::Lower => peer / ours,
        })
    }
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryReport {
    /// The registries, ocidb first.
    pub columns: Vec<String>,
    /// Baselines of the same run: (what, MiB/s).
    pub baselines: Vec<(String, f64)>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Facts checked during the run (the fallback tag exists on the peer,
    /// not on ocidb; every pull returned every byte).
    pub checks: Vec<String>,
}

impl RegistryReport {
    /// The report as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (what, v) in &self.baselines {
            out.push_str(&format!("baseline: {what}: {v:.0} MiB/s\n"));
        }
        out.push_str(&format!(
            "\n| row | {} | ocidb ahead by |\n|---|{}---|\n",
            self.columns.join(" | "),
            "---|".repeat(self.columns.len())
        ));
        for r in &self.rows {
            let vals: Vec<String> = r.values.iter().map(|v| v.map_or("–".into(), fmt)).collect();
            let adv = r.advantage().map_or("–".into(), |a| format!("{a:.2}×"));
            out.push_str(&format!("| {} | {} | {adv} |\n", r.name, vals.join(" | ")));
        }
        let notes: Vec<&Row> = self.rows.iter().filter(|r| !r.note.is_empty()).collect();
        if !notes.is_empty() {
            out.push('\n');
            for r in notes {
                out.push_str(&format!("- {}: {}\n", r.name, r.note));
            }
        }
        if !self.checks.is_empty() {
            out.push_str("\nChecked during the run:\n");
            for c in &self.checks {
                out.push_str(&format!("- {c}\n"));
            }
        }
        out
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Runs every row against ocidb and, when given, the peer.
pub fn run(opts: &RegistryBenchOptions, log: &mut dyn FnMut(&str)) -> Result<RegistryReport> {
    let work = opts.dir.join(format!("registry-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
    let result = run_in(opts, &work, log);
    let _ = std::fs::remove_dir_all(&work);
    result
}

struct Sizes {
    blob: usize,
    entries: u64,
    referrers: u64,
}

fn run_in(
    opts: &RegistryBenchOptions,
    work: &std::path::Path,
    log: &mut dyn FnMut(&str),
) -> Result<RegistryReport> {
    let mut sizes = if opts.quick {
        Sizes {
            blob: 64 << 20,
            entries: 1_000,
            referrers: 20,
        }
    } else {
        Sizes {
            blob: 256 << 20,
            entries: 10_000,
            referrers: 50,
        }
    };
    if let Some(mib) = opts.blob_mib {
        sizes.blob = usize::try_from(mib << 20).unwrap_or(usize::MAX);
    }
    if let Some(n) = opts.entries {
        sizes.entries = n;
    }
    let big = ocidb_testkit::deterministic_bytes(b"registry bench", sizes.blob);
    let mib = sizes.blob as f64 / f64::from(1 << 20);
    log("baselines: page cache and loopback TCP");
    let page_cache = page_cache_read(work, &big)?;
    let tcp = loopback_tcp(&big)?;
    let mut report = RegistryReport {
        columns: vec!["ocidb serve".into()],
        baselines: vec![
            (
                format!("{mib:.0} MiB read from the page cache"),
                mib / page_cache,
            ),
            (
                format!("{mib:.0} MiB through loopback TCP, no HTTP"),
                mib / tcp,
            ),
        ],
        rows: Vec::new(),
        checks: Vec::new(),
    };
    let mut servers = vec![servers::Spawned::ocidb(
        &opts.ocidb_exe,
        &work.join("ocidb"),
    )?];
    if let Some(peer) = &opts.peer_exe {
        servers.push(servers::Spawned::docker_registry(peer, &work.join("peer"))?);
        report.columns.push("docker-registry 2.8.2".into());
    }
    let n = servers.len();
    let set = |report: &mut RegistryReport, name: &str, better: Better, i: usize, v: f64| {
        let row = match report.rows.iter_mut().position(|r| r.name == name) {
            Some(p) => p,
            None => {
                report.rows.push(Row {
                    name: name.to_string(),
                    values: vec![None; n],
                    better,
                    note: String::new(),
                });
                report.rows.len() - 1
            }
        };
        report.rows[row].values[i] = Some(v);
    };
    for (i, server) in servers.iter().enumerate() {
        let host = server.host.as_str();
        let label = report.columns[i].clone();
        let label = label.as_str();
        let referrers_api = i == 0;
        log(&format!("{label}: blob push and pull"));
        let mut c = Conn::new(host)?;
        let t = Instant::now();
        let d = push_blob(&mut c, "bench/big", &big)?;
        set(
            &mut report,
            &format!("blob push, {mib:.0} MiB (MiB/s)"),
            Better::Higher,
            i,
            mib / t.elapsed().as_secs_f64(),
        );
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let got = c.get_counted(&format!("/v2/bench/big/blobs/{d}"))?;
            if got != big.len() as u64 {
                return Err(failed(format!(
                    "{label}: a pull returned {got} of {} bytes",
                    big.len()
                )));
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        set(
            &mut report,
            &format!("blob pull, {mib:.0} MiB (MiB/s, best of 3)"),
            Better::Higher,
            i,
            mib / best,
        );
        set(
            &mut report,
            "blob pull ÷ page-cache read",
            Better::Higher,
            i,
            page_cache / best,
        );
        set(
            &mut report,
            "blob pull ÷ loopback TCP",
            Better::Higher,
            i,
            tcp / best,
        );

        log(&format!("{label}: manifest puts, 8 clients"));
        let cfg = push_blob(&mut c, "bench/m", b"{}")?;
        let per = if opts.quick { 100u64 } else { 300 };
        let t = Instant::now();
        in_parallel(8, |th| {
            let mut c = Conn::new(host)?;
            for k in 0..per {
                let body = manifest(&cfg, th * 1_000_000 + k, None);
                let r = c.send(
                    "PUT",
                    &format!("/v2/bench/m/manifests/t{th}-{k}"),
                    &[("Content-Type", MT)],
                    &body,
                )?;
                expect(r, 201, "manifest put")?;
            }
            Ok(())
        })?;
        set(
            &mut report,
            "manifest put, 8 clients (per s)",
            Better::Higher,
            i,
            (8 * per) as f64 / t.elapsed().as_secs_f64(),
        );

        log(&format!("{label}: manifest GET by tag"));
        let mut lat = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let r = c.send("GET", "/v2/bench/m/manifests/t0-0", &[("Accept", MT)], b"")?;
            expect(r, 200, "manifest GET")?;
            lat.push(t.elapsed());
        }
        set(
            &mut report,
            "manifest GET by tag, p50 (µs)",
            Better::Lower,
            i,
            micros(pct(&mut lat, 0.5)),
        );
        set(
            &mut report,
            "manifest GET by tag, p99 (µs)",
            Better::Lower,
            i,
            micros(pct(&mut lat, 0.99)),
        );

        log(&format!(
            "{label}: {} tags and {} repositories",
            sizes.entries, sizes.entries
        ));
        let body = manifest(&cfg, 7, None);
        push_blob(&mut c, "bench/tags", b"{}")?;
        let entries = sizes.entries;
        in_parallel(8, |th| {
            let mut c = Conn::new(host)?;
            for k in (th..entries).step_by(8) {
                let r = c.send(
                    "PUT",
                    &format!("/v2/bench/tags/manifests/tag{k}"),
                    &[("Content-Type", MT)],
                    &body,
                )?;
                expect(r, 201, "tag put")?;
                push_blob(&mut c, &format!("bench/r{k}"), b"{}")?;
                let r = c.send(
                    "PUT",
                    &format!("/v2/bench/r{k}/manifests/v1"),
                    &[("Content-Type", MT)],
                    &body,
                )?;
                expect(r, 201, "repository put")?;
            }
            Ok(())
        })?;
        let (mut tl, mut cat) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let t = Instant::now();
            let r = expect(
                c.send("GET", "/v2/bench/tags/tags/list", &[], b"")?,
                200,
                "tag list",
            )?;
            tl.push(t.elapsed());
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| failed(format!("tag list JSON: {e}")))?;
            let listed = v["tags"].as_array().map_or(0, Vec::len) as u64;
            if listed < entries {
                return Err(failed(format!(
                    "{label}: the tag list held {listed} of {entries}"
                )));
            }
            let t = Instant::now();
            let seen = catalog(&mut c)?;
            if seen < entries {
                return Err(failed(format!(
                    "{label}: the catalog listed {seen} of {entries}"
                )));
            }
            cat.push(t.elapsed());
        }
        set(
            &mut report,
            &format!("tag list, {entries} tags (ms, median of 10)"),
            Better::Lower,
            i,
            millis(pct(&mut tl, 0.5)),
        );
        set(
            &mut report,
            &format!("catalog, {entries} repositories in pages of 1,000 (ms, median of 10)"),
            Better::Lower,
            i,
            millis(pct(&mut cat, 0.5)),
        );

        log(&format!("{label}: {} referrers", sizes.referrers));
        let (attach, list, tag) = referrers(&mut c, &cfg, sizes.referrers, referrers_api, label)?;
        set(
            &mut report,
            &format!("attach a referrer, mean of {} (ms)", sizes.referrers),
            Better::Lower,
            i,
            attach,
        );
        set(
            &mut report,
            &format!("list {} referrers, p50 (µs)", sizes.referrers),
            Better::Lower,
            i,
            list,
        );
        let fallback = c.send(
            "GET",
            &format!("/v2/bench/ref/manifests/{tag}"),
            &[("Accept", INDEX)],
            b"",
        )?;
        report.checks.push(format!(
            "{label}: the fallback tag {} (status {})",
            if fallback.status == 200 {
                "exists"
            } else {
                "does not exist"
            },
            fallback.status
        ));
        if let Some(oras) = &opts.oras {
            log(&format!("{label}: oras discover"));
            let ms = oras_discover(oras, host)?;
            set(
                &mut report,
                "`oras discover`, whole command (ms, median of 5)",
                Better::Lower,
                i,
                ms,
            );
        }
    }
    for r in &mut report.rows {
        if r.name.starts_with("attach a referrer") {
            r.note = "docker-registry has no referrers API; there the client does what oras does: put the referrer, then get, extend and put again the `sha256-<hex>` fallback index".into();
        } else if r.name.starts_with("list ") {
            r.note = "docker-registry: a GET of the fallback index, the way clients list referrers there".into();
        }
    }
    drop(servers);
    Ok(report)
}

const MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ARTIFACT: &str = "application/vnd.example.bench+json";

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v.get(((v.len().saturating_sub(1)) as f64 * p) as usize)
        .copied()
        .unwrap_or_default()
}

fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// A manifest over the empty config; `subject` makes it a referrer.
fn manifest(cfg: &str, n: u64, subject: Option<(&str, usize)>) -> Vec<u8> {
    let (artifact, subject) = match subject {
        Some((d, size)) => (
            format!(r#""artifactType":"{ARTIFACT}","#),
            format!(r#","subject":{{"mediaType":"{MT}","digest":"{d}","size":{size}}}"#),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MT}",{artifact}"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cfg}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}{subject}}}"#
    )
    .into_bytes()
}

/// A monolithic upload the way every client can: POST for a session, then
/// PUT the bytes with the digest (distribution 2.8 ignores a POST body).
fn push_blob(c: &mut Conn, repo: &str, data: &[u8]) -> Result<String> {
    let d = sha256(data);
    let r = expect(
        c.send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")?,
        202,
        "upload start",
    )?;
    let loc = match r.location.find("/v2/") {
        Some(i) => r.location[i..].to_string(),
        None => r.location,
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c.send(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    )?;
    expect(r, 201, "blob push")?;
    Ok(d)
}

/// The whole catalog in pages of 1,000 (distribution refuses larger
/// pages); returns how many names it listed.
fn catalog(c: &mut Conn) -> Result<u64> {
    let (mut last, mut seen) = (String::new(), 0u64);
    loop {
        let q = if last.is_empty() {
            "/v2/_catalog?n=1000".to_string()
        } else {
            format!("/v2/_catalog?n=1000&last={last}")
        };
        let r = expect(c.send("GET", &q, &[], b"")?, 200, "catalog page")?;
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| failed(format!("catalog JSON: {e}")))?;
        let page = v["repositories"].as_array().cloned().unwrap_or_default();
        seen += page.len() as u64;
        match page.last().and_then(|l| l.as_str()) {
            Some(l) if page.len() == 1000 => last = l.to_string(),
            _ => return Ok(seen),
        }
    }
}

/// Attaches `n` referrers to one subject, then lists them: with the
/// referrers API where the registry has one, else through the fallback
/// tag as clients do. Returns (mean attach ms, list p50 µs, the subject's
/// fallback tag).
fn referrers(
    c: &mut Conn,
    cfg: &str,
    n: u64,
    api: bool,
    label: &str,
) -> Result<(f64, f64, String)> {
    let subject = manifest(cfg, u64::MAX, None);
    let sd = sha256(&subject);
    push_blob(c, "bench/ref", b"{}")?;
    expect(
        c.send(
            "PUT",
            "/v2/bench/ref/manifests/v1",
            &[("Content-Type", MT)],
            &subject,
        )?,
        201,
        "subject put",
    )?;
    let tag = fallback_tag(&sd);
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let t = Instant::now();
    for k in 0..n {
        let body = manifest(cfg, k, Some((&sd, subject.len())));
        let d = sha256(&body);
        expect(
            c.send(
                "PUT",
                &format!("/v2/bench/ref/manifests/{d}"),
                &[("Content-Type", MT)],
                &body,
            )?,
            201,
            "referrer put",
        )?;
        if api {
            continue;
        }
        // The fallback: read the index (404 the first time), add the
        // referrer, put it back under the tag.
        let path = format!("/v2/bench/ref/manifests/{tag}");
        let got = c.send("GET", &path, &[("Accept", INDEX)], b"")?;
        if got.status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&got.body)
                .map_err(|e| failed(format!("fallback index JSON: {e}")))?;
            entries = v["manifests"].as_array().cloned().unwrap_or_default();
        }
        entries.push(serde_json::json!({"mediaType": MT, "digest": d, "size": body.len(), "artifactType": ARTIFACT}));
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries})
                .to_string();
        expect(
            c.send("PUT", &path, &[("Content-Type", INDEX)], index.as_bytes())?,
            201,
            "fallback index put",
        )?;
    }
    let attach = millis(t.elapsed()) / n as f64;
    let mut lat = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let path = if api {
            format!("/v2/bench/ref/referrers/{sd}")
        } else {
            format!("/v2/bench/ref/manifests/{tag}")
        };
        let r = expect(
            c.send("GET", &path, &[("Accept", INDEX)], b"")?,
            200,
            "referrers list",
        )?;
        lat.push(t.elapsed());
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| failed(format!("referrers JSON: {e}")))?;
        let listed = v["manifests"].as_array().map_or(0, Vec::len) as u64;
        if listed != n {
            return Err(failed(format!("{label}: listed {listed} of {n} referrers")));
        }
    }
    Ok((attach, micros(pct(&mut lat, 0.5)), tag))
}

/// `oras discover` of the subject, the whole command (process start,
/// the referrers API or its fallback), median of 5.
fn oras_discover(oras: &std::path::Path, host: &str) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = std::process::Command::new(oras)
            .args([
                "discover",
                "--plain-http",
                "--format",
                "json",
                &format!("{host}/bench/ref:v1"),
            ])
            .output()
            .map_err(|e| Error::io(format!("running {}", oras.display()), e))?;
        times.push(t.elapsed());
        if !out.status.success() {
            return Err(failed(format!(
                "oras discover: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(millis(pct(&mut times, 0.5)))
}

/// The fastest of three reads of the bytes from a file in the page cache,
/// in seconds.
fn page_cache_read(work: &std::path::Path, big: &[u8]) -> Result<f64> {
    let file = work.join("page-cache-baseline");
    std::fs::write(&file, big).map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut f =
            std::fs::File::open(&file).map_err(|e| Error::io("opening the baseline file", e))?;
        while f
            .read(&mut buf)
            .map_err(|e| Error::io("reading the baseline file", e))?
            > 0
        {}
        best = best.min(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&file);
    Ok(best)
}

/// The fastest of three sends of the bytes through one loopback TCP
/// connection with no HTTP, in seconds: the ceiling of any pull over
/// loopback. One connection, as the pulls reuse theirs: a fresh one starts
/// with small windows and would make the ceiling look lower than it is.
fn loopback_tcp(big: &[u8]) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding the TCP baseline", e))?;
    let at = listener
        .local_addr()
        .map_err(|e| Error::io("the TCP baseline's address", e))?;
    let mut best = f64::MAX;
    std::thread::scope(|s| {
        let sender = s.spawn(|| -> std::io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            // 4 MiB writes, as a server sends: one write of the whole
            // buffer measured slower than ocidb's own pulls.
            for _ in 0..4 {
                for part in big.chunks(4 << 20) {
                    conn.write_all(part)?;
                }
            }
            Ok(())
        });
        let mut conn = std::net::TcpStream::connect(at)
            .map_err(|e| Error::io("connecting the TCP baseline", e))?;
        let mut buf = vec![0u8; 1 << 20];
        // The first send warms the connection up; the next three are timed.
        for round in 0..4 {
            let t = Instant::now();
            let mut got = 0usize;
            while got < big.len() {
                let want = (big.len() - got).min(buf.len());
                let k = conn
                    .read(&mut buf[..want])
                    .map_err(|e| Error::io("reading the TCP baseline", e))?;
                if k == 0 {
                    return Err(failed("the TCP baseline ended early"));
                }
                got += k;
            }
            if round > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
        sender
            .join()
            .map_err(|_| Error::Internal("the TCP baseline sender panicked".into()))?
            .map_err(|e| Error::io("sending the TCP baseline", e))
    })?;
    Ok(best)
}

/// Runs `f(0..n)` on `n` threads; the first error wins.
fn in_parallel(n: u64, f: impl Fn(u64) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|th| {
                let f = &f;
                s.spawn(move || f(th))
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Internal("a client thread panicked".into()))??;
        }
        Ok(())
    })
}
