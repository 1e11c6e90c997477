//! OCI image layout import and export, on layouts the tests generate, on
//! the real layouts in ../shared/corpus when present (read in place, never
//! modified; required under CI=true), on malicious tars, and against
//! skopeo when it is installed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ocidb::{
    Digest, Error, ExportOptions, FsckOptions, ImportOptions, Reference, ReferrersQuery, Store,
};
use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    common::shared_path("corpus")
}

/// Layouts that lack content on purpose: their imports report it missing.
const SPARSE: [&str; 2] = ["test_gc_image_unknown_mediatype", "gen-sparse"];

/// The generated layouts (in the returned temp dir), then the corpus ones
/// when the corpus is present.
fn layouts() -> (tempfile::TempDir, Vec<PathBuf>) {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (mut out, _) = common::fixtures::generated_layouts(layouts_dir.path());
    out.extend(corpus_layouts());
    (layouts_dir, out)
}

fn corpus_layouts() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Some(corpus) = corpus() else {
        return out;
    };
    for group in ["notation", "ggcr"] {
        let dir = corpus.join(group);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("oci-layout").is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn import(s: &Store, p: &Path) -> ocidb::ImportReport {
    s.import_layout(p, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("import {}: {e}", p.display()))
}

#[test]
fn every_layout_imports_and_fsck_is_clean() {
    let (_gen, all) = layouts();
    if let Some(c) = corpus() {
        assert!(
            all.len() >= 13 + 3,
            "the corpus is where the tests expect it: {}",
            c.display()
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    for p in &all {
        let r = import(&s, p);
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert_eq!(r.repository, name);
        if !SPARSE.contains(&name.as_str()) {
            assert!(r.manifests > 0, "{name} imported manifests");
            assert!(r.missing.is_empty(), "{name}: {:?}", r.missing);
        }
        // Each layout's tags are there and resolve to stored manifests.
        let index: Value =
            serde_json::from_slice(&std::fs::read(p.join("index.json")).expect("index"))
                .expect("json");
        for m in index["manifests"].as_array().expect("manifests") {
            if let Some(tag) = m["annotations"]["org.opencontainers.image.ref.name"].as_str()
                && r.missing.is_empty()
            {
                let d = s
                    .resolve(&name, &Reference::Tag(tag.to_string()))
                    .expect("tag resolves");
                assert_eq!(d.to_string(), m["digest"].as_str().expect("digest"));
            }
        }
    }
    // Sparse layouts leave tagged images without some of their blobs:
    // those, and only those, are what fsck reports unless told.
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(
        report.problems.iter().all(|p| p.kind == "missing-child"),
        "{:?}",
        report.problems
    );
    let report = s
        .fsck(&FsckOptions::default().allow_sparse(true))
        .expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    // Nothing is left under a lease: a GC with no grace keeps every tagged image.
    s.gc(&ocidb::GcPolicy::default().grace(std::time::Duration::ZERO))
        .expect("gc");
    for repo in s.repositories().expect("repos") {
        for tag in s.tags(&repo, None, None).expect("tags") {
            let walk = s.walk(&repo, &Reference::Tag(tag.clone())).expect("walk");
            assert!(walk.present, "{repo}:{tag}");
        }
    }
}

#[test]
fn signed_layouts_yield_their_signature_referrers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let mut checked = 0;
    let (_gen, all) = layouts();
    for p in all.into_iter().filter(|p| {
        let p = p.to_string_lossy();
        p.contains("notation") || p.contains("gen-signed")
    }) {
        let r = import(&s, &p);
        let repo = r.repository.clone();
        for tag in s.tags(&repo, None, None).expect("tags") {
            let Some(subject) = ocidb::names::referrers_tag_subject(&tag) else {
                continue;
            };
            let idx_digest = s
                .resolve(&repo, &Reference::Tag(tag.clone()))
                .expect("index");
            let idx: Value =
                serde_json::from_slice(&s.read(&idx_digest).expect("read")).expect("json");
            let listed: BTreeSet<String> = idx["manifests"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|m| m["digest"].as_str().expect("digest").to_string())
                .collect();
            let page = s
                .referrers(&repo, &subject, &ReferrersQuery::default())
                .expect("referrers");
            let got: BTreeSet<String> = page
                .index
                .manifests
                .iter()
                .map(|m| m.digest.to_string())
                .collect();
            assert!(listed.is_subset(&got), "{repo}: {listed:?} ⊆ {got:?}");
            for m in &page.index.manifests {
                assert_eq!(
                    m.artifact_type.as_deref(),
                    Some("application/vnd.cncf.notary.signature"),
                    "{repo}"
                );
            }
            // Filtering by the signature type returns the same set.
            let f = s
                .referrers(
                    &repo,
                    &subject,
                    &ReferrersQuery::default()
                        .artifact_type("application/vnd.cncf.notary.signature"),
                )
                .expect("filtered");
            assert_eq!(f.index.manifests.len(), got.len());
            if repo == "e2e-valid-multiple-signatures" || repo == "gen-signed" {
                assert_eq!(got.len(), 2, "two signatures of one subject");
            }
            checked += 1;
        }
    }
    let want = if corpus().is_some() { 6 } else { 1 };
    assert!(checked >= want, "checked {checked} sha256-… indexes");
}

#[test]
fn sparse_layouts_report_missing_digests_and_strict_refuses() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (paths, missing) = common::fixtures::generated_layouts(layouts_dir.path());
    let mut cases = vec![(paths[2].clone(), missing.to_string())];
    if let Some(c) = corpus() {
        cases.push((
            c.join("ggcr/test_gc_image_unknown_mediatype"),
            "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720".into(),
        ));
    }
    for (p, want) in cases {
        sparse_layout_reports(&p, &want);
    }
}

fn sparse_layout_reports(p: &Path, want: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let err = s
        .import_layout(p, &ImportOptions::default().strict(true))
        .expect_err("strict");
    assert!(err.to_string().contains(want), "{err}");
    assert!(
        s.repositories().expect("repos").is_empty(),
        "strict stored nothing"
    );
    let r = import(&s, p);
    let want = Digest::parse(want).expect("digest");
    assert_eq!(r.missing, vec![want]);
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == "missing-child" && p.digest == Some(want)),
        "{:?}",
        report.problems
    );
    assert!(s
        .fsck(&FsckOptions::default().allow_sparse(true))
        .expect("fsck")
        .is_clean());
}

