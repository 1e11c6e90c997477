//! A replica passes every write (and every request of an upload session,
//! whose state the primary keeps) to the primary, streaming both ways, so
//! that a client may talk to any member. It authenticates the request
//! first, as for a read; the primary checks the same credentials again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::TokioIo;

use crate::App;

/// Marks a request a replica forwarded.
const FORWARDED: &str = "x-ocidb-forwarded";

/// Whether `req` must go to the primary.
fn is_write(req: &Request) -> bool {
    !matches!(*req.method(), Method::GET | Method::HEAD)
        || req.uri().path().contains("/blobs/uploads/")
}

/// The middleware: on a replica, writes go to the primary; everything
/// else (and everything on the primary) is served here.
pub(crate) async fn forward_writes(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(member) = app.cluster.as_ref() else {
        return next.run(req).await;
    };
    if !member.forwards() {
        // The primary says how far the log is after a forwarded write, so
        // that the replica can wait to have applied it.
        let forwarded = req.headers().contains_key(FORWARDED);
        let mut r = next.run(req).await;
        if forwarded {
            let s = Arc::clone(&app.store);
            if let Ok(Ok(p)) = tokio::task::spawn_blocking(move || s.log_position()).await {
                r.headers_mut().insert(POSITION, HeaderValue::from(p));
            }
        }
        return r;
    }
    if !is_write(&req) {
        return next.run(req).await;
    }
    // One hop at most: members that disagree on who is the primary must
    // not pass a request round between them.
    if req.headers().contains_key(FORWARDED) {
        return unavailable(
            "this member is not the primary either (the cluster is changing primary)",
        );
    }
    let Some(primary) = member.primary_url() else {
        return unavailable("the cluster has no primary now (an election is under way)");
    };
    let mut r = match forward(&primary, req).await {
        Ok(r) => r,
        Err(why) => return unavailable(&format!("forwarding to the primary {primary}: {why}")),
    };
    // Read your writes: the answer waits until this replica holds the
    // write, so that the client's next read here finds it. Past the bound
    // (a replica far behind) it goes anyway; /readyz says it lags.
    let position = r
        .headers_mut()
        .remove(POSITION)
        .and_then(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()));
    if let Some(p) = position
        && !member.wait_applied(p, READ_YOUR_WRITES).await
    {
        tracing::warn!(
            "a forwarded write's log position {p} was not applied here within {READ_YOUR_WRITES:?}"
        );
    }
    r
}

/// How long a forwarded write's answer waits for the replica to apply it.
const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

/// The primary's log position after a forwarded write (stripped by the
/// replica).
const POSITION: &str = "x-ocidb-log-position";

fn unavailable(why: &str) -> Response {
    let mut r = crate::errors::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", why)
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn forward(primary: &str, req: Request) -> Result<Response, String> {
    let authority = primary
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{primary}` is not an http:// URL"))?
        .trim_end_matches('/')
        .to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("forwarded connection: {e}");
        }
    });
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), ToString::to_string);
    parts.uri = path
        .parse::<Uri>()
        .map_err(|e| format!("the request's path: {e}"))?;
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(header::HOST, v);
    }
    parts.headers.remove(header::CONNECTION);
    parts
        .headers
        .insert(FORWARDED, HeaderValue::from_static("1"));
    let resp = send
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| format!("the request: {e}"))?;
    Ok(resp.map(Body::new))
}
