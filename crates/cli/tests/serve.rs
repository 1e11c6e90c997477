//! `ocidb serve` as clients see it: the OCI conformance suite, real
//! clients, a kill -9 in the middle of a chunked upload, and the bad
//! requests. The suite and the clients come from `../shared/oci-tools`;
//! without it those tests skip with a line (and fail under `CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::Server;
use ocidb::{Algorithm, Hasher};

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn the_conformance_suite_passes_with_every_api_and_data_set_on() {
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    let line = common::server::assert_conformance_passes(
        &tools,
        &server,
        &dir.path().join("results"),
        &[],
    );
    // Anonymous mounts are optional in the spec, and refused here unless
    // the target already holds the blob (README, "Limits"); the sparse
    // data set is off (such pushes get MANIFEST_BLOB_UNKNOWN).
    assert!(common::server::count(&line, "skipped") <= 4, "{line}");
    // With sparse manifests allowed, the sparse data set passes too.
    let sparse = Server::start_with(
        &dir.path().join("sparse-store"),
        &["--allow-sparse-manifests"],
    );
    let line = common::server::assert_conformance_passes(
        &tools,
        &sparse,
        &dir.path().join("sparse-results"),
        &[("OCI_DATA_SPARSE", "true")],
    );
    assert!(common::server::count(&line, "skipped") <= 2, "{line}");
}

/// The suite in its mode for the next distribution spec (`OCI_VERSION=dev`):
/// tags pushed with a manifest by digest (`?tag=`, answered by `OCI-Tag`),
/// and sha512 manifests that keep their algorithm when fetched by tag.
#[test]
fn the_conformance_suite_of_the_next_spec_passes() {
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("store"), &["--allow-sparse-manifests"]);
    let line = common::server::assert_conformance_passes(
        &tools,
        &server,
        &dir.path().join("results"),
        &[("OCI_VERSION", "dev"), ("OCI_DATA_SPARSE", "true")],
    );
    // Only the anonymous mounts (sha256 and sha512), as above.
    assert!(common::server::count(&line, "skipped") <= 2, "{line}");
}

