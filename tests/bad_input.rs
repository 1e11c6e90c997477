//! The bad-input catalogue: one test per row of the list in
//! docs/guarantees.md. Each bad input gets an error that names the value
//! and the rule, and leaves nothing stored.

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidb::{
    Algorithm, Digest, Error, Hasher, ManifestOptions, PutOptions, Reference, ReferrersQuery, Store,
};
use serde_json::json;

mod common;

use common::{store, ClientPush as _};

/// The store holds no record, repository or file.
fn assert_empty(dir: &std::path::Path, s: &Store) {
    assert!(s.repositories().expect("repos").is_empty(), "no repository");
    let stats = s.stats().expect("stats");
    assert_eq!(stats.manifests + stats.blobs, 0, "no record");
    for alg in ["sha256", "sha512"] {
        assert_eq!(
            std::fs::read_dir(dir.join("blobs").join(alg))
                .expect("dir")
                .count(),
            0,
            "no file"
        );
    }
}

fn manifest_put(s: &Store, body: &[u8], mt: Option<&str>) -> Error {
    s.push_manifest(
        "bad/input",
        body,
        &ManifestOptions::default().media_type(mt.map(str::to_string)),
    )
    .expect_err("must be rejected")
}

#[test]
fn invalid_digests() {
    let (dir, s) = store();
    let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let cases = [
        (format!("sha256:{}", good.to_uppercase()), "uppercase"),
        (format!("sha256:{}", &good[..63]), "64 hex"),
        (format!("sha256:{good}00"), "64 hex"),
        (format!("sha256:{}g", &good[..63]), "`g`"),
        (format!("md5:{good}"), "unsupported digest algorithm"),
        (String::new(), "empty"),
        (good.to_string(), "missing `:`"),
    ];
    for (input, rule) in cases {
        let err = Digest::parse(&input).expect_err(&input);
        let msg = err.to_string();
        assert!(msg.contains(&input) && msg.contains(rule), "{input}: {msg}");
        // Inside a manifest, the same digest rejects the manifest.
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{input}","size":1}}]}}"#
        );
        let e = manifest_put(&s, body.as_bytes(), None);
        assert!(e.to_string().contains(rule), "{input}: {e}");
    }
    assert_empty(dir.path(), &s);
}

#[test]
fn size_mismatch_digest_mismatch_and_truncated_stream() {
    let (dir, s) = store();
    for len in [100usize, 200_000] {
        let data = ocidb_testkit::deterministic_bytes(b"bad", len);
        let right = Hasher::digest_of(Algorithm::Sha256, &data);
        let wrong = Hasher::digest_of(Algorithm::Sha256, b"other");
        let e = s
            .put(
                data.as_slice(),
                &PutOptions::expect(right).size(len as u64 + 1),
            )
            .expect_err("size");
        assert!(
            e.to_string().contains(&right.to_string())
                && e.to_string().contains(&format!("expected {}", len + 1)),
            "{e}"
        );
        let e = s
            .put(data.as_slice(), &PutOptions::expect(wrong))
            .expect_err("digest");
        assert!(
            e.to_string().contains(&wrong.to_string())
                && e.to_string().contains(&right.to_string()),
            "{e}"
        );
        let e = s
            .put(
                &data[..len / 2],
                &PutOptions::expect(right).size(len as u64),
            )
            .expect_err("truncated");
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
    }
    assert_empty(dir.path(), &s);
}

#[test]
fn manifest_over_4_mib() {
    let (dir, s) = store();
    let mut body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        .to_string()
        .into_bytes();
    body.resize(4 * 1024 * 1024 + 1, b' ');
    let e = manifest_put(&s, &body, None);
    assert!(
        e.to_string().contains("4194305") && e.to_string().contains("limit is 4194304"),
        "{e}"
    );
    assert_empty(dir.path(), &s);
}

