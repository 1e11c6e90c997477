//! Garage, a real S3-compatible distributed object store, run as child
//! processes on 127.0.0.1 for the harness and the tests: one node made
//! ready by `--single-node --default-bucket`, or a cluster of nodes joined,
//! laid out (one zone each) and given a bucket and key with the `garage`
//! CLI. Both fsync data and metadata (`data_fsync`, `metadata_fsync`):
//! Garage acknowledges writes before they are durable otherwise. Metadata
//! is in LMDB, Garage's recommended engine (its SQLite engine answers
//! "database is locked" under concurrent load).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ocidb::blob::S3Location;
use ocidb::error::{Error, Result};

/// The access key every Garage here serves (Garage's format: `GK` and 24
/// hex digits).
pub const ACCESS_KEY: &str = "GK0c1d2b0000000000000000a1";
/// Its secret (64 hex digits).
pub const SECRET_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
/// The bucket every Garage here serves.
pub const BUCKET: &str = "ocidb";
/// The region Garage answers as.
pub const REGION: &str = "garage";

/// The `garage` executable: `$GARAGE`, else on `PATH`, else
/// `~/.cargo/bin/garage` (where `cargo install` puts it).
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/garage");
        p.is_file().then_some(p)
    })
}

fn failed(what: impl Into<String>) -> Error {
    Error::Internal(what.into())
}

/// One Garage process and its ports.
struct Node {
    config: PathBuf,
    child: Option<Child>,
    s3: u16,
    admin: u16,
    single: bool,
}

/// A running Garage (one node or a cluster), killed when dropped.
pub struct Garage {
    exe: PathBuf,
    nodes: Vec<Node>,
}

impl Drop for Garage {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Garage {
    /// One node below `dir`, with its bucket and key, ready to serve.
    ///
    /// A node that exits or stays unhealthy is started again on fresh
    /// ports, up to three times: on a loaded machine a port chosen free may
    /// be taken (by another test's listener, say) before Garage binds it.
    pub fn single(exe: &Path, dir: &Path) -> Result<Garage> {
        let mut last = None;
        for attempt in 0..3 {
            let home = dir.join(format!("attempt{attempt}"));
            let mut g = Garage {
                exe: exe.to_path_buf(),
                nodes: vec![Garage::configure(&home, 0, 1, true)?],
            };
            g.start(0)?;
            match g.wait_healthy(0, Duration::from_secs(60)) {
                Ok(()) => return Ok(g),
                Err(e) => {
                    tracing::warn!("Garage did not start (attempt {attempt}): {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| failed("Garage did not start")))
    }

    /// `n` nodes below `dir` with `replication_factor = n`, one zone each,
    /// joined and laid out, with the bucket and key made by the CLI.
    ///
    /// A cluster that does not form is started again from scratch on fresh
    /// ports, up to three times, for the reason [`Garage::single`] gives.
    pub fn cluster(exe: &Path, dir: &Path, n: usize) -> Result<Garage> {
        let mut last = None;
        for attempt in 0..3 {
            match Garage::form(exe, &dir.join(format!("attempt{attempt}")), n) {
                Ok(g) => return Ok(g),
                Err(e) => {
                    tracing::warn!("a Garage cluster did not form (attempt {attempt}): {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| failed("a Garage cluster did not form")))
    }

    fn form(exe: &Path, dir: &Path, n: usize) -> Result<Garage> {
        let mut g = Garage {
            exe: exe.to_path_buf(),
            nodes: (0..n)
                .map(|i| Garage::configure(dir, i, n, false))
                .collect::<Result<_>>()?,
        };
        for i in 0..n {
            g.start(i)?;
        }
        // A node that could not bind its ports exits: say so, with its
        // log, rather than let `node connect` time out against its port.
        for i in 0..n {
            g.wait_answering(i, Duration::from_secs(30))?;
        }
        let ids = (0..n)
            .map(|i| g.node_id(i))
            .collect::<Result<Vec<String>>>()?;
        for id in &ids[1..] {
            g.cli(0, &["node", "connect", id])?;
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            g.cli(
                0,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("z{i}"),
                    "-c",
                    "1G",
                    short,
                ],
            )?;
        }
        g.cli(0, &["layout", "apply", "--version", "1"])?;
        g.cli(
            0,
            &[
                "key", "import", "--yes", "-n", "ocidb", ACCESS_KEY, SECRET_KEY,
            ],
        )?;
        g.cli(0, &["bucket", "create", BUCKET])?;
        g.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "ocidb",
            ],
        )?;
        for i in 0..n {
            g.wait_healthy(i, Duration::from_secs(60))?;
        }
        Ok(g)
    }

    fn configure(dir: &Path, i: usize, n: usize, single: bool) -> Result<Node> {
        let home = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&home)
            .map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        let ports = crate::ports::free_ports(3)?;
        let (rpc, s3, admin) = (ports[0], ports[1], ports[2]);
        let config = home.join("garage.toml");
        let toml = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "lmdb"
replication_factor = {n}
data_fsync = true
metadata_fsync = true
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
            meta = home.join("meta").display(),
            data = home.join("data").display(),
            secret = "0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d0c1d",
        );
        std::fs::write(&config, toml)
            .map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        Ok(Node {
            config,
            child: None,
            s3,
            admin,
            single,
        })
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .ok_or_else(|| failed(format!("no Garage node {i}")))
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let exe = self.exe.clone();
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| failed(format!("no Garage node {i}")))?;
        let log = std::fs::File::create(node.config.with_file_name("garage.log"))
            .map_err(|e| Error::io("creating the Garage log", e))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("-c").arg(&node.config).arg("server");
        if node.single {
            cmd.args(["--single-node", "--default-bucket"])
                .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY)
                .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_KEY)
                .env("GARAGE_DEFAULT_BUCKET", BUCKET);
        }
        let child = cmd
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", exe.display()), e))?;
        node.child = Some(child);
        Ok(())
    }