#[test]
fn tags_ride_with_a_manifest_pushed_by_digest_and_uploads_hash_as_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    let cfg = server.push_blob("tp/app", b"{}");
    let layer = server.push_blob("tp/app", b"layer bytes");
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 11}],
    }))
    .expect("json");
    let d512 = Hasher::digest_of(Algorithm::Sha512, &body).to_string();
    let mt = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let by_digest = format!("/v2/tp/app/manifests/{d512}");

    // A bad tag among the parameters refuses the whole push, naming it.
    let r = server.request(
        "PUT",
        &format!("{by_digest}?tag=ok&tag=no%21pe"),
        &mt,
        &body,
    );
    assert_eq!((r.status, r.code().as_str()), (400, "TAG_INVALID"), "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("no!pe"), "{r:?}");
    // So does one parameter too many, with 414.
    let many: String = (0..=100).map(|i| format!("tag=t{i}&")).collect();
    let r = server.request("PUT", &format!("{by_digest}?{many}"), &mt, &body);
    assert_eq!(r.status, 414, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("101 tag parameters"),
        "{r:?}"
    );
    let r = server.request("GET", &by_digest, &[], b"");
    assert_eq!(r.status, 404, "nothing was stored: {r:?}");
    let r = server.request("GET", "/v2/tp/app/tags/list", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["tags"], serde_json::json!([]), "no tag was applied");

    // Each applied tag is named once in its own OCI-Tag header.
    let r = server.request("PUT", &format!("{by_digest}?tag=a&tag=b&tag=a"), &mt, &body);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header_all("oci-tag"), ["a", "b"]);
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    // Fetched by tag, the manifest keeps its sha512 digest.
    for method in ["GET", "HEAD"] {
        let r = server.request(method, "/v2/tp/app/manifests/b", &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    }
    let r = server.request("GET", "/v2/tp/app/tags/list", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));

    // An upload that starts with `digest-algorithm=sha512` finishes by a
    // sha512 digest; an algorithm the registry lacks is refused by name.
    let r = server.request(
        "POST",
        "/v2/tp/app/blobs/uploads/?digest-algorithm=md5",
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "DIGEST_INVALID"),
        "{r:?}"
    );
    assert!(String::from_utf8_lossy(&r.body).contains("md5"), "{r:?}");
    let r = server.request(
        "POST",
        "/v2/tp/app/blobs/uploads/?digest-algorithm=sha512",
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").expect("location").to_string();
    let data = b"hashed as it arrives";
    let r = server.request(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").expect("location").to_string();
    let b512 = Hasher::digest_of(Algorithm::Sha512, data).to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = server.request("PUT", &format!("{location}{sep}digest={b512}"), &[], b"");
    assert_eq!(r.status, 201, "{r:?}");
    let r = server.request("HEAD", &format!("/v2/tp/app/blobs/{b512}"), &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(b512.as_str()));
}

/// A tag's history over `GET /v2/<name>/_oci/tag-history/<tag>`: the
/// events (created|deleted, digest), newest first, and the Link header.
fn served_history(server: &Server, path: &str) -> (Vec<(String, String)>, Option<String>) {
    let r = server.request("GET", path, &[], b"");
    assert_eq!(r.status, 200, "{path}: {r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let events = v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let a = &m["annotations"];
            let time = a["org.opencontainers.distribution.tag.timestamp"].as_str();
            assert!(time.and_then(ocidb::clock::parse_rfc3339).is_some(), "{m}");
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            let event = a["org.opencontainers.distribution.tag.event"].as_str();
            (
                event.expect("event").to_string(),
                m["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect();
    (events, r.header("link").map(str::to_string))
}

#[test]
fn tag_history_is_served_and_a_deleted_tag_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let server = Server::start(&store);
    let (a, first) = server.push_image("th/app", "v1", b"first layer");
    assert!(first.header("warning").is_none(), "{first:?}");
    // A push that moves the tag warns, naming the former target.
    let (b, moved) = server.push_image("th/app", "v1", b"second layer");
    let w = moved.header("warning").expect("a warning on the move");
    assert!(
        w.starts_with("299 - \"tag v1 moved from ") && w.contains(&a),
        "{w}"
    );
    let r = server.request("DELETE", "/v2/th/app/manifests/v1", &[], b"");
    assert_eq!(r.status, 202, "{r:?}");

    let base = "/v2/th/app/_oci/tag-history/v1";
    let ev = |e: &str, d: &str| (e.to_string(), d.to_string());
    let (all, link) = served_history(&server, base);
    assert_eq!(
        all,
        [ev("deleted", &b), ev("created", &b), ev("created", &a)]
    );
    assert!(link.is_none());
    let (none, link) = served_history(&server, &format!("{base}?n=0"));
    assert!(
        none.is_empty() && link.is_none(),
        "n=0: the extension's probe"
    );
    // Pages follow the Link header, with the filter carried over.
    let (page, link) = served_history(&server, &format!("{base}?n=1&digest={b}"));
    assert_eq!(page, [ev("deleted", &b)]);
    let link = link.expect("a next page");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("target");
    let (page, link) = served_history(&server, next);
    assert_eq!(page, [ev("created", &b)], "{next}: the filter held");
    assert!(link.is_none(), "{next}");
    let (none, _) = served_history(&server, &format!("{base}?before=2000-01-01T00:00:00Z"));
    assert!(none.is_empty());
    let r = server.request("GET", &format!("{base}?before=soon"), &[], b"");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("before=soon"),
        "{r:?}"
    );
    for path in [
        "/v2/th/app/_oci/tag-history/never",
        "/v2/no/such/_oci/tag-history/v1",
    ] {
        let (none, _) = served_history(&server, path);
        assert!(none.is_empty(), "{path}");
    }

    // The CLI reads the same history through the running server, and a
    // GC with an undelete window keeps what the deleted tag named.
    let out = common::cli::ok(&common::cli::ocidb(
        &store,
        &["history", "th/app:v1", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(3), "{out}");
    let gc = [
        "gc",
        "--delete-untagged",
        "--grace",
        "0s",
        "--undelete-window",
        "1h",
        "--json",
    ];
    let out = common::cli::ok(&common::cli::ocidb(&store, &gc));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["deleted_manifests"], 0, "{out}");
    assert!(
        v["kept_for_undelete"].as_u64().is_some_and(|n| n >= 2),
        "{out}"
    );
    server.kill();
    common::cli::ok(&common::cli::ocidb(
        &store,
        &["tag", "th/app:v1", "--restore", &b[..20]],
    ));
    let out = common::cli::ok(&common::cli::ocidb(&store, &["tags", "th/app", "--full"]));
    assert!(out.contains(&b), "{out}");
    let text = common::cli::ok(&common::cli::ocidb(&store, &["history", "th/app:v1"]));
    let newest = text.lines().next().expect("a line");
    assert!(newest.contains("restored"), "{text}");
    let bad = common::cli::fails(&common::cli::ocidb(
        &store,
        &["tag", "th/app:v1", "--at", "soon"],
    ));
    assert!(
        bad.contains("--at soon") && bad.contains("RFC 3339"),
        "{bad}"
    );
}

#[test]
fn a_push_over_quota_gets_403_denied_and_usage_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let server = Server::start_with(&store, &["--quota", "qt/=3000", "--quota", "qt/small=1K"]);
    let blob = |n: u8, len: usize| vec![n; len];
    let post = |repo: &str, data: &[u8]| {
        server.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
            &[],
            data,
        )
    };
    assert_eq!(post("qt/big", &blob(1, 1000)).status, 201);
    let r = post("qt/small", &blob(2, 1500));
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"), "{r:?}");
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        msg.contains("quota of `qt/small`") && msg.contains("1024"),
        "{msg}"
    );
    let r = post("qt/other", &blob(3, 2500));
    assert_eq!(r.status, 403, "the namespace's quota: {r:?}");
    // A chunked upload that would pass it is refused at its last request.
    let r = server.request("POST", "/v2/qt/big/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").expect("location").to_string();
    let data = blob(4, 2500);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = server.request(
        "PUT",
        &format!("{location}{sep}digest={}", sha256(&data)),
        &[],
        &data,
    );
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"), "{r:?}");
    let r = server.request(
        "HEAD",
        &format!("/v2/qt/big/blobs/{}", sha256(&data)),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "nothing stored: {r:?}");
    // Usage, through the running server.
    let out = common::cli::ok(&common::cli::ocidb(&store, &["usage", "qt/", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["logical_bytes"], 1000, "{out}");
    assert_eq!(v["exclusive_bytes"], 1000, "{out}");
    assert_eq!(v["quota"], 3000, "{out}");
    let out = common::cli::ok(&common::cli::ocidb(&store, &["usage"]));
    assert!(out.contains("qt/big") && out.contains("1000 B"), "{out}");
}

#[test]
fn retention_runs_through_the_server_and_pulls_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let server = Server::start(&store);
    let mut digests = Vec::new();
    for t in ["v1", "v2", "v3"] {
        digests.push(
            server
                .push_image("rp/app", t, format!("layer {t}").as_bytes())
                .0,
        );
    }
    // A pull of v2: recorded within a few seconds.
    let r = server.request("GET", "/v2/rp/app/manifests/v2", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    std::thread::sleep(std::time::Duration::from_secs(7));
    let policy = dir.path().join("retention.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nrepositories = \"rp/\"\nkeep_last_pulled = 1\n",
    )
    .expect("policy");
    let p = policy.to_str().expect("utf-8");
    let out = common::cli::ok(&common::cli::ocidb(
        &store,
        &[
            "retention",
            "--policy",
            p,
            "--dry-run",
            "--grace",
            "0s",
            "--json",
        ],
    ));
    let dry: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(dry["dry_run"], true, "{out}");
    assert_eq!(
        dry["tags_deleted"], 2,
        "v1 and v3 go, the pulled v2 stays: {out}"
    );
    let r = server.request("GET", "/v2/rp/app/tags/list", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        v["tags"],
        serde_json::json!(["v1", "v2", "v3"]),
        "a dry run"
    );
    let text = common::cli::ok(&common::cli::ocidb(
        &store,
        &["retention", "--policy", p, "--grace", "0s"],
    ));
    assert!(
        text.contains("dropped 2 tag(s) and 2 manifest(s)"),
        "{text}"
    );
    let r = server.request("GET", "/v2/rp/app/tags/list", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["tags"], serde_json::json!(["v2"]));
    for (d, gone) in [
        (&digests[0], true),
        (&digests[1], false),
        (&digests[2], true),
    ] {
        let r = server.request("HEAD", &format!("/v2/rp/app/manifests/{d}"), &[], b"");
        assert_eq!(r.status == 404, gone, "{d}: {r:?}");
    }
    // What the dry run said GC frees, GC frees.
    let out = common::cli::ok(&common::cli::ocidb(
        &store,
        &["gc", "--grace", "0s", "--json"],
    ));
    let gc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(gc["reclaimed_bytes"], dry["blob_bytes"], "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nrepositories = \"rp/\"\nkeep_tags = \"(\"\n",
    )
    .expect("bad");
    let err = common::cli::fails(&common::cli::ocidb(
        &store,
        &["retention", "--policy", bad.to_str().expect("utf-8")],
    ));
    assert!(err.contains("keep_tags = ("), "{err}");
}

/// The client tools, a server on a fresh store, and a work directory for
/// the client's files; `None` (skipped) without `../shared`.
fn client_setup() -> Option<(PathBuf, tempfile::TempDir, Server, PathBuf)> {
    let tools = common::shared_path("oci-tools")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work");
    Some((tools, dir, server, work))
}

fn tool(tools: &Path, name: &str) -> Command {
    let mut c = Command::new(tools.join("bin").join(name));
    c.env("HOME", std::env::temp_dir());
    c
}

#[test]
fn oras_pushes_attaches_and_discovers_through_the_referrers_api() {
    let Some((tools, _dir, server, work)) = client_setup() else {
        return;
    };
    std::fs::write(work.join("hello.txt"), b"hello from oras").expect("file");
    std::fs::write(work.join("sbom.json"), b"{\"sbom\":true}").expect("file");
    let image = format!("{}/demo/app:v1", server.addr);
    run(tool(&tools, "oras").current_dir(&work).args([
        "push",
        "--plain-http",
        &image,
        "hello.txt",
    ]));
    run(tool(&tools, "oras").current_dir(&work).args([
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/spdx+json",
        &image,
        "sbom.json",
    ]));
    let found =
        run(tool(&tools, "oras").args(["discover", "--plain-http", "--format", "json", &image]));
    assert!(found.contains("application/spdx+json"), "{found}");
    // The referrers API answered: no fallback tag was written.
    let tags = common::server::request(&server.addr, "GET", "/v2/demo/app/tags/list", &[], b"");
    let body = String::from_utf8_lossy(&tags.body).to_string();
    assert!(!body.contains("sha256-"), "a fallback tag appeared: {body}");
    let copy = format!("{}/demo/copy:v1", server.addr);
    run(tool(&tools, "oras").args([
        "cp",
        "-r",
        "--from-plain-http",
        "--to-plain-http",
        &image,
        &copy,
    ]));
    let found =
        run(tool(&tools, "oras").args(["discover", "--plain-http", "--format", "json", &copy]));
    assert!(
        found.contains("application/spdx+json"),
        "cp -r took the referrer: {found}"
    );
}

#[test]
fn crane_pushes_copies_lists_and_deletes() {
    let Some((tools, _dir, server, work)) = client_setup() else {
        return;
    };
    let tarball = work.join("layer.tar");
    {
        let f = std::fs::File::create(&tarball).expect("tar");
        let mut b = tar::Builder::new(f);
        let data = b"crane layer";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello.txt", &data[..])
            .expect("append");
        b.finish().expect("finish");
    }
    let image = format!("{}/crane/app:v1", server.addr);
    run(tool(&tools, "crane").args([
        "append",
        "--insecure",
        "-f",
        tarball.to_str().expect("utf-8"),
        "-t",
        &image,
    ]));
    let copy = format!("{}/crane/copy:v2", server.addr);
    run(tool(&tools, "crane").args(["copy", "--insecure", &image, &copy]));
    let tags = run(tool(&tools, "crane").args([
        "ls",
        "--insecure",
        &format!("{}/crane/app", server.addr),
    ]));
    assert_eq!(tags.trim(), "v1");
    let catalog = run(tool(&tools, "crane").args(["catalog", "--insecure", &server.addr]));
    assert!(
        catalog.contains("crane/app") && catalog.contains("crane/copy"),
        "{catalog}"
    );
    // Pull as an OCI layout, then push that layout back under a new name.
    let layout = work.join("crane-layout");
    run(tool(&tools, "crane").args([
        "pull",
        "--insecure",
        "--format",
        "oci",
        &image,
        layout.to_str().expect("utf-8"),
    ]));
    let pushed = format!("{}/crane/pushed:v3", server.addr);
    let pushed_digest = run(tool(&tools, "crane").args([
        "push",
        "--insecure",
        layout.to_str().expect("utf-8"),
        &pushed,
    ]));
    let original = run(tool(&tools, "crane").args(["digest", "--insecure", &image]));
    assert!(
        pushed_digest.contains(original.trim()),
        "crane push kept the digest: {pushed_digest} vs {original}"
    );
    let digest = run(tool(&tools, "crane").args(["digest", "--insecure", &copy]));
    run(tool(&tools, "crane").args([
        "delete",
        "--insecure",
        &format!("{}/crane/copy@{}", server.addr, digest.trim()),
    ]));
    let gone = common::server::request(
        &server.addr,
        "GET",
        &format!("/v2/crane/copy/manifests/{}", digest.trim()),
        &[],
        b"",
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn regctl_copies_with_referrers_and_lists_artifacts() {
    let Some((tools, _dir, server, work)) = client_setup() else {
        return;
    };
    std::fs::write(work.join("a.txt"), b"artifact").expect("file");
    let host = &server.addr;
    let regctl = |args: &[&str]| {
        let mut c = tool(&tools, "regctl");
        c.current_dir(&work).env("HOME", &work).args(args);
        run(&mut c)
    };
    regctl(&["registry", "set", host, "--tls", "disabled"]);
    let image = format!("{host}/reg/app:v1");
    run(tool(&tools, "oras")
        .current_dir(&work)
        .args(["push", "--plain-http", &image, "a.txt"]));
    run(tool(&tools, "oras").current_dir(&work).args([
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.sig",
        &image,
        "a.txt",
    ]));
    regctl(&[
        "image",
        "copy",
        "--referrers",
        &image,
        &format!("{host}/reg/copy:v1"),
    ]);
    let listed = regctl(&["artifact", "list", &format!("{host}/reg/copy:v1")]);
    assert!(listed.contains("application/vnd.example.sig"), "{listed}");
}

#[test]
fn skopeo_copies_a_layout_in_and_out_keeping_digests() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(!common::in_ci(), "CI=true but skopeo is not installed");
        common::skip("skopeo is not installed (CI installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    let (layouts, _) = common::fixtures::generated_layouts(&dir.path().join("layouts"));
    let src = layouts
        .iter()
        .find(|p| p.ends_with("gen-multiarch"))
        .expect("the multi-arch layout");
    let dst = format!("docker://{}/skopeo/multiarch:latest", server.addr);
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", src.display()),
        &dst,
    ]));
    let out = dir.path().join("out");
    run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dst,
        &format!("oci:{}:latest", out.display()),
    ]));
    let digest_of = |layout: &Path| -> String {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
                .expect("json");
        idx["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    assert_eq!(
        digest_of(&out),
        digest_of(src),
        "skopeo kept the digest both ways"
    );
}

