//! The maintenance commands' way into a running `ocidb serve`: its admin
//! API over the store's socket (`<store>/ocidb.sock`), or over HTTP with
//! `--server URL`. A deliberately small HTTP/1.0 client: one request per
//! connection, the whole answer read (bounded), JSON both ways.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use ocidb::names::Reference;
use ocidb::store::{HistoryPage, HistoryQuery, Usage};
use ocidb::{Digest, Error, FsckReport, GcReport, LeaseInfo, Result, Stats, WalkNode};
use ocidb_server::{
    FsckRequest, FsckState, GcRequest, RetentionRequest, ScrubRequest, ADMIN_PREFIX,
};

use super::view::View;

/// The largest answer read (a verbose GC report lists every digest).
const MAX_ANSWER: u64 = 256 << 20;

/// How long a request may take: a GC runs to completion inside one.
const LONG: Duration = Duration::from_secs(3600);
const SHORT: Duration = Duration::from_secs(60);

enum Endpoint {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
        /// `Basic …`, from the URL's user info.
        authorization: Option<String>,
    },
}

/// A server's admin API.
pub(super) struct Remote {
    endpoint: Endpoint,
    /// For messages: the socket path or the URL without credentials.
    shown: String,
}

impl Remote {
    /// The admin socket of the server holding `store_dir`, if there is one.
    pub(super) fn socket(store_dir: &Path) -> Option<Remote> {
        let path = store_dir.join(ocidb_server::ADMIN_SOCKET);
        path.exists().then(|| Remote {
            shown: path.display().to_string(),
            endpoint: Endpoint::Unix(path),
        })
    }

    /// `http://[USER:PASSWORD@]HOST:PORT` (the admin listener, or the API
    /// listener for a user with an admin grant), or `unix:PATH`.
    pub(super) fn from_url(url: &str) -> Result<Remote> {
        let bad = |why: &str| {
            Error::InvalidArgument {
            value: url.to_string(),
            expected: format!(
                "http://[USER:PASSWORD@]HOST:PORT or unix:PATH ({why}); https is not supported: use the admin listener (--admin-addr), which is plain HTTP"
            ),
        }
        };
        if let Some(path) = url.strip_prefix("unix:") {
            return Ok(Remote {
                shown: path.to_string(),
                endpoint: Endpoint::Unix(PathBuf::from(path)),
            });
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("not http://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Remote {
            shown: format!("http://{hostport}"),
            endpoint: Endpoint::Tcp {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                authorization: userinfo.map(ocidb_server::basic_authorization),
            },
        })
    }

    fn failed(&self, what: &str, detail: impl std::fmt::Display) -> Error {
        Error::io(
            format!("asking the server at {} ({what})", self.shown),
            std::io::Error::other(detail.to_string()),
        )
    }

