//! Handlers of blob uploads: monolithic, chunked, mounts, status, cancel.

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::body::with_body;
use super::errors::{range_value, ApiError};
use super::http::*;
use super::App;
use ocidb::digest::{Algorithm, Digest};
use ocidb::error::Error;
use ocidb::store::{PutOptions, UploadOptions};

pub(super) fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
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

pub(super) fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{d}")));
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    r
}

/// A permit to carry blob bytes, or 429.
pub(super) fn upload_permit(app: &App) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    app.uploads.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "too many uploads in progress; retry later",
        )
    })
}

pub(super) async fn start_upload(
    app: Arc<App>,
    name: &str,
    req: &Parts,
    body: Body,
    user: Option<&str>,
) -> ApiResult {
    ocidb::names::validate_repository(name)?;
    let algorithm = digest_algorithm(req)?;
    if let Some(m) = query(req, "mount") {
        let d = digest(&m)?;
        // A source the client may not read is no source.
        let from = query(req, "from").filter(|f| app.access().is_none_or(|a| a.can_read(user, f)));
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
        let put = with_body(body, app.body_pace, move |r| s.put(r, &opts)).await?;
        return Ok(blob_created(name, &put.digest));
    }
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let mut opts = UploadOptions::default().lease_ttl(app.upload_lease);
    if let Some(a) = algorithm {
        opts = opts.algorithm(a);
    }
    let st = blocking(move || s.begin_upload(&repo, &opts)).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &st.id, 0))
}

/// `?digest-algorithm=` of an upload start (distribution-spec 1.2): the
/// algorithm the session hashes with as the bytes arrive, so that a finish
/// by a digest of that algorithm needs no second read.
fn digest_algorithm(req: &Parts) -> Result<Option<Algorithm>, ApiError> {
    let Some(name) = query(req, "digest-algorithm") else {
        return Ok(None);
    };
    Algorithm::from_name(&name).map(Some).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!(
                "digest-algorithm `{}` is not one this registry hashes with (sha256, sha512)",
                ocidb::text::quote_untrusted(&name)
            ),
        )
    })
}

/// The session, if it uploads to `name`.
pub(super) async fn upload_in(
    app: &App,
    name: &str,
    id: &str,
) -> Result<ocidb::store::UploadStatus, ApiError> {
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let st = blocking(move || s.upload_status(&id2)).await?;
    if st.repository != name {
        return Err(ApiError::from(Error::UploadUnknown { id: id.to_string() }));
    }
    Ok(st)
}

/// `Content-Range: START-END`: where a chunk claims to start.
pub(super) fn chunk_start(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
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
                ocidb::text::quote_untrusted(v)
            ),
        )
    })?;
    a.trim().parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!(
                "Content-Range start `{}` is not a number",
                ocidb::text::quote_untrusted(a)
            ),
        )
    })
}

pub(super) async fn patch_upload(
    app: Arc<App>,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
) -> ApiResult {
    let st = upload_in(&app, name, id).await?;
    let offset = chunk_start(&req.headers)?.unwrap_or(st.offset);
    let _permit = upload_permit(&app)?;
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let st = with_body(body, app.body_pace, move |r| {
        s.append_upload(&id2, offset, r)
    })
    .await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, st.offset))
}

pub(super) async fn put_upload(
    app: Arc<App>,
    name: &str,
    id: &str,
    req: &Parts,
    body: Body,
) -> ApiResult {
    let st = upload_in(&app, name, id).await?;
    let Some(dg) = query(req, "digest") else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "finishing an upload needs ?digest=",
        ));
    };
    let d = digest(&dg)?;
    if let Some(start) = chunk_start(&req.headers)?
        && start != st.offset
    {
        return Err(ApiError::from(Error::UploadOffset {
            id: id.to_string(),
            expected: st.offset,
            given: start,
        }));
    }
    let _permit = upload_permit(&app)?;
    let (s, id2) = (Arc::clone(&app.store), id.to_string());
    let put = with_body(body, app.body_pace, move |r| s.finish_upload(&id2, &d, r)).await?;
    Ok(blob_created(name, &put.digest))
}
