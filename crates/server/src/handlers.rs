//! Handlers of the read side and manifests: catalog, tags, manifests,
//! blobs, referrers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::body::{read_limited, stream, BufferLimits, BufferRefusal, Delivery};
use super::errors::ApiError;
use super::http::*;
use super::App;
use ocidb::error::Error;
use ocidb::manifest::MAX_MANIFEST_SIZE;
use ocidb::names::Reference;
use ocidb::store::{HistoryQuery, ManifestOptions, ReferrersQuery, TagAction};

pub(super) async fn catalog(app: Arc<App>, req: &Parts, user: Option<&str>) -> ApiResult {
    let n = parse_n(req)?;
    let last = query(req, "last");
    let s = Arc::clone(&app.store);
    // Filtered, then paginated: a page, and the `last` of its link, name
    // only repositories the caller may read.
    let (access, user) = (app.access(), user.map(str::to_string));
    let (repos, more) = blocking(move || {
        s.repositories_page_where(last.as_deref(), n, |r| {
            access
                .as_ref()
                .is_none_or(|a| a.can_read(user.as_deref(), r))
        })
    })
    .await?;
    let last_listed = repos.last().cloned();
    let mut r = json(&serde_json::json!({ "repositories": repos }));
    if more && let (Some(n), Some(l)) = (n, last_listed) {
        r.headers_mut().insert(
            header::LINK,
            hv(&format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\"")),
        );
    }
    Ok(r)
}

pub(super) async fn tags(app: Arc<App>, name: &str, req: &Parts) -> ApiResult {
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
    if more && let (Some(n), Some(l)) = (n, tags.last()) {
        r.headers_mut().insert(
            header::LINK,
            hv(&format!(
                "</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\""
            )),
        );
    }
    Ok(r)
}

pub(super) fn reference(r: &str) -> Result<Reference, ApiError> {
    if r.contains(':') {
        Ok(Reference::Digest(digest(r)?))
    } else {
        ocidb::names::validate_tag(r)?;
        Ok(Reference::Tag(r.to_string()))
    }
}

pub(super) async fn get_manifest(
    app: Arc<App>,
    name: &str,
    r: &str,
    req: &Parts,
    head: bool,
) -> ApiResult {
    let reference = reference(r)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let wanted = reference.clone();
    let (info, body) = blocking(move || s.get_manifest(&repo, &wanted)).await?;
    if let Reference::Digest(d) = &reference
        && *d != info.digest
    {
        return Err(ApiError::from(Error::ManifestUnknown {
            digest: *d,
            hint: String::new(),
        }));
    }
    let mt = info
        .media_type
        .clone()
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    // By tag, a client that cannot read the manifest's type gets what
    // distribution answers: MANIFEST_UNKNOWN, naming the type. By digest the
    // client asked for exact bytes, which it gets whatever it accepts.
    if matches!(reference, Reference::Tag(_)) && !accepts(&req.headers, &mt) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("{name}:{r} is a {mt}, which the request's Accept header does not list"),
        ));
    }
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
    app.note_pull(name, info.digest);
    let mut r = (StatusCode::OK, body).into_response();
    set(&mut r, headers);
    Ok(r)
}

