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
use super::errors::ApiError;
use super::handlers::*;
use super::http::*;
use super::listen::Peer;
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
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(app)
}

/// `ocidb serve`'s API listener: the API, `GET /metrics` behind the API's
/// credentials, and `NAME_UNKNOWN` for every other path.
pub(crate) fn serve_router(app: Arc<App>, health: bool) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics_with_credentials))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(Arc::clone(&app));
    // Paths no route serves are counted and logged too, through a
    // fallback with the same outer layer as the API.
    let unrouted = Router::new()
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(Arc::clone(&app));
    let mut router = api_router(Arc::clone(&app)).merge(metrics);
    if health {
        router = router.merge(health_router(app));
    }
    router.fallback_service(unrouted)
}

/// `GET /metrics` without credentials: for the admin listener, or a host
/// that mounts it where only operators reach.
pub(crate) fn metrics_router(app: Arc<App>) -> Router {
    async fn metrics(State(app): State<Arc<App>>) -> Response {
        render_metrics(&app)
    }
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// `GET /livez` (the process answers) and `GET /readyz` (the store takes
/// writes: not poisoned by a failed write, its blob backend reachable at
/// open), without credentials and outside the access log: probes would
/// drown it.
pub(crate) fn health_router(app: Arc<App>) -> Router {
    async fn livez() -> Response {
        (StatusCode::OK, "alive\n").into_response()
    }
    async fn readyz(State(app): State<Arc<App>>) -> Response {
        let store = Arc::clone(&app.store);
        let checked = tokio::task::spawn_blocking(move || store.check_writable()).await;
        match checked {
            Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
            Ok(Err(e)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "not ready: {}\n",
                    ocidb::text::quote_untrusted(&e.to_string())
                ),
            )
                .into_response(),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the check failed\n",
            )
                .into_response(),
        }
    }
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// The admin listener's routes (`--admin-addr`): `GET /metrics` without
/// credentials, for a scraper on a trusted network.
pub(crate) fn admin_router(app: Arc<App>) -> Router {
    async fn admin_other() -> Response {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "the admin listener serves GET /metrics",
        )
        .into_response()
    }
    metrics_router(app).fallback(admin_other)
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
    let user = r.extensions_mut().remove::<User>().and_then(|u| u.0);
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
        peer = peer.map(|p| p.to_string()).unwrap_or_default(),
        user = user.as_deref().unwrap_or("-"),
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
    let user = match (&app.access, &route) {
        (Some(access), Some(route)) => {
            let want = if req.method() == Method::GET || req.method() == Method::HEAD {
                Want::Read
            } else {
                Want::Write
            };
            let authz = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let peer = peer_of(&req).map(|p| p.ip());
            match access.authenticate(authz, peer).await {
                Ok(u) => match access.authorize(u.as_deref(), route.repo(), want) {
                    Ok(()) => u,
                    Err(d) => return with_user(denied(d).into_response(), u),
                },
                Err(d) => return denied(d).into_response(),
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
    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match metrics_allowed(&app, authz.as_deref(), peer_of(&req).map(|p| p.ip())).await {
        Ok(()) => render_metrics(&app),
        Err(e) => e.into_response(),
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

/// The Prometheus text of `app`'s metrics.
pub(super) fn render_metrics(app: &App) -> Response {
    let in_progress = app.max_uploads - app.uploads.available_permits();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(in_progress),
    )
        .into_response()
}

/// With access control on, `/metrics` needs a user's valid credentials.
async fn metrics_allowed(
    app: &App,
    authz: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let Some(access) = &app.access else {
        return Ok(());
    };
    match access.authenticate(authz, peer).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(denied(Denied::Unauthenticated)),
        Err(d) => Err(denied(d)),
    }
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
}
