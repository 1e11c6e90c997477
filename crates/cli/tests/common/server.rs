//! A running `ocidb serve` for the tests (the HTTP client is
//! `common::http`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `ocidb serve` on a free port of 127.0.0.1, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The server's stderr lines after the listening line (its log).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(store: &Path) -> Server {
        Server::start_with(store, &[])
    }

    pub fn start_with(store: &Path, extra: &[&str]) -> Server {
        Server::start_env(store, extra, &[])
    }

    pub fn start_env(store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_at(store, "127.0.0.1:0", extra, env)
    }

    /// On `addr` (a cluster member must know its port to advertise it).
    pub fn start_at(store: &Path, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
            .envs(env.iter().copied())
            .arg("--store")
            .arg(store)
            .args(["serve", "--addr", addr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ocidb serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("ocidb serve exited before it listened")
                .expect("stderr line");
            // The listening line (a warning about the bucket may come
            // first, with its own URL).
            if let Some(rest) = line
                .split("serving ")
                .nth(1)
                .and_then(|r| r.split("://").nth(1))
            {
                break rest.split_whitespace().next().expect("addr").to_string();
            }
        };
        // Keep draining stderr so that the server never blocks on it.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut l) = kept.lock() {
                    l.push(line);
                }
            }
        });
        Server { child, addr, log }
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(&self.addr, method, path, headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::http::{count, read_response, request, Response};

impl Server {
    /// Pushes `data` to `repo` in one request (`POST ?digest=`); its
    /// digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, data).to_string();
        let r = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "{r:?}");
        d
    }

    /// Pushes a one-layer image whose layer is `layer` (and whose config
    /// is `{}`) to `repo:tag`: its digest, and the manifest PUT's response.
    pub fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, Response) {
        let cfg = self.push_blob(repo, b"{}");
        let l = self.push_blob(repo, layer);
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }))
        .expect("json");
        let r = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &body,
        );
        assert_eq!(r.status, 201, "{r:?}");
        (
            ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, &body).to_string(),
            r,
        )
    }

    /// The JSON access-log event of the request for `path` (the server runs
    /// with `OCIDB_LOG_FORMAT=json`). The line is written after the
    /// response, so this waits for it, for at most 10 s.
    pub fn access_event(&self, path: &str) -> serde_json::Value {
        for _ in 0..200 {
            let lines = self.log.lock().expect("log").clone();
            let found = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["path"] == path);
            if let Some(e) = found {
                return e;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no access log line for {path}");
    }
}

/// Runs the conformance suite against `server` with `env` (see
/// [`super::http::conformance`]).
pub fn conformance(
    tools: &Path,
    server: &Server,
    results: &Path,
    env: &[(&str, &str)],
) -> (String, String) {
    super::http::conformance(tools, &server.addr, results, env)
}

/// [`super::http::assert_conformance_passes`] against `server`.
pub fn assert_conformance_passes(
    tools: &Path,
    server: &Server,
    results: &Path,
    env: &[(&str, &str)],
) -> String {
    super::http::assert_conformance_passes(tools, &server.addr, results, env)
}

/// `ocidb serve` with access control: each of `users` has the password
/// `secret`, `grants` is the access file (`USER PATTERN read|write` lines),
/// `extra` more arguments.
pub fn start_with_grants(dir: &Path, users: &[&str], grants: &str, extra: &[&str]) -> Server {
    start_with_grants_env(dir, users, grants, extra, &[])
}

/// [`start_with_grants`] with environment variables for the server.
pub fn start_with_grants_env(
    dir: &Path,
    users: &[&str],
    grants: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let mut args = grant_args(dir, users, grants);
    args.extend(extra.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_env(&dir.join("store"), &args, env)
}

/// The `--htpasswd` and `--access` arguments of [`start_with_grants`],
/// their files written in `dir`.
pub fn grant_args(dir: &Path, users: &[&str], grants: &str) -> Vec<String> {
    let hash = bcrypt::hash("secret", 4).expect("bcrypt");
    let htpasswd = dir.join("htpasswd");
    let lines: String = users.iter().map(|u| format!("{u}:{hash}\n")).collect();
    std::fs::write(&htpasswd, lines).expect("htpasswd");
    let access = dir.join("access");
    std::fs::write(&access, grants).expect("access");
    vec![
        "--htpasswd".into(),
        htpasswd.to_str().expect("utf-8").into(),
        "--access".into(),
        access.to_str().expect("utf-8").into(),
    ]
}

/// A self-signed certificate for 127.0.0.1 (subject `CN=NAME`), made with
/// the openssl CLI as `NAME.pem` and `NAME.key` in `dir`; `None` where
/// openssl cannot. It is made by the machine's real clock even when the
/// suite runs under faketime (CI runs it 400 days ahead): the conformance
/// suite that checks it is a Go program, which reads the clock without
/// libc, so faketime does not move its "now", and a certificate dated by
/// the faked clock would not be valid yet.
pub fn certificate(dir: &Path, name: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    made.status.success().then_some((cert, key))
}

/// Connects a client that holds at most about 64 KiB unread: the kernel
/// otherwise grows a loopback receive buffer to `tcp_rmem`'s maximum (32
/// MiB on recent kernels), and a "stalled" download can then land whole
/// in the buffers and free its permit, which makes a test of stalled
/// downloads depend on the machine's sysctls.
#[allow(dead_code)]
pub fn connect_small_window(addr: &str) -> TcpStream {
    use std::os::fd::AsRawFd as _;
    let c = TcpStream::connect(addr).expect("connect");
    let size: libc::c_int = 64 << 10;
    // Setting SO_RCVBUF locks the size and turns off autotuning for this
    // socket; nothing has been received yet, so the window stays small.
    #[allow(unsafe_code)]
    // SAFETY: a valid socket descriptor and a c_int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt SO_RCVBUF: {}",
        std::io::Error::last_os_error()
    );
    c
}