/// kill -9 in the middle of a chunked upload; a restarted server reports
/// the offset, and the upload finishes from there.
#[test]
fn a_chunked_upload_resumes_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let data = ocidb_testkit::deterministic_bytes(b"resume", 3 << 20);
    let digest = sha256(&data);
    let server = Server::start(&store);
    let post = server.request("POST", "/v2/resume/app/blobs/uploads/", &[], b"");
    assert_eq!(post.status, 202, "{post:?}");
    let location = post.header("location").expect("location").to_string();
    let first = 1 << 20;
    let patch = server.request(
        "PATCH",
        &location,
        &[
            ("Content-Range", &format!("0-{}", first - 1)),
            ("Content-Type", "application/octet-stream"),
        ],
        &data[..first],
    );
    assert_eq!(patch.status, 202, "{patch:?}");
    assert_eq!(
        patch.header("range"),
        Some(format!("0-{}", first - 1).as_str())
    );
    server.kill();

    let server = Server::start(&store);
    let status = server.request("GET", &location, &[], b"");
    assert_eq!(status.status, 204, "{status:?}");
    let range = status.header("range").expect("range").to_string();
    let offset: usize = range
        .split('-')
        .nth(1)
        .and_then(|e| e.parse::<usize>().ok())
        .map_or(0, |e| e + 1);
    assert_eq!(offset, first, "the acknowledged chunk survived: {range}");
    // Out of order: refused with the current range.
    let wrong = server.request("PATCH", &location, &[("Content-Range", "5-10")], b"xxxxxx");
    assert_eq!(wrong.status, 416, "{wrong:?}");
    assert_eq!(wrong.header("range"), Some(range.as_str()));
    let patch = server.request(
        "PATCH",
        &location,
        &[("Content-Range", &format!("{offset}-{}", 2 * first - 1))],
        &data[offset..2 * first],
    );
    assert_eq!(patch.status, 202, "{patch:?}");
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = server.request(
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        &[],
        &data[2 * first..],
    );
    assert_eq!(put.status, 201, "{put:?}");
    let got = server.request("GET", &format!("/v2/resume/app/blobs/{digest}"), &[], b"");
    assert_eq!(got.status, 200);
    assert_eq!(sha256(&got.body), digest);
    drop(server);
    common::cli::ok(&common::cli::ocidb(&store, &["fsck"]));
}