pub(super) async fn put_manifest(
    app: Arc<App>,
    name: &str,
    r: &str,
    req: &Parts,
    body: Body,
    user: Option<&str>,
) -> ApiResult {
    let reference = reference(r)?;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty());
    let limit = usize::try_from(MAX_MANIFEST_SIZE).unwrap_or(usize::MAX);
    let limits = BufferLimits {
        limit,
        idle: app.body_pace.idle,
        deadline: app.manifest_deadline,
        budget: &app.manifest_budget,
    };
    let (body, _held) = match read_limited(body, &limits).await {
        Ok(x) => x,
        Err(BufferRefusal::TooLarge) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("a manifest over {MAX_MANIFEST_SIZE} bytes is refused"),
            ))
        }
        Err(BufferRefusal::Busy) => {
            return Err(ApiError::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the registry holds as many manifest bytes in memory as it may; retry later",
                "1",
            ))
        }
        Err(BufferRefusal::Client(io)) => {
            return Err(ApiError::from(Error::io("reading the manifest body", io)))
        }
    };
    let tags = manifest_tags(&reference, req)?;
    let mut opts = ManifestOptions::default()
        .media_type(content_type)
        .children(app.children)
        .tags(tags.iter().cloned())
        .user(user.map(str::to_string));
    if let Reference::Digest(d) = &reference {
        opts = opts.digest(*d);
    }
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let put = blocking(move || s.put_manifest(&repo, &body, &opts)).await?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    // One `OCI-Tag` per tag applied: every tag was applied in the same
    // commit as the manifest, or the request failed whole.
    if matches!(reference, Reference::Digest(_)) {
        for t in &tags {
            h.append("oci-tag", hv(t));
        }
    }
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/manifests/{}", put.digest)),
    );
    h.insert("docker-content-digest", hv(&put.digest.to_string()));
    if let Some(subject) = put.subject {
        h.insert("oci-subject", hv(&subject.to_string()));
    }
    // A tag moved off another manifest says so: a push that moved a tag
    // by mistake is told while the former target can still be restored.
    let mut budget = MAX_WARNING_BYTES;
    for (tag, old) in &put.moved {
        let w = format!(
            "299 - \"tag {tag} moved from {old}; `ocidb history {name}:{tag}` lists its former targets\""
        );
        if w.len() > budget {
            break;
        }
        budget -= w.len();
        h.append(header::WARNING, hv(&w));
    }
    Ok(resp)
}

/// 200 with `v` as an OCI image index body.
fn index_response(v: &impl serde::Serialize) -> ApiResult {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::from(Error::Internal(e.to_string())))?;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        hv("application/vnd.oci.image.index.v1+json"),
    );
    Ok(r)
}

/// The spec's cap on the warning bytes of one response.
const MAX_WARNING_BYTES: usize = 4096;

/// The most history events one page of the tag-history API returns.
const MAX_HISTORY_PAGE: usize = 1000;

/// `GET /v2/<name>/_oci/tag-history/<tag>` (the `_oci` extension's
/// tag-history component): an OCI index of the tag's events, newest
/// first, each annotated with its time and `created` or `deleted`.
pub(super) async fn tag_history(app: Arc<App>, name: &str, tag: &str, req: &Parts) -> ApiResult {
    ocidb::names::validate_tag(tag)?;
    let n = parse_n(req)?.unwrap_or(100).min(MAX_HISTORY_PAGE);
    let time = |key: &str| -> Result<Option<u64>, ApiError> {
        query(req, key)
            .map(|v| {
                ocidb::clock::parse_rfc3339(&v).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "UNSUPPORTED",
                        format!(
                            "{key}={} is not an RFC 3339 time",
                            ocidb::text::quote_untrusted(&v)
                        ),
                    )
                })
            })
            .transpose()
    };
    let cursor = query(req, "last")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!(
                        "last={} is not a cursor this registry gave",
                        ocidb::text::quote_untrusted(&v)
                    ),
                )
            })
        })
        .transpose()?;
    let filter = query(req, "digest").map(|d| digest(&d)).transpose()?;
    let hq = HistoryQuery::default()
        .before_ms(time("before")?)
        .since_ms(time("since")?)
        .digest(filter)
        .cursor(cursor)
        .limit(n);
    let page = if n == 0 {
        ocidb::store::HistoryPage {
            events: Vec::new(),
            next: None,
        }
    } else {
        let (s, repo, t) = (Arc::clone(&app.store), name.to_string(), tag.to_string());
        blocking(move || s.tag_history(&repo, &t, &hq)).await?
    };
    let manifests: Vec<serde_json::Value> = page
        .events
        .iter()
        .map(|e| {
            serde_json::json!({
                "mediaType": e.media_type.as_deref().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
                "size": e.size,
                "digest": e.digest,
                "annotations": {
                    "org.opencontainers.distribution.tag.timestamp": ocidb::clock::rfc3339(e.time_ms),
                    "org.opencontainers.distribution.tag.event": match e.action {
                        TagAction::Created => "created",
                        TagAction::Deleted => "deleted",
                    },
                },
            })
        })
        .collect();
    let mut r = index_response(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))?;
    let h = r.headers_mut();
    if let Some(next) = page.next {
        // The filters carry over; `last` is this registry's own cursor.
        let mut link = format!("/v2/{name}/_oci/tag-history/{tag}?n={n}&last={next}");
        for key in ["before", "since", "digest"] {
            if let Some(v) = query(req, key) {
                link.push_str(&format!("&{key}={}", encode(&v)));
            }
        }
        h.insert(header::LINK, hv(&format!("<{link}>; rel=\"next\"")));
    }
    Ok(r)
}

