//! The OCI distribution API (v1.1) on an ocidb store, with axum on tokio:
//! a [`Registry`] whose [`Registry::router`] mounts in a host's own axum
//! app, or [`serve`], the whole server behind `ocidb serve`. Every engine
//! call runs on tokio's blocking pool; blob bodies stream both ways through
//! bounded channels, so memory stays bounded whatever their size.

mod admin;
mod auth;
mod base64;
mod body;
pub mod cluster;
mod errors;
mod handlers;
mod health;
mod http;
mod listen;
mod metrics;
mod routes;
mod tls;
mod uploads;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{
    CompactionStatus, FsckRequest, FsckState, GcRequest, RetentionRequest, ScrubRequest,
    PREFIX as ADMIN_PREFIX,
};
pub use auth::{basic_authorization, Access};
pub use tls::TlsFiles;
pub use webhooks::Webhook;

use ocidb::store::Store;

/// How to serve.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where to listen (default 127.0.0.1:5000).
    pub addr: SocketAddr,
    /// Run a GC this often while serving (`None`: never).
    pub gc_interval: Option<Duration>,
    /// The policy of those runs.
    pub gc_policy: ocidb::gc::GcPolicy,
    /// Cancel upload sessions idle this long (checked with each GC run,
    /// and every hour).
    pub upload_max_idle: Duration,
    /// Re-hash one slice of the blobs this often, going round the store
    /// ([`Store::scrub`]; `None`: never).
    pub scrub_interval: Option<Duration>,
    /// Bytes each scheduled slice re-hashes.
    pub scrub_bytes: u64,
    /// Write an index snapshot this often, for a store that ships an index
    /// log ([`Store::snapshot_index`]: the log before the older of the two
    /// snapshots kept is pruned, so restores stay short); `None`: never.
    pub snapshot_interval: Option<Duration>,
    /// Where to deliver the store's outbox, as CloudEvents (HTTP binary
    /// mode), each at least once and in commit order. The store must
    /// record events ([`ocidb::StoreOptions::events`]).
    pub webhooks: Vec<Webhook>,
    /// The CloudEvents `source` of those events.
    pub event_source: String,
    /// A retention policy to run every `retention_interval` (with the
    /// GC policy's grace and undelete window).
    pub retention: Option<ocidb::RetentionPolicy>,
    /// How often the retention policy runs (default 1 hour).
    pub retention_interval: Duration,
    /// How long an upload session's lease protects the blob it finishes
    /// from GC until a manifest names it (`None`: the GC grace period).
    /// A finished blob is also young for the grace period, so a lease
    /// longer than it only keeps abandoned uploads longer.
    pub upload_lease: Option<Duration>,
    /// Requests that carry blob bytes (uploads) at once; more get 429.
    pub max_uploads: usize,
    /// Blob bodies being sent at once; more get 429 with `Retry-After`.
    pub max_downloads: usize,
    /// A request body that sends nothing for this long is cut off (the
    /// chunk is not acknowledged).
    pub body_idle_timeout: Duration,
    /// A blob body must average at least this many bytes a second over
    /// each body-idle-timeout window (0: no minimum).
    pub min_body_rate: u64,
    /// Open connections from one client address at once; more are closed
    /// on accept.
    pub max_connections_per_client: usize,
    /// A request's headers must arrive within this long of its first byte
    /// (and an idle keep-alive connection is closed after it).
    pub header_timeout: Duration,
    /// Open connections at once; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Who may do what (`None`: an open registry).
    pub access: Option<Arc<Access>>,
    /// Serve HTTPS with this certificate (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Accept manifests whose blobs the repository lacks
    /// ([`ocidb::Children::AllowMissing`]); off by default, when such a
    /// push gets 400 `MANIFEST_BLOB_UNKNOWN`. Either way a repository never
    /// gains a blob a manifest only names.
    pub allow_sparse_manifests: bool,
    /// A second listener for operators: `GET /metrics` without
    /// credentials. `None` (the default): no admin listener, and
    /// `/metrics` on the API listener needs a user's credentials when
    /// access control is on. Bind it to localhost or a private network.
    pub admin_addr: Option<SocketAddr>,
    /// Serve `GET /livez` and `GET /readyz` on the API listener, without
    /// credentials (default on).
    pub health_probes: bool,
    /// This server is a member of a cluster ([`cluster::Member`]): writes
    /// go to the primary, `/readyz` reports replica lag and primary loss,
    /// and maintenance runs only on the primary. The member's loop is the
    /// host's to run ([`cluster::Member::run`]).
    pub cluster: Option<Arc<cluster::Member>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            gc_interval: None,
            gc_policy: ocidb::gc::GcPolicy::default(),
            upload_max_idle: Duration::from_secs(7 * 24 * 3600),
            scrub_interval: None,
            snapshot_interval: Some(Duration::from_secs(3600)),
            webhooks: Vec::new(),
            event_source: "/ocidb".into(),
            retention: None,
            retention_interval: Duration::from_secs(3600),
            scrub_bytes: 1 << 30,
            upload_lease: None,
            max_uploads: 64,
            max_downloads: 256,
            body_idle_timeout: Duration::from_secs(60),
            min_body_rate: 1024,
            max_connections_per_client: 64,
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
            access: None,
            tls: None,
            allow_sparse_manifests: false,
            admin_addr: None,
            health_probes: true,
            cluster: None,
        }
    }
}