#[test]
fn malformed_json_deep_nesting_and_bad_sizes() {
    let (dir, s) = store();
    let e = manifest_put(
        &s,
        b"{\"schemaVersion\": 2, \"mediaType\":",
        Some(OCI_MANIFEST),
    );
    assert!(
        e.to_string().contains(OCI_MANIFEST) && e.to_string().contains("not a valid manifest"),
        "{e}"
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = manifest_put(&s, deep.as_bytes(), Some(OCI_MANIFEST));
    assert!(
        matches!(e, Error::InvalidManifest { .. }) && e.to_string().contains(OCI_MANIFEST),
        "{e}"
    );
    let deep_obj = format!(
        "{{\"mediaType\":\"{OCI_MANIFEST}\",\"x\":{}1{}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    // Deep nesting in an unknown field is refused too (Go clients could not
    // parse it), without recursing on the input's depth.
    let e = manifest_put(&s, deep_obj.as_bytes(), None);
    assert!(
        matches!(e, Error::InvalidManifest { .. })
            && e.to_string().contains("nests deeper than 64"),
        "{e}"
    );
    let deep_layers = format!("{{\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"a\",\"digest\":\"{}\",\"size\":1}},\"layers\":{}{}}}", Hasher::digest_of(Algorithm::Sha256, b"c"), "[".repeat(100_000), "]".repeat(100_000));
    let e = manifest_put(&s, deep_layers.as_bytes(), None);
    assert!(matches!(e, Error::InvalidManifest { .. }), "{e}");
    let d = Hasher::digest_of(Algorithm::Sha256, b"x");
    for size in ["-1", "1e40", "18446744073709551616"] {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size}}}]}}"#
        );
        let e = manifest_put(&s, body.as_bytes(), None);
        assert!(
            e.to_string().contains("descriptor size")
                && e.to_string().contains("whole number of bytes"),
            "{size}: {e}"
        );
        assert!(matches!(e, Error::InvalidManifest { .. }), "{e}");
    }
    assert_empty(dir.path(), &s);
}

#[test]
fn media_type_mismatch_between_declared_and_body() {
    let (dir, s) = store();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string();
    let e = manifest_put(&s, body.as_bytes(), Some(OCI_MANIFEST));
    let msg = e.to_string();
    assert!(
        msg.contains(OCI_MANIFEST)
            && msg.contains(OCI_INDEX)
            && msg.contains("expected them to match"),
        "{msg}"
    );
    assert_empty(dir.path(), &s);
}

#[test]
fn invalid_repository_names_and_tags() {
    let (dir, s) = store();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string();
    for repo in ["a/../b", "/a", "a/", "Upper/case", "a//b", ""] {
        let e = s
            .push_manifest(repo, body.as_bytes(), &ManifestOptions::default())
            .expect_err(repo);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`{repo}`")) && msg.contains("[a-z0-9]+"),
            "{repo}: {msg}"
        );
    }
    let long = "t".repeat(129);
    for tag in [long.as_str(), "a/b", ".dot"] {
        let e = s
            .push_manifest(
                "ok/repo",
                body.as_bytes(),
                &ManifestOptions::default().tags(vec![tag.to_string()]),
            )
            .expect_err(tag);
        let msg = e.to_string();
        assert!(
            msg.contains("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"),
            "{tag}: {msg}"
        );
    }
    assert_empty(dir.path(), &s);
}

#[test]
fn duplicate_descriptors_make_no_double_edges() {
    let (_dir, s) = store();
    let l = json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Hasher::digest_of(Algorithm::Sha256, b"l"), "size": 1});
    let c = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Hasher::digest_of(Algorithm::Sha256, b"c"), "size": 1});
    let body =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": [l, l, l, l]})
            .to_string();
    let d = s
        .put_manifest(
            "dup/x",
            body.as_bytes(),
            &ManifestOptions::default().children(ocidb::Children::AllowMissing),
        )
        .expect("accepted")
        .digest;
    assert_eq!(s.successors(&d).expect("succ").len(), 2);
    let ld = Hasher::digest_of(Algorithm::Sha256, b"l");
    assert_eq!(s.predecessors(&ld).expect("preds").len(), 1);
    assert!(s.fsck(&Default::default()).expect("fsck").is_clean());
}

