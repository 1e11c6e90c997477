//! The real `ocidb` binary, driven as an operator would.

use std::process::Command;

use serde_json::Value;

mod common;

use common::cli::{fails, ocidb, ok};

#[test]
fn blob_round_trip_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    let file = dir.path().join("data.bin");
    let data = ocidb_testkit::deterministic_bytes(b"cli", 200_000);
    std::fs::write(&file, &data).expect("write");

    let digest = ok(&ocidb(
        &store,
        &[
            "blob",
            "put",
            file.to_str().expect("utf8"),
            "--media-type",
            "application/x-test",
        ],
    ))
    .trim()
    .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let json: Value = serde_json::from_str(&ok(&ocidb(
        &store,
        &["blob", "put", file.to_str().expect("utf8"), "--json"],
    )))
    .expect("json");
    assert_eq!(json["digest"], digest.as_str());
    assert_eq!(json["size"], 200_000);

    let stat: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["blob", "stat", &digest]))).expect("json");
    assert_eq!(stat["size"], 200_000);
    assert_eq!(stat["mediaType"], "application/x-test");

    let out = dir.path().join("out.bin");
    ok(&ocidb(
        &store,
        &[
            "blob",
            "get",
            &digest,
            "-o",
            out.to_str().expect("utf8"),
            "--verify",
        ],
    ));
    assert_eq!(std::fs::read(&out).expect("read"), data);

    let range = ocidb(&store, &["blob", "get", &digest, "--range", "10-19"]);
    assert!(range.status.success());
    assert_eq!(range.stdout, &data[10..=19]);

    // --store after the subcommand works too, and so does OCIDB_STORE.
    let after = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .args(["blob", "stat", &digest, "--store"])
        .arg(&store)
        .output()
        .expect("run");
    ok(&after);
    let env = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .args(["blob", "stat", &digest])
        .env("OCIDB_STORE", &store)
        .output()
        .expect("run");
    ok(&env);

    ok(&ocidb(&store, &["blob", "rm", &digest]));
    let err = fails(&ocidb(&store, &["blob", "stat", &digest]));
    assert!(err.contains(&digest) && err.contains("not found"), "{err}");
}

#[test]
fn errors_are_one_line_naming_the_value_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").expect("write");
    let upper = "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    let err = fails(&ocidb(
        &store,
        &[
            "blob",
            "put",
            file.to_str().expect("utf8"),
            "--digest",
            upper,
        ],
    ));
    assert!(err.contains(upper) && err.contains("uppercase"), "{err}");

    let wrong = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let err = fails(&ocidb(
        &store,
        &[
            "blob",
            "put",
            file.to_str().expect("utf8"),
            "--digest",
            wrong,
        ],
    ));
    assert!(err.contains("mismatch") && err.contains(wrong), "{err}");
    // Nothing was stored, not even the store the put would have made.
    assert!(!store.exists(), "a refused put left a store");
    let err = fails(&ocidb(&store, &["blob", "stat", wrong]));
    assert!(err.contains("no such directory"), "{err}");

    let err = fails(&ocidb(&store, &["blob", "get", "sha256:abc"]));
    assert!(
        err.contains("sha256:abc") && err.contains("64 hex"),
        "{err}"
    );

    let err = fails(&ocidb(
        &dir.path().join("missing"),
        &["blob", "stat", wrong],
    ));
    assert!(err.contains("not an ocidb store"), "{err}");

    let d = ok(&ocidb(
        &store,
        &["blob", "put", file.to_str().expect("utf8")],
    ))
    .trim()
    .to_string();
    let err = fails(&ocidb(&store, &["blob", "get", &d, "--range", "9-20"]));
    assert!(err.contains("9-20") && err.contains("5 bytes"), "{err}");
    let err = fails(&ocidb(&store, &["blob", "get", &d, "--range", "abc"]));
    assert!(err.contains("`abc`"), "{err}");
}