#[test]
fn round_trip_keeps_digests_and_tags_dir_and_tar() {
    let src = tempfile::tempdir().expect("tempdir");
    let s = Store::create(src.path().join("store")).expect("store");
    let sample = ocidb_testkit::load(&s, "demo/app").expect("sample");
    for (out, with_refs) in [
        (src.path().join("out"), true),
        (src.path().join("out.tar"), false),
    ] {
        let refs = vec![
            ("demo/app".to_string(), Reference::Tag("v1".into())),
            ("demo/app".to_string(), Reference::Tag("chart-1.0.0".into())),
        ];
        let rep = s
            .export_layout(
                &refs,
                &out,
                &ExportOptions::default()
                    .with_referrers(with_refs)
                    .hardlink(with_refs),
            )
            .expect("export");
        assert!(rep.missing.is_empty());
        if with_refs {
            assert_eq!(
                rep.referrers, 3,
                "signature, SBOM and the attestation on the SBOM"
            );
            assert!(
                rep.hardlinked > 0,
                "large blob files are hardlinked on the same filesystem"
            );
        }
        let dst = tempfile::tempdir().expect("tempdir");
        let s2 = Store::create(dst.path()).expect("store");
        let r = s2
            .import_layout(&out, &ImportOptions::default().repository("copy/app"))
            .expect("re-import");
        assert!(r.missing.is_empty());
        assert_eq!(
            s2.tags("copy/app", None, None).expect("tags"),
            vec!["chart-1.0.0", "v1"]
        );
        assert_eq!(
            s2.resolve("copy/app", &Reference::Tag("v1".into()))
                .expect("v1"),
            sample.index
        );
        assert_eq!(
            s2.resolve("copy/app", &Reference::Tag("chart-1.0.0".into()))
                .expect("chart"),
            sample.chart
        );
        let mut want: Vec<Digest> = s
            .members("demo/app")
            .expect("members")
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let mut got: Vec<Digest> = s2
            .members("copy/app")
            .expect("members")
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        if !with_refs {
            // Without referrers: exactly what the images reach through children.
            fn children(n: &ocidb::WalkNode, out: &mut Vec<Digest>) {
                out.push(n.descriptor.digest);
                for c in n
                    .children
                    .iter()
                    .filter(|c| c.relation != ocidb::Relation::Referrer)
                {
                    children(c, out);
                }
            }
            want.clear();
            for tag in ["v1", "chart-1.0.0"] {
                children(
                    &s.walk("demo/app", &Reference::Tag(tag.into()))
                        .expect("walk"),
                    &mut want,
                );
            }
            want.dedup();
            want.sort();
            want.dedup();
            assert!(!want.contains(&sample.signature));
        }
        want.sort();
        got.sort();
        assert_eq!(got, want, "every digest survives the round trip");
        if with_refs {
            let page = s2
                .referrers("copy/app", &sample.index, &ReferrersQuery::default())
                .expect("refs");
            assert_eq!(page.index.manifests.len(), 2);
            let page = s2
                .referrers("copy/app", &sample.sbom, &ReferrersQuery::default())
                .expect("refs");
            assert_eq!(page.index.manifests[0].digest, sample.attestation);
        }
        assert!(s2.fsck(&FsckOptions::default()).expect("fsck").is_clean());
    }
    let err = s
        .export_layout(
            &[("demo/app".into(), Reference::Tag("v1".into()))],
            &src.path().join("out"),
            &ExportOptions::default(),
        )
        .expect_err("refuses to overwrite");
    assert!(err.to_string().contains("does not exist yet"), "{err}");
}

