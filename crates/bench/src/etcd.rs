//! etcd, run as child processes on 127.0.0.1 for the cluster tests and
//! `ocidb bench cluster`: Debian's `etcd-server` (3.4), one member or
//! several joined as a new cluster, each killed on drop.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ocidb::error::{Error, Result};

use crate::ports::free_port;

/// The `etcd` executable on `PATH`, if there is one.
pub fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

struct Node {
    name: String,
    dir: PathBuf,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// An etcd cluster on 127.0.0.1.
pub struct Etcd {
    exe: PathBuf,
    nodes: Vec<Node>,
}

impl Etcd {
    /// `n` members with their data under `dir`, started and healthy.
    pub fn start(exe: &Path, dir: &Path, n: usize) -> Result<Etcd> {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            nodes.push(Node {
                name: format!("e{i}"),
                dir: dir.join(format!("e{i}")),
                client: free_port()?,
                peer: free_port()?,
                child: None,
            });
        }
        let mut e = Etcd {
            exe: exe.to_path_buf(),
            nodes,
        };
        for i in 0..n {
            e.spawn(i, "new")?;
        }
        for i in 0..n {
            e.wait_healthy(i)?;
        }
        Ok(e)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let cluster = self
            .nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let n = &mut self.nodes[i];
        let client = format!("http://127.0.0.1:{}", n.client);
        let peer = format!("http://127.0.0.1:{}", n.peer);
        let child = Command::new(&self.exe)
            .args(["--name", &n.name, "--data-dir"])
            .arg(&n.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
            ])
            .args(["--initial-cluster-token", "ocidb"])
            // Fast elections: a killed member's place is taken in about
            // a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.exe.display()), e))?;
        n.child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `/health` with `true`.
    fn wait_healthy(&self, i: usize) -> Result<()> {
        let addr = format!("127.0.0.1:{}", self.nodes[i].client);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let healthy = TcpStream::connect(&addr).ok().and_then(|mut s| {
                write!(
                    s,
                    "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                )
                .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text.starts_with("HTTP/1.1 200") && text.contains("\"true\""))
            });
            if healthy == Some(true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Internal(format!(
            "etcd {addr} not healthy after 30 s"
        )))
    }

    /// `etcd://HOST:PORT,…` of every member.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// kill -9 of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes.get_mut(i).and_then(|n| n.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data (it rejoins the cluster).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i, "existing")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