#[test]
fn manifests_tags_referrers_tree_and_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    let cfg = dir.path().join("cfg.json");
    std::fs::write(&cfg, b"{\"os\":\"linux\"}").expect("write");
    let cfg_d = ok(&ocidb(
        &store,
        &[
            "blob",
            "put",
            cfg.to_str().expect("utf8"),
            "--repo",
            "lib/app",
        ],
    ))
    .trim()
    .to_string();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": 14},
        "layers": []
    });
    let mf = dir.path().join("m.json");
    std::fs::write(&mf, m.to_string()).expect("write");
    let md = ok(&ocidb(
        &store,
        &[
            "manifest",
            "put",
            "lib/app",
            mf.to_str().expect("utf8"),
            "--tag",
            "v1",
            "--tag",
            "latest",
        ],
    ))
    .trim()
    .to_string();
    let size = m.to_string().len();
    let sig = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.notary.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": size}
    });
    // The signature's empty config is pushed to the repository first, as
    // a client does: a manifest's blobs must be in its repository.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, b"{}").expect("write");
    ok(&ocidb(
        &store,
        &[
            "blob",
            "put",
            empty.to_str().expect("utf8"),
            "--repo",
            "lib/app",
        ],
    ));
    let sf = dir.path().join("sig.json");
    std::fs::write(&sf, sig.to_string()).expect("write");
    let sd = ok(&ocidb(
        &store,
        &["manifest", "put", "lib/app", sf.to_str().expect("utf8")],
    ))
    .trim()
    .to_string();

    let tags: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["tags", "lib/app", "--json"]))).expect("json");
    assert_eq!(tags["tags"], serde_json::json!(["latest", "v1"]));
    let repos: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["repos", "--json"]))).expect("json");
    assert_eq!(repos["repositories"], serde_json::json!(["lib/app"]));

    let body = ok(&ocidb(&store, &["manifest", "get", "lib/app", "v1"]));
    assert_eq!(body, m.to_string());

    let refs: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["referrers", "lib/app", &md]))).expect("json");
    assert_eq!(refs["manifests"][0]["digest"], sd.as_str());
    assert_eq!(
        refs["manifests"][0]["artifactType"],
        "application/vnd.cncf.notary.signature"
    );
    let filtered = ocidb(
        &store,
        &[
            "referrers",
            "lib/app",
            &md,
            "--artifact-type",
            "application/spdx+json",
        ],
    );
    let v: Value = serde_json::from_str(&ok(&filtered)).expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert!(String::from_utf8_lossy(&filtered.stderr).contains("OCI-Filters-Applied: artifactType"));

    let tree = ok(&ocidb(&store, &["tree", "lib/app:v1"]));
    assert!(
        tree.contains("config") && tree.contains("referrer") && tree.contains("tags: latest, v1"),
        "{tree}"
    );
    assert!(!tree.contains("\x1b["), "no colour when not a terminal");

    let inspect: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["inspect", &cfg_d]))).expect("json");
    assert_eq!(inspect["parents"][0]["digest"], md.as_str());
    assert_eq!(inspect["repositories"], serde_json::json!(["lib/app"]));

    ok(&ocidb(&store, &["untag", "lib/app", "latest"]));
    let err = fails(&ocidb(&store, &["manifest", "get", "lib/app", "latest"]));
    assert!(err.contains("existing tags: v1"), "{err}");
    let err = fails(&ocidb(&store, &["tree", "lib/app"]));
    assert!(err.contains("REPO:TAG"), "{err}");
    let err = fails(&ocidb(&store, &["tags", "Lib/App"]));
    assert!(err.contains("Lib/App"), "{err}");
}

#[test]
fn demo_runs_and_shows_the_graph() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("demo");
    let out = ok(&ocidb(&store, &["demo"]));
    for needle in [
        "referrer",
        "application/spdx+json",
        "application/vnd.cncf.helm.vFuture+json",
        "OCI-Filters-Applied",
        "shared base layer",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle}:\n{out}");
    }
    // With --store the store is kept and usable afterwards.
    let tree = ok(&ocidb(&store, &["tree", "demo/app:v1"]));
    assert!(tree.contains("linux/amd64"), "{tree}");
}

