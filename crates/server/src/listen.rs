//! The connection loop: accept, optional TLS handshake, then HTTP/1.1 with a
//! deadline on request headers. axum's own `serve` sets no hyper timer, so a
//! client that dribbles its headers would hold a connection for ever; this
//! loop sets one, caps open connections, and drains them on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How long requests in flight get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(30);

/// The client's address, attached to each request for the access log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub std::net::SocketAddr);

/// Marks a request that came over a plain TCP connection of this server's
/// own loop: its response bodies go to the socket through hyper's
/// vectored writes, so a blob may be sent from a file mapping
/// (`body::Delivery::Mapped`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainTcp;

/// The limits a connection runs under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// Open connections; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The read buffer, which bounds the size of a request's headers.
    pub max_header_bytes: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// How long a write to the client may stay blocked (the client reads
    /// nothing) before the connection is dropped.
    pub write_stall: Duration,
}

/// One open connection of a client address, counted until dropped.
struct PerClient {
    map: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl PerClient {
    /// Counts a connection from `ip`, or `None` when it has `max` open.
    fn take(
        map: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
        max: usize,
    ) -> Option<PerClient> {
        let mut m = map.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerClient {
            map: Arc::clone(map),
            ip,
        })
    }
}

impl Drop for PerClient {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A connection whose writes fail once the client has read nothing for
/// `stall`: a download nobody reads ends instead of holding its
/// connection, its buffers and its download permit for ever.
struct StallDeadline<T> {
    inner: T,
    stall: Duration,
    blocked_since: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallDeadline<T> {
    fn new(inner: T, stall: Duration) -> Self {
        StallDeadline {
            inner,
            stall,
            blocked_since: None,
        }
    }

    /// Pending: arm (or check) the deadline; anything else disarms it.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        if r.is_ready() {
            self.blocked_since = None;
            return r;
        }
        let stall = self.stall;
        let deadline = self
            .blocked_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", stall.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and gives the open connections [`DRAIN`] to finish.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    tls: Option<crate::tls::SharedTls>,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Body chunks go to `writev` as they are, never copied into hyper's
        // buffer: a mapped blob window is read by the kernel alone (see
        // `body::Delivery::Mapped`).
        .writev(true)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file handles, most likely: wait rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One address may hold only so many connections: silent ones
        // from a single client no longer starve everyone else.
        let Some(per_client) = PerClient::take(&clients, peer.ip(), limits.max_per_client) else {
            tracing::debug!(
                "closing a connection from {peer}: it has {} open",
                limits.max_per_client
            );
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let plain = tls.is_none();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(Peer(peer));
            if plain {
                req.extensions_mut().insert(PlainTcp);
            }
            let mut router = router.clone();
            // The router is always ready (axum documents poll_ready as such).
            tower_service::Service::call(&mut router, req)
        });
        // The certificate in force when the connection arrives: a reload
        // changes it for the next handshake, never for one under way.
        let tls = tls.as_ref().map(crate::tls::SharedTls::current);
        let (http, watcher) = (Arc::clone(&http), graceful.watcher());
        tokio::spawn(async move {
            let (_slot, _per_client) = (slot, per_client);
            let served = match tls {
                None => {
                    let io = StallDeadline::new(tcp, limits.write_stall);
                    let conn = http.serve_connection(TokioIo::new(io), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!("TLS handshake with {peer}: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::info!("TLS handshake with {peer}: timed out");
                            return;
                        }
                    };
                    let io = StallDeadline::new(stream, limits.write_stall);
                    let conn = http.serve_connection(TokioIo::new(io), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutting down: requests still in flight after {DRAIN:?}, abandoning them");
    }
}

/// Serves `router` on a Unix socket (the store's admin socket) until
/// `shutdown` resolves: few connections, the same header deadline, no TLS
/// (the socket file's mode is the access control).
pub(crate) async fn serve_unix(
    listener: tokio::net::UnixListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(16));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accepting on the admin socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let mut router = router.clone();
            tower_service::Service::call(&mut router, req)
        });
        let http = Arc::clone(&http);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("admin socket connection: {e}");
            }
        });
    }
}
