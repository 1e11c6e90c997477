//! Running `ocidb serve` as an operator does: maintenance commands against
//! the live store, the admin API, metrics a scraper parses, a config file,
//! SIGHUP reloads, and logs an auditor can follow.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{ocidb, ok};
use common::server::{certificate, Server};

/// A store with the sample content in `demo/app` (an index, two images,
/// a signature, an SBOM, an attestation and a chart).
fn sample_store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let s = ocidb::Store::create(&store).expect("create");
    ocidb_testkit::load(&s, "demo/app").expect("load");
    store
}

/// `stats` output without the database file's size: redb gives free pages
/// at the file's end back when the last process closes it, so the file a
/// running server holds may be a few pages larger than after it stops.
/// Everything else `stats` prints must agree.
fn without_file_size(out: &str) -> String {
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(out) {
        if let Some(size) = v.get_mut("database_file_bytes") {
            *size = serde_json::json!(0);
            return v.to_string();
        }
        return out.to_string();
    }
    out.lines()
        .map(
            |l| match (l.strip_prefix("storage"), l.find(" database file")) {
                (Some(_), Some(at)) => format!("storage (file size){}", &l[at..]),
                _ => l.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// SIGTERM, then waits: the server drains and releases the store.
fn stop(mut server: Server) {
    // SAFETY: signalling a child this test started and still owns.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let _ = server.child.wait();
}

const COMMANDS: &[&[&str]] = &[
    &["stats"],
    &["stats", "--json"],
    &["repos"],
    &["tags", "demo/app"],
    &["tags", "demo/app", "--json"],
    &["tree", "demo/app:v1"],
    &["tree", "demo/app:v1", "--json"],
    &["tree", "demo/app@sha256:"],
    &["lease", "ls", "--json"],
    &["gc", "--dry-run"],
    &[
        "gc",
        "--dry-run",
        "--json",
        "--delete-untagged",
        "--grace",
        "0s",
    ],
    &["fsck"],
    &["fsck", "--json"],
    &["fsck", "--incremental", "--max-bytes", "100K"],
    &["fsck", "--incremental", "--json"],
];

/// While `ocidb serve` holds the store, the maintenance commands reach it
/// through the store's socket and print what they print offline, byte for
/// byte; a command that would write still names the holder.
#[test]
fn maintenance_commands_reach_a_running_server_and_agree_with_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sample_store(dir.path());
    let server = Server::start(&store);
    // An upload session holds a lease the listing shows with its owner.
    let started = server.request("POST", "/v2/demo/app/blobs/uploads/", &[], b"");
    assert_eq!(started.status, 202, "{started:?}");
    let index = ok(&ocidb(&store, &["tags", "demo/app", "--json"]));
    let index: serde_json::Value = serde_json::from_str(&index).expect("json");
    let v1 = index["digests"]["v1"].as_str().expect("v1").to_string();
    let abbreviated = format!("demo/app@{}", &v1[..16]);
    let run_all = || -> Vec<String> {
        COMMANDS
            .iter()
            .map(|args| {
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| {
                        if *a == "demo/app@sha256:" {
                            abbreviated.as_str()
                        } else {
                            a
                        }
                    })
                    .collect();
                ok(&ocidb(&store, &args))
            })
            .collect()
    };
    let online = run_all();
    let leases: serde_json::Value = serde_json::from_str(&online[8]).expect("leases");
    let owner = leases[0]["owner"].as_str().expect("an owner");
    assert!(
        owner.starts_with("upload ") && owner.ends_with(" to demo/app"),
        "{owner}"
    );
    // A write is not among what the admin API does: the lock error names
    // the server that holds the store.
    let refused = ocidb(&store, &["tag", "demo/app:v1", "v2"]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    let pid = server.child.id();
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("serve"),
        "{err}"
    );
    stop(server);
    assert!(
        !store.join("ocidb.sock").exists(),
        "the socket goes with the server"
    );
    let offline = run_all();
    for ((args, on), off) in COMMANDS.iter().zip(&online).zip(&offline) {
        let (on, off) = (&without_file_size(on), &without_file_size(off));
        assert_eq!(on, off, "`ocidb {}` online and offline", args.join(" "));
        assert!(
            !on.is_empty(),
            "`ocidb {}` printed something",
            args.join(" ")
        );
    }
}

/// `--server URL` reaches the admin listener; on the API listener the
/// admin API needs a user with a `* admin` grant, and an open registry
/// does not serve it there at all.
#[test]
fn the_admin_api_answers_operators_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sample_store(dir.path());
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, format!("alice:{hash}\nops:{hash}\n")).expect("users");
    let grants = dir.path().join("access");
    std::fs::write(&grants, "alice * write\nops * admin\n").expect("grants");
    let server = Server::start_with(
        &store,
        &[
            "--htpasswd",
            users.to_str().expect("utf-8"),
            "--access",
            grants.to_str().expect("utf-8"),
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    let alice = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
    let ops = "Basic b3BzOnNlY3JldA=="; // ops:secret
    let stats = "/admin/v1/stats";
    assert_eq!(server.request("GET", stats, &[], b"").status, 401);
    assert_eq!(
        server
            .request("GET", stats, &[("Authorization", alice)], b"")
            .status,
        403,
        "write on every repository is not admin"
    );
    let by_ops = server.request("GET", stats, &[("Authorization", ops)], b"");
    assert_eq!(by_ops.status, 200, "{by_ops:?}");
    let v: serde_json::Value = serde_json::from_slice(&by_ops.body).expect("json");
    assert_eq!(v["manifests"], 7, "{v}");
    // The admin grant is not a grant on repositories.
    let pull = server.request(
        "GET",
        "/v2/demo/app/tags/list",
        &[("Authorization", ops)],
        b"",
    );
    assert_eq!(pull.status, 403, "{pull:?}");
    // Through the API listener with credentials, as the CLI's --server.
    let url = format!("http://ops:secret@{}", server.addr);
    let via = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .args(["--server", &url, "repos"])
        .output()
        .expect("run");
    assert_eq!(ok(&via), "demo/app\n");
    // Upload sessions: listed, then cancelled, through the admin API.
    let started = server.request(
        "POST",
        "/v2/demo/app/blobs/uploads/",
        &[("Authorization", alice)],
        b"",
    );
    assert_eq!(started.status, 202, "{started:?}");
    let list = server.request("GET", "/admin/v1/uploads", &[("Authorization", ops)], b"");
    let sessions: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    let id = sessions[0]["id"].as_str().expect("a session").to_string();
    assert_eq!(sessions[0]["repository"], "demo/app");
    let path = format!("/admin/v1/uploads/{id}");
    assert_eq!(
        server
            .request("DELETE", &path, &[("Authorization", ops)], b"")
            .status,
        200
    );
    let list = server.request("GET", "/admin/v1/uploads", &[("Authorization", ops)], b"");
    assert_eq!(list.body, b"[]");
    // A background fsck: started, then followed to its report.
    let fsck = server.request("POST", "/admin/v1/fsck", &[("Authorization", ops)], b"{}");
    assert_eq!(fsck.status, 202, "{fsck:?}");
    // The answer names the fsck this request began, however fast it ends.
    let began: serde_json::Value = serde_json::from_slice(&fsck.body).expect("json");
    assert_eq!(began["state"], "running", "{began}");
    assert!(began["started_ms"].as_u64().is_some(), "{began}");
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        let r = server.request("GET", "/admin/v1/fsck", &[("Authorization", ops)], b"");
        report = serde_json::from_slice(&r.body).expect("json");
        if report["state"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(
        report["report"]["problems"],
        serde_json::json!([]),
        "{report}"
    );
    // A bad policy is refused naming the value.
    let bad = server.request(
        "POST",
        "/admin/v1/gc",
        &[("Authorization", ops)],
        br#"{"grace":"soon"}"#,
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.body).contains("soon"),
        "{bad:?}"
    );
    let unknown = server.request(
        "POST",
        "/admin/v1/gc",
        &[("Authorization", ops)],
        br#"{"dry":true}"#,
    );
    assert_eq!(
        unknown.status, 400,
        "an unknown field is refused, not ignored: {unknown:?}"
    );
    // An open registry serves no admin API on its API listener.
    let open_dir = tempfile::tempdir().expect("tempdir");
    let open = Server::start(&open_dir.path().join("store"));
    assert_eq!(open.request("GET", stats, &[], b"").status, 404);
}

/// `/metrics` parses as the Prometheus text format, strictly: every
/// family's HELP and TYPE once and before its samples, valid names and
/// labels, histograms whose buckets grow and end in `_count`; and it
/// carries the store's gauges.
#[test]
fn metrics_follow_the_exposition_format_and_carry_store_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sample_store(dir.path());
    let server = Server::start_with(&store, &["--admin-addr", "127.0.0.1:0"]);
    server.request("GET", "/v2/demo/app/tags/list", &[], b"");
    server.request("GET", "/v2/nope/tags/list", &[], b"");
    let gc = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&store)
        .args(["gc", "--grace", "0s"])
        .output()
        .expect("gc");
    ok(&gc);
    let m = server.request("GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = String::from_utf8(m.body).expect("utf-8");
    let families = common::prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |name: &str| -> f64 {
        common::prometheus::value(&families, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(value("ocidb_store_manifests"), 7.0);
    assert_eq!(value("ocidb_store_repositories"), 1.0);
    assert_eq!(value("ocidb_store_tags"), 2.0);
    assert_eq!(
        value("ocidb_store_records"),
        19.0,
        "7 manifests and 12 blobs"
    );
    assert!(value("ocidb_store_database_bytes") > 0.0);
    assert_eq!(value("ocidb_writer_queue_depth"), 0.0);
    assert_eq!(value("ocidb_store_upload_sessions"), 0.0);
    assert!(value("ocidb_store_unique_bytes") > 200_000.0);
    assert_eq!(
        value("ocidb_gc_last_run_success"),
        1.0,
        "the CLI's gc ran in the server"
    );
    assert!(value("ocidb_gc_last_run_timestamp_seconds") > 1.0e9);
    assert_eq!(value("ocidb_gc_runs_total"), 1.0);
}

/// flag > environment > file > default, shown by `--print-config`; a
/// relative path in the file is taken from the file's directory; the
/// server runs from the file alone; an unknown key or a bad value is
/// refused naming it.
#[test]
fn a_config_file_fills_what_flags_and_the_environment_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_dir = dir.path().join("etc");
    std::fs::create_dir_all(&conf_dir).expect("etc");
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    std::fs::write(conf_dir.join("htpasswd"), format!("alice:{hash}\n")).expect("users");
    let conf = conf_dir.join("ocidb.toml");
    std::fs::write(
        &conf,
        "addr = \"127.0.0.1:0\"\nmax_uploads = 7\nmax_downloads = 8\nmax_connections = 9\nhtpasswd = \"htpasswd\"\nallow_sparse_manifests = true\n",
    )
    .expect("config");
    let store = dir.path().join("store");
    let printed = common::cli::command(&store)
        .env("OCIDB_MAX_DOWNLOADS", "80")
        .env("OCIDB_MAX_CONNECTIONS", "90")
        .args([
            "serve",
            "--config",
            conf.to_str().expect("utf-8"),
            "--max-connections",
            "99",
            "--print-config",
        ])
        .output()
        .expect("print-config");
    let text = ok(&printed);
    for line in [
        "max_uploads = 7  # config file",
        "max_downloads = 80  # environment",
        "max_connections = 99  # flag",
        "max_connections_per_client = 64  # default",
        "allow_sparse_manifests = true  # config file",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let users = conf_dir.join("htpasswd").display().to_string();
    assert!(
        text.contains(&format!("htpasswd = \"{users}\"  # config file")),
        "{text}"
    );
    // The printed file is itself a config file the server accepts.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &text).expect("write");
    let reprinted = common::cli::command(&store)
        .args([
            "serve",
            "--config",
            again.to_str().expect("utf-8"),
            "--print-config",
        ])
        .output()
        .expect("reprint");
    assert!(ok(&reprinted).contains("max_connections = 99  # config file"));
    // The server runs from the file: access control is on.
    let server = Server::start_with(&store, &["--config", conf.to_str().expect("utf-8")]);
    assert_eq!(server.request("GET", "/v2/", &[], b"").status, 401);
    drop(server);
    for (bad, named) in [
        ("bogus = 1\n", "bogus"),
        ("max_uploads = \"x\"\n", "'x'"),
        ("no_health_probes = 3\n", "no_health_probes"),
    ] {
        std::fs::write(&conf, bad).expect("config");
        let out = common::cli::command(&store)
            .args([
                "serve",
                "--config",
                conf.to_str().expect("utf-8"),
                "--print-config",
            ])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() && err.contains(named),
            "{bad:?}: {err}"
        );
    }
}

/// With `OCIDB_LOG_FORMAT=json` every stderr line is a JSON object, the
/// first included; a refused login logs the name it claimed (unverified);
/// each response carries the request's id, the client's when it sent a
/// plausible one.
#[test]
fn every_log_line_is_json_with_its_user_and_request_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("users");
    let server = Server::start_env(
        &dir.path().join("store"),
        &["--htpasswd", users.to_str().expect("utf-8")],
        &[("OCIDB_LOG_FORMAT", "json")],
    );
    let wrong = "Basic bWFsbG9yeTp4"; // mallory:x
    let r = server.request(
        "GET",
        "/v2/",
        &[("Authorization", wrong), ("X-Request-Id", "trace-42")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    let e = server.access_event("/v2/");
    assert_eq!(e["user"], "mallory", "{e}");
    assert_eq!(e["verified"], false, "{e}");
    assert_eq!(e["request_id"], "trace-42", "{e}");
    let r = server.request(
        "GET",
        "/v2/_catalog",
        &[("X-Request-Id", "bad id; drop")],
        b"",
    );
    let id = r.header("x-request-id").expect("an id").to_string();
    assert!(!id.contains("bad") && id.len() > 4, "{id}");
    drop(server);
    // The first line too: run one and read it.
    let mut child = common::cli::command(&dir.path().join("store2"))
        .env("OCIDB_LOG_FORMAT", "json")
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    let stderr = child.stderr.take().expect("stderr");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut first).expect("line");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("serving ")),
        "{v}"
    );
}

