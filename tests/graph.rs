//! Manifest ingest and the reference graph through the public API.

use std::sync::Arc;

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST, ORAS_ARTIFACT};
use ocidb::{
    Algorithm, Children, Descriptor, Digest, EdgeKind, Error, Hasher, ManifestOptions,
    ManifestParser, ParsedManifest, PutOptions, Reference, ReferrersQuery, Store, WalkNode,
};
use serde_json::{json, Value};

mod common;

use common::{blob, store};

fn image(s: &Store, repo: &str, name: &str, tags: &[&str]) -> (Digest, Value) {
    let cfg = blob(
        s,
        format!("{{\"name\":\"{name}\"}}").as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    );
    let layer = blob(
        s,
        format!("layer of {name}").as_bytes(),
        "application/vnd.oci.image.layer.v1.tar",
    );
    put(
        s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}),
        tags,
    )
}

fn put(s: &Store, repo: &str, body: &Value, tags: &[&str]) -> (Digest, Value) {
    common::push_children(s, repo, body);
    let bytes = body.to_string();
    let p = s
        .put_manifest(
            repo,
            bytes.as_bytes(),
            &ManifestOptions::default().tags(tags.iter().map(std::string::ToString::to_string)),
        )
        .expect("manifest put");
    let mt = body["mediaType"].as_str().unwrap_or_default();
    (
        p.digest,
        json!({"mediaType": mt, "digest": p.digest, "size": p.size}),
    )
}

fn referrer(s: &Store, repo: &str, subject: &Value, artifact_type: &str, n: u32) -> Digest {
    let payload = blob(
        s,
        format!("{artifact_type} #{n}").as_bytes(),
        "application/octet-stream",
    );
    let empty = blob(s, b"{}", "application/vnd.oci.empty.v1+json");
    put(
        s,
        repo,
        &json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": empty, "layers": [payload], "subject": subject,
            "annotations": {"n": n.to_string()}
        }),
        &[],
    )
    .0
}

fn helm_chart(wordpress: &Value, mysql: &Value, s: &Store) -> Value {
    let mut blobs = vec![
        blob(
            s,
            b"{\"name\":\"wordpress\"}",
            "application/vnd.cncf.helm.config.v1+json",
        ),
        blob(
            s,
            b"chart-bytes",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ),
        blob(
            s,
            b"provenance",
            "application/vnd.cncf.helm.chart.provenance.v1.prov",
        ),
        wordpress.clone(),
        mysql.clone(),
    ];
    for (i, b) in blobs.iter_mut().enumerate() {
        b["comment"] = json!(format!("entry {i}"));
    }
    json!({
        "mediaType": ORAS_ARTIFACT,
        "artifactType": "application/vnd.cncf.helm.vFuture+json",
        "blobs": blobs
    })
}

#[test]
fn seed_scenario_helm_chart_refers_to_two_images() {
    let (_d, s) = store();
    let (wp, wp_desc) = image(&s, "charts/wordpress", "wordpress", &[]);
    let (my, my_desc) = image(&s, "charts/wordpress", "mysql", &[]);
    let chart = helm_chart(&wp_desc, &my_desc, &s);
    let (chart_d, _) = put(&s, "charts/wordpress", &chart, &["1.0.0"]);

    let succ = s.successors(&chart_d).expect("successors");
    assert_eq!(succ.len(), 5, "{succ:?}");
    let manifests: Vec<Digest> = succ
        .iter()
        .filter(|e| e.kind == EdgeKind::Manifest)
        .map(|e| e.descriptor.digest)
        .collect();
    assert_eq!(manifests.len(), 2);
    assert!(manifests.contains(&wp) && manifests.contains(&my));
    assert_eq!(succ.iter().filter(|e| e.kind == EdgeKind::Blob).count(), 3);

    let preds = s.predecessors(&wp).expect("predecessors");
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0].digest, chart_d);
    assert_eq!(
        preds[0].kinds.iter().collect::<Vec<_>>(),
        vec![EdgeKind::Manifest]
    );

    let walk = s
        .walk("charts/wordpress", &Reference::Tag("1.0.0".into()))
        .expect("walk");
    assert_eq!(
        walk.descriptor.artifact_type.as_deref(),
        Some("application/vnd.cncf.helm.vFuture+json")
    );
    let wp_node = walk
        .children
        .iter()
        .find(|c| c.descriptor.digest == wp)
        .expect("wordpress node");
    assert_eq!(
        wp_node.children.len(),
        2,
        "config and layer below the image"
    );
}