/// Builds a tar whose entries are written byte by byte, so that names the
/// tar crate's safe API would refuse can be tested.
fn raw_tar(entries: &[(&str, u8, &str, &[u8], u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data, claimed) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().expect("gnu");
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(0o644);
        h.set_size(*claimed);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

#[test]
fn malicious_tars_are_refused_and_write_nothing_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            raw_tar(&[
                ("oci-layout", b'0', "", layout, layout.len() as u64),
                ("../../evil", b'0', "", b"x", 1),
            ]),
            "..",
        ),
        (
            "absolute",
            raw_tar(&[("/tmp/ocidb-evil-abs", b'0', "", b"x", 1)]),
            "absolute",
        ),
        (
            "symlink escape",
            raw_tar(&[
                ("oci-layout", b'0', "", layout, layout.len() as u64),
                ("blobs/sha256/link", b'2', "../../../etc/passwd", b"", 0),
            ]),
            "escapes",
        ),
        (
            "hardlink escape",
            raw_tar(&[("blobs/x", b'1', "/etc/passwd", b"", 0)]),
            "escapes",
        ),
        ("device", raw_tar(&[("dev", b'3', "", b"", 0)]), "device"),
        (
            "10 GiB index.json claim",
            raw_tar(&[("index.json", b'0', "", b"{}", 10 << 30)]),
            "at most",
        ),
    ];
    for (what, bytes, needle) in cases {
        let path = dir.path().join(format!("{}.tar", what.replace(' ', "-")));
        std::fs::write(&path, bytes).expect("write tar");
        let err = s
            .import_layout(&path, &ImportOptions::default().repository("evil/x"))
            .expect_err(what);
        assert!(err.to_string().contains(needle), "{what}: {err}");
        assert!(
            s.repositories().expect("repos").is_empty(),
            "{what} stored nothing visible"
        );
    }
    assert!(!dir.path().join("evil").exists() && !Path::new("/tmp/ocidb-evil-abs").exists());
    let listed: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        listed.iter().all(|n| n == "store" || n.ends_with(".tar")),
        "{listed:?}"
    );
    // A blob whose bytes do not match its name is refused too.
    let bad = raw_tar(&[
        ("oci-layout", b'0', "", layout, layout.len() as u64),
        (
            "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            b'0',
            "",
            b"not empty",
            9,
        ),
    ]);
    let path = dir.path().join("mismatch.tar");
    std::fs::write(&path, bad).expect("write");
    let err = s
        .import_layout(&path, &ImportOptions::default().repository("evil/y"))
        .expect_err("mismatch");
    assert!(
        matches!(
            err,
            Error::SizeMismatch { .. } | Error::DigestMismatch { .. }
        ),
        "{err}"
    );
}

