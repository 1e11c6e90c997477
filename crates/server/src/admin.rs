//! The admin API (`/admin/v1/…`): what `ocidb`'s maintenance commands do
//! offline, on the store a running server holds. It is served without
//! credentials on the admin listener (`--admin-addr`) and on the store's
//! socket (`<store>/ocidb.sock`, reachable only by the store's owner), and
//! on the API listener to users with a `USER * admin` grant.
//!
//! Answers are the engine's own types as JSON, so the command line renders
//! them exactly as it renders an offline store's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use serde::{Deserialize, Serialize};

use ocidb::names::Reference;
use ocidb::store::HistoryQuery;
use ocidb::{Error, FsckOptions, FsckReport, GcPolicy, GcReport};

use super::errors::ApiError;
use super::http::{blocking, digest};
use super::App;

/// The prefix of every admin route.
pub const PREFIX: &str = "/admin/v1";

/// The largest request body the admin API reads (a GC policy or fsck
/// options: a few fields).
const MAX_BODY: usize = 64 * 1024;

/// The admin API's jobs: the fsck running in the background, and the last
/// GC (scheduled or asked for), for the metrics.
#[derive(Default)]
pub(crate) struct Jobs {
    fsck: Mutex<FsckState>,
    last_gc: Mutex<Option<GcOutcome>>,
}

/// How the last GC ended.
#[derive(Clone, Debug)]
pub(crate) struct GcOutcome {
    /// When it ended (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// Its report, or why it failed.
    pub result: Result<GcReport, String>,
}

impl Jobs {
    /// Records how a GC run ended.
    pub fn gc_done(&self, result: &ocidb::Result<GcReport>) {
        let outcome = GcOutcome {
            at_ms: ocidb::Clock::now_ms(&ocidb::SystemClock),
            result: match result {
                Ok(r) => Ok(r.clone()),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Ok(mut g) = self.last_gc.lock() {
            *g = Some(outcome);
        }
    }

    /// How the last GC ended, if one ran since the start.
    pub fn last_gc(&self) -> Option<GcOutcome> {
        self.last_gc.lock().ok().and_then(|g| g.clone())
    }
}

/// Where the background fsck stands. Serialized as the answer of `GET
/// /admin/v1/fsck`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum FsckState {
    /// None has run since the server started.
    #[default]
    Idle,
    /// One is running: blobs verified so far of `total`.
    Running {
        /// When it started (milliseconds since the Unix epoch).
        started_ms: u64,
        /// Blobs verified so far.
        done: u64,
        /// Blobs to verify.
        total: u64,
    },
    /// The last one finished.
    Done {
        /// When it started.
        started_ms: u64,
        /// When it finished.
        finished_ms: u64,
        /// What it found.
        report: FsckReport,
    },
    /// The last one failed.
    Failed {
        /// When it started.
        started_ms: u64,
        /// Why.
        error: String,
    },
}

/// The options of `POST /admin/v1/fsck`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsckRequest {
    /// Remove orphan files (inside the writer, so no concurrent commit is
    /// mistaken for one).
    pub repair: bool,
    /// Accept tagged images whose children are not stored.
    pub allow_sparse: bool,
}

/// The slice of `POST /admin/v1/scrub`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubRequest {
    /// Start after this digest (`None`: from the first); pass the previous
    /// slice's `next` to go on.
    pub after: Option<ocidb::Digest>,
    /// Stop once this many bytes are re-hashed.
    pub max_bytes: u64,
}

impl Default for ScrubRequest {
    fn default() -> Self {
        ScrubRequest {
            after: None,
            max_bytes: 1 << 30,
        }
    }
}

/// The body of `POST /admin/v1/retention`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionRequest {
    /// The policy.
    pub policy: ocidb::RetentionPolicy,
    /// Report what would go; change nothing (the default).
    pub dry_run: bool,
    /// The GC grace period the freed bytes assume (`1h`).
    pub grace: String,
    /// The undelete window to respect (`0s`: none).
    pub undelete_window: String,
}

impl Default for RetentionRequest {
    fn default() -> Self {
        RetentionRequest {
            policy: ocidb::RetentionPolicy::default(),
            dry_run: true,
            grace: "1h".into(),
            undelete_window: "0s".into(),
        }
    }
}