#[test]
fn bench_gen_writes_a_layout_that_imports_and_bench_run_prints_every_scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("synthetic");
    let store = dir.path().join("store");
    let out = ok(&ocidb(
        &store,
        &[
            "bench",
            "gen",
            "--manifests",
            "1500",
            "--seed",
            "3",
            "--layout",
            layout.to_str().expect("utf-8"),
        ],
    ));
    assert!(out.contains("wrote an OCI image layout of 15"), "{out}");
    let imported = ok(&ocidb(
        &store,
        &[
            "import",
            layout.to_str().expect("utf-8"),
            "--repo",
            "synthetic/all",
        ],
    ));
    assert!(imported.contains("15"), "{imported}");
    // The synthetic graph stores no blobs: fsck names the images that
    // cannot be pulled, and accepts them when told the store is sparse.
    let strict = ocidb(&store, &["fsck"]);
    assert!(!strict.status.success(), "fsck exits 1 on problems");
    let text = String::from_utf8_lossy(&strict.stdout);
    assert!(text.contains("missing-child"), "{text}");
    let fsck = ok(&ocidb(&store, &["fsck", "--allow-sparse"]));
    assert!(fsck.contains(" 0 problem(s)"), "{fsck}");

    let json = dir.path().join("bench.json");
    let svg = dir.path().join("scaling.svg");
    let work = dir.path().join("work");
    let table = ok(&ocidb(
        &store,
        &[
            "bench",
            "run",
            "--quick",
            "--manifests",
            "2500",
            "--sizes",
            "1200,2500",
            "--dir",
            work.to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
            "--svg",
            svg.to_str().expect("utf-8"),
        ],
    ));
    for needle in [
        "ingest: batch",
        "lookup: stat, cold digests, 1 thread",
        "referrers: k = 100, artifactType filter",
        "graph: predecessors",
        "referrers: k = 1, against the raw scan",
        "raw redb range scan of the same keys and bytes",
        "open: a store of",
        "gc: durable small puts during GC",
        "raw redb get",
        "HashMap",
    ] {
        assert!(table.contains(needle), "{needle} missing from:\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("valid JSON");
    let rows = report["rows"].as_array().expect("rows");
    assert!(rows.len() >= 15, "{}", rows.len());
    assert!(
        rows.iter()
            .filter(|r| r["cost_ratio"].is_number())
            .all(|r| r["baseline"].is_string()),
        "every ratio names its baseline"
    );
    assert_eq!(report["scaling"].as_array().expect("scaling").len(), 2);
    let plot = std::fs::read_to_string(&svg).expect("svg");
    assert!(
        plot.starts_with("<svg") && plot.contains("<polyline"),
        "{plot}"
    );
    assert!(
        !work.exists() || std::fs::read_dir(&work).expect("work").next().is_none(),
        "the working directory is cleaned up"
    );
}

/// Issue 13, item 5: strings from a layout reach the terminal escaped.
#[test]
fn untrusted_strings_are_printed_escaped() {
    use common::fixtures::LayoutWriter;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = LayoutWriter::new(&dir.path().join("evil"));
    let mut img = w.image("evil", 1, Some(("linux", "amd64")));
    img["platform"]["os"] = serde_json::json!("\u{1b}[2Klinux\u{202e}");
    let idx = w.manifest(&serde_json::json!({"schemaVersion": 2, "mediaType": ocidb::manifest::OCI_INDEX, "manifests": [img]}));
    w.entry(&idx, Some("latest"));
    w.entry(&idx, Some("\u{1b}]0;pwned\u{7}"));
    let layout = w.finish();
    let store = dir.path().join("s");
    let out = ok(&ocidb(
        &store,
        &["import", layout.to_str().expect("utf8"), "--repo", "evil"],
    ));
    assert!(out.contains("skipped ref.name"), "{out}");
    let tree = ok(&ocidb(&store, &["tree", "evil:latest"]));
    for text in [&out, &tree] {
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "raw control characters reached the terminal: {text:?}"
        );
    }
    assert!(tree.contains("\\u{1b}[2Klinux"), "{tree}");
}

