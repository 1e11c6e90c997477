//! `ocidb serve --cluster`: members on one Garage bucket and one etcd, as
//! real processes on 127.0.0.1. A replica serves reads from its own index
//! and passes writes to the primary; killing the primary (`kill -9`) makes
//! a replica the primary within about the lease, with nothing
//! acknowledged lost; the old primary comes back as a replica.
//!
//! Skipped with a line without `etcd` or `garage` (a failure under
//! `CI=true`, where `.ci/run` installs both).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd::{free_port, Etcd};
use common::server::{Response, Server};
use common::tenants;
use ocidb_bench::garage::Garage;

/// The garage and etcd executables, or `None` (the test is skipped,
/// with a line saying which is missing).
fn garage_and_etcd() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    Some((common::garage::exe()?, common::etcd::exe()?))
}

/// Lease of the members under test: failover within about this long.
const LEASE: &str = "2s";

fn member(dir: &Path, port: u16, etcd: &Etcd, blobs: &str) -> Server {
    member_with(dir, port, etcd, blobs, &[])
}

fn member_with(dir: &Path, port: u16, etcd: &Etcd, blobs: &str, extra: &[String]) -> Server {
    let addr = format!("127.0.0.1:{port}");
    let (advertise, etcd_url) = (format!("http://{addr}"), etcd.url());
    let (k, s) = (Garage::env()[0], Garage::env()[1]);
    let mut args = vec![
        "--blobs",
        blobs,
        "--cluster",
        &etcd_url,
        "--advertise",
        &advertise,
        "--cluster-lease",
        LEASE,
        "--snapshot-interval",
        "0",
    ];
    args.extend(extra.iter().map(String::as_str));
    Server::start_at(dir, &addr, &args, &[k, s])
}

/// Garage, etcd and two members (the first the primary, the second a
/// replica), each member with `extra` arguments.
struct Cluster {
    _dir: tempfile::TempDir,
    _garage: Garage,
    _etcd: Etcd,
    a: Server,
    b: Server,
}