fn skopeo() -> Option<&'static str> {
    Command::new("skopeo")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "skopeo")
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn skopeo_reads_our_exports() {
    let Some(sk) = skopeo() else {
        common::skip("skopeo is not installed (CI installs it)");
        if std::env::var_os("CI").is_some() {
            panic!("CI must have skopeo installed");
        }
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    // The demo images have real image configs: plain `inspect` works on them.
    ocidb_testkit::load(&s, "demo/app").expect("sample");
    let out = dir.path().join("demo-export");
    s.export_layout(
        &[("demo/app".into(), Reference::Tag("v1".into()))],
        &out,
        &ExportOptions::default().with_referrers(true),
    )
    .expect("export");
    let inspect = run(Command::new(sk)
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", out.display())));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("image.index"));
    run(Command::new(sk)
        .args(["copy", "--all"])
        .arg(format!("oci:{}:v1", out.display()))
        .arg(format!("oci:{}:v1", dir.path().join("demo-copy").display())));
    let single = dir.path().join("single");
    let img = s
        .resolve("demo/app", &Reference::Tag("v1".into()))
        .expect("index");
    let first = s.successors(&img).expect("succ")[0].descriptor.digest;
    s.tag("demo/app", "amd64", &first).expect("tag");
    s.export_layout(
        &[("demo/app".into(), Reference::Tag("amd64".into()))],
        &single,
        &ExportOptions::default(),
    )
    .expect("export");
    let v: Value = serde_json::from_slice(
        &run(Command::new(sk)
            .arg("inspect")
            .arg(format!("oci:{}:amd64", single.display())))
        .stdout,
    )
    .expect("json");
    assert_eq!(v["Architecture"], "amd64");

    // Every imported layout's repository, exported again.
    let (_gen, all) = layouts();
    for p in all {
        let r = import(&s, &p);
        // A layout whose only image is missing leaves no repository behind.
        for tag in s.tags(&r.repository, None, None).unwrap_or_default() {
            let out = dir.path().join(format!("x-{}-{tag}", r.repository));
            s.export_layout(
                &[(r.repository.clone(), Reference::Tag(tag.clone()))],
                &out,
                &ExportOptions::default()
                    .with_referrers(true)
                    .oci_index_types(true)
                    .hardlink(false),
            )
            .expect("export");
            let src = format!("oci:{}:{tag}", out.display());
            run(Command::new(sk).args(["inspect", "--raw"]).arg(&src));
            // Indexes whose children are missing (sparse) cannot be copied whole.
            let walk = s
                .walk(&r.repository, &Reference::Tag(tag.clone()))
                .expect("walk");
            fn complete(n: &ocidb::WalkNode) -> bool {
                n.present && n.children.iter().all(complete)
            }
            if complete(&walk) {
                run(Command::new(sk)
                    .args(["copy", "--all"])
                    .arg(&src)
                    .arg(format!(
                        "oci:{}:{tag}",
                        dir.path()
                            .join(format!("copy-{}-{tag}", r.repository))
                            .display()
                    )));
            }
        }
    }
}

/// The counts a rejected import must leave as they were.
fn visible_state(s: &Store) -> (Vec<String>, u64, u64, u64) {
    let st = s.stats().expect("stats");
    (
        s.repositories().expect("repos"),
        st.manifests,
        st.blobs,
        st.tags,
    )
}

#[test]
fn a_rejected_import_takes_back_what_it_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    let kept = s
        .put_bytes(b"already here", &ocidb::PutOptions::default())
        .expect("put")
        .digest;
    let before = visible_state(&s);
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let fresh = b"fresh blob from the archive";
    let fresh_d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, fresh);
    let name = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let (fresh_name, kept_name) = (name(&fresh_d), name(&kept));
    // Blobs stream in before index.json, which turns out to be garbage.
    let bytes = raw_tar(&[
        ("oci-layout", b'0', "", layout, layout.len() as u64),
        (&fresh_name, b'0', "", fresh, fresh.len() as u64),
        (&kept_name, b'0', "", b"already here", 12),
        ("index.json", b'0', "", b"{not json", 9),
    ]);
    let path = dir.path().join("bad-index.tar");
    std::fs::write(&path, bytes).expect("write");
    let err = s
        .import_layout(&path, &ImportOptions::default().repository("rejected/one"))
        .expect_err("garbage index.json");
    assert!(err.to_string().contains("index.json"), "{err}");
    assert_eq!(
        visible_state(&s),
        before,
        "a rejected import changes nothing"
    );
    assert!(!s.exists(&fresh_d).expect("exists"), "its new blob is gone");
    s.verify(&kept)
        .expect("content that was there before stays");
    let report = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);

    // A directory layout whose index names a manifest that does not parse:
    // its config blob was copied, then the manifest batch was refused.
    let lay = dir.path().join("bad-dir");
    std::fs::create_dir_all(lay.join("blobs/sha256")).expect("dirs");
    std::fs::write(lay.join("oci-layout"), layout).expect("marker");
    let cfg = b"{}";
    let cfg_d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, cfg);
    std::fs::write(lay.join(name(&cfg_d)), cfg).expect("cfg");
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg_d}","size":2}},"layers":[{{"mediaType":"x","digest":"sha256:NOT-A-DIGEST","size":1}}]}}"#
    );
    let m_d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, body.as_bytes());
    std::fs::write(lay.join(name(&m_d)), &body).expect("manifest");
    std::fs::write(
        lay.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m_d}","size":{}}}]}}"#,
            body.len()
        ),
    )
    .expect("index");
    let err = s
        .import_layout(&lay, &ImportOptions::default())
        .expect_err("a manifest with an invalid digest");
    assert!(err.to_string().contains("NOT-A-DIGEST"), "{err}");
    assert_eq!(visible_state(&s), before, "{err}");
    assert!(
        !s.exists(&cfg_d).expect("exists"),
        "its copied config is gone"
    );
}

