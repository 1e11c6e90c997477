//! The registries under test, each a child process on a fresh directory and
//! a free port of 127.0.0.1, killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{failed, Conn};
use ocidb::error::{Error, Result};

pub(super) struct Spawned {
    child: Child,
    pub host: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    /// `ocidb serve` with its access log off (`OCIDB_LOG=warn`), as the
    /// peer runs without its own.
    pub fn ocidb(exe: &Path, store: &Path) -> Result<Spawned> {
        let mut child = Command::new(exe)
            .env("OCIDB_LOG", "warn")
            .arg("--store")
            .arg(store)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", exe.display()), e))?;
        let Some(stderr) = child.stderr.take() else {
            return Err(failed("ocidb serve: no stderr"));
        };
        let mut lines = BufReader::new(stderr).lines();
        let host = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line
                        .split("serving ")
                        .nth(1)
                        .and_then(|r| r.split("://").nth(1))
                    {
                        break rest.split_whitespace().next().unwrap_or("").to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed("ocidb serve exited before it listened"));
                }
            }
        };
        // Keep draining stderr so that the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let s = Spawned { child, host };
        s.wait_ready()?;
        Ok(s)
    }

    /// docker-registry with its recommended settings: filesystem storage,
    /// the in-memory blob descriptor cache, deletes enabled; access log and
    /// logging off.
    pub fn docker_registry(exe: &Path, root: &Path) -> Result<Spawned> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let port = crate::ports::free_port()?;
        let host = format!("127.0.0.1:{port}");
        let config = root.join("config.yml");
        let yml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            root.join("data").display()
        );
        std::fs::write(&config, yml)
            .map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        let child = Command::new(exe)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", exe.display()), e))?;
        let s = Spawned { child, host };
        s.wait_ready()?;
        Ok(s)
    }

    /// Waits (at most 30 s) until `GET /v2/` answers 200.
    fn wait_ready(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Conn::new(&self.host)
                && c.send("GET", "/v2/", &[], b"")
                    .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(failed(format!(
                    "the registry on {} did not answer GET /v2/ within 30 s",
                    self.host
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
