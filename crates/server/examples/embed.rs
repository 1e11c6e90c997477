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

use axum::routing::get;
use axum::Router;
use ocidb::Store;
use ocidb_server::{Registry, ServeOptions};

/// The host's app: its own routes beside the registry's, and the job the
/// host spawns for scheduled GC and idle-upload cleanup.
pub fn app(store: Arc<Store>, opts: &ServeOptions) -> (Router, Registry) {
    let registry = Registry::new(store, opts);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/hello", get(|| async { "hello from the host" }))
        .merge(registry.router())
        // Operators only: in a real host, behind its own admin auth.
        .nest("/internal", registry.metrics_router());
    (app, registry)
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
