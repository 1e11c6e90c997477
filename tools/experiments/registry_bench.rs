//! Registry rows side by side: the same client load against each base URL
//! given, in one run (`tools/registry_bench.sh` starts `ocidb serve` and
//! Debian's docker-registry on fresh directories and calls this).
//!
//! `cargo run --release --example registry_bench -- URL [URL…]`
//!
//! The client speaks HTTP/1.1 with keep-alive over std sockets, the same
//! for every server. Rows: a 256 MiB blob pushed (one monolithic POST) and
//! pulled, against reading the same bytes from the page cache; manifest
//! puts from 8 concurrent clients; manifest GET by tag, p50 and p99; the
//! tag list of a repository with 10k tags and the catalog of 10k
//! repositories.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ocidb::{Algorithm, Hasher};

struct Conn {
    host: String,
    r: BufReader<TcpStream>,
}

struct Resp {
    status: u16,
    location: String,
    body: Vec<u8>,
}

impl Conn {
    fn new(host: &str) -> Conn {
        let s = TcpStream::connect(host).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            host: host.to_string(),
            r: BufReader::with_capacity(1 << 20, s),
        }
    }

    fn send(&mut self, method: &str, path: &str, ctype: &str, body: &[u8]) -> Resp {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {MT}, application/vnd.oci.image.index.v1+json\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.r.get_mut();
        s.write_all(head.as_bytes()).expect("head");
        for chunk in body.chunks(1 << 20) {
            s.write_all(chunk).expect("body");
        }
        self.read(method == "HEAD")
    }

    fn read(&mut self, head_only: bool) -> Resp {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (mut len, mut chunked) = (0usize, false);
        let mut location = String::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).expect("header");
            if h == "\r\n" || h.is_empty() {
                break;
            }
            let l = h.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
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
            return Resp {
                status,
                location,
                body,
            };
        }
        if chunked {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).expect("chunk size");
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut c = vec![0u8; n + 2];
                self.r.read_exact(&mut c).expect("chunk");
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&c[..n]);
            }
        } else {
            body.resize(len, 0);
            self.r.read_exact(&mut body).expect("body");
        }
        Resp {
            status,
            location,
            body,
        }
    }
}

fn sha256(b: &[u8]) -> String {
    Hasher::digest_of(Algorithm::Sha256, b).to_string()
}