impl ServeOptions {
    /// Sets [`ServeOptions::addr`].
    #[must_use]
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Sets [`ServeOptions::gc_interval`].
    #[must_use]
    pub fn gc_interval(mut self, every: impl Into<Option<Duration>>) -> Self {
        self.gc_interval = every.into();
        self
    }

    /// Sets [`ServeOptions::gc_policy`].
    #[must_use]
    pub fn gc_policy(mut self, policy: ocidb::gc::GcPolicy) -> Self {
        self.gc_policy = policy;
        self
    }

    /// Sets [`ServeOptions::max_uploads`].
    #[must_use]
    pub fn max_uploads(mut self, n: usize) -> Self {
        self.max_uploads = n.max(1);
        self
    }

    /// Sets [`ServeOptions::max_downloads`].
    #[must_use]
    pub fn max_downloads(mut self, n: usize) -> Self {
        self.max_downloads = n.max(1);
        self
    }

    /// Sets [`ServeOptions::min_body_rate`].
    #[must_use]
    pub fn min_body_rate(mut self, bytes_per_second: u64) -> Self {
        self.min_body_rate = bytes_per_second;
        self
    }

    /// Sets [`ServeOptions::max_connections_per_client`].
    #[must_use]
    pub fn max_connections_per_client(mut self, n: usize) -> Self {
        self.max_connections_per_client = n.max(1);
        self
    }