#[test]
fn seed_scenario_invalid_child_digest_stores_nothing() {
    let (_d, s) = store();
    let wp = json!({"mediaType": OCI_MANIFEST, "digest": Hasher::digest_of(Algorithm::Sha256, b"wp"), "size": 10});
    let bad = "sha256:3785693bd43e8246a8c166233392b33143f7f5e396c480f74538e5738fb6g27";
    let my = json!({"mediaType": OCI_MANIFEST, "digest": bad, "size": 10});
    let chart = helm_chart(&wp, &my, &s);
    let before = s.repositories().expect("repos");
    let body = chart.to_string();
    let err = s
        .put_manifest("charts/x", body.as_bytes(), &ManifestOptions::default())
        .expect_err("rejected");
    assert!(
        err.to_string().contains(bad),
        "error names the digest: {err}"
    );
    let d = Hasher::digest_of(Algorithm::Sha256, body.as_bytes());
    assert!(!s.exists(&d).expect("exists"));
    assert_eq!(
        s.repositories().expect("repos"),
        before,
        "no repository was created"
    );
    assert!(s
        .predecessors(&Hasher::digest_of(Algorithm::Sha256, b"wp"))
        .expect("preds")
        .is_empty());
}

#[test]
fn referrers_are_isolated_per_repository() {
    let (_d, s) = store();
    let (subject, desc) = image(&s, "team-a/app", "app", &["v1"]);
    // The same subject bytes pushed to a second repository.
    let body = s.read(&subject).expect("read");
    common::push_children(
        &s,
        "team-b/app",
        &serde_json::from_slice(&body).expect("json"),
    );
    s.put_manifest("team-b/app", &body, &ManifestOptions::default())
        .expect("copy");
    let sig_a = referrer(
        &s,
        "team-a/app",
        &desc,
        "application/vnd.cncf.notary.signature",
        1,
    );
    let sig_b = referrer(
        &s,
        "team-b/app",
        &desc,
        "application/vnd.cncf.notary.signature",
        2,
    );
    let list = |repo| -> Vec<Digest> {
        s.referrers(repo, &subject, &ReferrersQuery::default())
            .expect("referrers")
            .index
            .manifests
            .iter()
            .map(|m| m.digest)
            .collect()
    };
    assert_eq!(list("team-a/app"), vec![sig_a]);
    assert_eq!(list("team-b/app"), vec![sig_b]);
    assert!(
        list("team-c/app").is_empty(),
        "unknown repository: empty, not an error"
    );
    // Manifest reads are isolated too.
    assert!(matches!(
        s.get_manifest("team-b/app", &Reference::Digest(sig_a)),
        Err(Error::ManifestUnknown { .. })
    ));
    // Tags are isolated.
    assert_eq!(s.tags("team-a/app", None, None).expect("tags"), vec!["v1"]);
    assert!(s.tags("team-b/app", None, None).expect("tags").is_empty());
}