/// Issue 13, item 14: a closed stdout ends the command quietly.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read as _;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    // Larger than any pipe buffer: the writer must meet the closed end.
    let file = dir.path().join("big.bin");
    std::fs::write(&file, ocidb_testkit::deterministic_bytes(b"pipe", 4 << 20)).expect("write");
    let d = ok(&ocidb(
        &store,
        &["blob", "put", file.to_str().expect("utf8")],
    ))
    .trim()
    .to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&store)
        .args(["blob", "get", &d])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    use std::os::unix::process::ExitStatusExt as _;
    assert!(
        out.status.success() || out.status.signal() == Some(libc_sigpipe()),
        "{:?}: {err}",
        out.status
    );
}

fn libc_sigpipe() -> i32 {
    13
}

/// Issue 13, items 11, 19, 20 and 21 through the binary: bounded manifest
/// reads, compressed archives named, referrers of an unknown repository,
/// `--json` on every read command, leases listed and released, and read
/// commands that never create a store.
#[test]
fn operator_paper_cuts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    // Read commands on a missing store create nothing.
    for args in [
        &["tags", "x"][..],
        &["repos"],
        &["stats"],
        &["lease", "ls"],
        &["fsck"],
    ] {
        fails(&ocidb(&store, args));
        assert!(!store.exists(), "{args:?} created the store");
    }
    // A manifest from /dev/zero: refused after limit + 1 bytes.
    let err = fails(&ocidb(&store, &["manifest", "put", "app", "/dev/zero"]));
    assert!(err.contains("at most 4194304 bytes"), "{err}");
    // A gzip-compressed archive is named as such.
    let gz = dir.path().join("image.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).expect("write");
    let err = fails(&ocidb(
        &store,
        &["import", gz.to_str().expect("utf8"), "--repo", "a"],
    ));
    assert!(err.contains("gzip-compressed"), "{err}");
    // Referrers of a repository that does not exist: not found, like tree.
    let file = dir.path().join("b");
    std::fs::write(&file, b"blob").expect("write");
    let d = ok(&ocidb(
        &store,
        &["blob", "put", file.to_str().expect("utf8")],
    ))
    .trim()
    .to_string();
    let err = fails(&ocidb(&store, &["referrers", "nope", &d]));
    assert!(err.contains("repository `nope` not found"), "{err}");
    // --json everywhere a read command prints.
    let v: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["blob", "stat", &d, "--json"]))).expect("json");
    assert_eq!(v["digest"], d.as_str());
    let v: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["inspect", &d, "--json"]))).expect("json");
    assert_eq!(v["digest"], d.as_str());
    // Leases: listed, released.
    let s = ocidb::Store::open(&store).expect("open");
    let lease = s
        .create_lease(std::time::Duration::from_secs(600))
        .expect("lease");
    drop(s);
    let ls: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["lease", "ls", "--json"]))).expect("json");
    assert_eq!(ls[0]["id"], lease.id);
    ok(&ocidb(&store, &["lease", "rm", &lease.id.to_string()]));
    let ls: Value =
        serde_json::from_str(&ok(&ocidb(&store, &["lease", "ls", "--json"]))).expect("json");
    assert_eq!(ls.as_array().map(Vec::len), Some(0));
}