/// Writes a layout directory as a tar (`blobs/…`, `index.json`,
/// `oci-layout`), leaving out the blobs named in `skip`.
fn tar_of_layout(dir: &Path, skip: &[Digest]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    };
    add(
        "oci-layout",
        &std::fs::read(dir.join("oci-layout")).expect("marker"),
    );
    add(
        "index.json",
        &std::fs::read(dir.join("index.json")).expect("index"),
    );
    for e in std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let d = Digest::parse(&format!("sha256:{name}")).expect("digest");
        if !skip.contains(&d) {
            add(
                &format!("blobs/sha256/{name}"),
                &std::fs::read(e.path()).expect("blob"),
            );
        }
    }
    b.into_inner().expect("tar")
}

/// Issue 13, item 6: a tar holding only an index.json that names another
/// repository's manifest once imported it completely, even with --strict.
#[test]
fn a_tar_adopts_only_what_it_carries_or_the_repository_holds() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (paths, _) = common::fixtures::generated_layouts(layouts_dir.path());
    let signed = &paths[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    s.import_layout(signed, &ImportOptions::default().repository("tenant/a"))
        .expect("tenant a");
    // The same index.json, with no blobs at all, into another repository.
    let all: Vec<Digest> = std::fs::read_dir(signed.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).expect("d"))
        .collect();
    let bare = dir.path().join("bare.tar");
    std::fs::write(&bare, tar_of_layout(signed, &all)).expect("tar");
    let strict = s
        .import_layout(
            &bare,
            &ImportOptions::default().repository("tenant/b").strict(true),
        )
        .expect_err("strict: nothing is carried");
    assert!(strict.to_string().contains("missing"), "{strict}");
    let r = s
        .import_layout(&bare, &ImportOptions::default().repository("tenant/b"))
        .expect("lenient import");
    assert_eq!(r.manifests, 0, "{r:?}");
    assert!(!r.missing.is_empty());
    assert!(s
        .tags("tenant/b", None, None)
        .unwrap_or_default()
        .is_empty());
    for d in &all {
        assert!(!s.is_member("tenant/b", d).expect("member"), "{d} adopted");
    }
    // The same tar into the repository that holds the content is complete.
    let r = s
        .import_layout(
            &bare,
            &ImportOptions::default().repository("tenant/a").strict(true),
        )
        .expect("tenant a already holds it all");
    assert!(r.missing.is_empty());
}

