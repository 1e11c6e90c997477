//! The routes of the distribution API. Repository names contain `/`, so
//! the path tail is parsed here rather than by a router pattern.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::auth::{Denied, Want};
use super::body::{read_limited, stream, with_body};
use super::errors::ApiError;
use super::App;
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::MAX_MANIFEST_SIZE;
use crate::names::Reference;
use crate::store::{ManifestOptions, PutOptions, ReferrersQuery, UploadOptions};

type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str, Option<&'a str>),
    Referrers(&'a str, &'a str),
}

impl Route<'_> {
    /// The repository a route names, if any.
    fn repo(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

fn parse(path: &str) -> Option<Route<'_>> {
    let rest = match path {
        "/v2" | "/v2/" => return Some(Route::Base),
        "/v2/_catalog" => return Some(Route::Catalog),
        _ => path.strip_prefix("/v2/")?,
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    for (marker, make) in [
        ("/blobs/uploads", 0u8),
        ("/manifests/", 1),
        ("/referrers/", 2),
        ("/blobs/", 3),
    ] {
        let Some(i) = rest.rfind(marker) else {
            continue;
        };
        let (name, tail) = (&rest[..i], &rest[i + marker.len()..]);
        if name.is_empty() {
            return None;
        }
        match make {
            0 => {
                let id = tail.strip_prefix('/').unwrap_or(tail);
                if id.contains('/') {
                    continue;
                }
                return Some(Route::Uploads(name, Some(id).filter(|s| !s.is_empty())));
            }
            _ if tail.is_empty() || tail.contains('/') => {}
            1 => return Some(Route::Manifest(name, tail)),
            2 => return Some(Route::Referrers(name, tail)),
            _ => return Some(Route::Blob(name, tail)),
        }
    }
    None
}

/// A query parameter, percent-decoded.
fn query(req: &Parts, key: &str) -> Option<String> {
    req.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
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

/// The `Range` header of an upload that holds `offset` bytes.
pub(crate) fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(Error::Internal(format!(
            "a request task failed: {e}"
        )))),
    }
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(ApiError::from)
}