    /// Sets [`ServeOptions::body_idle_timeout`].
    #[must_use]
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle_timeout = idle;
        self
    }

    /// Sets [`ServeOptions::header_timeout`].
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`ServeOptions::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`ServeOptions::tls`].
    #[must_use]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Sets [`ServeOptions::access`].
    #[must_use]
    pub fn access(mut self, access: Access) -> Self {
        self.access = Some(Arc::new(access));
        self
    }

    /// Sets [`ServeOptions::admin_addr`].
    #[must_use]
    pub fn admin_addr(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.admin_addr = addr.into();
        self
    }

    /// Sets [`ServeOptions::allow_sparse_manifests`].
    #[must_use]
    pub fn allow_sparse_manifests(mut self, allow: bool) -> Self {
        self.allow_sparse_manifests = allow;
        self
    }

    /// Sets [`ServeOptions::health_probes`].
    #[must_use]
    pub fn health_probes(mut self, on: bool) -> Self {
        self.health_probes = on;
        self
    }

    /// Sets [`ServeOptions::upload_lease`].
    #[must_use]
    pub fn upload_lease(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.upload_lease = ttl.into();
        self
    }

    /// Sets [`ServeOptions::scrub_interval`] and
    /// [`ServeOptions::scrub_bytes`].
    #[must_use]
    pub fn scrub(mut self, every: impl Into<Option<Duration>>, bytes: u64) -> Self {
        self.scrub_interval = every.into();
        self.scrub_bytes = bytes.max(1);
        self
    }

    /// Sets [`ServeOptions::webhooks`].
    #[must_use]
    pub fn webhooks(mut self, hooks: Vec<Webhook>) -> Self {
        self.webhooks = hooks;
        self
    }

    /// Sets [`ServeOptions::retention`] and
    /// [`ServeOptions::retention_interval`].
    #[must_use]
    pub fn retention(mut self, policy: Option<ocidb::RetentionPolicy>, every: Duration) -> Self {
        self.retention = policy;
        self.retention_interval = every;
        self
    }

    /// Sets [`ServeOptions::event_source`].
    #[must_use]
    pub fn event_source(mut self, source: impl Into<String>) -> Self {
        self.event_source = source.into();
        self
    }

    /// Sets [`ServeOptions::snapshot_interval`].
    #[must_use]
    pub fn snapshot_interval(mut self, every: impl Into<Option<Duration>>) -> Self {
        self.snapshot_interval = every.into();
        self
    }

    /// Sets [`ServeOptions::cluster`].
    #[must_use]
    pub fn cluster(mut self, member: impl Into<Option<Arc<cluster::Member>>>) -> Self {
        self.cluster = member.into();
        self
    }

    /// Sets [`ServeOptions::upload_max_idle`].
    #[must_use]
    pub fn upload_max_idle(mut self, idle: Duration) -> Self {
        self.upload_max_idle = idle;
        self
    }
}

/// The most a request's headers may take (hyper's read buffer); a request
/// with more gets 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Manifest bytes buffered at once, server-wide (KiB): 64 full-size (4
/// MiB) manifests. Past it a push gets 503 with Retry-After.
const MANIFEST_BUDGET_KIB: usize = 64 * 4 * 1024;

/// A manifest body (at most 4 MiB) must arrive whole within this long,
/// however it trickles.
const MANIFEST_DEADLINE: Duration = Duration::from_secs(60);

/// What every request handler shares.
pub(crate) struct App {
    pub store: Arc<Store>,
    /// One permit per request that carries blob bytes.
    pub uploads: tokio::sync::Semaphore,
    pub max_uploads: usize,
    /// One permit per blob body being sent.
    pub downloads: Arc<tokio::sync::Semaphore>,
    pub max_downloads: usize,
    /// Manifest bytes held in memory at once, in KiB permits.
    pub manifest_budget: Arc<tokio::sync::Semaphore>,
    /// A manifest body must arrive whole within this long.
    pub manifest_deadline: Duration,
    pub body_pace: body::BodyPace,
    pub metrics: Arc<metrics::Metrics>,
    /// Who may do what: swapped whole by a reload, so that a request sees
    /// either the old files or the new ones, never a mix.
    access: std::sync::RwLock<Option<Arc<Access>>>,
    /// The last answer of the blob backend, for `/readyz`.
    pub health: health::BackendHealth,
    /// The admin API's background jobs (fsck) and last GC.
    pub jobs: admin::Jobs,
    /// What a pushed manifest's children must be.
    pub children: ocidb::Children,
    /// The lease of each upload session.
    pub upload_lease: Duration,
    /// Manifest pulls not yet recorded in the store: (repository,
    /// digest) -> ms, flushed every few seconds ([`flush_pulls`]).
    pub pulls: std::sync::Mutex<std::collections::HashMap<(String, ocidb::Digest), u64>>,
    /// The cluster this server is a member of, if any.
    pub cluster: Option<Arc<cluster::Member>>,
}

impl App {
    /// The access control in force now (`None`: an open registry).
    pub fn access(&self) -> Option<Arc<Access>> {
        match self.access.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Records how a GC that was not a dry run ended: the last outcome for
    /// the gauges, and the run and deletion counters.
    pub fn gc_finished(&self, result: &ocidb::Result<ocidb::GcReport>) {
        self.jobs.gc_done(result);
        if let Ok(r) = result {
            self.metrics.gc_ran(r);
        }
    }

    /// Puts `access` in force for every request that starts from now on.
    pub fn set_access(&self, access: Option<Arc<Access>>) {
        match self.access.write() {
            Ok(mut g) => *g = access,
            Err(p) => *p.into_inner() = access,
        }
    }
}

/// The registry on a store: its routes to mount in a host's axum app, its
/// metrics, and its maintenance job. [`serve`] is this plus a listener,
/// TLS and signals.
///
/// ```no_run
/// # async fn host() -> ocidb::Result<()> {
/// use std::sync::Arc;
/// let store = Arc::new(ocidb::Store::open("/var/lib/registry")?);
/// let registry = ocidb_server::Registry::new(store, &ocidb_server::ServeOptions::default());
/// let app = axum::Router::new()
///     .route("/healthz", axum::routing::get(|| async { "ok" }))
///     .merge(registry.router());
/// tokio::spawn(registry.maintenance());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await
///     .map_err(|e| ocidb::Error::io("binding", e))?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
///     .await
///     .map_err(|e| ocidb::Error::io("serving", e))
/// # }
/// ```
#[derive(Clone)]
pub struct Registry {
    app: Arc<App>,
    opts: ServeOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("opts", &self.opts)
            .finish()
    }
}