    /// Runs the `garage` CLI against node `i`; fails with its output.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let node = self.node(i)?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&self.exe)
                .arg("-c")
                .arg(&node.config)
                .args(args)
                .output()
                .map_err(|e| Error::io(format!("running {}", self.exe.display()), e))?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            // Right after start, the node may not answer RPC yet.
            if Instant::now() > until {
                return Err(failed(format!(
                    "garage {}: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn node_id(&self, i: usize) -> Result<String> {
        let out = self.cli(i, &["node", "id", "-q"])?;
        out.lines()
            .map(str::trim)
            .find(|l| l.contains('@'))
            .map(str::to_string)
            .ok_or_else(|| failed(format!("garage node id printed no id: {out}")))
    }

    /// The status of `GET /health` on node `i`'s admin port, if any.
    pub fn health(&self, i: usize) -> Option<u16> {
        let node = self.node(i).ok()?;
        let addr = format!("127.0.0.1:{}", node.admin);
        let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// Waits for node `i` to answer `/health` with 200; fails at once,
    /// with its exit status, if the process ends first.
    fn wait_healthy(&mut self, i: usize, within: Duration) -> Result<()> {
        self.wait_until(i, within, "healthy", |health| health == Some(200))
    }

    /// Waits for node `i`'s admin port to answer at all (a node not yet
    /// in a layout answers 503); fails at once if the process ends first.
    fn wait_answering(&mut self, i: usize, within: Duration) -> Result<()> {
        self.wait_until(i, within, "answering", |health| health.is_some())
    }

    fn wait_until(
        &mut self,
        i: usize,
        within: Duration,
        what: &str,
        done: impl Fn(Option<u16>) -> bool,
    ) -> Result<()> {
        let until = Instant::now() + within;
        loop {
            let health = self.health(i);
            if done(health) {
                return Ok(());
            }
            let exited = match self.nodes.get_mut(i).and_then(|n| n.child.as_mut()) {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if exited.is_some() || Instant::now() > until {
                let log = self
                    .node(i)
                    .map(|n| n.config.with_file_name("garage.log"))
                    .ok()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                let why = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!(
                        "was not {what} within {within:?} (GET /health on port {} answered {health:?})",
                        self.node(i).map_or(0, |n| n.admin),
                    ),
                };
                return Err(failed(format!(
                    "Garage node {i} {why}; its log ends:\n{tail}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| failed(format!("no Garage node {i}")))?;
        if let Some(mut c) = node.child.take() {
            c.kill()
                .map_err(|e| Error::io("killing a Garage node", e))?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts node `i` again after [`Garage::kill`], with its data, and
    /// waits until it answers (a single node: nothing to reconnect to).
    pub fn start_again(&mut self, i: usize) -> Result<()> {
        self.start(i)?;
        self.wait_healthy(i, Duration::from_secs(60))
    }

    /// Restarts node `i` and reconnects it from node `other`, a live one
    /// (a restarted node otherwise rejoins slowly).
    pub fn restart(&mut self, i: usize, other: usize) -> Result<()> {
        self.start(i)?;
        let id = self.node_id(i)?;
        self.cli(other, &["node", "connect", &id])?;
        self.wait_healthy(i, Duration::from_secs(60))
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> Result<String> {
        Ok(format!("http://127.0.0.1:{}", self.node(i)?.s3))
    }

    /// The bucket below `prefix`, through node `i`.
    pub fn location(&self, i: usize, prefix: &str) -> Result<S3Location> {
        Ok(S3Location {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint(i)?),
            region: Some(REGION.into()),
        })
    }

    /// The environment a child `ocidb` needs to reach it.
    pub fn env() -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}