#[test]
fn referrer_chains_and_tag_schema_cycles_terminate() {
    let (_dir, s) = store();
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    let cfg =
        json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2});
    let base = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []})
        .to_string();
    let root = s
        .push_manifest(
            "cyc/x",
            base.as_bytes(),
            &ManifestOptions::default().tags(vec!["v1".to_string()]),
        )
        .expect("root");
    let mut subject = json!({"mediaType": OCI_MANIFEST, "digest": root.digest, "size": root.size});
    for i in 0..6 {
        let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": format!("application/x-level-{i}"), "config": cfg, "layers": [], "subject": subject}).to_string();
        let p = s
            .push_manifest("cyc/x", body.as_bytes(), &ManifestOptions::default())
            .expect("referrer");
        subject = json!({"mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.size});
    }
    // A sha256-X index that lists X itself.
    let tag = ocidb::names::referrers_tag_for(&root.digest);
    let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": root.digest, "size": root.size, "artifactType": "application/x-self"}]}).to_string();
    s.push_manifest(
        "cyc/x",
        idx.as_bytes(),
        &ManifestOptions::default().tags(vec![tag]),
    )
    .expect("index");
    let refs = s
        .referrers("cyc/x", &root.digest, &ReferrersQuery::default())
        .expect("referrers");
    assert!(
        refs.index.manifests.iter().any(|m| m.digest == root.digest),
        "the cycle is listed"
    );
    let walk = s
        .walk("cyc/x", &Reference::Tag("v1".into()))
        .expect("walk terminates");
    fn count(n: &ocidb::WalkNode, expanded: &mut Vec<Digest>) {
        if !n.repeated {
            expanded.push(n.descriptor.digest);
        }
        n.children.iter().for_each(|c| count(c, expanded));
    }
    let mut expanded = Vec::new();
    count(&walk, &mut expanded);
    let before = expanded.len();
    expanded.sort();
    expanded.dedup();
    assert_eq!(before, expanded.len(), "every node shown once");
    assert_eq!(expanded.len(), 1 + 1 + 6, "root, its config, six referrers");
}

fn image_with(s: &Store, layer_mt: &str, artifact_type: Option<&str>) -> String {
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    let layer = s
        .put_bytes(b"layer", &PutOptions::default())
        .expect("layer");
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
        "layers": [{"mediaType": layer_mt, "digest": layer.digest, "size": 5}],
    });
    if let Some(at) = artifact_type {
        m["artifactType"] = json!(at);
    }
    m.to_string()
}