/// Each bad request gets its status and OCI code, and stores nothing.
#[test]
fn bad_requests_get_their_codes_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("store"));
    /// Method, path, headers, body, then the status and code expected.
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, String)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v2/app/blobs/sha256:xyz".into(),
            vec![],
            vec![],
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/app/blobs/md5:00".into(),
            vec![],
            vec![],
            400,
            "UNSUPPORTED",
        ),
        (
            "POST",
            format!("/v2/app/blobs/uploads/?digest={}", sha256(b"other")),
            vec![],
            b"these bytes".to_vec(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/Bad_Name/tags/list".into(),
            vec![],
            vec![],
            400,
            "NAME_INVALID",
        ),
        (
            "PUT",
            "/v2/app/manifests/v1".into(),
            vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            b"{not json".to_vec(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "PUT",
            "/v2/app/manifests/v1".into(),
            vec![(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            vec![b' '; (4 << 20) + 1],
            413,
            "SIZE_INVALID",
        ),
        (
            "PUT",
            "/v2/app/manifests/bad tag".into(),
            vec![],
            b"{}".to_vec(),
            400,
            "",
        ),
    ];
    for (method, path, headers, body, status, code) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let path = path.replace(' ', "%20");
        let r = server.request(method, &path, &h, body);
        assert_eq!(r.status, *status, "{method} {path}: {r:?}");
        if !code.is_empty() {
            assert_eq!(r.code(), *code, "{method} {path}");
        }
    }
    // A huge header: refused by the HTTP layer (the server stops reading a
    // head once its buffer passes 64 KiB), and the server lives on.
    let big = "x".repeat(256 * 1024);
    let r = server.request("GET", "/v2/", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431, "{r:?}");
    // A body that stops mid-stream: the chunk is not acknowledged.
    let post = server.request("POST", "/v2/app/blobs/uploads/", &[], b"");
    let location = post.header("location").expect("location").to_string();
    {
        use std::io::Write as _;
        let mut s = std::net::TcpStream::connect(&server.addr).expect("connect");
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nContent-Range: 0-99999\r\n\r\n"
        );
        s.write_all(head.as_bytes()).expect("head");
        s.write_all(&[7u8; 1000]).expect("part of the body");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status = server.request("GET", &location, &[], b"");
    assert_eq!(status.header("range"), Some("0-0"), "{status:?}");
    let catalog = server.request("GET", "/v2/_catalog", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&catalog.body).expect("json");
    let repos = v["repositories"].as_array().map_or(0, Vec::len);
    assert!(repos <= 1, "only the upload's repository, if any: {v}");
    let ping = server.request("GET", "/v2/", &[], b"");
    assert_eq!(ping.status, 200, "the server survived every bad request");
}

/// A client that sends its headers a byte at a time (slowloris) is cut off
/// at the header deadline, and the server keeps serving others.
#[test]
fn headers_that_never_finish_are_cut_off() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("store"), &["--header-timeout", "1s"]);
    let mut slow = std::net::TcpStream::connect(&server.addr).expect("connect");
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .expect("part of the head");
    // Generous: the check is that the server closes, not how fast.
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let mut got = Vec::new();
    let read = slow.read_to_end(&mut got);
    assert!(
        read.is_ok(),
        "the server closed the connection (no read timeout): {read:?}"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "nothing or 408 before the close: {text}"
    );
    assert_eq!(server.request("GET", "/v2/", &[], b"").status, 200);
}

