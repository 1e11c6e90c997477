//! The registry mounted in a host's own axum app (the `embed` example):
//! the host's routes and the registry's answer side by side, the layers
//! (authentication, access log, metrics) apply to the registry's routes
//! only, and the OCI conformance suite passes against the embedded app.

#[path = "../../../tests/common/mod.rs"]
mod common;

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use std::sync::Arc;

use common::http::request;
use ocidb::{Algorithm, Hasher, Store};
use ocidb_server::{Access, ServeOptions};

/// The embed example's app on a free port, on a runtime of its own
/// thread; stopped when dropped.
struct Host {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    fn start(store: Arc<Store>, opts: ServeOptions) -> Host {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let (app, registry) = embed::app(store, &opts);
                let maintenance = tokio::spawn(registry.maintenance());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr").to_string())
                    .expect("send addr");
                embed::serve(listener, app, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
                maintenance.abort();
            });
        });
        let addr = addr_rx.recv().expect("the host started");
        Host {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn the_host_routes_and_the_registry_answer_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::create(dir.path()).expect("store"));
    let host = Host::start(Arc::clone(&store), ServeOptions::default());
    let a = host.addr.as_str();

    let r = request(a, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, text(&r.body)), (200, "ok".to_string()));
    let r = request(a, "GET", "/v2/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    // A path neither serves is the host's 404 (axum's, empty), not the
    // registry's NAME_UNKNOWN: the registry routes only /v2.
    let r = request(a, "GET", "/nope", &[], b"");
    assert_eq!((r.status, r.body.len()), (404, 0));

    // A push through the mounted routes lands in the store.
    let data = b"a layer pushed through the host's app";
    let d = Hasher::digest_of(Algorithm::Sha256, data);
    let r = request(
        a,
        "POST",
        &format!("/v2/host/app/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    assert!(store.exists(&d).expect("exists"));
    let r = request(a, "GET", &format!("/v2/host/app/blobs/{d}"), &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &data[..]));
    // Errors carry the engine's OCI codes (ErrorKind::oci_code), in the
    // registry's routes and in the host's own.
    let r = request(a, "GET", "/v2/host/app/manifests/missing", &[], b"");
    assert_eq!((r.status, r.code()), (404, "MANIFEST_UNKNOWN".to_string()));
    let r = request(a, "GET", &format!("/host/size/{d}"), &[], b"");
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert!(text(&r.body).contains(&format!("\"size\":{}", data.len())));
    let other = Hasher::digest_of(Algorithm::Sha256, b"never pushed");
    let r = request(a, "GET", &format!("/host/size/{other}"), &[], b"");
    assert_eq!((r.status, r.code()), (404, "BLOB_UNKNOWN".to_string()));
    let r = request(a, "GET", "/host/size/sha256:nothex", &[], b"");
    assert_eq!((r.status, r.code()), (400, "DIGEST_INVALID".to_string()));

    // The metrics layer counted the registry's requests, and only those.
    let r = request(a, "GET", "/internal/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let m = text(&r.body);
    assert!(m.contains("route=\"blobs\""), "{m}");
    assert!(!m.contains("healthz"), "{m}");
}

#[test]
fn the_authentication_layer_guards_the_registry_and_not_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("htpasswd");
    let access = Access::load(&htpasswd, None, false).expect("access");
    let store = Arc::new(Store::create(dir.path().join("store")).expect("store"));
    let host = Host::start(store, ServeOptions::default().access(access));
    let a = host.addr.as_str();
    assert_eq!(request(a, "GET", "/hello", &[], b"").status, 200);
    let r = request(a, "GET", "/v2/", &[], b"");
    assert_eq!((r.status, r.code()), (401, "UNAUTHORIZED".to_string()));
    // alice:secret
    let r = request(
        a,
        "GET",
        "/v2/",
        &[("Authorization", "Basic YWxpY2U6c2VjcmV0")],
        b"",
    );
    assert_eq!(r.status, 200);
    // The name is checked before credentials: a bad name is 400 for anyone.
    let r = request(a, "GET", "/v2/Bad..Name/tags/list", &[], b"");
    assert_eq!((r.status, r.code()), (400, "NAME_INVALID".to_string()));
}

/// `/livez` answers while the process does; `/readyz` while the store
/// takes writes: a failed fsync poisons it, and the probe says so (503,
/// naming why) until the store is reopened.
#[test]
fn the_probes_follow_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = ocidb::faults::FaultInjector::new();
    let store = Arc::new(
        Store::open_with(
            dir.path(),
            ocidb::StoreOptions::default().faults(Arc::clone(&faults)),
            true,
        )
        .expect("store"),
    );
    let host = Host::start(Arc::clone(&store), ServeOptions::default());
    let a = host.addr.as_str();
    assert_eq!(request(a, "GET", "/livez", &[], b"").status, 200);
    let r = request(a, "GET", "/readyz", &[], b"");
    assert_eq!((r.status, text(&r.body)), (200, "ready\n".to_string()));
    // The next fsync of a blob file fails: the push fails, the store is
    // poisoned, and the probe turns unready.
    faults.fail_fsync(ocidb::faults::SyncTarget::BlobFile, 1);
    let data = ocidb_testkit::deterministic_bytes(b"poison", 200_000);
    let d = Hasher::digest_of(Algorithm::Sha256, &data);
    let r = request(
        a,
        "POST",
        &format!("/v2/probe/app/blobs/uploads/?digest={d}"),
        &[],
        &data,
    );
    assert!(r.status >= 500, "{} {}", r.status, text(&r.body));
    let r = request(a, "GET", "/readyz", &[], b"");
    assert_eq!(r.status, 503, "{}", text(&r.body));
    assert!(text(&r.body).contains("poisoned"), "{}", text(&r.body));
    // Only a restart reopens a poisoned store: liveness says so, for an
    // orchestrator to restart the process.
    let r = request(a, "GET", "/livez", &[], b"");
    assert_eq!(r.status, 503, "{}", text(&r.body));
    assert!(text(&r.body).contains("restart"), "{}", text(&r.body));
}

#[test]
fn the_conformance_suite_passes_against_the_embedded_router() {
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::create(dir.path().join("store")).expect("store"));
    let host = Host::start(store, ServeOptions::default());
    let line = common::http::assert_conformance_passes(
        &tools,
        &host.addr,
        &dir.path().join("results"),
        &[],
    );
    assert!(common::http::count(&line, "skipped") <= 4, "{line}");
}