    /// One request; the answer's status and body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>)> {
        let body = body.map(ToString::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: ocidb\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        let mut stream: Box<dyn ReadWrite> = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| self.failed("connecting", e))?;
                s.set_read_timeout(Some(timeout)).ok();
                Box::new(s)
            }
            Endpoint::Tcp {
                host,
                port,
                authorization,
            } => {
                let s = std::net::TcpStream::connect((host.as_str(), *port))
                    .map_err(|e| self.failed("connecting", e))?;
                s.set_read_timeout(Some(timeout)).ok();
                if let Some(a) = authorization {
                    head.push_str(&format!("Authorization: {a}\r\n"));
                }
                Box::new(s)
            }
        };
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(|e| self.failed("sending", e))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut answer)
            .map_err(|e| self.failed("reading the answer", e))?;
        if answer.len() as u64 > MAX_ANSWER {
            return Err(self.failed(
                "reading the answer",
                format!("longer than {MAX_ANSWER} bytes"),
            ));
        }
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| self.failed("reading the answer", "no end of headers"))?;
        let status = std::str::from_utf8(&answer[..split])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| self.failed("reading the answer", "no status line"))?;
        Ok((status, answer[split + 4..].to_vec()))
    }

    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<T> {
        let full = format!("{ADMIN_PREFIX}{path}");
        let (status, body) = self.call(method, &full, body, timeout)?;
        if !(200..300).contains(&status) {
            // The server's own message, which names the value and the rule.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(self.failed(&format!("{method} {full}: {status}"), message));
        }
        serde_json::from_slice(&body).map_err(|e| {
            self.failed(
                &format!("{method} {full}"),
                format!("an answer that is not what was asked for: {e}"),
            )
        })
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Percent-encodes a query value.
fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl View for Remote {
    fn tags_with_digests(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>> {
        let mut path = format!("/tags?repo={}", q(repo));
        if let Some(l) = last {
            path.push_str(&format!("&last={}", q(l)));
        }
        if let Some(n) = n {
            path.push_str(&format!("&n={n}"));
        }
        self.json("GET", &path, None, SHORT)
    }
    fn resolve(&self, repo: &str, r: &Reference) -> Result<Digest> {
        let path = format!("/resolve?repo={}&reference={}", q(repo), q(&r.to_string()));
        self.json("GET", &path, None, SHORT)
    }
    fn resolve_digest(&self, text: &str) -> Result<Digest> {
        self.json("GET", &format!("/resolve?digest={}", q(text)), None, SHORT)
    }
    fn walk(&self, repo: &str, d: &Digest) -> Result<WalkNode> {
        let path = format!("/walk?repo={}&digest={}", q(repo), q(&d.to_string()));
        self.json("GET", &path, None, SHORT)
    }
    fn repositories(&self) -> Result<Vec<String>> {
        self.json("GET", "/repositories", None, SHORT)
    }
    fn stats(&self) -> Result<Stats> {
        self.json("GET", "/stats", None, LONG)
    }
    fn lease_details(&self) -> Result<Vec<LeaseInfo>> {
        self.json("GET", "/leases", None, SHORT)
    }
    fn release_lease(&self, id: u64) -> Result<()> {
        self.json::<serde_json::Value>("DELETE", &format!("/leases/{id}"), None, SHORT)
            .map(|_| ())
    }
    fn tag_history(&self, repo: &str, tag: &str, hq: &HistoryQuery) -> Result<HistoryPage> {
        let mut path = format!("/history?repo={}&tag={}&n={}", q(repo), q(tag), hq.limit);
        for (k, v) in [
            ("before_ms", hq.before_ms),
            ("since_ms", hq.since_ms),
            ("cursor", hq.cursor),
        ] {
            if let Some(v) = v {
                path.push_str(&format!("&{k}={v}"));
            }
        }
        if let Some(d) = &hq.digest {
            path.push_str(&format!("&digest={}", q(&d.to_string())));
        }
        self.json("GET", &path, None, SHORT)
    }
    fn retention(&self, ask: &RetentionRequest) -> Result<ocidb::RetentionReport> {
        let body = serde_json::to_value(ask).map_err(|e| Error::Internal(e.to_string()))?;
        self.json("POST", "/retention", Some(&body), LONG)
    }
    fn usage(&self, scope: &str) -> Result<Usage> {
        self.json("GET", &format!("/usage?scope={}", q(scope)), None, LONG)
    }
    fn gc(&self, ask: &GcRequest) -> Result<GcReport> {
        // Checked here first, so a bad value is reported as offline.
        ask.policy()?;
        let body = serde_json::to_value(ask).map_err(|e| self.failed("encoding", e))?;
        self.json("POST", "/gc", Some(&body), LONG)
    }
    fn snapshot_index(&self) -> Result<ocidb::log::SnapshotInfo> {
        self.json("POST", "/snapshot", None, LONG)
    }
    fn scrub(&self, after: Option<&Digest>, max_bytes: u64) -> Result<ocidb::ScrubSlice> {
        let mut req = ScrubRequest::default();
        (req.after, req.max_bytes) = (after.copied(), max_bytes);
        let body = serde_json::to_value(&req).map_err(|e| self.failed("encoding", e))?;
        self.json("POST", "/scrub", Some(&body), LONG)
    }
    fn fsck(
        &self,
        repair: bool,
        allow_sparse: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<FsckReport> {
        let mut req = FsckRequest::default();
        (req.repair, req.allow_sparse) = (repair, allow_sparse);
        let body = serde_json::to_value(&req).map_err(|e| self.failed("encoding", e))?;
        let started: FsckState = self.json("POST", "/fsck", Some(&body), SHORT)?;
        let FsckState::Running {
            started_ms: mine, ..
        } = started
        else {
            return Err(self.failed("POST /fsck", "the fsck did not start"));
        };
        loop {
            match self.json::<FsckState>("GET", "/fsck", None, SHORT)? {
                FsckState::Running { done, total, .. } => {
                    progress(done, total);
                    std::thread::sleep(Duration::from_millis(200));
                }
                FsckState::Done {
                    started_ms, report, ..
                } if started_ms == mine => return Ok(report),
                FsckState::Failed { started_ms, error } if started_ms == mine => {
                    return Err(self.failed("fsck", error));
                }
                other => {
                    return Err(self.failed(
                        "GET /fsck",
                        format!("another fsck replaced this one ({other:?})"),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert!(Remote::from_url("http://127.0.0.1:5001").is_ok());
        assert!(Remote::from_url("http://u:p@localhost:5001/").is_ok());
        assert!(Remote::from_url("unix:/tmp/s/ocidb.sock").is_ok());
        for bad in ["https://h:1", "http://h", "http://:1", "h:1", "http://h:x"] {
            let e = Remote::from_url(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(bad) && e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }
}