/// Issue 13, item 1: a media type over 64 KiB once went through a
/// truncating encoder and left an undecodable record.
#[test]
fn media_types_that_break_rfc_6838_are_refused_everywhere() {
    let (dir, s) = store();
    let long = format!("application/x-{}", "é".repeat(40_000));
    let e = s
        .put_bytes(b"blob", &PutOptions::default().media_type(long.clone()))
        .expect_err("blob media type");
    assert!(matches!(e, Error::InvalidMediaType { .. }), "{e}");
    assert!(e.to_string().contains("RFC 6838"), "{e}");
    for bad in [
        "noslash",
        "application/",
        "/json",
        "application/x\u{1b}[2K",
        "text/plain; charset",
        &"a".repeat(300),
    ] {
        let e = s
            .put(
                &b"x"[..],
                &PutOptions::default().media_type(bad.to_string()),
            )
            .expect_err(bad);
        assert!(matches!(e, Error::InvalidMediaType { .. }), "{bad}: {e}");
        assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
    }
    // Parameters and suffixes are fine.
    s.put_bytes(
        b"ok",
        &PutOptions::default().media_type("text/plain; charset=utf-8"),
    )
    .expect("a media type with a parameter");
    // In a manifest: a layer mediaType, an artifactType, a declared type.
    let (dir2, s2) = store();
    let e = manifest_put(&s2, image_with(&s2, &long, None).as_bytes(), None);
    assert!(matches!(e, Error::InvalidMediaType { .. }), "{e}");
    let e = manifest_put(
        &s2,
        image_with(&s2, "application/vnd.oci.image.layer.v1.tar", Some(&long)).as_bytes(),
        None,
    );
    assert!(matches!(e, Error::InvalidMediaType { .. }), "{e}");
    let e = manifest_put(&s2, b"{}", Some(&long));
    assert!(matches!(e, Error::InvalidMediaType { .. }), "{e}");
    // Nothing store-wide broke.
    s2.stats().expect("stats");
    assert!(s2
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
    drop((dir, dir2));
}

/// Issue 13, item 2: the same bytes as an image in one repository and as
/// an index in another once left GC deleting live content.
#[test]
fn ambiguous_manifests_and_type_changes_are_refused() {
    let (dir, s) = store();
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    let child = s
        .push_manifest(
            "a",
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
                "layers": []})
            .to_string()
            .as_bytes(),
            &ManifestOptions::default(),
        )
        .expect("child");
    let both = json!({"schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
        "layers": [],
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.size}]})
    .to_string();
    for mt in [OCI_MANIFEST, OCI_INDEX] {
        let e = manifest_put(&s, both.as_bytes(), Some(mt));
        assert!(matches!(e, Error::InvalidManifest { .. }), "{e}");
        assert!(e.to_string().contains("CVE-2021-41190"), "{e}");
    }
    // One digest, one manifest type: a Docker v2 manifest cannot be put
    // again as an OCI one (the body has no mediaType to disagree).
    let doc = json!({"schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
        "layers": []})
    .to_string();
    s.push_manifest(
        "r1",
        doc.as_bytes(),
        &ManifestOptions::default().media_type(ocidb::manifest::DOCKER_MANIFEST),
    )
    .expect("docker v2");
    let e = s
        .put_manifest(
            "r2",
            doc.as_bytes(),
            &ManifestOptions::default().media_type(OCI_MANIFEST),
        )
        .expect_err("type change");
    assert!(matches!(e, Error::ManifestTypeConflict { .. }), "{e}");
    assert_eq!(e.kind(), ocidb::ErrorKind::Conflict);
    assert!(
        e.to_string().contains(ocidb::manifest::DOCKER_MANIFEST)
            && e.to_string().contains(OCI_MANIFEST),
        "{e}"
    );
    assert!(s.repositories().expect("repos").iter().all(|r| r != "r2"));
    drop(dir);
}

/// Issue 13, item 4: Go reads `Layers` as `layers`.
#[test]
fn spec_fields_in_another_casing_or_twice_are_refused() {
    let (dir, s) = store();
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    let l = s.put_bytes(b"l", &PutOptions::default()).expect("l");
    let desc = |d: &Digest, n: u64| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n});
    let cases = [
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[],"Layers":[{l}]}}"#,
            c = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2}),
            l = desc(&l.digest, 1)
        ),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[{{"mediaType":"a/b","digest":"{d}","Digest":"{d}","size":1}}]}}"#,
            c = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2}),
            d = l.digest
        ),
        // The Kelvin sign folds to `k` in Go: `\u212Aind`… and the long s.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[],"\u017Fubject":{s}}}"#,
            c = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2}),
            s = desc(&l.digest, 1)
        ),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[],"annotations":{{"a":"1","a":"2"}}}}"#,
            c = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2}),
        ),
    ];
    for body in &cases {
        let e = manifest_put(&s, body.as_bytes(), None);
        assert!(matches!(e, Error::InvalidManifest { .. }), "{body}: {e}");
        assert!(
            e.to_string().contains("another casing") || e.to_string().contains("twice"),
            "{e}"
        );
    }
    // Annotation keys are data, not fields: any casing is fine there.
    s.push_manifest(
        "ok",
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{c},"layers":[],"annotations":{{"Layers":"x","layers":"y"}}}}"#,
            c = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2}),
        )
        .as_bytes(),
        &ManifestOptions::default(),
    )
    .expect("annotation keys in any casing");
    drop(dir);
}