/// Issue 13, item 13: a FIFO index.json hung the import; a symlinked
/// blobs/sha256 was followed.
#[cfg(unix)]
#[test]
fn special_files_and_symlinked_blob_folders_are_refused() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (paths, _) = common::fixtures::generated_layouts(layouts_dir.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    // FIFO index.json.
    let fifo_layout = layouts_dir.path().join("fifo");
    std::fs::create_dir_all(fifo_layout.join("blobs/sha256")).expect("dirs");
    std::fs::copy(paths[1].join("oci-layout"), fifo_layout.join("oci-layout")).expect("marker");
    let made = Command::new("mkfifo")
        .arg(fifo_layout.join("index.json"))
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo");
    let e = s
        .import_layout(&fifo_layout, &ImportOptions::default())
        .expect_err("fifo");
    assert!(e.to_string().contains("regular file"), "{e}");
    // A symlinked blobs/sha256 pointing at another layout's blobs.
    let linked = layouts_dir.path().join("linked");
    std::fs::create_dir_all(linked.join("blobs")).expect("dirs");
    for f in ["oci-layout", "index.json"] {
        std::fs::copy(paths[1].join(f), linked.join(f)).expect("copy");
    }
    std::os::unix::fs::symlink(paths[1].join("blobs/sha256"), linked.join("blobs/sha256"))
        .expect("symlink");
    let e = s
        .import_layout(&linked, &ImportOptions::default())
        .expect_err("symlinked dir");
    assert!(e.to_string().contains("symlinked"), "{e}");
    assert!(s.repositories().expect("repos").is_empty());
}

/// Tar entries whose size comes from a PAX header (how tar writes blobs
/// over 8 GiB) are read at that size.
#[test]
fn pax_size_headers_are_honoured() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (paths, _) = common::fixtures::generated_layouts(layouts_dir.path());
    let src = &paths[1];
    let mut b = tar::Builder::new(Vec::new());
    let mut push = |name: &str, data: &[u8], pax: bool| {
        if pax {
            let n = data.len().to_string();
            b.append_pax_extensions([("size", n.as_bytes())])
                .expect("pax");
        }
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_mode(0o644);
        // With a PAX size the ustar field may say anything (0 here).
        h.set_size(if pax { 0 } else { data.len() as u64 });
        h.set_cksum();
        let out = b.get_mut();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    };
    push(
        "oci-layout",
        &std::fs::read(src.join("oci-layout")).expect("m"),
        false,
    );
    push(
        "index.json",
        &std::fs::read(src.join("index.json")).expect("i"),
        false,
    );
    for e in std::fs::read_dir(src.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
    {
        let name = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
        push(&name, &std::fs::read(e.path()).expect("blob"), true);
    }
    let out = b.into_inner().expect("tar");
    let dir = tempfile::tempdir().expect("tempdir");
    let tar_path = dir.path().join("pax.tar");
    std::fs::write(&tar_path, out).expect("write");
    let s = Store::create(dir.path().join("store")).expect("store");
    let r = s
        .import_layout(&tar_path, &ImportOptions::default().strict(true))
        .expect("pax sizes");
    assert!(r.missing.is_empty());
    assert_eq!(r.tags, 1);
}

/// Issue 13, items 8 and 9: blob files are read-only, exports copy unless
/// asked to link, and an export never lands inside the store.
#[test]
fn exports_copy_by_default_and_stay_out_of_the_store() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let s = Store::create(&root).expect("store");
    ocidb_testkit::load(&s, "demo/app").expect("sample");
    let refs = [("demo/app".to_string(), Reference::Tag("v1".into()))];
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!files.is_empty(), "the sample has blob files");
    for f in &files {
        let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{}", f.display());
    }
    let out = dir.path().join("copy");
    let rep = s
        .export_layout(&refs, &out, &ExportOptions::default())
        .expect("export");
    assert_eq!(rep.hardlinked, 0, "copies by default");
    // Writing into the exported copy leaves the store's bytes alone.
    for e in std::fs::read_dir(out.join("blobs/sha256"))
        .expect("out")
        .flatten()
    {
        let p = e.path();
        let mut perm = std::fs::metadata(&p).expect("meta").permissions();
        perm.set_mode(0o644);
        std::fs::set_permissions(&p, perm).expect("chmod");
        std::fs::write(&p, b"scribbled").expect("scribble");
    }
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
    for inside in [root.join("tmp/x"), root.join("blobs/x"), root.join("x.tar")] {
        let e = s
            .export_layout(&refs, &inside, &ExportOptions::default())
            .expect_err("inside the store");
        assert!(e.to_string().contains("outside the store"), "{e}");
    }
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