impl Registry {
    /// The registry on `store`, with the request limits, access control and
    /// upload settings of `opts` (its listener fields are for [`serve`]).
    pub fn new(store: Arc<Store>, opts: &ServeOptions) -> Registry {
        let app = Arc::new(App {
            store,
            uploads: tokio::sync::Semaphore::new(opts.max_uploads),
            max_uploads: opts.max_uploads,
            downloads: Arc::new(tokio::sync::Semaphore::new(opts.max_downloads)),
            max_downloads: opts.max_downloads,
            manifest_budget: Arc::new(tokio::sync::Semaphore::new(MANIFEST_BUDGET_KIB)),
            manifest_deadline: MANIFEST_DEADLINE,
            body_pace: body::BodyPace {
                idle: opts.body_idle_timeout,
                min_rate: opts.min_body_rate,
            },
            metrics: Arc::new(metrics::Metrics::default()),
            access: std::sync::RwLock::new(opts.access.clone()),
            health: health::BackendHealth::default(),
            jobs: admin::Jobs::default(),
            pulls: Default::default(),
            cluster: opts.cluster.clone(),
            upload_lease: opts.upload_lease.unwrap_or(opts.gc_policy.grace),
            children: if opts.allow_sparse_manifests {
                ocidb::Children::AllowMissing
            } else {
                ocidb::Children::InRepository
            },
        });
        Registry {
            app,
            opts: opts.clone(),
        }
    }

    /// The distribution API under `/v2/`, with the access log and metrics
    /// as its outer layer and authentication (with `opts.access`) as its
    /// inner one. It routes no other path, so it merges with the host's
    /// own routes. Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that the
    /// access log and the login throttle see the client's address.
    pub fn router(&self) -> axum::Router {
        routes::api_router(Arc::clone(&self.app))
    }

    /// `GET /livez` (the process answers) and `GET /readyz` (200 while
    /// the store takes writes, 503 naming why not), without credentials:
    /// for a host's load balancer and orchestrator.
    pub fn health_router(&self) -> axum::Router {
        routes::health_router(Arc::clone(&self.app))
    }

    /// The admin API (`/admin/v1/…`: stats, GC, fsck, leases, uploads)
    /// and `GET /metrics`, without credentials: mount it where only
    /// operators reach (`ocidb serve` serves it on `--admin-addr` and the
    /// store's socket).
    pub fn admin_router(&self) -> axum::Router {
        routes::admin_router(Arc::clone(&self.app))
    }

    /// `GET /metrics` in the Prometheus text format, without credentials:
    /// mount it where only operators reach.
    pub fn metrics_router(&self) -> axum::Router {
        routes::metrics_router(Arc::clone(&self.app))
    }