fn two_members(garage_exe: &Path, etcd_exe: &Path, extra: &[String]) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(garage_exe, &dir.path().join("garage")).expect("garage");
    let blobs = garage.location(0, "cluster").expect("location").to_string();
    let etcd = Etcd::start(etcd_exe, &dir.path().join("etcd"), 1).expect("etcd");
    let a = member_with(&dir.path().join("a"), free_port(), &etcd, &blobs, extra);
    wait_role(&a, "primary");
    let b = member_with(&dir.path().join("b"), free_port(), &etcd, &blobs, extra);
    wait_role(&b, "replica");
    Cluster {
        _dir: dir,
        _garage: garage,
        _etcd: etcd,
        a,
        b,
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readyz(s: &Server) -> (u16, String) {
    let r = s.request("GET", "/readyz", &[], b"");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Waits (30 s at most) for `s`'s `/readyz` to answer 503; its text.
fn wait_not_ready(s: &Server) -> String {
    wait_for(
        "the replica to turn not ready",
        Duration::from_secs(30),
        || {
            let (status, text) = readyz(s);
            (status == 503).then_some(text)
        },
    )
}

fn wait_role(s: &Server, role: &str) -> String {
    wait_for(
        &format!("{} to be ready as {role}", s.addr),
        Duration::from_secs(60),
        || {
            let (status, text) = readyz(s);
            (status == 200 && text.contains(role)).then_some(text)
        },
    )
}

fn manifest_status(s: &Server, reference: &str) -> u16 {
    s.request(
        "GET",
        &format!("/v2/app/manifests/{reference}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    )
    .status
}

#[test]
fn replicas_serve_reads_forward_writes_and_take_over_when_the_primary_dies() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&garage_exe, &dir.path().join("garage")).expect("garage");
    let blobs = garage.location(0, "cluster").expect("location").to_string();
    let etcd = Etcd::start(&etcd_exe, &dir.path().join("etcd"), 1).expect("etcd");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (port_a, port_b) = (free_port(), free_port());

    // The first member creates the store in the empty bucket and becomes
    // the primary; the second starts from its snapshot as a replica.
    let a = member(&dir_a, port_a, &etcd, &blobs);
    wait_role(&a, "primary");
    let b = member(&dir_b, port_b, &etcd, &blobs);
    let text = wait_role(&b, "replica");
    assert!(text.contains("log position"), "{text}");

    // A push through the replica goes to the primary; the replica then
    // serves it from its own index.
    let (digest, r) = b.push_image("app", "v1", b"layer one");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(manifest_status(&a, "v1"), 200);
    wait_for("the replica to apply v1", Duration::from_secs(10), || {
        (manifest_status(&b, "v1") == 200).then_some(())
    });
    assert_eq!(manifest_status(&b, &digest), 200);
    let metrics = b.request("GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("ocidb_cluster_primary 0"), "{text}");
    assert!(text.contains("ocidb_replica_lag_positions"), "{text}");
    wait_for("lag 0", Duration::from_secs(10), || {
        let (_, t) = readyz(&b);
        t.contains("lag 0").then_some(())
    });

    // An upload session opened on the primary, its bytes sent ...
    let data = b"a chunk sent before the failover".to_vec();
    let start = a.request("POST", "/v2/app/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202, "{start:?}");
    let loc = start.header("location").expect("location").to_string();
    let range = format!("0-{}", data.len() - 1);
    let patch = a.request("PATCH", &loc, &[("Content-Range", &range)], &data);
    assert_eq!(patch.status, 202, "{patch:?}");
    let loc = patch.header("location").expect("location").to_string();

    // kill -9 the primary: the replica takes over once the lease lapses.
    let killed = Instant::now();
    a.kill();
    let (_, r2) = wait_for(
        "a write acknowledged by the new primary",
        Duration::from_secs(60),
        || {
            let cfg = b.request(
                "POST",
                &format!(
                    "/v2/app/blobs/uploads/?digest={}",
                    ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"{}")
                ),
                &[("Content-Type", "application/octet-stream")],
                b"{}",
            );
            (cfg.status == 201).then(|| b.push_image("app", "v2", b"layer two"))
        },
    );
    assert_eq!(r2.status, 201);
    eprintln!(
        "failover: first acknowledged write {:.2} s after kill -9 of the primary (lease {LEASE})",
        killed.elapsed().as_secs_f64()
    );
    wait_role(&b, "primary");
    assert_eq!(
        manifest_status(&b, "v1"),
        200,
        "an acknowledged push was lost"
    );
    // ... is finished on the new primary: sessions survive a failover
    // (their state is in the log, their bytes in the bucket).
    let sep = if loc.contains('?') { '&' } else { '?' };
    let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &data);
    let put = b.request("PUT", &format!("{loc}{sep}digest={d}"), &[], b"");
    assert_eq!(
        put.status, 201,
        "the session did not survive the failover: {put:?}"
    );
    let get = b.request("GET", &format!("/v2/app/blobs/{d}"), &[], b"");
    assert_eq!(get.body, data);

    // The old primary comes back as a replica of the new one, catches up,
    // and forwards its writes there.
    let a = member(&dir_a, port_a, &etcd, &blobs);
    wait_role(&a, "replica");
    wait_for(
        "the old primary to apply v2",
        Duration::from_secs(20),
        || (manifest_status(&a, "v2") == 200).then_some(()),
    );
    let (_, r3) = a.push_image("app", "v3", b"layer three");
    assert_eq!(r3.status, 201);
    assert_eq!(manifest_status(&b, "v3"), 200);
    wait_for(
        "both members at one position",
        Duration::from_secs(10),
        || {
            let (ta, tb) = (readyz(&a).1, readyz(&b).1);
            let pos = |t: &str| {
                t.split("log position ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string)
            };
            (pos(&ta).is_some() && pos(&ta) == pos(&tb)).then_some(())
        },
    );
}

/// The trust issue's two-tenant check, against a replica: its reads are
/// its own, its writes the primary's, and neither lets a digest cross.
#[test]
fn isolation_holds_against_a_replica() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    let grants = tempfile::tempdir().expect("tempdir");
    let args = common::server::grant_args(grants.path(), &tenants::USERS, tenants::GRANTS);
    let c = two_members(&garage_exe, &etcd_exe, &args);
    tenants::a_digest_never_crosses_tenants(&c.b);
}

/// `/readyz` follows what a member can do: with etcd gone, the replica
/// turns not ready (naming etcd) and the primary, unable to renew its
/// lease, stops; with etcd back, the replica takes over.
#[test]
fn readiness_follows_etcd_and_the_primary() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    let Cluster {
        _dir,
        _garage,
        _etcd: mut etcd,
        mut a,
        b,
    } = two_members(&garage_exe, &etcd_exe, &[]);
    etcd.kill(0);
    let why = wait_not_ready(&b);
    assert!(why.contains("etcd"), "{why}");
    // The primary cannot renew its lease: it stops, naming why.
    let status = wait_for("the primary to stop", Duration::from_secs(30), || {
        a.child.try_wait().expect("wait")
    });
    assert!(!status.success());
    let log = a.log.lock().expect("log").join("\n");
    assert!(log.contains("no longer the primary"), "{log}");
    etcd.restart(0).expect("etcd back");
    wait_role(&b, "primary");
    let (_, r) = b.push_image("app", "after", b"etcd came back");
    assert_eq!(r.status, 201);
}

/// A replica that cannot read the log (its Garage node is down) falls
/// behind the head while the primary goes on through another node: its
/// `/readyz` turns 503 naming the lag once it has been behind for
/// `--max-replica-lag`, and ready again once it has caught up.
#[test]
fn a_lagging_replica_is_not_ready_until_it_catches_up() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::cluster(&garage_exe, &dir.path().join("garage"), 3).expect("garage");
    let etcd = Etcd::start(&etcd_exe, &dir.path().join("etcd"), 1).expect("etcd");
    let lag = ["--max-replica-lag".to_string(), "1s".to_string()];
    let blobs = |i| garage.location(i, "lag").expect("location").to_string();
    let a = member_with(&dir.path().join("a"), free_port(), &etcd, &blobs(0), &lag);
    wait_role(&a, "primary");
    let b = member_with(&dir.path().join("b"), free_port(), &etcd, &blobs(1), &lag);
    wait_role(&b, "replica");
    garage.kill(1).expect("kill the replica's garage node");
    let (_, r) = a.push_image("app", "v1", b"written while the replica cannot read");
    assert_eq!(r.status, 201);
    let why = wait_not_ready(&b);
    assert!(why.contains("replica lag"), "{why}");
    garage.restart(1, 0).expect("garage node back");
    wait_for("the replica to catch up", Duration::from_secs(120), || {
        let (status, text) = readyz(&b);
        (status == 200 && text.contains("lag 0")).then_some(())
    });
    assert_eq!(manifest_status(&b, "v1"), 200);
}

