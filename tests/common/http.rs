//! A minimal HTTP/1.1 client (one request per connection), so that the
//! tests need no HTTP crate, and the OCI conformance suite's runner.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The OCI error code of an error body.
    pub fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body).expect("request")
}

/// [`request`] that returns an error (a refused connection, a response
/// cut short) rather than panicking: for servers a test kills.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    try_read_response(s, method == "HEAD")
}

pub fn read_response(s: TcpStream, head_only: bool) -> Response {
    try_read_response(s, head_only).expect("response")
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

pub fn try_read_response(s: TcpStream, head_only: bool) -> std::io::Result<Response> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    if !head_only {
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0u8; n + 2];
                r.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let _ = r.read_to_end(&mut body);
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Runs the conformance suite against the registry at `addr` with `env`; returns its
/// result line and the full output.
pub fn conformance(
    tools: &Path,
    addr: &str,
    results: &Path,
    env: &[(&str, &str)],
) -> (String, String) {
    // The suite takes TLS from the URL's scheme.
    let scheme = if env.iter().any(|(k, _)| *k == "OCI_TLS") {
        "https"
    } else {
        "http"
    };
    let out = Command::new(tools.join("conformance.sh"))
        .arg(format!("{scheme}://{addr}"))
        .arg(results)
        .envs(env.iter().copied())
        .output()
        .expect("run the conformance suite");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("conformance:"))
        .unwrap_or_else(|| panic!("no result line:\n{text}"))
        .to_string();
    eprintln!("{line}");
    (line, text)
}

/// Runs the conformance suite against the registry at `addr` with every API and data
/// set on but the sparse one (a server started with
/// `--allow-sparse-manifests` passes `OCI_DATA_SPARSE=true` in `env`),
/// plus `env`, and asserts that nothing failed and at least 680 checks
/// passed (720 with the sparse data set); returns the result line.
pub fn assert_conformance_passes(
    tools: &Path,
    addr: &str,
    results: &Path,
    env: &[(&str, &str)],
) -> String {
    let mut all = env.to_vec();
    all.push(("OCI_API_BLOBS_UPLOAD_CANCEL", "true"));
    let (line, text) = conformance(tools, addr, results, &all);
    assert_eq!(count(&line, "failed"), 0, "{text}");
    // 726 checks with the sparse data set, 689 without (today's suite).
    let floor = if env
        .iter()
        .any(|(k, v)| *k == "OCI_DATA_SPARSE" && *v == "true")
    {
        720
    } else {
        680
    };
    assert!(count(&line, "passed") >= floor, "{line}");
    line
}

/// A count from the result line (`P passed, F failed, S skipped`).
pub fn count(line: &str, what: &str) -> u64 {
    line.split(',')
        .find(|p| p.contains(what))
        .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(u64::MAX)
}
