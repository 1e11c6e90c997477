//! The routes of the distribution API. Repository names contain `/`, so
//! the path tail is parsed here rather than by a router pattern.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use super::auth::{Denied, Want};
use super::body::Delivery;
use super::errors::ApiError;
use super::handlers::*;
use super::http::*;
use super::listen::{Peer, PlainTcp};
use super::uploads::*;
use super::App;

/// The distribution API's routes (`/v2/…`), with the access log and the
/// metrics as the outer layer and authentication as the inner one. Paths
/// outside `/v2` are not routed, so the router merges with a host's own.
pub(crate) fn api_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2", any(api))
        .route("/v2/", any(api))
        .route("/v2/{*rest}", any(api))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            crate::cluster::forward::forward_writes,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(app)
}

/// `ocidb serve`'s API listener: the API, `GET /metrics` behind the API's
/// credentials, the admin API for users with an admin grant, and
/// `NAME_UNKNOWN` for every other path.
pub(crate) fn serve_router(app: Arc<App>, health: bool) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics_with_credentials))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(Arc::clone(&app));
    let admin = admin_api(Arc::clone(&app))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), admin_only))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe));
    // Paths no route serves are counted and logged too, through a
    // fallback with the same outer layer as the API.
    let unrouted = Router::new()
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(Arc::clone(&app));
    let mut router = api_router(Arc::clone(&app)).merge(metrics).merge(admin);
    if health {
        router = router.merge(health_router(app));
    }
    router.fallback_service(unrouted)
}

/// `GET /metrics` without credentials: for the admin listener, or a host
/// that mounts it where only operators reach.
pub(crate) fn metrics_router(app: Arc<App>) -> Router {
    async fn metrics(State(app): State<Arc<App>>) -> Response {
        render_metrics(&app).await
    }
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// `GET /livez` (the process answers and its store is not poisoned) and
/// `GET /readyz` (the store takes writes and its blob backend answered
/// within the last seconds), without credentials and outside the access
/// log: probes would drown it.
pub(crate) fn health_router(app: Arc<App>) -> Router {
    fn unavailable(what: &str, why: &str) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: {}\n", ocidb::text::quote_untrusted(why)),
        )
            .into_response()
    }
    async fn livez(State(app): State<Arc<App>>) -> Response {
        match super::health::not_live(&app.store) {
            None => (StatusCode::OK, "alive\n").into_response(),
            Some(why) => unavailable("not alive (restart to reopen the store)", &why),
        }
    }
    async fn readyz(State(app): State<Arc<App>>) -> Response {
        match super::health::not_ready(&app.store, &app.health, app.cluster.as_deref()).await {
            None => match &app.cluster {
                None => (StatusCode::OK, "ready\n").into_response(),
                Some(m) => {
                    let (head, applied) = m.positions();
                    let role = match m.role() {
                        crate::cluster::Role::Primary { epoch } => {
                            format!("primary, epoch {epoch}")
                        }
                        _ => "replica".to_string(),
                    };
                    let text = format!(
                        "ready ({role}; log position {applied} of {head}, lag {})\n",
                        m.lag()
                    );
                    (StatusCode::OK, text).into_response()
                }
            },
            Some(why) => unavailable("not ready", &why),
        }
    }
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// The admin listener's routes (`--admin-addr`, and the store's socket):
/// `GET /metrics` and the admin API, without credentials, for operators
/// on a trusted network; each admin request is in the access log.
pub(crate) fn admin_router(app: Arc<App>) -> Router {
    async fn admin_other() -> Response {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "the admin listener serves GET /metrics and /admin/v1/…",
        )
        .into_response()
    }
    let admin = admin_api(Arc::clone(&app))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe));
    metrics_router(app).merge(admin).fallback(admin_other)
}

/// The admin API's routes under their prefix, with no layer.
fn admin_api(app: Arc<App>) -> Router {
    Router::new().nest_service(super::admin::PREFIX, super::admin::router(app))
}

/// The admin API on the API listener: a user with a `USER * admin` grant
/// only; without access control, no one (an open registry must not hand
/// GC and fsck to the world).
async fn admin_only(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(access) = app.access() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "the admin API is served on --admin-addr and the store's socket; on this listener only with access control and a `USER * admin` grant",
        )
        .into_response();
    };
    match signed_in(&access, req.headers(), peer_of(&req)).await {
        Ok(u) if access.is_admin(Some(&u)) => with_user(next.run(req).await, Some(u)),
        Ok(u) => with_user(denied(Denied::Forbidden).into_response(), Some(u)),
        Err(refused) => refused,
    }
}

