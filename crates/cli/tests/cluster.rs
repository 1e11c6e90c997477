//! `ocidb serve --cluster`: members on one Garage bucket and one etcd, as
//! real processes on 127.0.0.1. A replica serves reads from its own index
//! and passes writes to the primary; killing the primary (`kill -9`) makes
//! a replica the primary within about the lease, with nothing
//! acknowledged lost; the old primary comes back as a replica.
//!
//! Skipped with a line without `etcd` or `garage` (a failure under
//! `CI=true`, where `.ci/run` installs both).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::etcd::{free_port, Etcd};
use common::server::Server;
use common::tenants;
use ocidb_bench::garage::Garage;

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
    let etcd = Etcd::start(etcd_exe, &dir.path().join("etcd"), 1);
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
    let Some(garage_exe) = common::garage::exe() else {
        return;
    };
    let Some(etcd_exe) = common::etcd::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&garage_exe, &dir.path().join("garage")).expect("garage");
    let blobs = garage.location(0, "cluster").expect("location").to_string();
    let etcd = Etcd::start(&etcd_exe, &dir.path().join("etcd"), 1);
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
    let Some(garage_exe) = common::garage::exe() else {
        return;
    };
    let Some(etcd_exe) = common::etcd::exe() else {
        return;
    };
    let grants = tempfile::tempdir().expect("tempdir");
    let args = common::server::grant_args(grants.path(), &tenants::USERS, tenants::GRANTS);
    let c = two_members(&garage_exe, &etcd_exe, &args);
    tenants::a_digest_never_crosses_tenants(&c.b);
}

/// The conformance suite against a replica, then (the primary killed)
/// against the replica that took over.
#[test]
fn the_conformance_suite_passes_against_a_replica_and_a_new_primary() {
    let Some(garage_exe) = common::garage::exe() else {
        return;
    };
    let Some(etcd_exe) = common::etcd::exe() else {
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