/// Uploads past the cap get 429 while the others go on; `/metrics` counts
/// requests by route and status.
#[test]
fn uploads_past_the_cap_get_429_and_metrics_count_requests() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("store"), &["--max-uploads", "1"]);
    let a = server.request("POST", "/v2/cap/app/blobs/uploads/", &[], b"");
    let b = server.request("POST", "/v2/cap/app/blobs/uploads/", &[], b"");
    let (la, lb) = (
        a.header("location").expect("location").to_string(),
        b.header("location").expect("location").to_string(),
    );
    // Hold the one permit: a chunk whose body has not all arrived.
    let mut slow = std::net::TcpStream::connect(&server.addr).expect("connect");
    let head = format!(
        "PATCH {la} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n12345"
    );
    slow.write_all(head.as_bytes()).expect("head");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let refused = server.request("PATCH", &lb, &[], b"abc");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.code(), "TOOMANYREQUESTS");
    slow.write_all(b"67890").expect("rest of the body");
    let done = common::server::read_response(slow, false);
    assert_eq!(done.status, 202, "{done:?}");
    let ok = server.request("PATCH", &lb, &[], b"abc");
    assert_eq!(ok.status, 202, "the permit came back: {ok:?}");
    let m = server.request("GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.contains(r#"ocidb_http_request_duration_seconds_count{route="uploads",method="PATCH",status="429"} 1"#),
        "{text}"
    );
    assert!(text.contains("ocidb_uploads_in_progress 0"), "{text}");
    assert!(text.contains("ocidb_http_request_bytes_total"), "{text}");
}