impl RetentionRequest {
    /// The run's options; `Err` names a duration that does not parse.
    pub fn options(&self) -> ocidb::Result<ocidb::RetentionOptions> {
        Ok(ocidb::RetentionOptions::default()
            .dry_run(self.dry_run)
            .grace(ocidb::gc::parse_duration(&self.grace)?)
            .undelete_window(ocidb::gc::parse_duration(&self.undelete_window)?))
    }
}

/// The policy of `POST /admin/v1/gc`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcRequest {
    /// Report what would be deleted; change nothing.
    pub dry_run: bool,
    /// Also collect manifests that no tag reaches.
    pub delete_untagged: bool,
    /// Keep anything younger than this (`0s`, `30m`, `1h`…).
    pub grace: String,
    /// Keep manifests a tag named this recently, for undelete (`0s`: no
    /// window).
    pub undelete_window: String,
    /// Remove tag history events older than this (absent: keep them).
    pub history_retention: Option<String>,
}

impl GcRequest {
    /// The GC policy this asks for; `Err` names a grace that does not
    /// parse.
    pub fn policy(&self) -> ocidb::Result<GcPolicy> {
        Ok(GcPolicy::default()
            .dry_run(self.dry_run)
            .delete_untagged(self.delete_untagged)
            .grace(ocidb::gc::parse_duration(&self.grace)?)
            .undelete_window(ocidb::gc::parse_duration(&self.undelete_window)?)
            .history_retention(
                self.history_retention
                    .as_deref()
                    .map(ocidb::gc::parse_duration)
                    .transpose()?,
            ))
    }
}

impl Default for GcRequest {
    fn default() -> Self {
        GcRequest {
            dry_run: true,
            delete_untagged: false,
            grace: "1h".into(),
            undelete_window: "0s".into(),
            history_retention: None,
        }
    }
}

/// The admin routes, relative to [`PREFIX`] and without any
/// authentication layer: nest them where only operators reach, or behind
/// the API listener's admin check.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/counts", get(counts))
        .route("/repositories", get(repositories))
        .route("/tags", get(tags))
        .route("/history", get(history))
        .route("/usage", get(usage))
        .route("/resolve", get(resolve))
        .route("/walk", get(walk))
        .route("/leases", get(leases))
        .route("/leases/{id}", delete(release_lease))
        .route("/uploads", get(uploads))
        .route("/uploads/{id}", delete(cancel_upload))
        .route("/gc", axum::routing::post(gc))
        .route("/retention", axum::routing::post(retention))
        .route("/fsck", get(fsck_status).post(fsck_start))
        .route("/scrub", axum::routing::post(scrub))
        .route("/snapshot", axum::routing::post(snapshot))
        .route("/compaction", get(compaction))
        .fallback(unknown)
        .with_state(app)
}

type Q = Query<HashMap<String, String>>;

fn ok_json(v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => {
            ApiError::from(Error::Internal(format!("encoding an answer: {e}"))).into_response()
        }
    }
}

fn answer<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => ok_json(&v),
        Err(e) => e.into_response(),
    }
}

fn required(q: &Q, name: &str) -> Result<String, ApiError> {
    q.get(name).cloned().ok_or_else(|| {
        ApiError::from(Error::InvalidArgument {
            value: format!("the query of this request (no `{name}`)"),
            expected: format!("a `{name}` parameter"),
        })
    })
}

async fn unknown(req: axum::extract::Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!(
            "no admin route at {} {PREFIX}{} (see docs/operations.md for the admin API)",
            req.method(),
            ocidb::text::quote_untrusted(req.uri().path())
        ),
    )
    .into_response()
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.stats()).await)
}

async fn counts(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.counts()).await)
}

async fn repositories(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.repositories()).await)
}

/// A repository's tags (a page: `last`, `n`), each with its digest.
async fn tags(State(app): State<Arc<App>>, q: Q) -> Response {
    let run = async {
        let repo = required(&q, "repo")?;
        let last = q.get("last").cloned();
        let n = match q.get("n") {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                ApiError::from(Error::InvalidArgument {
                    value: format!("n={}", ocidb::text::quote_untrusted(v)),
                    expected: "a count".into(),
                })
            })?),
        };
        let s = Arc::clone(&app.store);
        blocking(move || s.tag_page(&repo, last.as_deref(), n)).await
    };
    answer(run.await)
}

/// `scope` (a repository, or a namespace ending in `/`): what it holds.
async fn usage(State(app): State<Arc<App>>, q: Q) -> Response {
    let run = async {
        let scope = required(&q, "scope")?;
        let s = Arc::clone(&app.store);
        blocking(move || s.usage(&scope)).await
    };
    answer(run.await)
}