fn json(v: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Sets headers, replacing any of the same name (a body's default
/// `Content-Type` among them).
fn set<const N: usize>(r: &mut Response, headers: [(header::HeaderName, HeaderValue); N]) {
    for (k, v) in headers {
        r.headers_mut().insert(k, v);
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A coarse route name for the metrics.
fn route_name(path: &str) -> &'static str {
    match parse(path) {
        Some(Route::Base) => "base",
        Some(Route::Catalog) => "catalog",
        Some(Route::Tags(_)) => "tags",
        Some(Route::Manifest(..)) => "manifests",
        Some(Route::Blob(..)) => "blobs",
        Some(Route::Uploads(..)) => "uploads",
        Some(Route::Referrers(..)) => "referrers",
        None if path == "/metrics" => "metrics",
        None => "other",
    }
}

fn content_length(h: &HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let metrics = Arc::clone(&app.metrics);
    metrics.bytes_in.fetch_add(
        content_length(req.headers()),
        std::sync::atomic::Ordering::Relaxed,
    );
    let r = if path == "/metrics" && method == Method::GET {
        let in_progress = app.max_uploads - app.uploads.available_permits();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            app.metrics.render(in_progress),
        )
            .into_response()
    } else {
        match dispatch(app, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    };
    if method != Method::HEAD {
        metrics.bytes_out.fetch_add(
            content_length(r.headers()),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    metrics.observe(
        route_name(&path),
        method.as_str(),
        r.status().as_u16(),
        started.elapsed(),
    );
    log::info!(
        "{method} {path} {} {:.1} ms",
        r.status().as_u16(),
        started.elapsed().as_secs_f64() * 1e3
    );
    r
}

async fn dispatch(app: Arc<App>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let path = req.uri.path().to_string();
    let Some(route) = parse(&path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!(
                "no API route at {}",
                crate::digest::truncate_for_message(&path)
            ),
        ));
    };
    let m = req.method.clone();
    let user = match &app.access {
        None => None,
        Some(access) => {
            let want = if m == Method::GET || m == Method::HEAD {
                Want::Read
            } else {
                Want::Write
            };
            let authz = req
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match access.check(authz, route.repo(), want) {
                Ok(u) => u,
                Err(Denied::Unauthenticated) => {
                    let mut e = ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "authentication required",
                    );
                    e.headers.push((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"ocidb\""),
                    ));
                    return Err(e);
                }
                Err(Denied::Forbidden) => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "DENIED",
                        "requested access to the resource is denied",
                    ))
                }
            }
        }
    };
    match (route, &m) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok((
            StatusCode::OK,
            [("Docker-Distribution-API-Version", "registry/2.0")],
            "{}",
        )
            .into_response()),
        (Route::Catalog, &Method::GET) => catalog(app, &req, user.as_deref()).await,
        (Route::Tags(name), &Method::GET) => tags(app, name, &req).await,
        (Route::Manifest(name, r), &Method::GET | &Method::HEAD) => {
            get_manifest(app, name, r, m == Method::HEAD).await
        }
        (Route::Manifest(name, r), &Method::PUT) => put_manifest(app, name, r, &req, body).await,
        (Route::Manifest(name, r), &Method::DELETE) => delete_manifest(app, name, r).await,
        (Route::Blob(name, d), &Method::GET | &Method::HEAD) => {
            get_blob(app, name, d, &req.headers, m == Method::HEAD).await
        }
        (Route::Blob(name, d), &Method::DELETE) => {
            let (repo, d) = (name.to_string(), digest(d)?);
            let s = Arc::clone(&app.store);
            blocking(move || s.unlink_blob(&repo, &d)).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Uploads(name, None), &Method::POST) => {
            start_upload(app, name, &req, body, user.as_deref()).await
        }
        (Route::Uploads(name, Some(id)), &Method::PATCH) => {
            patch_upload(app, name, id, &req, body).await
        }
        (Route::Uploads(name, Some(id)), &Method::PUT) => {
            put_upload(app, name, id, &req, body).await
        }
        (Route::Uploads(name, Some(id)), &Method::GET) => {
            let st = upload_in(&app, name, id).await?;
            Ok(upload_response(
                StatusCode::NO_CONTENT,
                name,
                &st.id,
                st.offset,
            ))
        }
        (Route::Uploads(name, Some(id)), &Method::DELETE) => {
            upload_in(&app, name, id).await?;
            let (s, id) = (Arc::clone(&app.store), id.to_string());
            blocking(move || s.cancel_upload(&id)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Referrers(name, d), &Method::GET) => referrers(app, name, d, &req).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{m} is not supported here"),
        )),
    }
}

async fn catalog(app: Arc<App>, req: &Parts, user: Option<&str>) -> ApiResult {
    let n = parse_n(req)?;
    let last = query(req, "last");
    let s = Arc::clone(&app.store);
    let last2 = last.clone();
    let (mut repos, more) = blocking(move || s.repositories_page(last2.as_deref(), n)).await?;
    let last_listed = repos.last().cloned();
    if let Some(access) = &app.access {
        repos.retain(|r| access.can_read(user, r));
    }
    let mut r = json(&serde_json::json!({ "repositories": repos }));
    if more {
        if let (Some(n), Some(l)) = (n, last_listed) {
            r.headers_mut().insert(
                header::LINK,
                hv(&format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\"")),
            );
        }
    }
    Ok(r)
}

fn parse_n(req: &Parts) -> Result<Option<usize>, ApiError> {
    query(req, "n")
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!(
                        "n={} is not a count",
                        crate::digest::truncate_for_message(&v)
                    ),
                )
            })
        })
        .transpose()
}