#[test]
fn referrers_response_filter_order_and_pagination() {
    let (_d, s) = store();
    let (subject, desc) = image(&s, "r/app", "app", &["v1"]);
    let mut sigs = Vec::new();
    let mut sboms = Vec::new();
    for n in 0..7 {
        sigs.push(referrer(
            &s,
            "r/app",
            &desc,
            "application/vnd.cncf.notary.signature",
            n,
        ));
    }
    for n in 0..3 {
        sboms.push(referrer(&s, "r/app", &desc, "application/spdx+json", n));
    }
    let all = s
        .referrers("r/app", &subject, &ReferrersQuery::default())
        .expect("all");
    let v = serde_json::to_value(&all.index).expect("json");
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    assert_eq!(all.index.manifests.len(), 10);
    assert!(all.filters_applied.is_empty());
    for m in &all.index.manifests {
        assert!(m.artifact_type.is_some());
        assert!(m.annotations.as_ref().is_some_and(|a| a.contains_key("n")));
        assert_eq!(m.media_type, OCI_MANIFEST);
    }
    // Deterministic: the same query gives the same order.
    let again = s
        .referrers("r/app", &subject, &ReferrersQuery::default())
        .expect("again");
    assert_eq!(again.index, all.index);

    let f = s
        .referrers(
            "r/app",
            &subject,
            &ReferrersQuery::default().artifact_type("application/spdx+json"),
        )
        .expect("filtered");
    assert_eq!(f.filters_applied, vec!["artifactType"]);
    let mut got: Vec<Digest> = f.index.manifests.iter().map(|m| m.digest).collect();
    got.sort();
    sboms.sort();
    assert_eq!(got, sboms);
    let none = s
        .referrers(
            "r/app",
            &subject,
            &ReferrersQuery::default().artifact_type("application/none"),
        )
        .expect("no match");
    assert!(none.index.manifests.is_empty());
    assert_eq!(none.filters_applied, vec!["artifactType"]);

    // Pages of 3 walk the same list.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = s
            .referrers(
                "r/app",
                &subject,
                &ReferrersQuery::default().cursor(cursor.as_deref()).limit(3),
            )
            .expect("page");
        assert!(p.index.manifests.len() <= 3);
        paged.extend(p.index.manifests);
        match p.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, all.index.manifests);
    assert!(s
        .referrers(
            "r/app",
            &subject,
            &ReferrersQuery::default().cursor("garbage")
        )
        .is_err());
}

#[test]
fn dangling_referrers_and_sparse_children_are_legal_when_allowed() {
    let (_d, s) = store();
    let absent = json!({"mediaType": OCI_MANIFEST, "digest": Hasher::digest_of(Algorithm::Sha256, b"gone"), "size": 5});
    let r = referrer(&s, "r/x", &absent, "application/vnd.example", 1);
    let subject = Hasher::digest_of(Algorithm::Sha256, b"gone");
    let list = s
        .referrers("r/x", &subject, &ReferrersQuery::default())
        .expect("referrers");
    assert_eq!(list.index.manifests[0].digest, r);

    let missing_layer = json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Hasher::digest_of(Algorithm::Sha256, b"nope"), "size": 4});
    let cfg = blob(&s, b"{}", "application/vnd.oci.image.config.v1+json");
    let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [missing_layer]});
    common::push_children(&s, "r/x", &body);
    let body = body.to_string();
    let err = s
        .put_manifest("r/x", body.as_bytes(), &ManifestOptions::default())
        .expect_err("strict");
    assert!(matches!(err, Error::ChildUnknown { .. }), "{err}");
    assert!(err.to_string().contains("MANIFEST_BLOB_UNKNOWN"));
    let d = s
        .put_manifest(
            "r/x",
            body.as_bytes(),
            &ManifestOptions::default().children(Children::AllowMissing),
        )
        .expect("sparse ok")
        .digest;
    let walk = s.walk("r/x", &Reference::Digest(d)).expect("walk");
    let missing: Vec<&WalkNode> = walk.children.iter().filter(|c| !c.present).collect();
    assert_eq!(missing.len(), 1);
}