/// `repo`, `tag`, and optional `n`, `before_ms`, `since_ms`, `digest`,
/// `cursor`: a page of the tag's history.
async fn history(State(app): State<Arc<App>>, q: Q) -> Response {
    let run = async {
        let repo = required(&q, "repo")?;
        let tag = required(&q, "tag")?;
        let num = |k: &str| -> Result<Option<u64>, ApiError> {
            q.get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        ApiError::from(Error::InvalidArgument {
                            value: format!("{k}={}", ocidb::text::quote_untrusted(v)),
                            expected: "a whole number".into(),
                        })
                    })
                })
                .transpose()
        };
        let mut hq = HistoryQuery::default()
            .before_ms(num("before_ms")?)
            .since_ms(num("since_ms")?)
            .cursor(num("cursor")?);
        if let Some(n) = num("n")? {
            hq = hq.limit(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(d) = q.get("digest") {
            hq = hq.digest(digest(d)?);
        }
        let s = Arc::clone(&app.store);
        blocking(move || s.tag_history(&repo, &tag, &hq)).await
    };
    answer(run.await)
}

/// `repo` and `reference` (a tag or digest): the digest it names; or
/// `digest` alone (whole or an unambiguous prefix): the stored digest.
async fn resolve(State(app): State<Arc<App>>, q: Q) -> Response {
    let s = Arc::clone(&app.store);
    let run = async {
        match (q.get("repo").cloned(), q.get("reference").cloned()) {
            (Some(repo), Some(r)) => {
                blocking(move || s.resolve(&repo, &Reference::parse(&r)?)).await
            }
            _ => {
                let text = required(&q, "digest")?;
                blocking(move || s.resolve_digest(&text)).await
            }
        }
    };
    answer(run.await)
}

async fn walk(State(app): State<Arc<App>>, q: Q) -> Response {
    let run = async {
        let repo = required(&q, "repo")?;
        let d = digest(&required(&q, "digest")?)?;
        let s = Arc::clone(&app.store);
        blocking(move || s.walk(&repo, &Reference::Digest(d))).await
    };
    answer(run.await)
}

async fn leases(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.lease_details()).await)
}

async fn release_lease(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let run = async {
        let id: u64 = id.parse().map_err(|_| {
            ApiError::from(Error::InvalidArgument {
                value: ocidb::text::quote_untrusted(&id),
                expected: "a lease id (a number, from GET /admin/v1/leases)".into(),
            })
        })?;
        let s = Arc::clone(&app.store);
        blocking(move || s.release_lease(id)).await?;
        tracing::info!("admin: released lease {id}");
        Ok(serde_json::json!({ "released": id }))
    };
    answer(run.await)
}

async fn uploads(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.uploads()).await)
}

async fn cancel_upload(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let s = Arc::clone(&app.store);
    let shown = ocidb::text::quote_untrusted(&id);
    let r = blocking(move || s.cancel_upload(&id)).await;
    if r.is_ok() {
        tracing::info!("admin: cancelled upload session {shown}");
    }
    answer(r.map(|()| serde_json::json!({ "cancelled": shown })))
}

async fn read_body<T: serde::de::DeserializeOwned + Default>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        ApiError::from(Error::InvalidArgument {
            value: "the request body".into(),
            expected: format!("at most {MAX_BODY} bytes of JSON ({e})"),
        })
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::from(Error::InvalidArgument {
            value: "the request body".into(),
            expected: format!("a JSON object of this request's options ({e})"),
        })
    })
}

/// Runs a GC now with the body's policy (a dry run unless it says
/// `"dry_run": false`) and answers its report.
async fn gc(State(app): State<Arc<App>>, body: Body) -> Response {
    let run = async {
        let req: GcRequest = read_body(body).await?;
        let policy = req.policy()?;
        let s = Arc::clone(&app.store);
        let result = tokio::task::spawn_blocking(move || s.gc(&policy))
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("the GC task failed: {e}"))));
        if !req.dry_run {
            app.gc_finished(&result);
        }
        if let Ok(r) = &result {
            tracing::info!(
                "admin: gc{}: {} manifest(s) and {} blob(s), {} bytes",
                if r.dry_run { " (dry run)" } else { "" },
                r.deleted_manifests,
                r.deleted_blobs,
                r.reclaimed_bytes
            );
        }
        result.map_err(ApiError::from)
    };
    answer(run.await)
}