    /// The scheduled GC runs (`opts.gc_interval`), the scheduled scrub
    /// (`opts.scrub_interval`), index snapshots (`opts.snapshot_interval`),
    /// the purge of idle upload sessions, the
    /// reconnection of a bucket that was down at open, and the delivery of
    /// events to `opts.webhooks`: spawn it on the host's runtime; it runs
    /// until dropped.
    pub fn maintenance(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (app, opts) = (Arc::clone(&self.app), self.opts.clone());
        async move {
            if !opts.webhooks.is_empty() && !app.store.events_enabled() {
                tracing::warn!(
                    "webhooks are configured but the store records no events: open it with StoreOptions::events(true)"
                );
            }
            let deliveries = futures_util::future::join_all(opts.webhooks.iter().map(|h| {
                webhooks::deliver(Arc::clone(&app), h.clone(), opts.event_source.clone())
            }));
            tokio::join!(
                deliveries,
                flush_pulls(Arc::clone(&app)),
                retention(Arc::clone(&app), opts.clone()),
                scrub(Arc::clone(&app), opts.scrub_interval, opts.scrub_bytes),
                snapshots(Arc::clone(&app), opts.snapshot_interval),
                maintain(Arc::clone(&app), opts),
                reconnect(Arc::clone(&app.store))
            );
        }
    }
}

/// The registry's routes on `store`: [`Registry::router`] of
/// [`Registry::new`].
pub fn router(store: Arc<Store>, opts: &ServeOptions) -> axum::Router {
    Registry::new(store, opts).router()
}

/// What a reload (SIGHUP) puts in force: access control and the TLS
/// certificate, each loaded whole before anything changes.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reloaded {
    /// The new access control (`None`: an open registry).
    pub access: Option<Access>,
    /// The new certificate (`None`: plain HTTP; switching TLS on or off
    /// needs a restart, so a reload that does is refused, as is one that
    /// turns access control off).
    pub tls: Option<TlsFiles>,
}

impl Reloaded {
    /// What a reload puts in force.
    pub fn new(access: Option<Access>, tls: Option<TlsFiles>) -> Reloaded {
        Reloaded { access, tls }
    }
}

/// Re-reads the server's files on SIGHUP; an `Err` keeps what is in force.
pub type Reloader = Box<dyn Fn() -> ocidb::Result<Reloaded> + Send + Sync>;

/// A bcrypt hash of `password` at `cost` (4 to 31), as the password file
/// holds it.
pub fn hash_password(password: &str, cost: u32) -> ocidb::Result<String> {
    bcrypt::hash(password, cost).map_err(|e| ocidb::Error::InvalidArgument {
        value: format!("bcrypt cost {cost}"),
        expected: format!("a cost bcrypt can hash with ({e})"),
    })
}

/// The admin socket in a store's directory: `ocidb`'s maintenance commands
/// find a running server there.
pub const ADMIN_SOCKET: &str = "ocidb.sock";