/// Issue 13, item 19: a digest-pinned ref.name is no tag, the same
/// reference exported twice is one index.json entry, and a `_` tag is
/// called out.
#[test]
fn ref_names_round_trip_without_bogus_or_duplicate_tags() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let mut w = common::fixtures::LayoutWriter::new(&layouts_dir.path().join("pinned"));
    let img = w.image("pinned", 1, None);
    let pinned = format!("example.com/app@{}", img["digest"].as_str().expect("d"));
    w.entry(&img, Some(&pinned));
    w.entry(&img, Some("v1"));
    let layout = w.finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    let r = s
        .import_layout(&layout, &ImportOptions::default())
        .expect("import");
    assert_eq!(r.tags, 1, "{r:?}");
    assert_eq!(s.tags("pinned", None, None).expect("tags"), vec!["v1"]);
    assert!(r.skipped_refs.iter().any(|x| x.contains(&pinned)), "{r:?}");
    let d = s
        .resolve("pinned", &Reference::Tag("v1".into()))
        .expect("v1");
    s.tag("pinned", "_hidden", &d).expect("tag");
    let refs = [
        ("pinned".to_string(), Reference::Tag("v1".into())),
        ("pinned".to_string(), Reference::Tag("v1".into())),
        ("pinned".to_string(), Reference::Tag("_hidden".into())),
    ];
    let out = dir.path().join("out");
    let rep = s
        .export_layout(&refs, &out, &ExportOptions::default())
        .expect("export");
    assert_eq!(rep.manifests, 2, "v1 once, _hidden once");
    assert!(rep.notes.iter().any(|n| n.contains("_hidden")), "{rep:?}");
    let s2 = Store::create(dir.path().join("store2")).expect("store2");
    let r2 = s2
        .import_layout(&out, &ImportOptions::default())
        .expect("re-import");
    assert_eq!(r2.tags, 2, "{r2:?}");
    let json = serde_json::to_value(&rep).expect("json");
    assert!(json.get("index_entries").is_some(), "{json}");
}

/// A complete layout imported over a sparse import of the same image fills
/// in what was missing: the manifest is already held, but its children
/// are walked again.
#[test]
fn a_complete_layout_fills_in_an_earlier_sparse_import() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let (paths, missing) = common::fixtures::generated_layouts(layouts_dir.path());
    let sparse = &paths[2];
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    let r = import(&s, sparse);
    assert_eq!(r.missing, vec![missing]);
    assert!(!s.exists(&missing).expect("exists"));
    // The layer turns up (the fixture's missing layer holds these bytes).
    std::fs::write(
        sparse.join("blobs/sha256").join(missing.hex()),
        b"not carried",
    )
    .expect("layer");
    let r = import(&s, sparse);
    assert!(r.missing.is_empty(), "{r:?}");
    assert!(s.exists(&missing).expect("exists"));
    assert!(s.is_member("gen-sparse", &missing).expect("member"));
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

/// An index.json entry that is not a manifest type ocidb parses is stored
/// opaque, and its tag is still set.
#[test]
fn a_tagged_opaque_entry_keeps_its_tag() {
    let layouts_dir = tempfile::tempdir().expect("tempdir");
    let mut w = common::fixtures::LayoutWriter::new(&layouts_dir.path().join("opaque"));
    let thing = w.blob("application/vnd.example.thing+json", br#"{"hello":1}"#);
    w.entry(&thing, Some("v1"));
    let layout = w.finish();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path().join("store")).expect("store");
    let r = import(&s, &layout);
    assert_eq!(r.tags, 1, "{r:?}");
    let d = s
        .resolve("opaque", &Reference::Tag("v1".into()))
        .expect("tag");
    assert_eq!(d.to_string(), thing["digest"].as_str().expect("digest"));
}