#[test]
fn tags_sort_paginate_move_and_explain_errors() {
    let (_d, s) = store();
    let (a, _) = image(&s, "r/t", "a", &["v2", "latest", "v1"]);
    let (b, _) = image(&s, "r/t", "b", &[]);
    assert_eq!(
        s.tags("r/t", None, None).expect("tags"),
        vec!["latest", "v1", "v2"]
    );
    assert_eq!(
        s.tags("r/t", Some("latest"), Some(1)).expect("page"),
        vec!["v1"]
    );
    assert_eq!(
        s.tags("r/t", Some("v2"), None).expect("page"),
        Vec::<String>::new()
    );
    s.tag("r/t", "latest", &b).expect("retag");
    assert_eq!(
        s.resolve("r/t", &Reference::Tag("latest".into()))
            .expect("resolve"),
        b
    );
    assert_eq!(
        s.resolve("r/t", &Reference::Tag("v1".into()))
            .expect("resolve"),
        a
    );
    assert_eq!(s.untag("r/t", "v1").expect("untag"), a);
    let err = s.untag("r/t", "v1").expect_err("gone");
    let msg = err.to_string();
    // The library names only what was asked for: a registry front
    // echoing it must not leak the repository's other tags.
    assert!(
        msg.contains("`v1`") && !msg.contains("latest") && !msg.contains("v2"),
        "{msg}"
    );
    let err = s
        .tag(
            "r/t",
            "x",
            &Hasher::digest_of(Algorithm::Sha256, b"not here"),
        )
        .expect_err("unknown");
    assert!(matches!(err, Error::ManifestUnknown { .. }));
    let err = s.tags("r/nope", None, None).expect_err("no repo");
    assert!(
        err.to_string().contains("r/nope") && !err.to_string().contains("r/t"),
        "other repositories are never listed: {err}"
    );
    for bad in ["UPPER", "a//b", "/a", "a/", "a/../b", ""] {
        assert!(
            matches!(
                s.tags(bad, None, None),
                Err(Error::InvalidRepository { .. })
            ),
            "{bad}"
        );
    }
    for bad in ["-x", "a/b", &"t".repeat(129)] {
        assert!(
            matches!(s.tag("r/t", bad, &a), Err(Error::InvalidTag { .. })),
            "{bad}"
        );
    }
}

#[test]
fn referrers_tag_schema_index_lists_referrers_until_untagged() {
    let (_d, s) = store();
    let (subject, _) = image(&s, "r/n", "signed", &["v1"]);
    // A referrer without a subject field, listed only by the fallback index.
    let (sig, sig_desc) = image(&s, "r/n", "detached-signature", &[]);
    let mut entry = sig_desc.clone();
    entry["artifactType"] = json!("application/vnd.cncf.notary.signature");
    let tag = ocidb::names::referrers_tag_for(&subject);
    put(
        &s,
        "r/n",
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}),
        &[&tag],
    );
    let list = s
        .referrers("r/n", &subject, &ReferrersQuery::default())
        .expect("referrers");
    assert_eq!(list.index.manifests.len(), 1);
    assert_eq!(list.index.manifests[0].digest, sig);
    // The manifest's own artifactType wins over what the index claims.
    let own = s.inspect(&sig, None).expect("inspect").artifact_type;
    assert_ne!(
        own.as_deref(),
        Some("application/vnd.cncf.notary.signature")
    );
    assert_eq!(list.index.manifests[0].artifact_type, own);
    s.untag("r/n", &tag).expect("untag");
    assert!(s
        .referrers("r/n", &subject, &ReferrersQuery::default())
        .expect("referrers")
        .index
        .manifests
        .is_empty());

    // The store can produce that fallback index itself.
    let (_, subject_desc) = (
        subject,
        json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}),
    );
    let r = referrer(&s, "r/n", &subject_desc, "application/spdx+json", 1);
    let idx: Value =
        serde_json::from_slice(&s.referrers_tag_index("r/n", &subject).expect("index"))
            .expect("json");
    assert_eq!(idx["manifests"][0]["digest"], json!(r));
}