/// Serves `store` until SIGINT or SIGTERM, then stops accepting, lets the
/// requests in flight finish, and returns. `ready` is called with the bound
/// address once the listener is up (port 0 picks a free one). Builds its
/// own runtime: a host with one mounts [`Registry::router`] instead.
/// SIGHUP is logged and changes nothing; [`serve_with_reload`] re-reads
/// files on it.
pub fn serve(
    store: Arc<Store>,
    opts: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> ocidb::Result<()> {
    serve_with_reload(store, opts, ready, None)
}

/// [`serve`], and on SIGHUP `reload` (on a blocking thread): what it
/// returns is in force for the requests and handshakes that start after
/// it; an error is logged and keeps the files in force. The admin API is
/// also served on the store's socket ([`ADMIN_SOCKET`], mode 0600).
pub fn serve_with_reload(
    store: Arc<Store>,
    opts: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
    reload: Option<Reloader>,
) -> ocidb::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ocidb-serve")
        .build()
        .map_err(|e| ocidb::Error::io("starting the server runtime", e))?;
    rt.block_on(async move {
        // Before anything is announced: from here on SIGHUP is ours, never
        // the default action (which ends the process).
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| ocidb::Error::io("installing the SIGHUP handler", e))?;
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| ocidb::Error::io(format!("binding {}", opts.addr), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| ocidb::Error::io("reading the bound address", e))?;
        let socket_path = store.root().join(ADMIN_SOCKET);
        let member = opts.cluster.clone();
        // SIGINT, SIGTERM, or (in a cluster) the loss of the primary's lease.
        let stop = || {
            let deposed = member.as_ref().map(|m| m.deposed());
            async move {
                match deposed {
                    Some(d) => tokio::select! {
                        () = shutdown_signal() => {},
                        () = d => {},
                    },
                    None => shutdown_signal().await,
                }
            }
        };
        let registry = Registry::new(store, opts);
        let app = Arc::clone(&registry.app);
        let limits = listen::ConnLimits {
            header_timeout: opts.header_timeout,
            max_connections: opts.max_connections,
            max_header_bytes: MAX_HEADER_BYTES,
            max_per_client: opts.max_connections_per_client,
            // A client that reads nothing of a response for as long as it
            // may send nothing of a request is as gone.
            write_stall: opts.body_idle_timeout,
        };
        let mut side = Vec::new();
        let mut admin_at = None;
        if let Some(addr) = opts.admin_addr {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ocidb::Error::io(format!("binding the admin address {addr}"), e))?;
            admin_at = l.local_addr().ok();
            let admin_limits = listen::ConnLimits {
                max_connections: 64,
                ..limits
            };
            side.push(tokio::spawn(listen::serve_connections(
                l,
                None,
                routes::admin_router(Arc::clone(&app)),
                admin_limits,
                stop(),
            )));
        }
        match bind_admin_socket(&socket_path) {
            Ok(l) => {
                side.push(tokio::spawn(listen::serve_unix(
                    l,
                    routes::admin_router(Arc::clone(&app)),
                    opts.header_timeout,
                    stop(),
                )));
            }
            // The registry serves without it; only the CLI's maintenance
            // commands lose their way in.
            Err(e) => tracing::warn!("no admin socket: {e}"),
        }
        ready(local);
        // After the listening line, which scripts read first.
        if let Some(a) = admin_at {
            tracing::info!("admin listener (GET /metrics, /admin/v1/…) on http://{a}");
        }
        side.push(tokio::spawn(registry.maintenance()));
        let tls = opts.tls.as_ref().map(tls::SharedTls::new);
        side.push(tokio::spawn(on_hangup(
            hangups,
            reload,
            Arc::clone(&app),
            tls.clone(),
        )));
        let router = routes::serve_router(Arc::clone(&app), opts.health_probes);
        listen::serve_connections(listener, tls, router, limits, stop()).await;
        for task in side {
            task.abort();
        }
        let _ = std::fs::remove_file(&socket_path);
        if let Some(m) = &member
            && m.role() == cluster::Role::Deposed
        {
            return Err(ocidb::Error::NotPrimary {
                store: app.store.root().display().to_string(),
                why: "this member lost the primary's etcd lease; restart it to rejoin the cluster as a replica".into(),
            });
        }
        Ok(())
    })
}

/// Binds the store's admin socket, replacing a stale one (the store's lock
/// proves no other server uses it), readable and writable by the store's
/// owner only.
fn bind_admin_socket(path: &std::path::Path) -> ocidb::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| ocidb::Error::io(format!("binding the admin socket {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ocidb::Error::io(format!("restricting {} to its owner", path.display()), e))?;
    Ok(l)
}

/// Each SIGHUP: re-reads the files through `reload` and puts them in force,
/// or logs why not and keeps the old ones. Never ends the process.
async fn on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reload: Option<Reloader>,
    app: Arc<App>,
    tls: Option<tls::SharedTls>,
) {
    let reload = reload.map(Arc::new);
    while hangups.recv().await.is_some() {
        let Some(reload) = reload.clone() else {
            tracing::info!(
                "SIGHUP: nothing to reload (this server was started without a reloader)"
            );
            continue;
        };
        let loaded = tokio::task::spawn_blocking(move || reload()).await;
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(e)) => {
                tracing::warn!("SIGHUP: reload refused, keeping the configuration in force: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    "SIGHUP: the reload failed, keeping the configuration in force: {e}"
                );
                continue;
            }
        };
        let cert = match (&tls, &new.tls) {
            (Some(shared), Some(files)) => {
                shared.replace(files);
                "certificate reloaded"
            }
            (None, None) => "plain HTTP",
            _ => {
                tracing::warn!(
                    "SIGHUP: reload refused, keeping the configuration in force: switching TLS on or off needs a restart"
                );
                continue;
            }
        };
        // A config edit that drops the password file must not open the
        // registry to everyone.
        if new.access.is_none() && app.access().is_some() {
            tracing::warn!(
                "SIGHUP: reload refused, keeping the configuration in force: turning access control off needs a restart"
            );
            continue;
        }
        let users = new.access.as_ref().map_or(0, Access::user_count);
        let open = new.access.is_none();
        app.set_access(new.access.map(Arc::new));
        if open {
            tracing::info!("SIGHUP: reloaded: no access control, {cert}");
        } else {
            tracing::info!("SIGHUP: reloaded: {users} user(s), {cert}");
        }
    }
}