/// Runs a retention policy (a dry run unless the body says otherwise).
async fn retention(State(app): State<Arc<App>>, body: Body) -> Response {
    let run = async {
        let req: RetentionRequest = read_body(body).await?;
        let opts = req.options()?;
        let s = Arc::clone(&app.store);
        blocking(move || s.retention(&req.policy, &opts)).await
    };
    answer(run.await)
}

/// Writes an index snapshot now, synchronously (400 on a store without an
/// index log).
async fn snapshot(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    answer(blocking(move || s.snapshot_index()).await)
}

/// Re-hashes one slice of the store's blobs, synchronously: an fsck a
/// little at a time (the graph checks need the full one).
async fn scrub(State(app): State<Arc<App>>, body: Body) -> Response {
    let run = async {
        let req: ScrubRequest = read_body(body).await?;
        let s = Arc::clone(&app.store);
        let slice = blocking(move || s.scrub(req.after.as_ref(), req.max_bytes.max(1))).await?;
        if !slice.problems.is_empty() {
            tracing::warn!(
                "admin: scrub found {} problem(s), the first: {}",
                slice.problems.len(),
                slice.problems[0].detail
            );
        }
        Ok(slice)
    };
    answer(run.await)
}

async fn fsck_status(State(app): State<Arc<App>>) -> Response {
    let state = app.jobs.fsck.lock().map(|g| g.clone()).unwrap_or_default();
    ok_json(&state)
}

/// Starts a full fsck in the background (202 with its state); 409 while
/// one runs. Its progress and report are at `GET /admin/v1/fsck`.
async fn fsck_start(State(app): State<Arc<App>>, body: Body) -> Response {
    let req: FsckRequest = match read_body(body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let started_ms = ocidb::Clock::now_ms(&ocidb::SystemClock);
    let started = FsckState::Running {
        started_ms,
        done: 0,
        total: 0,
    };
    {
        let Ok(mut g) = app.jobs.fsck.lock() else {
            return ApiError::from(Error::Internal("the fsck job's lock is poisoned".into()))
                .into_response();
        };
        if matches!(*g, FsckState::Running { .. }) {
            return ApiError::new(
                StatusCode::CONFLICT,
                "DENIED",
                "an fsck is already running; follow it with GET /admin/v1/fsck",
            )
            .into_response();
        }
        *g = started.clone();
    }
    let job = Arc::clone(&app);
    tokio::task::spawn_blocking(move || run_fsck(&job, &req, started_ms));
    // The state this request set, not a second read: a small store's fsck
    // may be done already, and the answer must still say which one began.
    (StatusCode::ACCEPTED, ok_json(&started)).into_response()
}

fn run_fsck(app: &App, req: &FsckRequest, started_ms: u64) {
    let progress = |d: u64, t: u64| {
        if let Ok(mut g) = app.jobs.fsck.lock()
            && let FsckState::Running { done, total, .. } = &mut *g
        {
            (*done, *total) = (d, t);
        }
    };
    let result = app.store.fsck(
        &FsckOptions::default()
            .repair(req.repair)
            .allow_sparse(req.allow_sparse)
            .progress(&progress),
    );
    let finished_ms = ocidb::Clock::now_ms(&ocidb::SystemClock);
    let state = match result {
        Ok(report) => {
            tracing::info!(
                "admin: fsck: {} records, {} problem(s), {} remaining",
                report.records,
                report.problems.len(),
                report.remaining()
            );
            FsckState::Done {
                started_ms,
                finished_ms,
                report,
            }
        }
        Err(e) => {
            tracing::warn!("admin: fsck failed: {e}");
            FsckState::Failed {
                started_ms,
                error: e.to_string(),
            }
        }
    };
    if let Ok(mut g) = app.jobs.fsck.lock() {
        *g = state;
    }
}

/// What compaction would give: the file's size against the bytes its
/// tables hold. Compaction itself needs the store to itself (`ocidb
/// compact` with the server stopped).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompactionStatus {
    /// Size of the redb file.
    pub database_file_bytes: u64,
    /// Whether compaction can run while the server holds the store.
    pub online: bool,
    /// How to compact.
    pub how: String,
}

async fn compaction(State(app): State<Arc<App>>) -> Response {
    let s = Arc::clone(&app.store);
    let r = blocking(move || s.counts())
        .await
        .map(|c| CompactionStatus {
            database_file_bytes: c.database_file_bytes,
            online: false,
            how: "stop the server, then run `ocidb --store DIR compact`".into(),
        });
    answer(r)
}