/// The request's `Authorization` header, when it is text.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The user `access` signs the request in as, or the answer that refuses
/// it (no credentials: 401), carrying the name a failed login claimed for
/// the access log.
async fn signed_in(
    access: &super::Access,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> Result<String, Response> {
    let authz = authorization(headers);
    match access.authenticate(authz, peer.map(|p| p.ip())).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(denied(Denied::Unauthenticated).into_response()),
        Err(d) => Err(with_claimed(
            denied(d).into_response(),
            authz.and_then(super::auth::claimed_user),
        )),
    }
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
    /// `/v2/<name>/_oci/tag-history/<tag>` (the `_oci` extension).
    TagHistory(&'a str, &'a str),
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
            | Route::Referrers(n, _)
            | Route::TagHistory(n, _) => Some(n),
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
        ("/_oci/tag-history/", 4u8),
        ("/blobs/uploads", 0),
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
            4 => return Some(Route::TagHistory(name, tail)),
            _ => return Some(Route::Blob(name, tail)),
        }
    }
    None
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
        Some(Route::TagHistory(..)) => "tag-history",
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

/// Who made a request, as the authentication layer found it (`None`:
/// anonymous, or access control is off). Set on the request for the
/// handlers and on the response for the access log.
#[derive(Clone, Debug, Default)]
pub(crate) struct User(pub Option<String>);

/// The client's address: from `ocidb serve`'s connection loop, or from
/// axum's `ConnectInfo` when a host serves the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
fn peer_of(req: &Request) -> Option<std::net::SocketAddr> {
    req.extensions().get::<Peer>().map(|p| p.0).or_else(|| {
        req.extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0)
    })
}

/// The outer layer: counts the request in the metrics and writes one
/// access-log event for it.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let request_id = request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = peer_of(&req);
    let bytes_in = content_length(req.headers());
    let started = std::time::Instant::now();
    let metrics = Arc::clone(&app.metrics);
    metrics
        .bytes_in
        .fetch_add(bytes_in, std::sync::atomic::Ordering::Relaxed);
    let mut r = next.run(req).await;
    r.headers_mut().insert(X_REQUEST_ID, hv(&request_id));
    let user = r.extensions_mut().remove::<User>().and_then(|u| u.0);
    // A refused login logs the name it claimed, marked as not verified.
    let (user, verified) = match (user, r.extensions_mut().remove::<Claimed>()) {
        (Some(u), _) => (Some(u), true),
        (None, Some(Claimed(c))) => (Some(c), false),
        (None, None) => (None, true),
    };
    // The body's exact size where known (JSON, manifests, whole blobs), else
    // its Content-Length (streamed blobs).
    let bytes_out = if method == Method::HEAD {
        0
    } else {
        axum::body::HttpBody::size_hint(r.body())
            .exact()
            .unwrap_or_else(|| content_length(r.headers()))
    };
    metrics
        .bytes_out
        .fetch_add(bytes_out, std::sync::atomic::Ordering::Relaxed);
    metrics.observe(
        route_name(&path),
        method_label(&method),
        r.status().as_u16(),
        started.elapsed(),
    );
    // One structured event per request: with OCIDB_LOG_FORMAT=json each
    // field is a JSON key. The path is the client's; it is cut short so a
    // long one cannot flood the log.
    let status = r.status().as_u16();
    tracing::info!(
        target: "ocidb::access",
        request_id = %request_id,
        peer = peer.map(|p| p.to_string()).unwrap_or_default(),
        user = user.as_deref().unwrap_or("-"),
        verified,
        method = %method,
        path = %ocidb::text::quote_untrusted(&path),
        route = route_name(&path),
        status,
        ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        bytes_in,
        bytes_out,
        "{method} {} {status}",
        ocidb::text::quote_untrusted(&path),
    );
    r
}

/// The header that carries a request's id, both ways.
const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The client's `X-Request-Id` when it is a plausible id (1 to 128
/// characters of letters, digits and `._:-`, so it is safe in logs and
/// headers), else a new one: this process's random prefix and a counter.
fn request_id(headers: &HeaderMap) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(v) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return v.to_string();
    }
    // std's randomly keyed hasher: a random prefix without a dependency,
    // so that ids from two runs of the server do not collide in one log.
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::BuildHasher as _;
        let r = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        format!("{:012x}", r & 0xffff_ffff_ffff)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{n}")
}

/// The inner layer: checks the repository name, then (with access
/// control on) the credentials and the grant, before any handler runs.
async fn authenticate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let route = parse(&path);
    // The name is checked before any grant is matched against it: a grant
    // pattern never sees a name the API would refuse anyway.
    if let Some(name) = route.as_ref().and_then(Route::repo)
        && let Err(e) = ocidb::names::validate_repository(name)
    {
        return ApiError::from(e).into_response();
    }
    let user = match (&app.access(), &route) {
        (Some(access), Some(route)) => {
            let want = if req.method() == Method::GET || req.method() == Method::HEAD {
                Want::Read
            } else {
                Want::Write
            };
            let authz = authorization(req.headers());
            let peer = peer_of(&req).map(|p| p.ip());
            match access.authenticate(authz, peer).await {
                Ok(u) => match access.authorize(u.as_deref(), route.repo(), want) {
                    Ok(()) => u,
                    Err(d) => return with_user(denied(d).into_response(), u),
                },
                // The name a refused login claimed, so that failed logins
                // can be traced (marked unverified in the log).
                Err(d) => {
                    let claimed = authz.and_then(super::auth::claimed_user);
                    return with_claimed(denied(d).into_response(), claimed);
                }
            }
        }
        _ => None,
    };
    req.extensions_mut().insert(User(user.clone()));
    with_user(next.run(req).await, user)
}