/// Every `every`, re-hashes the next slice of `bytes` bytes of blobs,
/// going round the store, so that damaged bytes are found without a full
/// fsck; each problem is logged (warn) and counted in the metrics.
async fn scrub(app: Arc<App>, every: Option<Duration>, bytes: u64) {
    use std::sync::atomic::Ordering;
    let Some(every) = every else {
        return;
    };
    let mut after: Option<ocidb::Digest> = None;
    loop {
        tokio::time::sleep(every).await;
        let (s, from) = (Arc::clone(&app.store), after);
        match tokio::task::spawn_blocking(move || s.scrub(from.as_ref(), bytes)).await {
            Ok(Ok(slice)) => {
                let m = &app.metrics;
                m.scrub_bytes
                    .fetch_add(slice.bytes_verified, Ordering::Relaxed);
                m.scrub_problems
                    .fetch_add(slice.problems.len() as u64, Ordering::Relaxed);
                for p in &slice.problems {
                    let d = p.digest.map(|d| d.to_string()).unwrap_or_default();
                    tracing::warn!("scrub: {}: {d}: {}", p.kind, p.detail);
                }
                if slice.next.is_none() {
                    m.scrub_passes.fetch_add(1, Ordering::Relaxed);
                }
                after = slice.next;
            }
            Ok(Err(e)) => tracing::warn!("scrub: {e}"),
            Err(e) => tracing::warn!("scrub task: {e}"),
        }
    }
}

/// Every `every`, writes an index snapshot (a store with an index log
/// only); each is logged and counted in the metrics, a failure too.
async fn snapshots(app: Arc<App>, every: Option<Duration>) {
    use std::sync::atomic::Ordering;
    let Some(every) = every.filter(|_| app.store.has_index_log()) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        if app.store.is_replica() {
            continue;
        }
        let s = Arc::clone(&app.store);
        match tokio::task::spawn_blocking(move || s.snapshot_index()).await {
            Ok(Ok(info)) => {
                app.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "index snapshot at log position {}: {} rows, {} bytes; pruned {} snapshots and {} log objects",
                    info.position,
                    info.rows,
                    info.bytes,
                    info.pruned_snapshots,
                    info.pruned_log_objects
                );
            }
            Ok(Err(e)) => {
                app.metrics
                    .snapshot_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("index snapshot: {e}");
            }
            Err(e) => tracing::warn!("index snapshot task: {e}"),
        }
    }
}

/// The most pulls held in memory between flushes: past it, pulls wait for
/// the next flush (a pull time is a hint for retention, not a promise).
const MAX_PENDING_PULLS: usize = 65_536;

/// How often recorded pulls reach the store.
const PULL_FLUSH: Duration = Duration::from_secs(5);

impl App {
    /// Notes a pull of manifest `d` from `repo`, for the next flush.
    pub(crate) fn note_pull(&self, repo: &str, d: ocidb::Digest) {
        if let Ok(mut p) = self.pulls.lock()
            && (p.len() < MAX_PENDING_PULLS || p.contains_key(&(repo.to_string(), d)))
        {
            let now = ocidb::Clock::now_ms(&ocidb::SystemClock);
            p.insert((repo.to_string(), d), now);
        }
    }
}

/// Writes the pulls noted since the last flush, every [`PULL_FLUSH`], in
/// one non-durable job.
async fn flush_pulls(app: Arc<App>) {
    loop {
        tokio::time::sleep(PULL_FLUSH).await;
        let batch: Vec<(String, ocidb::Digest, u64)> = match app.pulls.lock() {
            Ok(mut p) => p.drain().map(|((r, d), t)| (r, d, t)).collect(),
            Err(_) => continue,
        };
        // A replica's pulls are not recorded (its store takes no writes):
        // retention's last-pulled rules see the primary's pulls only.
        if batch.is_empty() || app.store.is_replica() {
            continue;
        }
        let s = Arc::clone(&app.store);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.record_pulls(batch)).await {
            tracing::warn!("recording pulls: {e}");
        }
    }
}