/// The most `?tag=` parameters one manifest PUT may carry (the spec asks
/// for at least 10; past this, 414).
pub(super) const MAX_TAG_PARAMS: usize = 100;

/// The tags a manifest PUT applies: the reference when it is a tag, and
/// every `?tag=` parameter (distribution-spec 1.2: tags pushed with a
/// manifest by digest), each validated, duplicates once.
fn manifest_tags(reference: &Reference, req: &Parts) -> Result<Vec<String>, ApiError> {
    let params = query_all(req, "tag");
    if params.len() > MAX_TAG_PARAMS {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "TAG_INVALID",
            format!(
                "the request carries {} tag parameters; at most {MAX_TAG_PARAMS} are applied in one request",
                params.len()
            ),
        ));
    }
    let mut tags: Vec<String> = Vec::with_capacity(params.len() + 1);
    if let Reference::Tag(t) = reference {
        tags.push(t.clone());
    }
    for t in params {
        ocidb::names::validate_tag(&t)?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(tags)
}

pub(super) async fn delete_manifest(
    app: Arc<App>,
    name: &str,
    r: &str,
    user: Option<&str>,
) -> ApiResult {
    let reference = reference(r)?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let user = user.map(str::to_string);
    match reference {
        Reference::Digest(d) => blocking(move || s.delete_manifest(&repo, &d)).await?,
        Reference::Tag(t) => {
            blocking(move || s.untag_by(&repo, &t, user.as_deref())).await?;
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `bytes=START-END` (END may be empty: to the end).
pub(super) fn parse_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = h.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UNKNOWN",
            format!(
                "range `{}` is not bytes=START-END within {size} bytes",
                ocidb::text::quote_untrusted(v)
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

pub(super) async fn get_blob(
    app: Arc<App>,
    name: &str,
    d: &str,
    h: &HeaderMap,
    head: bool,
    how: Delivery,
) -> ApiResult {
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
    // A permit per body being sent, held by the body: past the cap the
    // client is told to come back rather than queue on the server.
    let permit = Arc::clone(&app.downloads).try_acquire_owned().map_err(|_| {
        ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} blob downloads are in progress, the most this registry sends at once; retry later",
                app.max_downloads
            ),
            "1",
        )
    })?;
    let (s, repo) = (Arc::clone(&app.store), name.to_string());
    let (info, reader) = blocking(move || s.get_in_repo(&repo, &d, range)).await?;
    let (status, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, info.size),
    };
    let mut r = (
        status,
        stream(reader, permit, how, format!("blob {d} of {name}")),
    )
        .into_response();
    set(&mut r, common(len));
    if let Some((a, b)) = range {
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {a}-{b}/{}", info.size)),
        );
    }
    Ok(r)
}

pub(super) async fn referrers(app: Arc<App>, name: &str, d: &str, req: &Parts) -> ApiResult {
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
            Err(e) if e.kind() == ocidb::ErrorKind::RepositoryUnknown => {
                Ok(ocidb::store::ReferrersPage {
                    index: ocidb::store::ImageIndex::new(Vec::new()),
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
    let mut r = index_response(&page.index)?;
    let h = r.headers_mut();
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