async fn tags(app: Arc<App>, name: &str, req: &Parts) -> ApiResult {
    let n = parse_n(req)?;
    let last = query(req, "last");
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let want = n.map(|n| n.saturating_add(1));
    let mut tags = blocking(move || s.tags(&repo, last.as_deref(), want)).await?;
    let more = n.is_some_and(|n| tags.len() > n);
    if let Some(n) = n {
        tags.truncate(n);
    }
    let mut r = json(&serde_json::json!({ "name": name, "tags": tags }));
    if more {
        if let (Some(n), Some(l)) = (n, tags.last()) {
            r.headers_mut().insert(
                header::LINK,
                hv(&format!(
                    "</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\""
                )),
            );
        }
    }
    Ok(r)
}

fn reference(r: &str) -> Result<Reference, ApiError> {
    if r.contains(':') {
        Ok(Reference::Digest(digest(r)?))
    } else {
        crate::names::validate_tag(r)?;
        Ok(Reference::Tag(r.to_string()))
    }
}

async fn get_manifest(app: Arc<App>, name: &str, r: &str, head: bool) -> ApiResult {
    let reference = reference(r)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let wanted = reference.clone();
    let (info, body) = blocking(move || s.get_manifest(&repo, &wanted)).await?;
    if let Reference::Digest(d) = reference {
        if d != info.digest {
            return Err(ApiError::from(Error::ManifestNotFound {
                digest: d,
                hint: String::new(),
            }));
        }
    }
    let mt = info
        .media_type
        .clone()
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let headers = [
        (header::CONTENT_TYPE, hv(&mt)),
        (
            header::HeaderName::from_static("docker-content-digest"),
            hv(&info.digest.to_string()),
        ),
        (header::CONTENT_LENGTH, hv(&body.len().to_string())),
    ];
    if head {
        let mut r = StatusCode::OK.into_response();
        set(&mut r, headers);
        return Ok(r);
    }
    let mut r = (StatusCode::OK, body).into_response();
    set(&mut r, headers);
    Ok(r)
}

async fn put_manifest(app: Arc<App>, name: &str, r: &str, req: &Parts, body: Body) -> ApiResult {
    let reference = reference(r)?;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty());
    let limit = usize::try_from(MAX_MANIFEST_SIZE).unwrap_or(usize::MAX);
    let body = read_limited(body, limit)
        .await
        .map_err(|e| ApiError::from(Error::io("reading the manifest body", e)))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("a manifest over {MAX_MANIFEST_SIZE} bytes is refused"),
            )
        })?;
    let mut opts = ManifestOptions::default().media_type(content_type);
    match &reference {
        Reference::Tag(t) => opts = opts.tags([t.clone()]),
        Reference::Digest(d) => opts = opts.digest(*d),
    }
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let put = blocking(move || s.put_manifest(&repo, &body, &opts)).await?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/manifests/{}", put.digest)),
    );
    h.insert("docker-content-digest", hv(&put.digest.to_string()));
    if let Some(subject) = put.subject {
        h.insert("oci-subject", hv(&subject.to_string()));
    }
    Ok(resp)
}