fn htpasswd(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    let users = dir.join("htpasswd");
    std::fs::write(&users, format!("alice:{hash}\nbob:{hash}\n")).expect("htpasswd");
    let access = dir.join("access");
    std::fs::write(&access, "alice * write\nbob team/* read\n").expect("access");
    (users, access)
}

/// With `--htpasswd` and grants: 401 with a challenge without credentials,
/// 403 without a grant, and the same answer whether the repository exists
/// or not.
#[test]
fn authentication_and_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, access) = htpasswd(dir.path());
    let server = Server::start_with(
        &dir.path().join("store"),
        &[
            "--htpasswd",
            users.to_str().expect("utf-8"),
            "--access",
            access.to_str().expect("utf-8"),
        ],
    );
    let alice = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
    let bob = "Basic Ym9iOnNlY3JldA=="; // bob:secret
    let wrong = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
    let ping = server.request("GET", "/v2/", &[], b"");
    assert_eq!(ping.status, 401);
    assert_eq!(
        ping.header("www-authenticate"),
        Some(r#"Basic realm="ocidb""#)
    );
    assert_eq!(
        server
            .request("GET", "/v2/", &[("Authorization", alice)], b"")
            .status,
        200
    );
    assert_eq!(
        server
            .request("GET", "/v2/", &[("Authorization", wrong)], b"")
            .status,
        401
    );
    let up = server.request(
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(b"x")),
        &[("Authorization", alice)],
        b"x",
    );
    assert_eq!(up.status, 201, "{up:?}");
    // bob reads team/*, writes nothing.
    let blob = format!("/v2/team/app/blobs/{}", sha256(b"x"));
    assert_eq!(
        server
            .request("GET", &blob, &[("Authorization", bob)], b"")
            .status,
        200
    );
    let denied = server.request(
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[("Authorization", bob)],
        b"",
    );
    assert_eq!((denied.status, denied.code().as_str()), (403, "DENIED"));
    // Outside his grant, an existing and a missing repository look alike.
    let a = server.request(
        "GET",
        "/v2/other/app/tags/list",
        &[("Authorization", bob)],
        b"",
    );
    let up = server.request(
        "POST",
        &format!("/v2/other/app/blobs/uploads/?digest={}", sha256(b"y")),
        &[("Authorization", alice)],
        b"y",
    );
    assert_eq!(up.status, 201);
    let b = server.request(
        "GET",
        "/v2/other/app/tags/list",
        &[("Authorization", bob)],
        b"",
    );
    assert_eq!((a.status, &a.body), (b.status, &b.body));
    assert_eq!(a.status, 403);
    // So is a tag's history: read access, like the tags it describes.
    let h = server.request(
        "GET",
        "/v2/other/app/_oci/tag-history/v1",
        &[("Authorization", bob)],
        b"",
    );
    assert_eq!((h.status, h.code().as_str()), (403, "DENIED"), "{h:?}");
    let h = server.request(
        "GET",
        "/v2/team/app/_oci/tag-history/v1",
        &[("Authorization", bob)],
        b"",
    );
    assert_eq!(h.status, 200, "{h:?}");
    // The catalog lists only what bob may read.
    let cat = server.request("GET", "/v2/_catalog", &[("Authorization", bob)], b"");
    let v: serde_json::Value = serde_json::from_slice(&cat.body).expect("json");
    assert_eq!(v["repositories"], serde_json::json!(["team/app"]));
}