#[test]
fn walks_terminate_on_referrer_chains_and_tag_schema_cycles() {
    let (_d, s) = store();
    let (root, root_desc) = image(&s, "r/c", "root", &["v1"]);
    // A chain: signature on attestation on sbom on image.
    let mut subject = root_desc;
    let mut chain = Vec::new();
    for (i, at) in [
        "application/spdx+json",
        "application/vnd.in-toto+json",
        "application/vnd.cncf.notary.signature",
    ]
    .iter()
    .enumerate()
    {
        let d = referrer(&s, "r/c", &subject, at, i as u32);
        let size = s.stat(&d).expect("stat").size;
        subject = json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size});
        chain.push(d);
    }
    // A cycle through the tag schema: the index tagged sha256-<root> lists root.
    let tag = ocidb::names::referrers_tag_for(&root);
    let size = s.stat(&root).expect("stat").size;
    put(
        &s,
        "r/c",
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": root, "size": size, "artifactType": "application/x-self"}]}),
        &[&tag],
    );
    let walk = s
        .walk("r/c", &Reference::Tag("v1".into()))
        .expect("walk terminates");
    let mut expanded = Vec::new();
    fn collect(n: &WalkNode, out: &mut Vec<Digest>) {
        if !n.repeated {
            out.push(n.descriptor.digest);
        }
        for c in &n.children {
            collect(c, out);
        }
    }
    collect(&walk, &mut expanded);
    let mut uniq = expanded.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), expanded.len(), "every node expanded once");
    for d in chain {
        assert!(expanded.contains(&d), "chain member {d} reached");
    }
}

#[test]
fn duplicate_descriptors_make_one_edge() {
    let (_d, s) = store();
    let cfg = blob(&s, b"{}", "application/vnd.oci.image.config.v1+json");
    let l = blob(&s, b"layer", "application/vnd.oci.image.layer.v1.tar");
    let (d, _) = put(
        &s,
        "r/d",
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [l, l, l]}),
        &[],
    );
    assert_eq!(s.successors(&d).expect("succ").len(), 2);
    let ld = Digest::parse(l["digest"].as_str().expect("digest")).expect("parse");
    assert_eq!(s.predecessors(&ld).expect("preds").len(), 1);
}

#[test]
fn media_types_are_checked_and_unknown_types_stored_opaque() {
    let (_d, s) = store();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string();
    let err = s
        .put_manifest(
            "r/m",
            index.as_bytes(),
            &ManifestOptions::default().media_type(OCI_MANIFEST),
        )
        .expect_err("conflict");
    assert!(matches!(err, Error::MediaTypeConflict { .. }));
    assert!(err.to_string().contains(OCI_INDEX) && err.to_string().contains(OCI_MANIFEST));
    let opaque = s
        .put_manifest(
            "r/m",
            b"{\"anything\": [1,2,3]}",
            &ManifestOptions::default(),
        )
        .expect("opaque");
    assert_eq!(opaque.media_type, None);
    assert!(s.successors(&opaque.digest).expect("succ").is_empty());
    let custom = s
        .put_manifest(
            "r/m",
            b"{\"mediaType\":\"application/x-unknown\"}",
            &ManifestOptions::default(),
        )
        .expect("unknown type stored");
    assert_eq!(custom.media_type.as_deref(), Some("application/x-unknown"));
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    assert!(matches!(
        s.put_manifest("r/m", &big, &ManifestOptions::default()),
        Err(Error::ManifestTooLarge { .. })
    ));
    let not_json = s.put_manifest(
        "r/m",
        b"not json",
        &ManifestOptions::default().media_type(OCI_MANIFEST),
    );
    assert!(matches!(not_json, Err(Error::InvalidManifest { .. })));
}

