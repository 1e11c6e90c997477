//! Small HTTP helpers of the handlers: query parameters, headers, JSON
//! bodies, and engine calls on the blocking pool.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;
use ocidb::digest::Digest;
use ocidb::error::Error;

pub(super) type ApiResult = Result<Response, ApiError>;

/// A query parameter, percent-decoded.
pub(super) fn query(req: &Parts, key: &str) -> Option<String> {
    req.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

/// Every value of a repeated query parameter (`?tag=a&tag=b`), in order,
/// percent-decoded.
pub(super) fn query_all(req: &Parts, key: &str) -> Vec<String> {
    req.uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ocidb::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(Error::Internal(format!(
            "a request task failed: {e}"
        )))),
    }
}

pub(super) fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::from(ocidb::Error::from(e)))
}

pub(super) fn json(v: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Sets headers, replacing any of the same name (a body's default
/// `Content-Type` among them).
pub(super) fn set<const N: usize>(
    r: &mut Response,
    headers: [(header::HeaderName, HeaderValue); N],
) {
    for (k, v) in headers {
        r.headers_mut().insert(k, v);
    }
}

pub(super) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn parse_n(req: &Parts) -> Result<Option<usize>, ApiError> {
    query(req, "n")
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!("n={} is not a count", ocidb::text::quote_untrusted(&v)),
                )
            })
        })
        .transpose()
}

/// Whether the request's `Accept` headers admit `media_type`. No `Accept`
/// admits everything (RFC 9110); so do `*/*` and `type/*`. A type with
/// `q=0` is refused explicitly.
pub(super) fn accepts(headers: &header::HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim();
            if range.is_empty() {
                continue;
            }
            any = true;
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            let matches = range == "*/*"
                || range.eq_ignore_ascii_case(media_type)
                || range.strip_suffix("/*").is_some_and(|t| {
                    media_type
                        .split_once('/')
                        .is_some_and(|(mt, _)| mt.eq_ignore_ascii_case(t))
                });
            if matches {
                return true;
            }
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn accept_negotiation() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        assert!(accepts(&accept(&[]), oci), "no Accept admits all");
        assert!(accepts(&accept(&["*/*"]), oci));
        assert!(accepts(&accept(&["application/*"]), oci));
        assert!(accepts(&accept(&[&oci.to_uppercase()]), oci));
        assert!(accepts(
            &accept(&[
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json; q=0.5"
            ]),
            oci
        ));
        assert!(!accepts(
            &accept(&["application/vnd.docker.distribution.manifest.v2+json"]),
            oci
        ));
        assert!(!accepts(&accept(&[&format!("{oci};q=0")]), oci));
        assert!(!accepts(&accept(&["text/*"]), oci));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz"), "%zz");
    }
}
