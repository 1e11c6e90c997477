//! A host's own axum app with ocidb's registry mounted in it: the host
//! keeps its routes (`/healthz`, `/hello`) and its runtime; the registry
//! answers `/v2/…` with its authentication, metrics and access log as
//! layers, and its maintenance job runs on the host's runtime.
//!
//! ```text
//! cargo run -p ocidb-server --example embed -- ./store 127.0.0.1:5000
//! ```
//!
//! `crates/server/tests/embed.rs` runs the OCI conformance suite against
//! this app.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ocidb::{Digest, Store};
use ocidb_server::{Registry, ServeOptions};

/// The host's app: its own routes beside the registry's, and the job the
/// host spawns for scheduled GC and idle-upload cleanup.
pub fn app(store: Arc<Store>, opts: &ServeOptions) -> (Router, Registry) {
    let registry = Registry::new(Arc::clone(&store), opts);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/hello", get(|| async { "hello from the host" }))
        .route("/host/size/{digest}", get(blob_size).with_state(store))
        .merge(registry.router())
        .merge(registry.health_router())
        // Operators only: in a real host, behind its own admin auth.
        .nest("/internal", registry.metrics_router());
    (app, registry)
}

/// A route of the host's own on the same store: a blob's size. Engine
/// errors answer with the registry's status and OCI code
/// (`ErrorKind::http_status`, `ErrorKind::oci_code`), so that the host's
/// routes fail the way the registry's do.
async fn blob_size(State(store): State<Arc<Store>>, Path(digest): Path<String>) -> Response {
    // The store's calls block: run them off the async workers.
    let stat = tokio::task::spawn_blocking(move || {
        let d = Digest::parse(&digest)?;
        store.stat(&d)
    })
    .await;
    match stat {
        Ok(Ok(info)) => json(
            StatusCode::OK,
            &serde_json::json!({"digest": info.digest, "size": info.size}),
        ),
        Ok(Err(e)) => {
            let kind = e.kind();
            let status = StatusCode::from_u16(kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::json!({"errors": [{"code": kind.oci_code(), "message": e.to_string()}]});
            json(status, &body)
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown` resolves, with the client's
/// address attached (the access log and the login throttle read it).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "./embed-store".to_string());
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:5000".to_string())
        .parse()?;
    let store = Arc::new(Store::create(&dir)?);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (app, registry) = app(store, &ServeOptions::default());
        tokio::spawn(registry.maintenance());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("serving {dir} on http://{}", listener.local_addr()?);
        serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
