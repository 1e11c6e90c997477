//! etcd for the cluster tests: Debian's `etcd-server` (3.4), one member
//! or three on 127.0.0.1, each killed on drop. Found on PATH (or the test
//! is skipped with a one-line reason, except under `CI=true`, where
//! `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `etcd` binary, or `None` (the caller returns: skipped).
pub fn exe() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    assert!(
        !super::in_ci(),
        "CI=true but etcd is not installed (.ci/run installs it: apt-get install etcd-server)"
    );
    super::skip("etcd is not installed (apt-get install etcd-server)");
    None
}

/// A free port of 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Node {
    name: String,
    dir: PathBuf,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// An etcd cluster of one or more members on 127.0.0.1.
pub struct Etcd {
    exe: PathBuf,
    nodes: Vec<Node>,
}

impl Etcd {
    /// `n` members with data under `dir`, started and answering.
    pub fn start(exe: &Path, dir: &Path, n: usize) -> Etcd {
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("e{i}"),
                dir: dir.join(format!("e{i}")),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut e = Etcd {
            exe: exe.to_path_buf(),
            nodes,
        };
        for i in 0..n {
            e.spawn(i, "new");
        }
        for i in 0..n {
            e.wait_healthy(i);
        }
        e
    }

    fn initial_cluster(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let cluster = self.initial_cluster();
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
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "ocidb-test",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        n.child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let addr = format!("127.0.0.1:{}", self.nodes[i].client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                let r = super::http::request(&addr, "GET", "/health", &[], b"");
                if r.status == 200 && String::from_utf8_lossy(&r.body).contains("true") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd {addr} not healthy after 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

    /// kill -9 member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