fn with_user(mut r: Response, user: Option<String>) -> Response {
    r.extensions_mut().insert(User(user));
    r
}

/// The user name a refused login claimed (not verified), for the log.
#[derive(Clone, Debug)]
struct Claimed(String);

fn with_claimed(mut r: Response, claimed: Option<String>) -> Response {
    if let Some(c) = claimed {
        r.extensions_mut().insert(Claimed(c));
    }
    r
}

/// The answer to a path no route serves.
fn no_api_route(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("no API route at {}", ocidb::text::quote_untrusted(path)),
    )
}

/// Every path outside the API.
async fn no_route(req: Request) -> Response {
    no_api_route(req.uri().path()).into_response()
}

/// `GET /metrics` on the API listener: with access control on, any user's
/// valid credentials (`--admin-addr` serves them without, on its own
/// listener).
async fn metrics_with_credentials(State(app): State<Arc<App>>, req: Request) -> Response {
    let Some(access) = app.access() else {
        return render_metrics(&app).await;
    };
    match signed_in(&access, req.headers(), peer_of(&req)).await {
        Ok(u) => with_user(render_metrics(&app).await, Some(u)),
        Err(refused) => refused,
    }
}

async fn api(State(app): State<Arc<App>>, req: Request) -> Response {
    match dispatch(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The answer to a request that authentication or a grant refused.
fn denied(d: Denied) -> ApiError {
    match d {
        Denied::Throttled => ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins for this user or address; retry later",
            "60",
        ),
        Denied::Unauthenticated => {
            let mut e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            e.headers.push((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ocidb\""),
            ));
            e
        }
        Denied::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
        ),
    }
}

/// A method as a metric label: one of a closed set, so that a client
/// inventing methods cannot grow the metrics (hyper accepts any token).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The Prometheus text of `app`'s metrics, with the store's gauges (table
/// lengths: no scan, whatever the store's size).
pub(super) async fn render_metrics(app: &Arc<App>) -> Response {
    use std::sync::atomic::Ordering;
    let s = Arc::clone(&app.store);
    let counts = match tokio::task::spawn_blocking(move || s.counts()).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::warn!("metrics: reading the store's counts: {e}");
            None
        }
        Err(_) => None,
    };
    let stats_at = app.metrics.stats_at_s.load(Ordering::Relaxed);
    let gauges = super::metrics::Gauges {
        uploads_in_progress: (app.max_uploads - app.uploads.available_permits()) as u64,
        counts,
        unique_bytes: (stats_at > 0).then(|| app.metrics.unique_bytes.load(Ordering::Relaxed)),
        stats_at_s: (stats_at > 0).then_some(stats_at),
        last_gc: app.jobs.last_gc(),
        cluster: app.cluster.as_ref().map(|m| {
            let (head, applied) = m.positions();
            match m.role() {
                crate::cluster::Role::Primary { epoch } => (true, epoch, head, applied),
                _ => (false, 0, head, applied),
            }
        }),
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&gauges),
    )
        .into_response()
}

/// Runs the request, which the authentication layer let through.
async fn dispatch(app: Arc<App>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let path = req.uri.path().to_string();
    let Some(route) = parse(&path) else {
        return Err(no_api_route(&path));
    };
    let m = req.method.clone();
    let user = req.extensions.get::<User>().and_then(|u| u.0.clone());
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
            get_manifest(app, name, r, &req, m == Method::HEAD).await
        }
        (Route::Manifest(name, r), &Method::PUT) => {
            put_manifest(app, name, r, &req, body, user.as_deref()).await
        }
        (Route::Manifest(name, r), &Method::DELETE) => {
            delete_manifest(app, name, r, user.as_deref()).await
        }
        (Route::Blob(name, d), &Method::GET | &Method::HEAD) => {
            let how = match req.extensions.get::<PlainTcp>() {
                Some(_) => Delivery::Mapped,
                None => Delivery::Copied,
            };
            get_blob(app, name, d, &req.headers, m == Method::HEAD, how).await
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
        (Route::TagHistory(name, t), &Method::GET) => tag_history(app, name, t, &req).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{m} is not supported here"),
        )),
    }
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
            parse("/v2/a/manifests/_oci/tag-history/v1"),
            Some(Route::TagHistory("a/manifests", "v1"))
        );
        assert_eq!(parse("/v2/a/_oci/tag-history/v1/x"), None);
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
}