/// The conformance suite against a replica, then (the primary killed)
/// against the replica that took over.
#[test]
fn the_conformance_suite_passes_against_a_replica_and_a_new_primary() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let c = two_members(&garage_exe, &etcd_exe, &["--allow-sparse-manifests".into()]);
    let results = tempfile::tempdir().expect("tempdir");
    let env = [("OCI_DATA_SPARSE", "true")];
    let line = common::server::assert_conformance_passes(
        &tools,
        &c.b,
        &results.path().join("replica"),
        &env,
    );
    assert!(common::server::count(&line, "skipped") <= 2, "{line}");
    // The bindings keep garage, etcd and the directory alive to the end.
    let Cluster {
        _dir,
        _garage,
        _etcd,
        a,
        b,
    } = c;
    a.kill();
    wait_role(&b, "primary");
    let line = common::server::assert_conformance_passes(
        &tools,
        &b,
        &results.path().join("new-primary"),
        &env,
    );
    assert!(common::server::count(&line, "skipped") <= 2, "{line}");
}

/// A tiny deterministic generator (xorshift), so that a failing chaos run
/// can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn sha256(b: &[u8]) -> String {
    ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b).to_string()
}

/// What the client was told was done: the state every member must hold.
#[derive(Default, Debug)]
struct Acknowledged {
    tags: BTreeMap<(String, String), String>,
    deleted_tags: BTreeSet<(String, String)>,
    blobs: BTreeSet<(String, String)>,
    referrers: BTreeMap<(String, String), BTreeSet<String>>,
    /// Chunked uploads finished in one session, and sessions a failover
    /// cut (the client started again).
    sessions_whole: u64,
    sessions_restarted: u64,
    attempts_failed: u64,
    /// The first few failed attempts, for the report.
    failures: Vec<String>,
    /// Each tag's acknowledged changes in order (operation, what, which
    /// member answered), for the report of a tag that does not hold.
    tag_log: BTreeMap<(String, String), Vec<String>>,
}