/// The suite over TLS, verifying our certificate, with authentication.
#[test]
fn the_conformance_suite_passes_with_tls_and_authentication() {
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, _) = htpasswd(dir.path());
    let Some((cert, key)) = common::server::certificate(dir.path(), "127.0.0.1") else {
        assert!(
            !common::in_ci(),
            "CI=true but the openssl CLI cannot make a certificate"
        );
        common::skip("the openssl CLI is not available to make a certificate");
        return;
    };
    let server = Server::start_with(
        &dir.path().join("store"),
        &[
            "--htpasswd",
            users.to_str().expect("utf-8"),
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
    );
    common::server::assert_conformance_passes(
        &tools,
        &server,
        &dir.path().join("results"),
        &[
            // Verification on: the suite trusts our certificate, as a real
            // client would (this build of the suite verifies even when
            // told `insecure`).
            ("OCI_TLS", "enabled"),
            ("SSL_CERT_FILE", cert.to_str().expect("utf-8")),
            ("OCI_USERNAME", "alice"),
            ("OCI_PASSWORD", "secret"),
        ],
    );
}

/// By tag, a manifest whose type the `Accept` header does not list is
/// MANIFEST_UNKNOWN (as distribution answers); by digest it is served.
#[test]
fn manifests_by_tag_follow_the_accept_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let digest = {
        let s = ocidb::Store::create(&path).expect("create");
        let layer = common::blob(&s, b"layer", "application/vnd.oci.image.layer.v1.tar");
        let body = common::image_body(&s, &[layer], None);
        common::put_manifest(&s, "acc/app", &body, &["v1"]).digest
    };
    let server = Server::start(&path);
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let by_tag = "/v2/acc/app/manifests/v1";
    for (accept, status) in [
        (None, 200),
        (Some("*/*"), 200),
        (Some(oci), 200),
        (Some(&format!("{docker}, {oci};q=0.5") as &str), 200),
        (Some(docker), 404),
        (Some(&format!("{oci};q=0") as &str), 404),
    ] {
        let h: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = server.request("GET", by_tag, &h, b"");
        assert_eq!(r.status, status, "Accept {accept:?}: {r:?}");
        if status == 404 {
            assert_eq!(r.code(), "MANIFEST_UNKNOWN");
            let text = String::from_utf8_lossy(&r.body).to_string();
            assert!(text.contains(oci), "the error names the type: {text}");
        } else {
            assert_eq!(r.header("content-type"), Some(oci));
        }
        let head = server.request("HEAD", by_tag, &h, b"");
        assert_eq!(head.status, status, "HEAD, Accept {accept:?}");
    }
    let by_digest = server.request(
        "GET",
        &format!("/v2/acc/app/manifests/{digest}"),
        &[("Accept", docker)],
        b"",
    );
    assert_eq!(by_digest.status, 200, "{by_digest:?}");
}

/// With `OCIDB_LOG_FORMAT=json`, each request is one JSON line with the
/// access log's fields.
#[test]
fn the_access_log_is_one_json_line_per_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_env(
        &dir.path().join("store"),
        &[],
        &[("OCIDB_LOG_FORMAT", "json"), ("OCIDB_LOG", "info")],
    );
    let r = server.request("GET", "/v2/logged/app/manifests/missing", &[], b"");
    assert_eq!(r.status, 404);
    let e = server.access_event("/v2/logged/app/manifests/missing");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["status"], 404);
    assert_eq!(e["route"], "manifests");
    assert_eq!(e["user"], "-");
    assert_eq!(e["bytes_out"], r.body.len());
    assert!(
        e["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{e}"
    );
    assert!(e["ms"].as_f64().is_some(), "{e}");
}

