//! The harness's HTTP/1.1 client: keep-alive over std sockets, the same
//! code for every registry measured, so that the client's cost is equal on
//! both sides of a ratio.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use ocidb::error::{Error, Result};

/// A failed step, named.
pub(super) fn failed(what: impl Into<String>) -> Error {
    Error::io(what, std::io::Error::other("unexpected response"))
}

/// One keep-alive connection.
pub(super) struct Conn {
    host: String,
    r: BufReader<TcpStream>,
}

/// What a request returned.
#[derive(Debug)]
pub(super) struct Resp {
    pub status: u16,
    pub location: String,
    pub body: Vec<u8>,
    /// Body bytes read (also when they were counted, not kept).
    pub read: u64,
}

/// The largest response head or body the harness reads into memory; a
/// blob pull is streamed and counted instead.
const MAX_BUFFERED: usize = 64 << 20;

impl Conn {
    pub fn new(host: &str) -> Result<Conn> {
        let s =
            TcpStream::connect(host).map_err(|e| Error::io(format!("connecting to {host}"), e))?;
        s.set_nodelay(true)
            .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
        Ok(Conn {
            host: host.to_string(),
            r: BufReader::with_capacity(1 << 20, s),
        })
    }

    /// Sends a request; `extra` are more header lines (`Name: value`).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let io = |e| Error::io(format!("{method} {path}"), e);
        let s = self.r.get_mut();
        s.write_all(head.as_bytes()).map_err(io)?;
        for chunk in body.chunks(1 << 20) {
            s.write_all(chunk).map_err(io)?;
        }
        self.read(method == "HEAD", false)
            .map_err(|e| Error::io(format!("{method} {path}"), e))
    }

    /// A GET whose body is counted, not kept: the bytes read.
    pub fn get_counted(&mut self, path: &str) -> Result<u64> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        let io = |e| Error::io(format!("GET {path}"), e);
        self.r.get_mut().write_all(head.as_bytes()).map_err(io)?;
        let r = self.read(false, true).map_err(io)?;
        if r.status != 200 {
            return Err(failed(format!("GET {path}: status {}", r.status)));
        }
        Ok(r.read)
    }

    fn read(&mut self, head_only: bool, count_only: bool) -> std::io::Result<Resp> {
        let bad = |what: &str| std::io::Error::other(what.to_string());
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let (mut len, mut chunked) = (0usize, false);
        let mut location = String::new();
        loop {
            let mut h = String::new();
            if self.r.read_line(&mut h)? == 0 {
                return Err(bad("the connection closed in the head"));
            }
            if h == "\r\n" {
                break;
            }
            let l = h.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            }
            if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
            if l.starts_with("location:") {
                location = h["location:".len()..].trim().to_string();
            }
        }
        let mut body = Vec::new();
        if head_only {
            return Ok(Resp {
                status,
                location,
                body,
                read: 0,
            });
        }
        let mut counted = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut take = |r: &mut BufReader<TcpStream>, mut n: usize, body: &mut Vec<u8>| {
            while n > 0 {
                let want = n.min(buf.len());
                r.read_exact(&mut buf[..want])?;
                counted += want as u64;
                if !count_only {
                    if body.len() + want > MAX_BUFFERED {
                        return Err(bad("a response body over 64 MiB"));
                    }
                    body.extend_from_slice(&buf[..want]);
                }
                n -= want;
            }
            Ok(())
        };
        if chunked {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size)?;
                let n =
                    usize::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
                take(&mut self.r, n, &mut body)?;
                let mut crlf = [0u8; 2];
                self.r.read_exact(&mut crlf)?;
                if n == 0 {
                    break;
                }
            }
        } else {
            take(&mut self.r, len, &mut body)?;
        }
        Ok(Resp {
            status,
            location,
            body,
            read: counted,
        })
    }
}

/// Checks a status, naming the step.
pub(super) fn expect(r: Resp, status: u16, what: &str) -> Result<Resp> {
    if r.status == status {
        Ok(r)
    } else {
        Err(failed(format!(
            "{what}: status {} (expected {status}): {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        )))
    }
}