impl Acknowledged {
    /// Records an acknowledged change of the tag `key`, for the report.
    fn note_tag(&mut self, key: &(String, String), what: String) {
        self.tag_log.entry(key.clone()).or_default().push(what);
    }
}

/// The client of the chaos test: every operation goes to a random member
/// and is retried (at random members) until it is acknowledged.
struct Client {
    addrs: Vec<String>,
    rng: Rng,
    ack: Acknowledged,
}

impl Client {
    /// One attempt at a random member (`None`: no answer at all).
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(String, Response)> {
        let addr = self.addrs[self.rng.below(self.addrs.len())].clone();
        let r = self.send_to(&addr, method, path, headers, body)?;
        Some((addr, r))
    }

    fn send_to(
        &mut self,
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Response> {
        match common::http::try_request(addr, method, path, headers, body) {
            Ok(r) if r.status < 500 => Some(r),
            other => {
                if self.ack.failures.len() < 30 {
                    let what = match other {
                        Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                        Err(e) => e.to_string(),
                    };
                    self.ack
                        .failures
                        .push(format!("{method} {path} at {addr}: {what}"));
                }
                self.ack.attempts_failed += 1;
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        }
    }

    /// Retries `method path` until its status is `ok` (or, after an
    /// attempt with no definite answer, `also`), for at most 60 s: which
    /// member answered, its status, and how many attempts it took.
    fn until(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        ok: u16,
        also: Option<u16>,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut unsure = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.send(method, path, headers, body) {
                Some((a, r)) if r.status == ok || (unsure && Some(r.status) == also) => {
                    return format!("{} from {a} after {attempts} attempts", r.status);
                }
                Some((_, r)) if r.status == 429 => unsure = true,
                Some((_, r)) => panic!(
                    "{method} {path}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                None => unsure = true,
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: no member acknowledged it in 60 s"
            );
        }
    }

    fn push_blob(&mut self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={d}");
        self.until(
            "POST",
            &path,
            &[("Content-Type", "application/octet-stream")],
            data,
            201,
            None,
        );
        self.ack.blobs.insert((repo.to_string(), d.clone()));
        d
    }

    /// POST, PATCH, PUT, each at a random member; a session a failover
    /// cuts is started again.
    fn push_chunked(&mut self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "a chunked upload to {repo}: not done in 60 s"
            );
            let Some((_, start)) =
                self.send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")
            else {
                continue;
            };
            let Some(loc) = start.header("location").map(str::to_string) else {
                continue;
            };
            let range = format!("0-{}", data.len() - 1);
            let patch = self.send(
                "PATCH",
                &loc,
                &[
                    ("Content-Range", &range),
                    ("Content-Type", "application/octet-stream"),
                ],
                data,
            );
            let Some(loc) = patch
                .map(|(_, r)| r)
                .filter(|r| r.status == 202)
                .and_then(|r| r.header("location").map(str::to_string))
            else {
                self.ack.sessions_restarted += 1;
                continue;
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            match self.send("PUT", &format!("{loc}{sep}digest={d}"), &[], b"") {
                Some((_, r)) if r.status == 201 => {
                    self.ack.sessions_whole += 1;
                    self.ack.blobs.insert((repo.to_string(), d.clone()));
                    return d;
                }
                _ => self.ack.sessions_restarted += 1,
            }
        }
    }

    fn mount(&mut self, repo: &str, from: &str, d: &str) {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}");
        self.until("POST", &path, &[], b"", 201, None);
        self.ack.blobs.insert((repo.to_string(), d.to_string()));
    }