/// Issue 13, item 12: the duplicate check was quadratic; a 4 MiB index
/// of ~44k entries is ingested (its cost is in `benches/`, not timed here).
#[test]
fn a_huge_index_with_duplicates_ingests() {
    let (dir, s) = store();
    let mut entries = Vec::new();
    for i in 0..25_000u32 {
        let d = Hasher::digest_of(Algorithm::Sha256, &i.to_le_bytes());
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 1}));
    }
    entries.extend(entries.clone().into_iter().take(100));
    let body =
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).to_string();
    assert!(body.len() < 4 * 1024 * 1024);
    let put = s
        .push_manifest("big/index", body.as_bytes(), &ManifestOptions::default())
        .expect("ingests");
    assert_eq!(s.successors(&put.digest).expect("edges").len(), 25_000);
    drop(dir);
}

/// Issue 13, item 1: a record that does not decode (as the truncating
/// encoder once wrote) is one digest's problem, and `--repair` removes it
/// with everything indexed under it.
#[test]
fn an_undecodable_record_is_reported_and_repaired_by_fsck() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bad, good) = {
        let s = Store::create(dir.path()).expect("create");
        let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
        let body = |n: u32| {
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
                "layers": [], "annotations": {"n": n.to_string()}})
            .to_string()
        };
        let opts = |t: &str| ManifestOptions::default().tags(vec![t.to_string()]);
        let bad = s
            .push_manifest("app", body(1).as_bytes(), &opts("bad"))
            .expect("bad");
        let good = s
            .push_manifest("app", body(2).as_bytes(), &opts("good"))
            .expect("good");
        (bad.digest, good.digest)
    };
    {
        // What the old encoder left: a media type cut inside a character.
        let db = redb::Database::open(dir.path().join("ocidb.redb")).expect("redb");
        let txn = db.begin_write().expect("txn");
        {
            let blobs: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("blobs");
            let mut t = txn.open_table(blobs).expect("blobs");
            // Format v2: version, flags (inline, manifest), size 2,
            // created 0, a literal media type of 2 bytes, no artifact type.
            let v = [2u8, 1 | 4, 2, 0, 0xff, 2, b'a', 0xc3, 0];
            t.insert(bad.to_key().as_slice(), v.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let s = Store::open(dir.path()).expect("open");
    let report = s
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck is not a store-wide error");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == "corrupt-record" && p.digest == Some(bad)),
        "{:?}",
        report.problems
    );
    let repaired = s
        .fsck(&ocidb::FsckOptions::default().repair(true))
        .expect("repair");
    assert!(repaired.is_clean(), "{:?}", repaired.problems);
    let after = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(after.is_clean(), "{:?}", after.problems);
    assert!(!s.exists(&bad).expect("exists"));
    assert_eq!(s.tags("app", None, None).expect("tags"), vec!["good"]);
    assert_eq!(
        s.resolve("app", &Reference::Tag("good".into()))
            .expect("good"),
        good
    );
    s.stats().expect("stats work again");
}

/// Format 4 finds an inline blob's bytes through the body id its record
/// names. fsck reports each way that link can break, naming the digest
/// and the body: a missing body, a body no record names (removed by
/// `--repair`), and two records naming one body.
#[test]
fn broken_links_between_records_and_bodies_are_reported() {
    use redb::ReadableTable as _;
    const BLOBS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("blobs");
    const BODIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("bodies");
    let dir = tempfile::tempdir().expect("tempdir");
    let put = |s: &Store, b: &[u8]| s.put_bytes(b, &PutOptions::default()).expect("put").digest;
    let (a, b, c) = {
        let s = Store::create(dir.path()).expect("create");
        (put(&s, b"first"), put(&s, b"second"), put(&s, b"third"))
    };
    {
        let db = redb::Database::open(dir.path().join("ocidb.redb")).expect("redb");
        let txn = db.begin_write().expect("txn");
        {
            let mut blobs = txn.open_table(BLOBS).expect("blobs");
            let mut bodies = txn.open_table(BODIES).expect("bodies");
            // Bodies 1, 2, 3 in put order: a's body goes missing, and c's
            // record is made to name b's body, leaving c's own stray.
            assert!(bodies.remove(1).expect("remove").is_some());
            let b_rec = blobs
                .get(b.to_key().as_slice())
                .expect("get")
                .expect("b")
                .value()
                .to_vec();
            blobs
                .insert(c.to_key().as_slice(), b_rec.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let s = Store::open(dir.path()).expect("open");
    let e = s.read(&a).expect_err("a's bytes are gone");
    assert!(e.to_string().contains("body 1"), "{e}");
    let report = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    let find = |kind: &str| {
        report
            .problems
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("no {kind}: {:?}", report.problems))
    };
    let missing = find("missing-bytes");
    assert_eq!(missing.digest, Some(a));
    assert!(missing.detail.contains("body 1"), "{}", missing.detail);
    assert!(find("stray-body").detail.contains("body 3"));
    let shared = find("shared-body");
    assert!(shared.detail.contains("body 2"), "{}", shared.detail);
    assert!(
        [b, c].contains(&shared.digest.expect("names a record")),
        "{shared:?}"
    );
    // The stray body goes with --repair; the damaged records are kept for
    // inspection, as damaged bytes are.
    let repaired = s
        .fsck(&ocidb::FsckOptions::default().repair(true))
        .expect("repair");
    assert!(
        repaired
            .problems
            .iter()
            .any(|p| p.kind == "stray-body" && p.repaired),
        "{:?}",
        repaired.problems
    );
    let after = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(!after.problems.iter().any(|p| p.kind == "stray-body"));
    assert!(after.problems.iter().any(|p| p.kind == "shared-body"));
    // b itself still reads back.
    assert_eq!(s.read(&b).expect("b"), b"second");
}

/// Issue 13, item 10: a chain of thousands of nested indexes and of
/// referrers once overflowed the stack of `walk` (and of `tree`).
#[test]
fn walks_over_deep_chains_are_bounded() {
    let (dir, s) = store();
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    let base = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
        "layers": []})
    .to_string();
    let mut bodies = vec![base];
    let mut prev = Hasher::digest_of(Algorithm::Sha256, bodies[0].as_bytes());
    let mut prev_size = bodies[0].len();
    let mut prev_mt = OCI_MANIFEST;
    for i in 0..20_000 {
        let b = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": prev_mt, "digest": prev, "size": prev_size}],
            "annotations": {"level": i.to_string()}})
        .to_string();
        prev = Hasher::digest_of(Algorithm::Sha256, b.as_bytes());
        prev_size = b.len();
        prev_mt = OCI_INDEX;
        bodies.push(b);
    }
    let items: Vec<(&[u8], ManifestOptions)> = bodies
        .iter()
        .map(|b| (b.as_bytes(), ManifestOptions::default()))
        .collect();
    s.push_manifests("deep/chain", &items).expect("chain");
    s.tag("deep/chain", "top", &prev).expect("tag");
    let walk = s
        .walk("deep/chain", &Reference::Tag("top".into()))
        .expect("walk");
    let mut depth = 0;
    let mut node = &walk;
    while let Some(c) = node.children.first() {
        node = c;
        depth += 1;
    }
    assert_eq!(depth, ocidb::MAX_WALK_DEPTH);
    assert!(node.truncated, "the cut is marked");
    // Referrers: each one's subject is the one before.
    let mut subject = prev;
    let mut refs = Vec::new();
    for i in 0..1_000 {
        let r = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-chain",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
            "layers": [], "subject": {"mediaType": OCI_INDEX, "digest": subject, "size": 1},
            "annotations": {"n": i.to_string()}})
        .to_string();
        subject = Hasher::digest_of(Algorithm::Sha256, r.as_bytes());
        refs.push(r);
    }
    let items: Vec<(&[u8], ManifestOptions)> = refs
        .iter()
        .map(|b| (b.as_bytes(), ManifestOptions::default()))
        .collect();
    s.push_manifests("deep/chain", &items)
        .expect("referrer chain");
    let walk = s
        .walk("deep/chain", &Reference::Tag("top".into()))
        .expect("walk with referrers");
    assert!(!walk.children.is_empty());
    // Export, import, gc and fsck go the whole 20,000 levels, iteratively.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("export");
    let rep = s
        .export_layout(
            &[("deep/chain".into(), Reference::Tag("top".into()))],
            &out,
            &ocidb::ExportOptions::default().with_referrers(true),
        )
        .expect("export");
    assert_eq!(rep.blobs, 20_001 + 1_000 + 1);
    let (_d2, s2) = store();
    let r = s2
        .import_layout(&out, &ocidb::ImportOptions::default())
        .expect("import");
    assert_eq!(r.manifests, 20_001 + 1_000);
    let gc = s2
        .gc(&ocidb::GcPolicy::default()
            .grace(std::time::Duration::ZERO)
            .delete_untagged(true)
            .dry_run(true))
        .expect("gc");
    assert_eq!(gc.digests.len(), 0, "everything hangs off the tag");
    assert!(s2
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
    drop(dir);
}

