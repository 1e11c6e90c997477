//! The deployment guide (docs/operations.md) runs as written: its
//! password-file command, grants and config file, the systemd unit's
//! command line with its environment, and the Containerfile's entry point
//! with its environment. Only paths are moved into a temporary directory,
//! and the listening ports to free ones (through the environment, which
//! outranks the file, as the guide says).

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    std::fs::read_to_string(&path).expect("docs/operations.md")
}

/// The first fenced block of `lang` whose text contains `marker`.
fn block(doc: &str, lang: &str, marker: &str) -> String {
    let fence = format!("```{lang}\n");
    doc.split(&fence)
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no ```{lang} block with {marker:?} in the guide"))
        .to_string()
}

/// A temporary root with the guide's `/etc/ocidb` (config, password file
/// made by `ocidb htpasswd`, grants) and `/var/lib/ocidb`.
struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new(doc: &str) -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let root = Root { _dir: dir, path };
        let etc = root.moved("/etc/ocidb");
        std::fs::create_dir_all(&etc).expect("etc");
        std::fs::create_dir_all(root.moved("/var/lib/ocidb")).expect("var");
        // The grants block; every user it names gets a password the
        // guide's way.
        let grants = block(doc, "", "library/*   read");
        std::fs::write(etc.join("access"), &grants).expect("access");
        let mut users: Vec<&str> = grants
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|u| *u != "*")
            .collect();
        users.dedup();
        let command = block(doc, "", "ocidb htpasswd");
        let user_cmd = command
            .lines()
            .find(|l| l.starts_with("ocidb htpasswd"))
            .expect("command");
        assert!(user_cmd.contains(">> /etc/ocidb/htpasswd"), "{user_cmd}");
        let mut file = String::new();
        for u in users {
            let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
                .args(["htpasswd", u, "--cost", "4"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("htpasswd");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"secret\n")
                .expect("password");
            let out = child.wait_with_output().expect("htpasswd");
            assert!(out.status.success());
            file.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        std::fs::write(etc.join("htpasswd"), file).expect("htpasswd");
        let config = block(doc, "toml", "/etc/ocidb/ocidb.toml").replace(
            "/var/lib/ocidb",
            &root.moved("/var/lib/ocidb").display().to_string(),
        );
        std::fs::write(etc.join("ocidb.toml"), config).expect("config");
        root
    }

    /// Where an absolute path of the guide lives in this root.
    fn moved(&self, p: &str) -> PathBuf {
        self.path.join(p.trim_start_matches('/'))
    }

    /// An argument of the guide with its paths moved here.
    fn arg(&self, a: &str) -> String {
        for prefix in ["/etc/ocidb", "/var/lib/ocidb", "/data"] {
            if let Some(rest) = a.strip_prefix(prefix) {
                return format!("{}{rest}", self.moved(prefix).display());
            }
        }
        a.to_string()
    }
}

/// Runs `ocidb` with `args` and `env`, on free ports; returns the child
/// and the API address from its first line.
fn start(args: &[String], env: &[(String, String)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .args(args)
        .env_remove("OCIDB_STORE")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("OCIDB_ADDR", "127.0.0.1:0")
        .env("OCIDB_ADMIN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a first line").expect("line");
    // The unit and the image set OCIDB_LOG_FORMAT=json: the first line
    // is JSON too.
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    let message = v["message"].as_str().expect("message").to_string();
    let addr = message
        .split("://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("address")
        .to_string();
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, addr)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The systemd unit's ExecStart, with its Environment= lines.
#[test]
fn the_systemd_unit_runs_as_the_guide_writes_it() {
    let doc = guide();
    let unit = block(&doc, "ini", "ExecStart=");
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ocidb",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let root = Root::new(&doc);
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/ocidb"));
    let args: Vec<String> = words.map(|w| root.arg(w)).collect();
    let env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (child, addr) = start(&args, &env);
    assert_eq!(
        common::server::request(&addr, "GET", "/readyz", &[], b"").status,
        200
    );
    assert_eq!(
        common::server::request(&addr, "GET", "/v2/", &[], b"").status,
        401
    );
    let alice = "Basic YWxpY2U6c2VjcmV0"; // alice:secret, made by `ocidb htpasswd`
    assert_eq!(
        common::server::request(&addr, "GET", "/v2/", &[("Authorization", alice)], b"").status,
        200
    );
    // ExecReload: SIGHUP, and the server goes on.
    #[allow(unsafe_code)]
    // SAFETY: signalling a child this test started and still owns.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        common::server::request(&addr, "GET", "/readyz", &[], b"").status,
        200
    );
    // The store is where the config put it, and the CLI reaches it.
    let store = root.moved("/var/lib/ocidb/store");
    assert!(store.join("ocidb.sock").exists());
    let stats = common::cli::ocidb(&store, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&common::cli::ok(&stats)).expect("json");
    assert_eq!(stats["repositories"], 0, "{stats}");
    stop(child);
}

/// The Containerfile's ENTRYPOINT and CMD with its ENV, as the image would
/// run them; building the image itself needs base images from a registry.
#[test]
fn the_containerfile_entry_point_runs_as_the_guide_writes_it() {
    let doc = guide();
    let file = block(&doc, "dockerfile", "ENTRYPOINT");
    for (want, why) in [
        ("AS build", "multi-stage"),
        ("USER 10001", "non-root"),
        ("VOLUME /data", "the store on a volume"),
    ] {
        assert!(file.contains(want), "{why}: {want}");
    }
    assert!(
        doc.contains("--read-only -v ocidb-data:/data"),
        "a read-only root"
    );
    let root = Root::new(&doc);
    let json_line = |key: &str| -> Vec<String> {
        let line = file.lines().find_map(|l| l.strip_prefix(key)).expect(key);
        serde_json::from_str(line.trim()).expect("an exec-form JSON array")
    };
    let entry = json_line("ENTRYPOINT ");
    let cmd = json_line("CMD ");
    assert_eq!(entry, ["/usr/local/bin/ocidb"]);
    let env: Vec<(String, String)> = file
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), root.arg(v)))
        .collect();
    std::fs::create_dir_all(root.moved("/data")).expect("data");
    let args: Vec<String> = cmd.iter().map(|a| root.arg(a)).collect();
    let (child, addr) = start(&args, &env);
    assert_eq!(
        common::server::request(&addr, "GET", "/readyz", &[], b"").status,
        200
    );
    assert!(
        root.moved("/data/store").join("ocidb.redb").exists(),
        "the store on the volume"
    );
    stop(child);
    if std::env::var_os("OCIDB_TEST_CONTAINER_BUILD").is_none() {
        common::skip(
            "building the container image needs base images from a registry this machine cannot reach (set OCIDB_TEST_CONTAINER_BUILD=1 to build it with podman or docker)",
        );
        return;
    }
    let tool = ["podman", "docker"]
        .into_iter()
        .find(|t| {
            Command::new(t)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("OCIDB_TEST_CONTAINER_BUILD is set but neither podman nor docker runs");
    let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let containerfile = root.path.join("Containerfile");
    std::fs::write(&containerfile, &file).expect("Containerfile");
    let built = Command::new(tool)
        .args(["build", "-t", "ocidb-guide-test", "-f"])
        .arg(&containerfile)
        .arg(&context)
        .status()
        .expect("build");
    assert!(built.success(), "{tool} build of the guide's Containerfile");
}