async fn delete_manifest(app: Arc<App>, name: &str, r: &str) -> ApiResult {
    let reference = reference(r)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    match reference {
        Reference::Digest(d) => blocking(move || s.delete_manifest(&repo, &d)).await?,
        Reference::Tag(t) => {
            blocking(move || s.untag(&repo, &t)).await?;
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `bytes=START-END` (END may be empty: to the end).
fn parse_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = h.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UNKNOWN",
            format!(
                "range `{}` is not bytes=START-END within {size} bytes",
                crate::digest::truncate_for_message(v)
            ),
        )
    };
    let spec = v.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    if a.trim().is_empty() {
        // `bytes=-N`: the last N bytes.
        let n: u64 = b.trim().parse().map_err(|_| bad())?;
        if n == 0 || size == 0 {
            return Err(bad());
        }
        return Ok(Some((size - n.min(size), size - 1)));
    }
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = if b.trim().is_empty() {
        size.saturating_sub(1)
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    if start > end || start >= size {
        return Err(bad());
    }
    Ok(Some((start, end.min(size - 1))))
}

async fn get_blob(app: Arc<App>, name: &str, d: &str, h: &HeaderMap, head: bool) -> ApiResult {
    let d = digest(d)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let info = blocking(move || s.stat_in_repo(&repo, &d)).await?;
    let range = parse_range(h, info.size)?;
    let common = |len: u64| {
        [
            (header::CONTENT_LENGTH, hv(&len.to_string())),
            (header::CONTENT_TYPE, hv("application/octet-stream")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                hv(&d.to_string()),
            ),
            (header::ACCEPT_RANGES, hv("bytes")),
        ]
    };
    if head {
        let mut r = StatusCode::OK.into_response();
        set(&mut r, common(info.size));
        return Ok(r);
    }
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let (info, reader) = blocking(move || s.get_in_repo(&repo, &d, range)).await?;
    let (status, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, info.size),
    };
    let mut r = (status, stream(reader)).into_response();
    set(&mut r, common(len));
    if let Some((a, b)) = range {
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {a}-{b}/{}", info.size)),
        );
    }
    Ok(r)
}

fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(&range_value(offset)));
    h.insert("docker-upload-uuid", hv(id));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    r
}

fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{d}")));
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    r
}

/// A permit to carry blob bytes, or 429.
fn upload_permit(app: &App) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    app.uploads.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "too many uploads in progress; retry later",
        )
    })
}

async fn start_upload(
    app: Arc<App>,
    name: &str,
    req: &Parts,
    body: Body,
    user: Option<&str>,
) -> ApiResult {
    crate::names::validate_repository(name)?;
    if let Some(m) = query(req, "mount") {
        let d = digest(&m)?;
        // A source the client may not read is no source.
        let from =
            query(req, "from").filter(|f| app.access.as_ref().is_none_or(|a| a.can_read(user, f)));
        let (s, repo) = (Arc::clone(&app.store), name.to_string());
        if blocking(move || s.mount_blob(&repo, &d, from.as_deref()))
            .await?
            .is_some()
        {
            return Ok(blob_created(name, &d));
        }
        // Not mountable: an upload session instead, as the spec says.
    }
    if let Some(dg) = query(req, "digest") {
        let d = digest(&dg)?;
        let _permit = upload_permit(&app)?;
        let (s, repo) = (Arc::clone(&app.store), name.to_string());
        let opts = PutOptions::default().digest(d).repository(repo);
        let put = with_body(body, app.body_idle, move |r| s.put(r, &opts))
            .await
            .map_err(|e| ApiError::from(Error::Internal(e.to_string())))??;
        return Ok(blob_created(name, &put.digest));
    }
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let st = blocking(move || s.begin_upload(&repo, &UploadOptions::default())).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &st.id, 0))
}

/// The session, if it uploads to `name`.
async fn upload_in(
    app: &App,
    name: &str,
    id: &str,
) -> Result<crate::store::UploadStatus, ApiError> {
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let st = blocking(move || s.upload_status(&id2)).await?;
    if st.repository != name {
        return Err(ApiError::from(Error::UploadUnknown { id: id.to_string() }));
    }
    Ok(st)
}

/// `Content-Range: START-END`: where a chunk claims to start.
fn chunk_start(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = h.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let spec = v
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '=']);
    let (a, _) = spec.split_once('-').ok_or_else(|| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!(
                "Content-Range `{}` is not START-END",
                crate::digest::truncate_for_message(v)
            ),
        )
    })?;
    a.trim().parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!(
                "Content-Range start `{}` is not a number",
                crate::digest::truncate_for_message(a)
            ),
        )
    })
}