#[test]
fn custom_manifest_types_can_be_registered() {
    struct Bundle;
    impl ManifestParser for Bundle {
        fn parse(&self, body: &[u8]) -> ocidb::Result<ParsedManifest> {
            let v: Value = serde_json::from_slice(body).map_err(|e| Error::InvalidManifest {
                what: "bundle".into(),
                reason: e.to_string(),
            })?;
            let mut out = ParsedManifest::default();
            for part in v["parts"].as_array().into_iter().flatten() {
                let d = Digest::parse(part.as_str().unwrap_or_default())?;
                out.children.push((
                    EdgeKind::Blob,
                    Descriptor::new("application/octet-stream", d, 0),
                ));
            }
            Ok(out)
        }
    }
    let (_d, s) = store();
    s.register_parser("application/vnd.example.bundle", Arc::new(Bundle));
    let part = s
        .put_bytes(b"part", &PutOptions::default().repository("r/b"))
        .expect("part")
        .digest;
    let body = json!({"mediaType": "application/vnd.example.bundle", "parts": [part]}).to_string();
    let d = s
        .put_manifest("r/b", body.as_bytes(), &ManifestOptions::default())
        .expect("put")
        .digest;
    assert_eq!(s.predecessors(&part).expect("preds")[0].digest, d);
}

#[test]
fn batch_ingest_is_all_or_nothing() {
    let (_d, s) = store();
    let good = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string();
    let bad = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:XYZ", "size": 1}]}).to_string();
    let err = s
        .put_manifests(
            "r/batch",
            &[
                (good.as_bytes(), ManifestOptions::default()),
                (bad.as_bytes(), ManifestOptions::default()),
            ],
        )
        .expect_err("bad digest");
    assert!(err.to_string().contains("sha256:XYZ"));
    assert!(s.repositories().expect("repos").is_empty());
    let puts = s
        .put_manifests(
            "r/batch",
            &[(
                good.as_bytes(),
                ManifestOptions::default().tags(vec!["a".to_string()]),
            )],
        )
        .expect("ok");
    assert_eq!(puts.len(), 1);
    assert_eq!(s.tags("r/batch", None, None).expect("tags"), vec!["a"]);
}

/// A batch checks every manifest's children before it applies any: one
/// whose config the repository lacks (stored, but pushed to another
/// repository) fails the batch by name, and its valid neighbour is not
/// stored either.
#[test]
fn a_batch_refuses_a_child_its_repository_lacks_and_keeps_nothing() {
    let (_d, s) = store();
    let config = "application/vnd.oci.image.config.v1+json";
    let layer = blob(
        &s,
        b"a shared layer",
        "application/vnd.oci.image.layer.v1.tar",
    );
    let mine = blob(&s, b"{\"n\":1}", config);
    let theirs = blob(&s, b"{\"n\":2}", config);
    let good =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": mine, "layers": [layer]});
    let bad =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": theirs, "layers": [layer]});
    common::push_children(&s, "r/kids", &good);
    common::push_children(&s, "r/other", &bad);
    let (good, bad) = (good.to_string(), bad.to_string());
    let batch = || {
        s.put_manifests(
            "r/kids",
            &[
                (good.as_bytes(), ManifestOptions::default()),
                (bad.as_bytes(), ManifestOptions::default()),
            ],
        )
    };
    let err = batch().expect_err("a child r/kids lacks");
    let theirs = theirs["digest"].as_str().expect("digest");
    match &err {
        Error::ChildUnknown {
            child, repository, ..
        } => {
            assert_eq!(child.to_string(), theirs);
            assert_eq!(repository, "r/kids");
        }
        other => panic!("expected ChildUnknown, got {other:?}"),
    }
    let good_digest = Hasher::digest_of(Algorithm::Sha256, good.as_bytes());
    assert!(
        s.resolve("r/kids", &Reference::Digest(good_digest))
            .is_err(),
        "the valid manifest of a refused batch is not stored"
    );
    // Once r/kids has the config, the same batch goes in whole.
    common::push_children(&s, "r/kids", &serde_json::from_str(&bad).expect("json"));
    let puts = batch().expect("both children are members now");
    assert_eq!(puts.len(), 2);
    assert_eq!(
        s.resolve("r/kids", &Reference::Digest(good_digest))
            .expect("stored"),
        good_digest
    );
}

