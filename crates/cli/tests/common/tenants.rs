//! The two-tenant isolation check of the trust issue, run against any
//! server: one process (tests/isolation.rs) or a cluster replica
//! (tests/cluster.rs).
#![allow(dead_code)]

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{Algorithm, Hasher};
use serde_json::json;

use super::server::Server;

/// Alice writes `a/*`, Bob writes `b/*`; neither reads the other's.
pub const GRANTS: &str = "alice a/* write\nbob b/* write\n";
pub const USERS: [&str; 2] = ["alice", "bob"];
pub const ALICE: &str = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
pub const BOB: &str = "Basic Ym9iOnNlY3JldA=="; // bob:secret

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

/// Bob pushes an image; Alice, naming its digests every way the API
/// allows (an upload without the bytes, a manifest, a mount from his
/// repository), gains nothing; her own bytes are hers.
pub fn a_digest_never_crosses_tenants(server: &Server) {
    let auth = |who| [("Authorization", who)];
    // Bob pushes an image to b/y.
    let (layer, config) = (vec![9u8; 100_000], b"{\"bob\":2}".to_vec());
    for bytes in [&layer, &config] {
        let r = server.request(
            "POST",
            &format!("/v2/b/y/blobs/uploads/?digest={}", sha256(bytes)),
            &auth(BOB),
            bytes,
        );
        assert_eq!(r.status, 201, "{r:?}");
    }
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    })
    .to_string();
    let r = server.request(
        "PUT",
        "/v2/b/y/manifests/v1",
        &[("Authorization", BOB), ("Content-Type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let layer_url = format!("/v2/a/x/blobs/{}", sha256(&layer));

    // 1. A monolithic upload naming Bob's digest, with no bytes or wrong ones.
    for body in [&b""[..], b"guess"] {
        let r = server.request(
            "POST",
            &format!("/v2/a/x/blobs/uploads/?digest={}", sha256(&layer)),
            &auth(ALICE),
            body,
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "DIGEST_INVALID"),
            "{r:?}"
        );
        let get = server.request("GET", &layer_url, &auth(ALICE), b"");
        assert_eq!(get.status, 404, "Bob's layer leaked to a/x: {get:?}");
    }
    // The same through a session finished with PUT ?digest=.
    let start = server.request("POST", "/v2/a/x/blobs/uploads/", &auth(ALICE), b"");
    assert_eq!(start.status, 202, "{start:?}");
    let location = start.header("location").expect("location").to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = server.request(
        "PUT",
        &format!("{location}{sep}digest={}", sha256(&layer)),
        &auth(ALICE),
        b"",
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "DIGEST_INVALID"),
        "{r:?}"
    );
    assert_eq!(
        server.request("GET", &layer_url, &auth(ALICE), b"").status,
        404
    );

    // 2. A manifest naming Bob's blobs.
    let r = server.request(
        "PUT",
        "/v2/a/x/manifests/stolen",
        &[("Authorization", ALICE), ("Content-Type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN"),
        "{r:?}"
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("b/y"));
    assert_eq!(
        server.request("GET", &layer_url, &auth(ALICE), b"").status,
        404
    );
    let by_digest = format!("/v2/a/x/manifests/{}", sha256(manifest.as_bytes()));
    assert_eq!(
        server.request("GET", &by_digest, &auth(ALICE), b"").status,
        404,
        "Bob's manifest by digest"
    );

    // 3. A mount from a repository Alice may not read: a session, no blob.
    let r = server.request(
        "POST",
        &format!("/v2/a/x/blobs/uploads/?mount={}&from=b/y", sha256(&layer)),
        &auth(ALICE),
        b"",
    );
    assert_eq!(r.status, 202, "no mount without read on the source: {r:?}");
    assert_eq!(
        server.request("GET", &layer_url, &auth(ALICE), b"").status,
        404
    );

    // 4. Alice's own bytes are hers: the upload links the stored blob.
    let r = server.request(
        "POST",
        &format!("/v2/a/x/blobs/uploads/?digest={}", sha256(&layer)),
        &auth(ALICE),
        &layer,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let get = server.request("GET", &layer_url, &auth(ALICE), b"");
    assert_eq!((get.status, get.body.len()), (200, layer.len()));
}