async fn patch_upload(app: Arc<App>, name: &str, id: &str, req: &Parts, body: Body) -> ApiResult {
    let st = upload_in(&app, name, id).await?;
    let offset = chunk_start(&req.headers)?.unwrap_or(st.offset);
    let _permit = upload_permit(&app)?;
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let st = with_body(body, app.body_idle, move |r| {
        s.append_upload(&id2, offset, r)
    })
    .await
    .map_err(|e| ApiError::from(Error::Internal(e.to_string())))??;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, st.offset))
}

async fn put_upload(app: Arc<App>, name: &str, id: &str, req: &Parts, body: Body) -> ApiResult {
    let st = upload_in(&app, name, id).await?;
    let Some(dg) = query(req, "digest") else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "finishing an upload needs ?digest=",
        ));
    };
    let d = digest(&dg)?;
    if let Some(start) = chunk_start(&req.headers)? {
        if start != st.offset {
            return Err(ApiError::from(Error::UploadOffset {
                id: id.to_string(),
                expected: st.offset,
                given: start,
            }));
        }
    }
    let _permit = upload_permit(&app)?;
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let put = with_body(body, app.body_idle, move |r| s.finish_upload(&id2, &d, r))
        .await
        .map_err(|e| ApiError::from(Error::Internal(e.to_string())))??;
    Ok(blob_created(name, &put.digest))
}

async fn referrers(app: Arc<App>, name: &str, d: &str, req: &Parts) -> ApiResult {
    let d = digest(d)?;
    let at = query(req, "artifactType");
    let cursor = query(req, "last").or_else(|| query(req, "cursor"));
    let n = parse_n(req)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let (at2, cursor2) = (at.clone(), cursor.clone());
    let page = blocking(move || {
        let q = ReferrersQuery::default()
            .artifact_type(at2.as_deref())
            .cursor(cursor2.as_deref())
            .limit(n);
        match s.referrers(&repo, &d, &q) {
            Err(e) if e.kind() == crate::ErrorKind::RepositoryUnknown => {
                Ok(crate::store::ReferrersPage {
                    index: crate::store::ImageIndex::new(Vec::new()),
                    filters_applied: q
                        .artifact_type
                        .map(|_| vec!["artifactType".to_string()])
                        .unwrap_or_default(),
                    next: None,
                })
            }
            other => other,
        }
    })
    .await?;
    let body = serde_json::to_vec(&page.index)
        .map_err(|e| ApiError::from(Error::Internal(e.to_string())))?;
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        hv("application/vnd.oci.image.index.v1+json"),
    );
    if !page.filters_applied.is_empty() {
        h.insert("oci-filters-applied", hv(&page.filters_applied.join(",")));
    }
    if let Some(next) = page.next {
        let mut link = format!("</v2/{name}/referrers/{d}?last={next}");
        if let Some(at) = &at {
            link.push_str(&format!("&artifactType={at}"));
        }
        if let Some(n) = n {
            link.push_str(&format!("&n={n}"));
        }
        link.push_str(">; rel=\"next\"");
        h.insert(header::LINK, hv(&link));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_slashes_in_names() {
        assert_eq!(parse("/v2/"), Some(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse("/v2/a/b/c/tags/list"), Some(Route::Tags("a/b/c")));
        assert_eq!(
            parse("/v2/a/blobs/b/manifests/v1"),
            Some(Route::Manifest("a/blobs/b", "v1"))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:00"),
            Some(Route::Blob("a/b", "sha256:00"))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/"),
            Some(Route::Uploads("a/b", None))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/abc"),
            Some(Route::Uploads("a/b", Some("abc")))
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:00"),
            Some(Route::Referrers("a", "sha256:00"))
        );
        assert_eq!(parse("/v2/blobs/sha256:00"), None);
        assert_eq!(parse("/other"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("sha256%3Aab"), "sha256:ab");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz"), "%zz");
    }
}
