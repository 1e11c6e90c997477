//! Isolation between repositories (issue 26, items 1 and 2): a repository
//! gains a blob only by receiving its verified bytes or by a mount from a
//! repository that holds it; naming a digest, in an upload or in a
//! manifest, gains nothing. Checked through the library and through HTTP
//! with two users whose grants do not overlap. On the main of 2026-12-05
//! the HTTP tests failed: the empty-body upload got 201 and served Bob's
//! bytes to Alice, and so did the manifest naming his layer.

mod common;

use common::server::Server;
use common::tenants;
use ocidb::manifest::OCI_MANIFEST;
use ocidb::{Algorithm, Children, ErrorKind, Hasher, ManifestOptions, PutOptions, ReferrersQuery};
use serde_json::json;

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

/// Bob's image in `b/y`: a config and a layer (the layer a file blob).
fn bobs_image(s: &ocidb::Store) -> (ocidb::Digest, ocidb::Digest, serde_json::Value) {
    let layer = vec![7u8; 100_000];
    let l = s
        .put_bytes(&layer, &PutOptions::default().repository("b/y"))
        .expect("bob's layer");
    let c = s
        .put_bytes(b"{\"bob\":1}", &PutOptions::default().repository("b/y"))
        .expect("bob's config");
    let body = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.digest, "size": c.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.digest, "size": l.size}],
    });
    s.put_manifest(
        "b/y",
        body.to_string().as_bytes(),
        &ManifestOptions::default().tags(["v1"]),
    )
    .expect("bob's manifest");
    (l.digest, c.digest, body)
}

#[test]
fn naming_a_digest_in_a_put_links_nothing() {
    let (_d, s) = common::store();
    let (layer, _, _) = bobs_image(&s);
    for body in [&b""[..], b"not the layer"] {
        let e = s
            .put(body, &PutOptions::expect(layer).repository("a/x"))
            .expect_err("bytes that are not the blob");
        assert_eq!(e.kind(), ErrorKind::InvalidDigest, "{e}");
        assert!(!s.is_member("a/x", &layer).expect("member"));
    }
    // A declared size that disagrees is refused before any byte is hashed.
    let e = s
        .put(
            &[7u8; 100_000][..],
            &PutOptions::expect(layer).size(5).repository("a/x"),
        )
        .expect_err("size");
    assert_eq!(e.kind(), ErrorKind::SizeMismatch, "{e}");
    // The bytes themselves link it, and are not written again.
    let p = s
        .put(
            &[7u8; 100_000][..],
            &PutOptions::expect(layer).repository("a/x"),
        )
        .expect("verified");
    assert!(!p.created);
    assert!(s.is_member("a/x", &layer).expect("member"));
}

#[test]
fn naming_a_digest_in_a_manifest_links_nothing() {
    let (_d, s) = common::store();
    let (layer, config, body) = bobs_image(&s);
    let e = s
        .put_manifest(
            "a/x",
            body.to_string().as_bytes(),
            &ManifestOptions::default(),
        )
        .expect_err("alice's manifest names bob's blobs");
    assert_eq!(e.kind(), ErrorKind::ChildUnknown, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("a/x") && msg.contains("MANIFEST_BLOB_UNKNOWN"),
        "{msg}"
    );
    assert!(
        !msg.contains("b/y"),
        "another repository's name leaked: {msg}"
    );
    assert!(!s.is_member("a/x", &config).expect("member"));
    assert!(!s.is_member("a/x", &layer).expect("member"));
    assert!(s.tag_map("a/x").map(|t| t.is_empty()).unwrap_or(true));
    // Sparse, on request: accepted, and still nothing is linked.
    let d = Hasher::digest_of(Algorithm::Sha256, body.to_string().as_bytes());
    s.put_manifest(
        "a/x",
        body.to_string().as_bytes(),
        &ManifestOptions::default().children(Children::AllowMissing),
    )
    .expect("sparse");
    assert!(s.is_member("a/x", &d).expect("the manifest itself"));
    assert!(!s.is_member("a/x", &config).expect("member"));
    assert!(!s.is_member("a/x", &layer).expect("member"));
    // A mount from the repository that holds them is the other way in.
    assert!(s
        .mount_blob("a/x", &layer, Some("b/y"))
        .expect("mount")
        .is_some());
    assert!(s.is_member("a/x", &layer).expect("member"));
    // A mount from a repository that does not hold it gains nothing.
    assert!(s
        .mount_blob("a/z", &config, Some("a/x"))
        .expect("mount")
        .is_none());
}

