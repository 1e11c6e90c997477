//! Pushes and GC agree (issue 26, item 5), through HTTP: a manifest whose
//! blob is missing gets 400 `MANIFEST_BLOB_UNKNOWN`, one whose blob a GC
//! just swept gets a retryable 503, never 201; an upload session's lease
//! lasts the grace period (`--upload-lease`), not a day, so with `--grace
//! 0s` an abandoned upload is collected. On the main of 2026-12-05 such
//! manifests got 201 and the uploads were kept for 24 hours.

mod common;

use common::server::Server;
use ocidb::manifest::OCI_MANIFEST;
use ocidb::{Algorithm, Hasher};

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

fn manifest(layer: &[u8]) -> String {
    serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": layer.len()}],
    })
    .to_string()
}

#[test]
fn a_manifest_push_never_gets_201_for_missing_or_swept_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("store"),
        &["--gc-interval", "1s", "--grace", "0s", "--delete-untagged"],
    );
    let put = |body: &str| {
        server.request(
            "PUT",
            "/v2/p/app/manifests/v1",
            &[("Content-Type", OCI_MANIFEST)],
            body.as_bytes(),
        )
    };
    // Never pushed: 400, naming the first missing blob (the config).
    let r = put(&manifest(b"never pushed"));
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN"),
        "{r:?}"
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains(&sha256(b"{}")),
        "{r:?}"
    );
    // Pushed through an upload session, then left alone: with no grace its
    // lease is over at once and the scheduled GC sweeps it.
    let layer = b"an abandoned layer".to_vec();
    let cfg = server.request(
        "POST",
        &format!("/v2/p/app/blobs/uploads/?digest={}", sha256(b"{}")),
        &[],
        b"{}",
    );
    assert_eq!(cfg.status, 201, "{cfg:?}");
    let start = server.request("POST", "/v2/p/app/blobs/uploads/", &[], b"");
    let location = start.header("location").expect("location").to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = server.request(
        "PUT",
        &format!("{location}{sep}digest={}", sha256(&layer)),
        &[],
        &layer,
    );
    assert_eq!(done.status, 201, "{done:?}");
    let blob = format!("/v2/p/app/blobs/{}", sha256(&layer));
    let mut swept = false;
    for _ in 0..300 {
        let cfg = format!("/v2/p/app/blobs/{}", sha256(b"{}"));
        if server.request("HEAD", &blob, &[], b"").status == 404
            && server.request("HEAD", &cfg, &[], b"").status == 404
        {
            swept = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(swept, "the abandoned upload was collected");
    // A push that needed it now: a retry, not 201 and not "unknown".
    let r = put(&manifest(&layer));
    assert_eq!((r.status, r.code().as_str()), (503, "UNAVAILABLE"), "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("retry"), "{r:?}");
}