/// The checker of the test above refuses what a scraper refuses.
#[test]
fn the_parser_refuses_what_a_scraper_refuses() {
    assert!(common::prometheus::parse("# HELP a x\n# TYPE a counter\na 1\n").is_ok());
    // The defect /metrics once had: HELP of one family, TYPE of another.
    assert!(common::prometheus::parse("# HELP a x\n# TYPE b histogram\n").is_err());
    assert!(common::prometheus::parse("# HELP a x\n# TYPE a counter\nb 1\n").is_err());
    assert!(common::prometheus::parse("# HELP a x\n# TYPE a counter\na{l=\"1} 1\n").is_err());
    assert!(common::prometheus::parse(
        "# HELP a x\n# TYPE a counter\n# HELP a x\n# TYPE a counter\n"
    )
    .is_err());
    let h = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
    assert!(common::prometheus::parse(h).is_err(), "a decreasing bucket");
}

/// A pull over TLS with curl trusting only `ca`: the HTTP status, or 0
/// when the handshake or the connection failed.
fn pull(addr: &str, ca: &Path, user: &str, path: &str) -> u16 {
    let out = Command::new("curl")
        .env_remove("LD_PRELOAD")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "--cacert",
        ])
        .arg(ca)
        .args(["-u", user])
        .arg(format!("https://{addr}{path}"))
        .output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// SIGHUP while a client keeps pulling: a user added to the password