/// The bodies of a small graph, their blobs pushed to `repo` first: two
/// images sharing a layer, an index of both, referrers of each (two of the
/// first, of different artifact types), and one referrer twice.
fn graph_bodies(s: &Store, repo: &str) -> Vec<String> {
    let layer = blob(s, b"shared base", "application/vnd.oci.image.layer.v1.tar");
    let empty = blob(s, b"{}", "application/vnd.oci.empty.v1+json");
    let mut bodies = Vec::new();
    let mut images = Vec::new();
    for name in ["a", "b"] {
        let cfg = blob(
            s,
            format!("{{\"name\":\"{name}\"}}").as_bytes(),
            "application/vnd.oci.image.config.v1+json",
        );
        let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}).to_string();
        let d = Hasher::digest_of(Algorithm::Sha256, body.as_bytes());
        images.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": body.len()}));
        bodies.push(body);
    }
    bodies
        .push(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": images}).to_string());
    for (i, (subject, at)) in [
        (0, "application/x.sig"),
        (0, "application/x.sbom"),
        (1, "application/x.sig"),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = blob(
            s,
            format!("payload {i}").as_bytes(),
            "application/octet-stream",
        );
        bodies.push(
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
                "config": empty, "layers": [payload], "subject": images[subject]})
            .to_string(),
        );
    }
    bodies.push(bodies[bodies.len() - 1].clone());
    for b in &bodies {
        common::push_children(s, repo, &serde_json::from_str(b).expect("json"));
    }
    bodies
}

/// A batch holds back the rows keyed by a child or a subject and writes
/// them in key order at its end: the graph it leaves is the one the same
/// manifests leave put one by one (parents, referrers, a clean fsck).
#[test]
fn a_batch_indexes_what_single_puts_index() {
    let (_d1, one) = store();
    let (_d2, batch) = store();
    let bodies = graph_bodies(&one, "r/g");
    assert_eq!(graph_bodies(&batch, "r/g"), bodies);
    for b in &bodies {
        one.put_manifest("r/g", b.as_bytes(), &ManifestOptions::default())
            .expect("single put");
    }
    let items: Vec<(&[u8], ManifestOptions)> = bodies
        .iter()
        .map(|b| (b.as_bytes(), ManifestOptions::default()))
        .collect();
    assert_eq!(
        batch.put_manifests("r/g", &items).expect("batch").len(),
        bodies.len()
    );
    // Each node once: the shared layer and the empty config appear in
    // several bodies.
    let mut nodes: std::collections::BTreeSet<Digest> = bodies
        .iter()
        .map(|b| Hasher::digest_of(Algorithm::Sha256, b.as_bytes()))
        .collect();
    for b in &bodies {
        let v: Value = serde_json::from_str(b).expect("json");
        for d in v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&v["config"]])
        {
            if let Some(d) = d["digest"].as_str() {
                nodes.insert(d.parse().expect("digest"));
            }
        }
    }
    let mut parents = 0;
    let mut listed = 0;
    for d in &nodes {
        let p = batch.predecessors(d).expect("preds");
        assert_eq!(p, one.predecessors(d).expect("preds"), "parents of {d}");
        parents += p.len();
        let q = ReferrersQuery::default();
        let r = batch
            .referrers("r/g", d, &q)
            .expect("referrers")
            .index
            .manifests;
        assert_eq!(
            r,
            one.referrers("r/g", d, &q)
                .expect("referrers")
                .index
                .manifests,
            "referrers of {d}"
        );
        listed += r.len();
    }
    // Nothing above is vacuous. Parents: the shared layer 2, each config
    // 1, the empty config 3, each payload 1, image a 3 (the index, two
    // referrers), image b 2. The subjects list their three referrers (the
    // one put twice once).
    assert_eq!(parents, 2 + 2 + 3 + 3 + 3 + 2, "parents");
    assert_eq!(listed, 3);
    assert!(batch
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
}