fn cfg_desc(s: &Store) -> serde_json::Value {
    let cfg = s.put_bytes(b"{}", &PutOptions::default()).expect("cfg");
    json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2})
}

fn put_referrer(s: &Store, repo: &str, subject: &Digest, at: &str, n: u32) -> Digest {
    let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
        "config": cfg_desc(s), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"n": n.to_string()}})
    .to_string();
    s.push_manifest(repo, body.as_bytes(), &ManifestOptions::default())
        .expect("referrer")
        .digest
}

/// Issue 13, item 15: a forged cursor once bypassed the artifactType filter.
#[test]
fn referrers_cursors_are_bound_to_their_query() {
    let (dir, s) = store();
    let subject = Hasher::digest_of(Algorithm::Sha256, b"subject");
    for i in 0..3 {
        put_referrer(&s, "app", &subject, "application/a", i);
        put_referrer(&s, "app", &subject, "application/b", i);
    }
    let q = |at: Option<&'static str>, cursor: Option<&str>| {
        s.referrers(
            "app",
            &subject,
            &ReferrersQuery::default()
                .artifact_type(at)
                .cursor(cursor)
                .limit(2),
        )
    };
    let first = q(Some("application/b"), None).expect("page 1");
    let next = first.next.clone().expect("more");
    let second = q(Some("application/b"), Some(&next)).expect("page 2");
    assert_eq!(second.index.manifests.len(), 1);
    assert!(second
        .index
        .manifests
        .iter()
        .all(|m| m.artifact_type.as_deref() == Some("application/b")));
    // Forged, or lifted from another query: refused, never widened.
    let zero = format!("0.{}", Hasher::digest_of(Algorithm::Sha256, b""));
    for bad in [zero.as_str(), "0.sha256:00", "garbage"] {
        let e = q(Some("application/b"), Some(bad)).expect_err(bad);
        assert!(e.to_string().contains("cursor"), "{e}");
    }
    let unfiltered = q(None, None).expect("unfiltered");
    let other = unfiltered.next.expect("more");
    let e = q(Some("application/b"), Some(&other));
    if let Ok(page) = e {
        assert!(page
            .index
            .manifests
            .iter()
            .all(|m| m.artifact_type.as_deref() == Some("application/b")));
    }
    let other_subject = Hasher::digest_of(Algorithm::Sha256, b"other");
    assert!(s
        .referrers(
            "app",
            &other_subject,
            &ReferrersQuery::default().cursor(next.as_str())
        )
        .is_err());
    drop(dir);
}