#[test]
fn a_referrer_of_an_absent_subject_is_still_accepted() {
    let (_d, s) = common::store();
    s.put_bytes(b"{}", &PutOptions::default().repository("a/x"))
        .expect("empty");
    let absent = Hasher::digest_of(Algorithm::Sha256, b"not pushed yet");
    let body = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": absent, "size": 10},
    });
    let put = s
        .put_manifest(
            "a/x",
            body.to_string().as_bytes(),
            &ManifestOptions::default(),
        )
        .expect("the spec allows a dangling subject");
    let listed = s
        .referrers("a/x", &absent, &ReferrersQuery::default())
        .expect("referrers");
    assert_eq!(listed.index.manifests[0].digest, put.digest);
}

/// Alice writes `a/*`, Bob writes `b/*`; neither reads the other's.
fn two_tenants(dir: &std::path::Path) -> Server {
    common::server::start_with_grants(dir, &tenants::USERS, tenants::GRANTS, &[])
}

const ALICE: &str = tenants::ALICE;
const BOB: &str = tenants::BOB;

#[test]
fn over_http_a_digest_never_crosses_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    tenants::a_digest_never_crosses_tenants(&two_tenants(dir.path()));
}

/// Issue 26, item 3: the catalog is filtered by grant before it is cut
/// into pages, so no page and no `Link` names a repository the caller may
/// not read (on main of 2026-12-05, Alice's empty pages walked Bob's).
#[test]
fn the_catalog_is_filtered_then_paginated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::server::start_with_grants(
        dir.path(),
        &["alice", "bob"],
        "alice a/* write\nalice z/* read\nbob * write\n",
        &[],
    );
    // Bob's b/* sort between Alice's a/* and z/*.
    let mut names = vec![
        "a/one".to_string(),
        "a/two".to_string(),
        "z/last".to_string(),
    ];
    names.extend((0..20).map(|i| format!("b/r{i:02}")));
    for name in &names {
        let r = server.request(
            "POST",
            &format!(
                "/v2/{name}/blobs/uploads/?digest={}",
                sha256(name.as_bytes())
            ),
            &[("Authorization", BOB)],
            name.as_bytes(),
        );
        assert_eq!(r.status, 201, "{r:?}");
    }
    let mut seen = Vec::new();
    let mut url = "/v2/_catalog?n=1".to_string();
    for _ in 0..10 {
        let r = server.request("GET", &url, &[("Authorization", ALICE)], b"");
        assert_eq!(r.status, 200, "{r:?}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        let page: Vec<String> = v["repositories"]
            .as_array()
            .expect("list")
            .iter()
            .map(|x| x.as_str().expect("name").to_string())
            .collect();
        assert_eq!(page.len(), 1, "a full page until the end: {page:?}");
        seen.extend(page);
        let Some(link) = r.header("link") else {
            break;
        };
        assert!(
            !link.contains("b/r"),
            "the link names Bob's repository: {link}"
        );
        url = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .expect("url")
            .to_string();
    }
    assert_eq!(seen, ["a/one", "a/two", "z/last"]);
    // Bob, who may read everything, pages through all of it.
    let r = server.request("GET", "/v2/_catalog?n=100", &[("Authorization", BOB)], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        v["repositories"].as_array().map(Vec::len),
        Some(names.len())
    );
}

/// A refused request names who made it in the access log: a 403 for an
/// authenticated user carries the user, so that denials can be traced.
#[test]
fn a_denied_request_logs_its_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::server::start_with_grants_env(
        dir.path(),
        &["alice", "bob"],
        "alice a/* write\nbob b/* write\n",
        &[],
        &[("OCIDB_LOG_FORMAT", "json"), ("OCIDB_LOG", "info")],
    );
    let r = server.request("GET", "/v2/a/x/tags/list", &[("Authorization", BOB)], b"");
    assert_eq!(r.status, 403, "{r:?}");
    let e = server.access_event("/v2/a/x/tags/list");
    assert_eq!(e["status"], 403, "{e}");
    assert_eq!(e["user"], "bob", "{e}");
}