/// A monolithic upload the way every client can: POST for a session, then
/// PUT the bytes with the digest (distribution 2.8 ignores a POST body).
fn push_blob(c: &mut Conn, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c.send("POST", &format!("/v2/{repo}/blobs/uploads/"), "", b"");
    assert_eq!(r.status, 202, "upload start");
    let loc = r
        .location
        .trim_start_matches(|ch: char| ch != '/')
        .to_string();
    let loc = match loc.find("/v2/") {
        Some(i) => loc[i..].to_string(),
        None => loc,
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c.send(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        "application/octet-stream",
        data,
    );
    assert_eq!(r.status, 201, "blob push");
    d
}

const MT: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(cfg: &str, n: u64) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MT}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cfg}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}}}"#
    )
    .into_bytes()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let hosts: Vec<String> = std::env::args()
        .skip(1)
        .map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    assert!(!hosts.is_empty(), "usage: registry_bench URL [URL…]");
    let big = ocidb::sample::deterministic_bytes(b"registry bench", 256 << 20);
    // The page-cache baseline: the same bytes read back from a file.
    let file = std::env::temp_dir().join(format!("registry-bench-{}", std::process::id()));
    std::fs::write(&file, &big).expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut page_cache = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut f = std::fs::File::open(&file).expect("open");
        while f.read(&mut buf).expect("read") > 0 {}
        page_cache = page_cache.min(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&file);
    println!(
        "baseline: 256 MiB read from the page cache: {:.0} MiB/s",
        256.0 / page_cache
    );
    // The network's own ceiling: 256 MiB through a loopback TCP socket, no
    // HTTP, same read loop as the client's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = listener.local_addr().expect("addr");
    let src = big.clone();
    let sender = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(&src).expect("send");
    });
    let t = Instant::now();
    let mut r = BufReader::with_capacity(1 << 20, TcpStream::connect(at).expect("connect"));
    let mut got = vec![0u8; big.len()];
    r.read_exact(&mut got).expect("receive");
    let tcp = t.elapsed().as_secs_f64();
    sender.join().expect("sender");
    println!(
        "baseline: 256 MiB through loopback TCP: {:.0} MiB/s",
        256.0 / tcp
    );
    println!("| row | {} |", hosts.join(" | "));
    println!("|---|{}", "---|".repeat(hosts.len()));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |row: &str, i: usize, v: String| {
        if let Some(r) = rows.iter_mut().find(|(k, _)| k == row) {
            r.1[i] = v;
        } else {
            let mut vals = vec![String::new(); hosts.len()];
            vals[i] = v;
            rows.push((row.to_string(), vals));
        }
    };
    for (i, host) in hosts.iter().enumerate() {
        let mut c = Conn::new(host);
        // Blob push and pull.
        let t = Instant::now();
        let d = push_blob(&mut c, "bench/big", &big);
        let push = 256.0 / t.elapsed().as_secs_f64();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let r = c.send("GET", &format!("/v2/bench/big/blobs/{d}"), "", b"");
            assert_eq!(r.body.len(), big.len());
            best = best.min(t.elapsed().as_secs_f64());
        }
        add("blob push, 256 MiB (MiB/s)", i, format!("{push:.0}"));
        add(
            "blob pull, 256 MiB (MiB/s; × page cache; × loopback TCP)",
            i,
            format!(
                "{:.0} ({:.2}×; {:.2}×)",
                256.0 / best,
                page_cache / best,
                tcp / best
            ),
        );
        // Manifest puts, 8 concurrent clients.
        let cfg = push_blob(&mut c, "bench/m", b"{}");
        let per = 300u64;
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..8u64 {
                let (host, cfg) = (host.clone(), cfg.clone());
                s.spawn(move || {
                    let mut c = Conn::new(&host);
                    for k in 0..per {
                        let body = manifest(&cfg, th * 1_000_000 + k);
                        let r = c.send(
                            "PUT",
                            &format!("/v2/bench/m/manifests/t{th}-{k}"),
                            MT,
                            &body,
                        );
                        assert_eq!(r.status, 201, "manifest put");
                    }
                });
            }
        });
        add(
            "manifest put, 8 clients (per s)",
            i,
            format!("{:.0}", (8 * per) as f64 / t.elapsed().as_secs_f64()),
        );
        // GET by tag.
        let mut lat = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let r = c.send("GET", "/v2/bench/m/manifests/t0-0", "", b"");
            assert_eq!(r.status, 200);
            lat.push(t.elapsed());
        }
        add(
            "manifest GET by tag, p50 / p99 (µs)",
            i,
            format!(
                "{:.0} / {:.0}",
                pct(&mut lat, 0.5).as_secs_f64() * 1e6,
                pct(&mut lat, 0.99).as_secs_f64() * 1e6
            ),
        );
        // 10k tags in one repository, 10k repositories.
        let body = manifest(&cfg, 7);
        push_blob(&mut c, "bench/tags", b"{}");
        std::thread::scope(|s| {
            for th in 0..8u64 {
                let (host, body) = (host.clone(), body.clone());
                let cfg_blob = b"{}";
                s.spawn(move || {
                    let mut c = Conn::new(&host);
                    for k in (th..10_000).step_by(8) {
                        let r = c.send(
                            "PUT",
                            &format!("/v2/bench/tags/manifests/tag{k}"),
                            MT,
                            &body,
                        );
                        assert_eq!(r.status, 201, "tag put");
                        push_blob(&mut c, &format!("bench/r{k}"), cfg_blob);
                        let r = c.send("PUT", &format!("/v2/bench/r{k}/manifests/v1"), MT, &body);
                        assert_eq!(r.status, 201, "repo put");
                    }
                });
            }
        });
        let mut tl = Vec::new();
        let mut cat = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let r = c.send("GET", "/v2/bench/tags/tags/list", "", b"");
            assert_eq!(r.status, 200);
            tl.push(t.elapsed());
            // Pages of 1,000: distribution refuses larger pages.
            let t = Instant::now();
            let mut last = String::new();
            let mut seen = 0;
            loop {
                let q = if last.is_empty() {
                    "/v2/_catalog?n=1000".to_string()
                } else {
                    format!("/v2/_catalog?n=1000&last={last}")
                };
                let r = c.send("GET", &q, "", b"");
                assert_eq!(r.status, 200, "catalog page");
                let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
                let page = v["repositories"].as_array().cloned().unwrap_or_default();
                seen += page.len();
                match page.last().and_then(|l| l.as_str()) {
                    Some(l) if page.len() == 1000 => last = l.to_string(),
                    _ => break,
                }
            }
            assert!(seen >= 10_000, "the catalog listed {seen}");
            cat.push(t.elapsed());
        }
        add(
            "tag list, 10k tags (ms, median of 10)",
            i,
            format!("{:.2}", pct(&mut tl, 0.5).as_secs_f64() * 1e3),
        );
        add(
            "catalog, 10k repositories in pages of 1,000 (ms, median of 10)",
            i,
            format!("{:.2}", pct(&mut cat, 0.5).as_secs_f64() * 1e3),
        );
    }
    for (row, vals) in rows {
        println!("| {row} | {} |", vals.join(" | "));
    }
}