/// Issue 13, item 16: fallback-tag indexes once listed a referrer twice
/// under a forged artifactType, and a sparse entry broke fsck for good.
#[test]
fn fallback_tag_referrers_are_listed_once_and_only_when_stored() {
    let (dir, s) = store();
    let subject = Hasher::digest_of(Algorithm::Sha256, b"subject");
    let sig = put_referrer(
        &s,
        "app",
        &subject,
        "application/vnd.cncf.notary.signature",
        1,
    );
    let absent = Hasher::digest_of(Algorithm::Sha256, b"not stored");
    let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sig, "size": 1, "artifactType": "application/forged"},
        {"mediaType": OCI_MANIFEST, "digest": absent, "size": 1, "artifactType": "application/x"},
    ]})
    .to_string();
    s.push_manifest(
        "app",
        idx.as_bytes(),
        &ManifestOptions::default().tags(vec![ocidb::names::referrers_tag_for(&subject)]),
    )
    .expect("fallback index");
    let page = s
        .referrers("app", &subject, &ReferrersQuery::default())
        .expect("referrers");
    assert_eq!(page.index.manifests.len(), 1, "{:?}", page.index.manifests);
    assert_eq!(page.index.manifests[0].digest, sig);
    assert_eq!(
        page.index.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.cncf.notary.signature")
    );
    assert!(s
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
    // The signature leaves the repository: no entry is left behind.
    s.delete_manifest("app", &sig).expect("delete");
    assert!(s
        .referrers("app", &subject, &ReferrersQuery::default())
        .expect("referrers")
        .index
        .manifests
        .is_empty());
    let report = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    drop(dir);
}