/// `--addr` as operators write it: a host name, or `:PORT` for every
/// interface; and from the environment (`OCIDB_ADDR`) when not given.
#[test]
fn listening_addresses_take_host_names_ports_and_the_environment() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let listening = |args: &[&str], env: &[(&str, &str)]| -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ocidb serve");
        let stderr = child.stderr.take().expect("stderr");
        let line = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("://"))
            .unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        line
    };
    let named = listening(&["--addr", "localhost:0"], &[]);
    assert!(
        named.contains("http://127.0.0.1:") || named.contains("http://[::1]:"),
        "{named}"
    );
    let every = listening(&["--addr", ":0"], &[]);
    assert!(every.contains("http://0.0.0.0:"), "{every}");
    let from_env = listening(&[], &[("OCIDB_ADDR", "127.0.0.1:0")]);
    assert!(from_env.contains("http://127.0.0.1:"), "{from_env}");
    let out = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["serve", "--addr", "localhost"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`localhost`") && err.contains(":PORT"),
        "{err}"
    );
}

/// `/livez` and `/readyz` answer without credentials, even with access
/// control on, and go away with `--no-health-probes`.
#[test]
fn health_probes_need_no_credentials_and_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guarded =
        common::server::start_with_grants(dir.path(), &["alice"], "alice a/* write\n", &[]);
    assert_eq!(guarded.request("GET", "/v2/", &[], b"").status, 401);
    let r = guarded.request("GET", "/readyz", &[], b"");
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        (200, "ready\n".into())
    );
    assert_eq!(guarded.request("GET", "/livez", &[], b"").status, 200);
    let other = tempfile::tempdir().expect("tempdir");
    let off = Server::start_with(&other.path().join("store"), &["--no-health-probes"]);
    let r = off.request("GET", "/readyz", &[], b"");
    assert_eq!((r.status, r.code()), (404, "NAME_UNKNOWN".to_string()));
}

/// Issue 31: a blob GET on a plain TCP connection goes out from 8 MiB
/// windows of the blob file mapped into memory. Whole bodies and ranges
/// that cross windows come back byte for byte; a blob file truncated behind
/// the engine's back (a mapped page past the new end) cuts that download
/// short, the next one fails, the log names the blob, and the server lives
/// on: no SIGBUS, because only the kernel reads the mapping.
#[test]
fn pulls_from_mapped_windows_are_exact_and_survive_a_truncated_file() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let server = Server::start(&store);
    let blob = ocidb_testkit::deterministic_bytes(b"mapped", (20 << 20) + 12_345);
    let d = server.push_blob("pull/app", &blob);
    let path = format!("/v2/pull/app/blobs/{d}");

    let whole = server.request("GET", &path, &[], b"");
    assert_eq!(whole.status, 200);
    assert!(
        whole.body == blob,
        "the whole body differs from what was pushed"
    );
    let n = blob.len() as u64;
    let window = 8u64 << 20;
    for (range, a, b) in [
        ("bytes=0-0".to_string(), 0, 0),
        (
            format!("bytes={}-{}", window - 3, window + 2),
            window - 3,
            window + 2,
        ),
        (
            format!("bytes=4095-{}", 2 * window + 7),
            4095,
            2 * window + 7,
        ),
        (format!("bytes={}-", 2 * window + 1), 2 * window + 1, n - 1),
        ("bytes=-5".to_string(), n - 5, n - 1),
    ] {
        let r = server.request("GET", &path, &[("Range", &range)], b"");
        assert_eq!(r.status, 206, "{range}");
        assert!(
            r.body == blob[a as usize..=b as usize],
            "{range}: {} bytes, not the file's",
            r.body.len()
        );
    }

    // A download that has its first bytes, then the file is truncated.
    let file = ocidb::Digest::parse(&d).expect("digest").blob_path(&store);
    let mut c = common::server::connect_small_window(&server.addr);
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("request");
    let mut first = vec![0u8; 16 << 10];
    c.read_exact(&mut first).expect("the first bytes");
    make_writable(&file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(4096))
        .expect("truncating the blob file");
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        first.len() + rest.len() < blob.len(),
        "{} bytes arrived, all of a blob whose file was truncated",
        first.len() + rest.len()
    );
    let base = server.request("GET", "/v2/", &[], b"");
    assert_eq!(base.status, 200, "the server answers after the truncation");
    // The next pull fails on its first window (before a byte goes out,
    // so hyper drops the connection without even the status line).
    let again = common::http::try_request(&server.addr, "GET", &path, &[], b"");
    if let Ok(r) = &again {
        assert!(
            r.status >= 500 || r.body.len() < blob.len(),
            "a pull of the truncated file got {} bytes with {}",
            r.body.len(),
            r.status
        );
    }
    let mut server = server;
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "the server is still running"
    );
    // The warning is written as the body fails, which may be after the
    // client saw its connection close: wait for the line.
    let names_it = |log: &str| {
        log.lines()
            .any(|l| l.contains(&d) && l.contains("fewer than the"))
    };
    let mut log = String::new();
    for _ in 0..100 {
        log = server.log.lock().expect("log").join("\n");
        if names_it(&log) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        names_it(&log),
        "the log names the blob and its short file:\n{log}"
    );
}

fn make_writable(file: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}
