//! Recipe: the store behind an HTTP handler.
//!
//! The read side of the OCI distribution API in one function: blobs (with
//! `Range`), manifests by tag or digest, and the referrers API with its
//! `artifactType` filter. Errors map to OCI error codes through
//! `Error::kind()`, never by reading messages. The loop around it is plain
//! `std::net` so that the recipe has no dependency; a real registry puts the
//! same handler behind axum or hyper and streams the `BlobReader`.
//!
//! `cargo run --example http_handler` serves a sample store on
//! 127.0.0.1:5055 for ten requests, then exits. Try
//! `curl -s localhost:5055/v2/demo/app/manifests/v1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use ocidb::{Digest, ErrorKind, Reference, ReferrersQuery, Store};

/// A response: status, content type, body.
struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json".into(),
            body,
        }
    }
}

/// The OCI error code and HTTP status for an error, from its kind.
fn oci_error(e: &ocidb::Error) -> Response {
    let (status, code) = match e.kind() {
        ErrorKind::BlobUnknown => (404, "BLOB_UNKNOWN"),
        ErrorKind::ManifestUnknown | ErrorKind::TagUnknown => (404, "MANIFEST_UNKNOWN"),
        ErrorKind::RepositoryUnknown => (404, "NAME_UNKNOWN"),
        ErrorKind::InvalidDigest => (400, "DIGEST_INVALID"),
        ErrorKind::InvalidName => (400, "NAME_INVALID"),
        ErrorKind::InvalidManifest | ErrorKind::ChildUnknown => (400, "MANIFEST_INVALID"),
        ErrorKind::SizeMismatch | ErrorKind::TooLarge => (400, "SIZE_INVALID"),
        ErrorKind::Unsupported => (400, "UNSUPPORTED"),
        ErrorKind::RangeNotSatisfiable => (416, "BLOB_UNKNOWN"),
        ErrorKind::Conflict => (409, "DENIED"),
        ErrorKind::Retry => (503, "UNAVAILABLE"),
        ErrorKind::QuotaExceeded => (507, "DENIED"),
        _ => (500, "UNKNOWN"),
    };
    let body = serde_json::json!({"errors": [{"code": code, "message": e.to_string()}]});
    Response::json(status, body.to_string().into_bytes())
}

/// `GET` requests of the distribution API's read side.
fn handle(store: &Store, path: &str, range: Option<(u64, u64)>) -> Response {
    let result = (|| -> ocidb::Result<Response> {
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Ok(Response::json(404, b"{}".to_vec()));
        };
        // The repository name may contain `/`: the verb is the last
        // `/blobs/`, `/manifests/` or `/referrers/` segment.
        for verb in ["/blobs/", "/manifests/", "/referrers/"] {
            let Some(i) = rest.rfind(verb) else { continue };
            let (repo, arg) = (&rest[..i], &rest[i + verb.len()..]);
            return match verb {
                "/blobs/" => {
                    let d = Digest::parse(arg)?;
                    if !store.is_member(repo, &d)? {
                        return Err(ocidb::Error::BlobUnknown {
                            digest: d,
                            hint: String::new(),
                        });
                    }
                    let mut r = match range {
                        Some((start, end)) => store.get_range(&d, start, end)?,
                        None => store.get(&d)?,
                    };
                    let mut body = Vec::with_capacity(r.len() as usize);
                    r.read_to_end(&mut body)
                        .map_err(|e| ocidb::Error::io("reading blob", e))?;
                    Ok(Response {
                        status: if range.is_some() { 206 } else { 200 },
                        content_type: "application/octet-stream".into(),
                        body,
                    })
                }
                "/manifests/" => {
                    let reference = Reference::parse(arg)?;
                    let (info, body) = store.get_manifest(repo, &reference)?;
                    Ok(Response {
                        status: 200,
                        content_type: info.media_type.unwrap_or_default(),
                        body,
                    })
                }
                _ => {
                    let (digest, query) = arg.split_once('?').unwrap_or((arg, ""));
                    let filter = query.strip_prefix("artifactType=");
                    let page = store.referrers(
                        repo,
                        &Digest::parse(digest)?,
                        &ReferrersQuery::default().artifact_type(filter),
                    )?;
                    // A real front also sets `OCI-Filters-Applied` from
                    // `page.filters_applied` and `Link` from `page.next`.
                    let body = serde_json::to_vec(&page.index)
                        .map_err(|e| ocidb::Error::Internal(e.to_string()))?;
                    Ok(Response {
                        status: 200,
                        content_type: "application/vnd.oci.image.index.v1+json".into(),
                        body,
                    })
                }
            };
        }
        Ok(Response::json(404, b"{}".to_vec()))
    })();
    result.unwrap_or_else(|e| oci_error(&e))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("ocidb-http-{}", std::process::id()));
    let store = Store::create(&dir)?;
    ocidb_testkit::load(&store, "demo/app")?;

    // What a client sees, without a network.
    let ok = handle(&store, "/v2/demo/app/manifests/v1", None);
    println!("GET manifests/v1 -> {} {}", ok.status, ok.content_type);
    let missing = handle(
        &store,
        &format!("/v2/demo/app/blobs/sha256:{}", "0".repeat(64)),
        None,
    );
    println!(
        "GET an unknown blob -> {} {}",
        missing.status,
        String::from_utf8_lossy(&missing.body)
    );

    let listener = TcpListener::bind("127.0.0.1:5055")?;
    println!(
        "serving {} on http://127.0.0.1:5055 for ten requests",
        dir.display()
    );
    for stream in listener.incoming().take(10) {
        let mut stream = stream?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=")
                && let Some((a, b)) = v.trim().split_once('-')
            {
                range = a.parse().ok().zip(b.parse().ok());
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let r = handle(&store, path, range);
        write!(
            stream,
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            r.status,
            r.content_type,
            r.body.len()
        )?;
        stream.write_all(&r.body)?;
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