/// Issue 13, item 21: an index.json over the old 16 MiB limit imports, and
/// a layout missing 150,000 blobs prints a summary, not 150,000 lines.
#[test]
fn a_large_sparse_index_imports_with_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("big");
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("dirs");
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("marker");
    let mut idx = String::from(
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
    );
    for i in 0..150_000u32 {
        if i > 0 {
            idx.push(',');
        }
        let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &i.to_le_bytes());
        idx.push_str(&format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":1000,"annotations":{{"org.opencontainers.image.ref.name":"t{i}"}}}}"#
        ));
    }
    idx.push_str("]}");
    assert!(idx.len() > 16 * 1024 * 1024, "{}", idx.len());
    std::fs::write(layout.join("index.json"), &idx).expect("index");
    let store = dir.path().join("s");
    let out = ok(&ocidb(&store, &["import", layout.to_str().expect("utf8")]));
    assert!(out.contains("and 149990 more missing"), "{out}");
    assert!(out.lines().count() < 20, "{out}");
}

/// Issue 26, item 13: `blob rm` of a tagged image's layer deleted it with
/// no warning, `tree` showed it missing and fsck said 0 problems. Now
/// `blob rm` and `rm` refuse content a tag reaches, naming the tag, unless
/// `--force`; and fsck reports the tagged image that lost a blob.
#[test]
fn removing_what_a_tag_reaches_needs_force_and_fsck_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    let put_blob = |name: &str, bytes: &[u8]| {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).expect("write");
        ok(&ocidb(
            &store,
            &[
                "blob",
                "put",
                f.to_str().expect("utf8"),
                "--repo",
                "lib/app",
            ],
        ))
        .trim()
        .to_string()
    };
    let cfg = put_blob("cfg", b"{\"os\":\"linux\"}");
    let layer = put_blob("layer", b"layer bytes");
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 14},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 11}],
    });
    let mf = dir.path().join("m.json");
    std::fs::write(&mf, m.to_string()).expect("write");
    let md = ok(&ocidb(
        &store,
        &[
            "manifest",
            "put",
            "lib/app",
            mf.to_str().expect("utf8"),
            "--tag",
            "v1",
        ],
    ))
    .trim()
    .to_string();
    let err = fails(&ocidb(&store, &["blob", "rm", &layer]));
    assert!(
        err.contains("lib/app:v1") && err.contains("--force"),
        "{err}"
    );
    let err = fails(&ocidb(&store, &["rm", &format!("lib/app@{md}")]));
    assert!(err.contains("lib/app:v1"), "{err}");
    assert!(ok(&ocidb(&store, &["fsck"])).contains(" 0 problem(s)"));
    ok(&ocidb(&store, &["blob", "rm", &layer, "--force"]));
    let out = ocidb(&store, &["fsck"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("missing-child") && text.contains(&layer) && text.contains("lib/app:v1"),
        "{text}"
    );
}

/// Issue 26, item 14: a first command that fails leaves no store behind,
/// and a first S3 use without credentials says so.
#[test]
fn a_failed_first_command_creates_no_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("newstore");
    let err = fails(&ocidb(
        &store,
        &["import", dir.path().join("nope").to_str().expect("utf8")],
    ));
    assert!(err.contains("nope"), "{err}");
    assert!(!store.exists(), "a failed import created the store");
    // A bad blob put into a new store: refused, and no store either.
    let f = dir.path().join("f");
    std::fs::write(&f, b"hello").expect("write");
    let wrong = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    fails(&ocidb(
        &store,
        &["blob", "put", f.to_str().expect("utf8"), "--digest", wrong],
    ));
    assert!(!store.exists(), "a refused put created the store");
    // S3 without credentials: named as such, before any request, and the
    // half-made store is gone (the next open does not turn it local).
    let out = common::cli::command(&store)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("OCIDB_S3_INSTANCE_CREDENTIALS")
        .args([
            "--blobs",
            "s3://bucket/p?endpoint=http://127.0.0.1:1&region=garage",
            "blob",
            "put",
            f.to_str().expect("utf8"),
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("AWS_ACCESS_KEY_ID is not set"), "{err}");
    assert!(!err.contains("169.254"), "{err}");
    assert!(
        !store.exists(),
        "the failed S3 open left {}",
        store.display()
    );
}