/// Issue 31: a tar's small blobs (up to the inline threshold, 64 KiB) go
/// in batches (one transaction per 10,000 blobs or 32 MiB) instead of one
/// transaction each. A tar of more small bytes than one batch imports
/// exactly what its directory imports; a corrupt blob after the first
/// batch fails the import and takes back what the earlier batches stored.
#[test]
fn a_tar_of_many_small_blobs_imports_as_its_directory_and_a_late_bad_one_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = common::fixtures::LayoutWriter::new(&dir.path().join("many"));
    // 200 images of three 60 KiB layers and a manifest over one shared
    // config: 801 blobs, 35 MiB, past one batch of 32 MiB.
    let cfg = w.blob("application/vnd.oci.image.config.v1+json", b"{}");
    for i in 0..200 {
        let layers: Vec<Value> = (0..3)
            .map(|j| {
                let unit = format!("image {i} layer {j};");
                let bytes = unit.repeat((60 << 10) / unit.len() + 1);
                w.blob(
                    "application/vnd.oci.image.layer.v1.tar",
                    &bytes.as_bytes()[..60 << 10],
                )
            })
            .collect();
        let img = w.manifest(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg,
            "layers": layers,
        }));
        w.entry(&img, Some(&format!("t{i}")));
    }
    let layout = w.finish();
    let tar_of = |src: &Path, out: &Path| {
        let f = std::fs::File::create(out).expect("tar file");
        let mut b = tar::Builder::new(f);
        b.append_dir_all(".", src).expect("append");
        b.finish().expect("finish tar");
    };
    let tar = dir.path().join("many.tar");
    tar_of(&layout, &tar);
    let import = |from: &Path, store: &Path| {
        let s = Store::create(store).expect("store");
        let r = s.import_layout(from, &ImportOptions::default().repository("many/app"));
        (s, r)
    };
    let (from_dir, r) = import(&layout, &dir.path().join("s-dir"));
    r.expect("directory import");
    let (from_tar, r) = import(&tar, &dir.path().join("s-tar"));
    let r = r.expect("tar import");
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    let members = |s: &Store| -> BTreeSet<Digest> {
        s.members("many/app")
            .expect("members")
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    };
    assert_eq!(members(&from_tar), members(&from_dir));
    assert_eq!(members(&from_tar).len(), 200 * 4 + 1);
    assert_eq!(
        from_tar.tags("many/app", None, None).expect("tags").len(),
        200
    );
    assert!(from_tar
        .fsck(&FsckOptions::default())
        .expect("fsck")
        .is_clean());

    // The tar's last blob is corrupted in place (rewriting a file keeps the
    // directory's order, so the new tar lists it last too): the first
    // batch has been stored by the time it is read.
    let last = tar::Archive::new(std::fs::File::open(&tar).expect("tar"))
        .entries()
        .expect("entries")
        .flatten()
        .filter_map(|e| e.path().ok().map(std::borrow::Cow::into_owned))
        .filter(|p| p.starts_with("./blobs/sha256") || p.starts_with("blobs/sha256"))
        .filter(|p| p.components().count() >= 3)
        .last()
        .expect("a blob entry");
    let bad = layout.join(last.strip_prefix(".").unwrap_or(&last));
    let mut bytes = std::fs::read(&bad).expect("the last blob");
    bytes[0] ^= 1;
    std::fs::write(&bad, bytes).expect("corrupt");
    let bad_tar = dir.path().join("bad.tar");
    tar_of(&layout, &bad_tar);
    let (s, r) = import(&bad_tar, &dir.path().join("s-bad"));
    let e = r.expect_err("a blob that does not hash to its name");
    assert!(
        e.to_string()
            .contains(bad.file_name().and_then(|n| n.to_str()).expect("name")),
        "the error names the blob: {e}"
    );
    let st = s.stats().expect("stats");
    assert_eq!((st.blobs, st.manifests), (0, 0), "nothing stays behind");
}