#[test]
fn deleting_a_referrer_removes_its_index_entries() {
    let (_d, s) = store();
    let (subject, desc) = image(&s, "r/del", "app", &["v1"]);
    let sig = referrer(
        &s,
        "r/del",
        &desc,
        "application/vnd.cncf.notary.signature",
        1,
    );
    assert_eq!(
        s.referrers("r/del", &subject, &ReferrersQuery::default())
            .expect("r")
            .index
            .manifests
            .len(),
        1
    );
    s.delete(&sig).expect("delete");
    assert!(s
        .referrers("r/del", &subject, &ReferrersQuery::default())
        .expect("r")
        .index
        .manifests
        .is_empty());
    assert!(s.predecessors(&subject).expect("preds").is_empty());
    assert!(s.successors(&sig).expect("succ").is_empty());
    assert!(!s.is_member("r/del", &sig).expect("member"));
    let info = s.inspect(&subject, None).expect("inspect");
    assert_eq!(info.repositories, vec!["r/del"]);
    assert!(info.referrers.is_empty());
}

/// The parents of `d`, in the order predecessors gives them (digest order).
fn parents(s: &Store, d: &Digest) -> Vec<Digest> {
    s.predecessors(d)
        .expect("predecessors")
        .into_iter()
        .map(|p| p.digest)
        .collect()
}

/// The reverse sets (`edges_in`, `member_of`) stage new rows and merge
/// them into their main trees a key slice per commit once `staged_rows`
/// are waiting: every read in between sees each parent and repository
/// once, removals take rows out of either tree, and fsck agrees.
#[test]
fn reverse_sets_read_the_same_before_during_and_after_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open_with(
        dir.path(),
        ocidb::StoreOptions::default().staged_rows(8),
        true,
    )
    .expect("store");
    let base = blob(
        &s,
        b"the shared base layer",
        "application/vnd.oci.image.layer.v1.tar",
    );
    let base_d = common::digest_of(&base);
    let mut images = Vec::new();
    for i in 0..120u32 {
        let repo = format!("team{}/app", i % 3);
        let own = blob(
            &s,
            format!("layer {i}").as_bytes(),
            "application/vnd.oci.image.layer.v1.tar",
        );
        let body = common::image_body(&s, &[base.clone(), own], None);
        let (d, _) = put(&s, &repo, &body, &[]);
        images.push((repo, d));
        // Every read during the ingest sees each parent once, in digest order.
        let mut want: Vec<Digest> = images.iter().map(|(_, d)| *d).collect();
        want.sort();
        want.dedup();
        assert_eq!(
            parents(&s, &base_d),
            want,
            "parents of the base layer after {} puts",
            i + 1
        );
    }
    let staged = s.counts().expect("counts").staged_reverse_rows;
    // Each image adds 3 edges_in rows and at least 3 member_of rows: far
    // more than stay staged once merging starts at 8.
    assert!(staged < 120, "rows never merged: {staged} still staged");
    assert_eq!(
        s.repositories_of(&base_d).expect("repos"),
        vec!["team0/app", "team1/app", "team2/app"]
    );
    // Removals reach rows in either tree.
    for (repo, d) in images.iter().step_by(2) {
        s.delete_manifest(repo, d).expect("delete");
    }
    let mut want: Vec<Digest> = images.iter().skip(1).step_by(2).map(|(_, d)| *d).collect();
    want.sort();
    assert_eq!(parents(&s, &base_d), want);
    let report = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// Under the default threshold a small store's new rows all stay staged:
/// no commit pays for a merge until there is enough to share each leaf.
#[test]
fn small_stores_keep_their_reverse_rows_staged() {
    let (_dir, s) = store();
    let (d, _) = image(&s, "app", "one", &["v1"]);
    let c = s.counts().expect("counts");
    // Config and layer edges, and the memberships of manifest, config, layer.
    assert_eq!(c.staged_reverse_rows, 2 + 3, "{c:?}");
    assert_eq!(s.successors(&d).expect("successors").len(), 2);
}