/// file and a rotated certificate are in force afterwards, no pull fails,
/// and a bad new file is refused with the old one kept.
#[test]
fn sighup_reloads_users_and_the_certificate_while_a_client_pulls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some((old_cert, old_key)), Some((new_cert, new_key))) = (
        certificate(dir.path(), "old"),
        certificate(dir.path(), "new"),
    ) else {
        assert!(
            !common::in_ci(),
            "CI=true but openssl cannot make a certificate"
        );
        common::skip("the openssl CLI is not available to make certificates");
        return;
    };
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(!common::in_ci(), "CI=true but curl is missing");
        common::skip("curl is not available to pull over TLS");
        return;
    }
    let store = sample_store(dir.path());
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("users");
    // The files the server reads are fixed paths: rotation replaces them.
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&old_cert, &cert).expect("cert");
    std::fs::copy(&old_key, &key).expect("key");
    let both = dir.path().join("both.pem");
    let trust = [
        std::fs::read(&old_cert).expect("old"),
        std::fs::read(&new_cert).expect("new"),
    ]
    .concat();
    std::fs::write(&both, trust).expect("bundle");
    let conf = dir.path().join("ocidb.toml");
    let config = |users: &Path| {
        format!(
            "htpasswd = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
            users.display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    std::fs::write(&conf, config(&users)).expect("config");
    let mut server = Server::start_with(&store, &["--config", conf.to_str().expect("utf-8")]);
    let addr = server.addr.clone();
    let layer = "/v2/demo/app/tags/list";
    assert_eq!(pull(&addr, &old_cert, "alice:secret", layer), 200);
    assert_eq!(
        pull(&addr, &both, "carol:secret", layer),
        401,
        "no carol yet"
    );
    // A client pulling all along, trusting both certificates.
    let stop_pulling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let puller = {
        let (stop, addr, both) = (
            std::sync::Arc::clone(&stop_pulling),
            addr.clone(),
            both.clone(),
        );
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(pull(&addr, &both, "alice:secret", layer));
            }
            statuses
        })
    };
    let hup = || {
        // SAFETY: signalling a child this test started and still owns.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(server.child.id() as i32, libc::SIGHUP);
        }
    };
    let wait_log = |needle: &str, count: usize| {
        for _ in 0..100 {
            let n = server
                .log
                .lock()
                .expect("log")
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if n >= count {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "no {needle:?} in the log: {:?}",
            server.log.lock().expect("log")
        );
    };
    // A bad password file first: refused, the old one kept.
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "carol:plaintext\n").expect("broken");
    std::fs::write(&conf, config(&broken)).expect("config");
    hup();
    wait_log("reload refused", 1);
    assert_eq!(
        pull(&addr, &old_cert, "alice:secret", layer),
        200,
        "the old files stay"
    );
    // A config without the password file would open the registry to
    // everyone: refused too.
    let open = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    std::fs::write(&conf, open).expect("config");
    hup();
    wait_log("reload refused", 2);
    assert_eq!(
        pull(&addr, &old_cert, "nobody:x", layer),
        401,
        "still closed"
    );
    // Then carol and a new certificate.
    std::fs::write(&users, format!("alice:{hash}\ncarol:{hash}\n")).expect("users");
    std::fs::write(&conf, config(&users)).expect("config");
    std::fs::copy(&new_cert, &cert).expect("cert");
    std::fs::copy(&new_key, &key).expect("key");
    hup();
    wait_log("SIGHUP: reloaded", 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop_pulling.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = puller.join().expect("puller");
    assert!(statuses.len() >= 3, "the client kept pulling: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no pull failed: {statuses:?}"
    );
    assert_eq!(
        pull(&addr, &both, "carol:secret", layer),
        200,
        "carol is in force"
    );
    assert_eq!(
        pull(&addr, &new_cert, "alice:secret", layer),
        200,
        "the new certificate is served"
    );
    assert_eq!(
        pull(&addr, &old_cert, "alice:secret", layer),
        0,
        "the old one is not"
    );
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "still running after two SIGHUPs"
    );
}