    /// The manifest's digest, and which member acknowledged it.
    fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
    ) -> (String, String) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let answer = self.until(
            "PUT",
            &path,
            &[("Content-Type", media_type)],
            body,
            201,
            None,
        );
        (sha256(body), answer)
    }

    fn image(&mut self, repo: &str, n: u64, chunked: bool) -> (String, Vec<u8>) {
        let config = format!("{{\"n\":{n}}}").into_bytes();
        let layer = format!("layer {n} ").repeat(64).into_bytes();
        let c = self.push_blob(repo, &config);
        let l = if chunked {
            self.push_chunked(repo, &layer)
        } else {
            self.push_blob(repo, &layer)
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }))
        .expect("json");
        (l, body)
    }

    /// One random operation.
    fn step(&mut self, n: u64) {
        let repos = ["team/a", "team/b", "other/c"];
        let repo = repos[self.rng.below(repos.len())];
        let tag = format!("t{}", self.rng.below(6));
        match self.rng.below(10) {
            // An image, monolithic or chunked, tagged (a tag move when the
            // tag exists).
            0..=4 => {
                let (_, body) = self.image(repo, n, n.is_multiple_of(3));
                let (d, answer) = self.put_manifest(
                    repo,
                    &tag,
                    &body,
                    "application/vnd.oci.image.manifest.v1+json",
                );
                let key = (repo.to_string(), tag);
                self.ack
                    .note_tag(&key, format!("op {n}: put {d}: {answer}"));
                self.ack.tags.insert(key.clone(), d);
                self.ack.deleted_tags.remove(&key);
            }
            // A mount of a layer into another repository.
            5 => {
                let from = self
                    .ack
                    .blobs
                    .iter()
                    .nth(self.rng.below(self.ack.blobs.len().max(1)))
                    .cloned();
                if let Some((src, d)) = from.filter(|(r, _)| r != repo) {
                    self.mount(repo, &src, &d);
                }
            }
            // A referrer of a tagged image.
            6 | 7 => {
                let target = self
                    .ack
                    .tags
                    .iter()
                    .find(|((r, _), _)| r == repo)
                    .map(|(_, d)| d.clone());
                if let Some(subject) = target {
                    let empty = self.push_blob(repo, b"{}");
                    let body = serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "artifactType": "application/vnd.example.sbom",
                        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
                        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
                        "annotations": {"n": n.to_string()},
                    }))
                    .expect("json");
                    let d = sha256(&body);
                    let _ = self.put_manifest(
                        repo,
                        &d,
                        &body,
                        "application/vnd.oci.image.manifest.v1+json",
                    );
                    self.ack
                        .referrers
                        .entry((repo.to_string(), subject))
                        .or_default()
                        .insert(d);
                }
            }
            // A tag deleted.
            _ => {
                let key = (repo.to_string(), tag.clone());
                if self.ack.tags.contains_key(&key) {
                    // Retried after an unsure attempt, 404 means it went.
                    let answer = self.until(
                        "DELETE",
                        &format!("/v2/{repo}/manifests/{tag}"),
                        &[],
                        b"",
                        202,
                        Some(404),
                    );
                    self.ack.note_tag(&key, format!("op {n}: delete: {answer}"));
                    self.ack.tags.remove(&key);
                    self.ack.deleted_tags.insert(key);
                }
            }
        }
    }

    /// What the member at `addr` lacks of everything acknowledged (empty:
    /// it holds it all). A tag that does not hold comes with the client's
    /// acknowledgements of it and the member's history of it.
    fn check(&self, addr: &str) -> Vec<String> {
        let get = |path: &str, accept: &str| {
            common::http::request(addr, "GET", path, &[("Accept", accept)], b"")
        };
        let mut lacks = Vec::new();
        let oci = "application/vnd.oci.image.manifest.v1+json";
        for ((repo, tag), d) in &self.ack.tags {
            let r = get(&format!("/v2/{repo}/manifests/{tag}"), oci);
            if r.status != 200 || r.header("docker-content-digest") != Some(d.as_str()) {
                let history = get(&format!("/v2/{repo}/_oci/tag-history/{tag}"), "*/*");
                lacks.push(format!(
                    "{addr}: {repo}:{tag} acknowledged as {d}, found {} {:?}\n  the client's acknowledgements:\n    {}\n  the member's tag history: {}",
                    r.status,
                    r.header("docker-content-digest"),
                    self.ack.tag_log[&(repo.clone(), tag.clone())].join("\n    "),
                    String::from_utf8_lossy(&history.body)
                ));
            }
        }
        for (repo, tag) in &self.ack.deleted_tags {
            let r = get(&format!("/v2/{repo}/manifests/{tag}"), oci);
            if r.status != 404 {
                lacks.push(format!(
                    "{addr}: {repo}:{tag} was deleted, found {}",
                    r.status
                ));
            }
        }
        for (repo, d) in &self.ack.blobs {
            let r = common::http::request(addr, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
            if r.status != 200 {
                lacks.push(format!(
                    "{addr}: blob {d} in {repo} acknowledged, then lost ({})",
                    r.status
                ));
            }
        }
        for ((repo, subject), want) in &self.ack.referrers {
            let r = get(
                &format!("/v2/{repo}/referrers/{subject}"),
                "application/vnd.oci.image.index.v1+json",
            );
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let listed: BTreeSet<String> = v["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["digest"].as_str().map(str::to_string))
                .collect();
            if r.status != 200 || !want.is_subset(&listed) {
                lacks.push(format!(
                    "{addr}: referrers of {subject} in {repo}: {} {listed:?} lacks some of {want:?}",
                    r.status
                ));
            }
        }
        lacks
    }
}

/// Watches every cluster's `head` key on etcd until `stop`, and returns
/// each time it went back (a position below one it held before): the log
/// head must only move forward, or the next epoch starts below
/// acknowledged positions and drops them.
fn watch_heads(
    etcd: &Etcd,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, Option<Vec<u8>>)> {
    let client = ocidb_server::cluster::Etcd::parse(&etcd.url()).expect("etcd url");
    std::thread::spawn(move || {
        let mut back = Vec::new();
        let mut highest: BTreeMap<Vec<u8>, (u64, String)> = BTreeMap::new();
        // Events at or below `seen` were handled: a watch that broke off
        // (an etcd member killed) starts again after it.
        let mut seen = 0i64;
        let mut head_key = None;
        while !stop.load(Ordering::Acquire) {
            let watched = client.watch(b"/ocidb/", seen + 1, Duration::from_secs(1), &mut |ev| {
                if let ocidb_server::cluster::etcd::WatchEvent::Put { key, kv } = ev
                    && kv.mod_revision > seen
                {
                    seen = kv.mod_revision;
                    if key.ends_with(b"/head") {
                        head_key = Some(key.clone());
                        let text = String::from_utf8_lossy(&kv.value).into_owned();
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                        let position = v["position"].as_u64().unwrap_or(0);
                        let top = highest.entry(key).or_insert((0, String::new()));
                        if position < top.0 {
                            back.push(format!(
                                "the head went from {} to {text} (revision {})",
                                top.1, kv.mod_revision
                            ));
                        } else {
                            *top = (position, text);
                        }
                    }
                }
                !stop.load(Ordering::Acquire)
            });
            if watched.is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        (back, head_key)
    })
}

/// The primary's index among `members` (by `/readyz`), and its epoch.
fn find_primary(members: &[Option<Server>]) -> Option<(usize, u64)> {
    members.iter().enumerate().find_map(|(i, m)| {
        let m = m.as_ref()?;
        let r = common::http::try_request(&m.addr, "GET", "/readyz", &[], b"").ok()?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let epoch = text
            .split("primary, epoch ")
            .nth(1)?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()?;
        (r.status == 200).then_some((i, epoch))
    })
}

/// Three Garage nodes (replication 3), three etcd members and three
/// ocidb members; a client pushes through random members while members,
/// etcd and Garage nodes are killed in turn, for 20 primary failovers.
/// Nothing acknowledged is lost, and every member converges to the same
/// index, table for table.
#[test]
fn chaos_of_3_garage_3_etcd_3_members_loses_nothing_acknowledged() {
    let Some((garage_exe, etcd_exe)) = garage_and_etcd() else {
        return;
    };
    const FAILOVERS: usize = 20;
    let seed = std::env::var("OCIDB_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_eedc_4a05_u64);
    eprintln!("chaos seed {seed} (OCIDB_CHAOS_SEED replays it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::cluster(&garage_exe, &dir.path().join("garage"), 3).expect("garage");
    let mut etcd = Etcd::start(&etcd_exe, &dir.path().join("etcd"), 3).expect("etcd");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<_> = (0..3).map(|i| dir.path().join(format!("m{i}"))).collect();
    let blobs: Vec<String> = (0..3)
        .map(|i| garage.location(i, "chaos").expect("location").to_string())
        .collect();
    let start = |i: usize, etcd: &Etcd| member(&dirs[i], ports[i], etcd, &blobs[i]);
    let mut members: Vec<Option<Server>> = vec![Some(start(0, &etcd))];
    wait_role(members[0].as_ref().expect("m0"), "primary");
    members.push(Some(start(1, &etcd)));
    members.push(Some(start(2, &etcd)));
    for m in members.iter().flatten() {
        wait_role(m, "");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let heads = watch_heads(&etcd, Arc::clone(&stop));
    let done = Arc::new(AtomicU64::new(0));
    let addrs: Vec<String> = members.iter().flatten().map(|m| m.addr.clone()).collect();
    let client = {
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        let addrs = addrs.clone();
        std::thread::spawn(move || {
            let mut c = Client {
                addrs,
                rng: Rng(seed | 1),
                ack: Acknowledged::default(),
            };
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                c.step(n);
                n += 1;
                done.store(n, Ordering::Release);
            }
            (c, n)
        })
    };

    let mut failovers = 0;
    let mut round = 0usize;
    let mut last_epoch = 0;
    while failovers < FAILOVERS {
        let (p, epoch) = wait_for("a primary", Duration::from_secs(60), || {
            find_primary(&members)
        });
        if epoch != last_epoch && last_epoch != 0 {
            failovers += 1;
        }
        last_epoch = epoch;
        // kill -9 the primary, and start it again (it rejoins as a replica,
        // or wins the next election).
        if let Some(m) = members[p].take() {
            m.kill();
        }
        std::thread::sleep(Duration::from_millis(300));
        members[p] = Some(start(p, &etcd));
        // And one more fault, in turn: a replica, an etcd member, a Garage node.
        let k = (round / 3) % 3;
        match round % 3 {
            0 => {
                let r = (p + 1 + k % 2) % 3;
                if let Some(m) = members[r].take() {
                    m.kill();
                }
                std::thread::sleep(Duration::from_millis(300));
                members[r] = Some(start(r, &etcd));
            }
            1 => {
                etcd.kill(k);
                std::thread::sleep(Duration::from_secs(1));
                etcd.restart(k).expect("etcd member back");
            }
            _ => {
                garage.kill(k).expect("kill a garage node");
                std::thread::sleep(Duration::from_secs(1));
                garage.restart(k, (k + 1) % 3).expect("garage node back");
            }
        }
        round += 1;
        // The new primary must take writes before the next round: the
        // client gets some operations acknowledged under it.
        wait_for("a new primary", Duration::from_secs(60), || {
            find_primary(&members).filter(|&(_, e)| e != epoch)
        });
        let before = done.load(Ordering::Acquire);
        wait_for(
            "operations acknowledged under the new primary",
            Duration::from_secs(60),
            || (done.load(Ordering::Acquire) >= before + 3).then_some(()),
        );
    }
    stop.store(true, Ordering::Release);
    let (client, ops) = client.join().expect("client");
    let (went_back, head_key) = heads.join().expect("head watcher");
    eprintln!(
        "chaos: {failovers} failovers in {round} rounds; {ops} operations acknowledged ({} tags, {} deleted, {} blobs, {} referrers); chunked uploads: {} in one session, {} started again; {} attempts without an answer",
        client.ack.tags.len(),
        client.ack.deleted_tags.len(),
        client.ack.blobs.len(),
        client.ack.referrers.values().map(BTreeSet::len).sum::<usize>(),
        client.ack.sessions_whole,
        client.ack.sessions_restarted,
        client.ack.attempts_failed
    );
    for f in &client.ack.failures {
        eprintln!("  failed attempt: {f}");
    }
    assert!(
        ops >= 3 * FAILOVERS as u64,
        "the client got too little done: {ops}"
    );
    assert!(
        went_back.is_empty(),
        "the log head moved back:\n{}",
        went_back.join("\n")
    );

    // Converged: every member ready at one log position, holding every
    // acknowledged write.
    let positions = wait_for(
        "every member at one position",
        Duration::from_secs(60),
        || {
            let texts: Vec<String> = members
                .iter()
                .flatten()
                .map(readyz)
                .filter(|(s, _)| *s == 200)
                .map(|(_, t)| t)
                .collect();
            // "log position A of H": each member holds the head it knows
            // (A = H), and all know the same one.
            let pos: BTreeSet<(String, String)> = texts
                .iter()
                .filter_map(|t| {
                    let (a, h) = t.split("log position ").nth(1)?.split_once(" of ")?;
                    let h = h.split(',').next()?;
                    Some((a.to_string(), h.to_string()))
                })
                .collect();
            let held = pos.iter().all(|(a, h)| a == h);
            (texts.len() == 3 && pos.len() == 1 && held).then_some(pos)
        },
    );
    // Every member checked before failing: one member or all of them
    // lacking a write tells replication from the log apart.
    let lacks: Vec<String> = members
        .iter()
        .flatten()
        .flat_map(|m| client.check(&m.addr))
        .collect();
    assert!(
        lacks.is_empty(),
        "acknowledged writes lost at {positions:?}:\n{}",
        lacks.join("\n")
    );
    // Table for table: each member's store, opened here once they stop.
    // The client's reads above may still have made the primary write (it
    // records pulls in batches, without fsync), after the positions were
    // read and perhaps only in the log once it is killed: each store first
    // follows the log to the head that etcd holds, as a restarted member
    // would.
    let (primary, _) = find_primary(&members).expect("a primary");
    for m in &mut members {
        if let Some(s) = m.take() {
            s.kill();
        }
    }
    let head_key = head_key.expect("the head watcher saw the log head's key");
    let etcd_client = ocidb_server::cluster::Etcd::parse(&etcd.url()).expect("etcd url");
    let (kv, _) = etcd_client.get(&head_key).expect("read the log head");
    let head: serde_json::Value =
        serde_json::from_slice(&kv.expect("a log head").value).expect("the head is JSON");
    let (head, head_epoch) = (
        head["position"].as_u64().expect("the head's position"),
        head["epoch"].as_u64().expect("the head's epoch"),
    );
    let images: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let loc = garage.location(i, "chaos").expect("location");
            let opts = ocidb::StoreOptions::default()
                .blobs(ocidb::blob::BlobLocation::S3(loc))
                .s3(ocidb::blob::S3Options {
                    credentials: Some((
                        ocidb_bench::garage::ACCESS_KEY.into(),
                        ocidb_bench::garage::SECRET_KEY.into(),
                    )),
                    ..Default::default()
                })
                .replica(true);
            let s = ocidb::Store::open_with(&dirs[i], opts, false).expect("open a member's store");
            let held = s.log_position().expect("position");
            let at = s.follow_log(head, head_epoch).expect("follow the log");
            assert_eq!(at, head, "member {i} follows the log to its head");
            eprintln!("member {i}: at log position {held} when stopped, head {head}");
            s.index_image().expect("image")
        })
        .collect();
    for (i, img) in images.iter().enumerate() {
        assert!(
            img == &images[primary],
            "member {i}'s tables differ from the primary's (member {primary}) at {positions:?}; rows (member {i} / member {primary}):\n{}",
            ocidb::Store::index_image_diff(img, &images[primary], 20)
                .map_or_else(|e| e.to_string(), |rows| rows.join("\n"))
        );
    }
}