/// Runs the retention policy on its schedule.
async fn retention(app: Arc<App>, opts: ServeOptions) {
    let Some(policy) = opts.retention.clone() else {
        return;
    };
    loop {
        tokio::time::sleep(opts.retention_interval).await;
        if app.store.is_replica() {
            continue;
        }
        let (s, p) = (Arc::clone(&app.store), policy.clone());
        let ro = ocidb::RetentionOptions::default()
            .grace(opts.gc_policy.grace)
            .undelete_window(opts.gc_policy.undelete_window);
        match tokio::task::spawn_blocking(move || s.retention(&p, &ro)).await {
            Ok(Ok(r)) => tracing::info!(
                "retention: {} tag(s) and {} manifest(s) dropped, {} bytes freed ({} at once, {} at the next gc), {} skipped",
                r.tags_deleted,
                r.manifests_deleted,
                r.freed_bytes,
                r.manifest_bytes,
                r.blob_bytes,
                r.skipped
            ),
            Ok(Err(e)) => tracing::warn!("retention: {e}"),
            Err(e) => tracing::warn!("retention task: {e}"),
        }
    }
}

/// While the store's bucket has been down since open, asks it again every
/// few seconds (even with no readiness probe asking), so that writes
/// resume once it answers.
async fn reconnect(store: Arc<Store>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if store.unavailable().is_some() {
            let s = Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || s.check_backend()).await;
        }
    }
}

/// Scheduled GC runs, the purge of idle upload sessions, and the hourly
/// full statistics pass behind the byte gauges of `/metrics`.
async fn maintain(app: Arc<App>, opts: ServeOptions) {
    let (store, metrics) = (Arc::clone(&app.store), Arc::clone(&app.metrics));
    let every = opts
        .gc_interval
        .unwrap_or(Duration::from_secs(3600))
        .min(Duration::from_secs(3600));
    let mut next_gc = opts.gc_interval.map(|i| tokio::time::Instant::now() + i);
    let mut next_stats = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_stats {
            let s = Arc::clone(&store);
            if let Ok(Ok(st)) = tokio::task::spawn_blocking(move || s.stats()).await {
                use std::sync::atomic::Ordering;
                metrics
                    .unique_bytes
                    .store(st.unique_bytes, Ordering::Relaxed);
                let now_s = ocidb::Clock::now_ms(&ocidb::SystemClock) / 1000;
                metrics.stats_at_s.store(now_s.max(1), Ordering::Relaxed);
            }
            next_stats = tokio::time::Instant::now() + Duration::from_secs(3600);
        }
        tokio::time::sleep(every).await;
        // Maintenance writes: the primary's alone in a cluster.
        if store.is_replica() {
            continue;
        }
        let s = Arc::clone(&store);
        let idle = opts.upload_max_idle;
        let purged = tokio::task::spawn_blocking(move || s.purge_uploads(idle)).await;
        if let Ok(Err(e)) = purged {
            tracing::warn!("purging idle uploads: {e}");
        }
        if let (Some(at), Some(interval)) = (next_gc, opts.gc_interval)
            && tokio::time::Instant::now() >= at
        {
            let s = Arc::clone(&store);
            let policy = opts.gc_policy.clone();
            let result = tokio::task::spawn_blocking(move || s.gc(&policy))
                .await
                .unwrap_or_else(|e| Err(ocidb::Error::Internal(format!("the GC task: {e}"))));
            app.gc_finished(&result);
            match result {
                Ok(r) => {
                    tracing::info!(
                        "gc: deleted {} manifest(s) and {} blob(s), {} bytes",
                        r.deleted_manifests,
                        r.deleted_blobs,
                        r.reclaimed_bytes
                    );
                }
                Err(e) => tracing::warn!("gc: {e}"),
            }
            next_gc = Some(tokio::time::Instant::now() + interval);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