/// Issue 13, item 17: `unlink_blob` on a tagged manifest left its tag.
#[test]
fn unlinking_a_tagged_manifest_takes_its_tags() {
    let (dir, s) = store();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg_desc(&s), "layers": []}).to_string();
    let m = s
        .push_manifest(
            "app",
            body.as_bytes(),
            &ManifestOptions::default().tags(vec!["v1".to_string()]),
        )
        .expect("put");
    s.unlink_blob("app", &m.digest).expect("unlink");
    assert!(s.tags("app", None, None).unwrap_or_default().is_empty());
    assert!(s.resolve("app", &Reference::Tag("v1".into())).is_err());
    assert!(s
        .fsck(&ocidb::FsckOptions::default())
        .expect("fsck")
        .is_clean());
    drop(dir);
}

/// Issue 13, item 18: registries accept manifests whose non-distributable
/// layers (or layers with `urls`) they do not hold.
#[test]
fn children_rule_skips_external_layers() {
    let (dir, s) = store();
    let foreign = Hasher::digest_of(Algorithm::Sha256, b"foreign layer");
    let with_urls = Hasher::digest_of(Algorithm::Sha256, b"layer with urls");
    let missing = Hasher::digest_of(Algorithm::Sha256, b"plain missing layer");
    let doc = |layers: serde_json::Value| {
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg_desc(&s), "layers": layers}).to_string()
    };
    let strict = ManifestOptions::default();
    s.push_manifest(
        "app",
        doc(json!([
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": foreign, "size": 9},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": with_urls, "size": 9, "urls": ["https://example.com/l"]},
        ]))
        .as_bytes(),
        &strict,
    )
    .expect("external layers need not be stored");
    let e = s
        .push_manifest(
            "app",
            doc(json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 9}]))
                .as_bytes(),
            &strict,
        )
        .expect_err("a plain missing layer");
    assert!(matches!(e, Error::ChildUnknown { .. }), "{e}");
    drop(dir);
}