/// `--scrub-interval` re-hashes the blobs slice by slice while serving:
/// a damaged blob file is logged and counted, and passes go round.
#[test]
fn the_scheduled_scrub_finds_damaged_bytes_while_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sample_store(dir.path());
    // The sample's one blob file (its shared 200 kB layer), damaged.
    let files: Vec<PathBuf> = std::fs::read_dir(store.join("blobs/sha256"))
        .expect("blob files")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).expect("read");
    bytes[1000] ^= 1;
    std::fs::write(&files[0], bytes).expect("damage");
    let server = Server::start_with(
        &store,
        &["--scrub-interval", "100ms", "--scrub-bytes", "64K"],
    );
    let mut found = (0.0, 0.0);
    for _ in 0..100 {
        let m = server.request("GET", "/metrics", &[], b"");
        let text = String::from_utf8_lossy(&m.body).to_string();
        let families = common::prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let value = |name: &str| common::prometheus::value(&families, name).unwrap_or(0.0);
        found = (
            value("ocidb_scrub_problems_total"),
            value("ocidb_scrub_passes_total"),
        );
        if found.0 >= 1.0 && found.1 >= 2.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        found.0 >= 1.0 && found.1 >= 2.0,
        "problems, passes: {found:?}"
    );
    let logged = server
        .log
        .lock()
        .expect("log")
        .iter()
        .any(|l| l.contains("scrub: corrupt-blob"));
    assert!(logged, "the damage is in the log");
    drop(server);
    let zero = common::cli::ocidb(&store, &["serve", "--scrub-interval", "0s"]);
    let err = String::from_utf8_lossy(&zero.stderr).to_string();
    assert!(
        !zero.status.success() && err.contains("--scrub-interval above zero"),
        "{err}"
    );
}
