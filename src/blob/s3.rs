//! Blob bytes as objects in an S3-compatible bucket (feature `s3`).
//!
//! Keys below the location's prefix:
//! - `blobs/<alg>/<hex>`: a committed blob, readable under its digest;
//! - `staging/<name>`: a staged blob (written, not yet findable);
//! - `ocidb-store`: the id of the store that owns the prefix;
//! - `uploads/<id>/session`: an upload session's marker, and
//!   `uploads/<id>/<offset, 20 digits>`: its bytes, one object per append
//!   chunk, tiling the session from offset 0.
//!
//! An object store has no rename and no transaction with redb, so a blob
//! is written under a staging key (multipart, parts in flight bounded),
//! becomes final by a server-side copy after the engine has verified its
//! digest and recorded it durably, and the staging object is deleted last.
//! The engine's intent table settles a crash anywhere in between (see
//! `docs/format.md`). Keys are content-addressed, so a copy that lands
//! twice writes the same verified bytes twice: nothing relies on
//! create-if-absent, which some stores (Garage 2.5) ignore.
//!
//! The engine is synchronous; the backend runs object_store's futures on a
//! small runtime of its own and waits on a channel, so it is safe to call
//! from any thread that is not one of that runtime's workers (plain
//! threads, and a host's `spawn_blocking` threads).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, CopyMode, CopyOptions, GetOptions, GetRange, MultipartUpload,
    ObjectMeta, ObjectStore, PutPayload, RetryConfig,
};

use super::location::S3Location;
use super::{BlobBackend, BlobRead, BlobWrite, Listed, Staged, UploadWrite};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Bytes per multipart part and per upload-session chunk object. S3 wants
/// at least 5 MiB for every part but the last.
const PART: usize = 6 << 20;
/// Parts per size step: every thousand parts the part size doubles (S3
/// allows at most 10,000 parts), so a blob is not limited to 10,000 ×
/// `PART` bytes; memory grows only past 6 GB.
const PARTS_PER_STEP: usize = 1000;
/// Parts of one staged write in flight at once: with the part being
/// filled, a write holds at most `(IN_FLIGHT + 1) × PART` bytes.
const IN_FLIGHT: usize = 2;
/// Bytes a reader asks for per GET: a slow consumer never holds one
/// request open for a whole large blob (requests have a deadline).
const WINDOW: u64 = 16 << 20;
/// Body chunks a reader buffers ahead of its consumer.
const READ_AHEAD: usize = 16;
/// Times a reader re-requests the rest of a window after a failure
/// mid-body, on top of the client's own retries of each request.
const RESUMES: u32 = 3;
/// Commits (server-side copies) of one group commit in flight at once.
const COMMITS_IN_FLIGHT: usize = 8;
/// Retries of a delete whose response reported a per-key failure.
const DELETE_RETRIES: u32 = 5;
/// The marker object that makes an empty upload session listable.
const SESSION: &str = "session";
/// The object naming the store that owns the prefix.
const MARKER: &str = "ocidb-store";

/// Set to `1` to let the AWS credential chain ask the instance metadata
/// service when no key is in the environment.
pub const INSTANCE_CREDENTIALS: &str = "OCIDB_S3_INSTANCE_CREDENTIALS";

/// Whether the environment names credentials the AWS chain can use
/// without the instance metadata service (or allows that service).
fn credentials_in_environment() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    set("AWS_ACCESS_KEY_ID")
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || std::env::var(INSTANCE_CREDENTIALS).is_ok_and(|v| v == "1")
}

/// How the backend talks to the bucket: credentials, retries, deadlines.
#[derive(Clone)]
pub struct S3Options {
    /// Access key id and secret; `None`: the standard `AWS_*` environment
    /// variables (and the rest of the AWS credential chain).
    pub credentials: Option<(String, String)>,
    /// Retries of a failed request (network error, timeout, 5xx, 429).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// The first backoff; each next one doubles, up to 5 s.
    pub initial_backoff: Duration,
    /// The deadline of one request, body included.
    pub request_timeout: Duration,
    /// The deadline of a connect.
    pub connect_timeout: Duration,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("S3Options")
            .field("access_key_id", &self.credentials.as_ref().map(|c| &c.0))
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            credentials: None,
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Blob bytes in an S3-compatible bucket. See the module documentation.
pub struct S3Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// The same bucket with one short attempt per request, for the check
    /// at open: an unreachable endpoint is reported in seconds.
    probe: Arc<dyn ObjectStore>,
    location: S3Location,
    endpoint: String,
    prefix: String,
    rt: tokio::runtime::Runtime,
    seq: AtomicU64,
    /// Distinguishes this process's staged names from a crashed one's.
    boot: u64,
}

impl fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Blobs")
            .field("location", &self.inner.location.to_string())
            .finish()
    }
}

impl S3Blobs {
    /// Connects to `location` with credentials from the standard `AWS_*`
    /// environment variables. Makes no request: see [`S3Blobs::check`].
    pub fn new(location: &S3Location) -> Result<S3Blobs> {
        S3Blobs::with_options(location, &S3Options::default())
    }

    /// Like [`S3Blobs::new`], with explicit credentials, retries and
    /// deadlines.
    pub fn with_options(location: &S3Location, tuning: &S3Options) -> Result<S3Blobs> {
        if tuning.credentials.is_none() && !credentials_in_environment() {
            // The AWS chain would end at the instance metadata service,
            // whose 403 from 169.254.169.254 names neither the cause nor
            // the fix; and a link-local request is a surprise off EC2.
            return Err(Error::InvalidArgument {
                value: location.to_string(),
                expected: format!(
                    "S3 credentials, and AWS_ACCESS_KEY_ID is not set: set it and AWS_SECRET_ACCESS_KEY to the bucket's key (on EC2 with an instance role, set {INSTANCE_CREDENTIALS}=1)"
                ),
            });
        }
        let endpoint = location
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://s3.amazonaws.com".to_string());
        let build = |retries: usize, retry_timeout: Duration, timeout: Duration| {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&location.bucket)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: tuning.initial_backoff,
                        max_backoff: Duration::from_secs(5),
                        base: 2.0,
                    },
                    max_retries: retries,
                    retry_timeout,
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(true)
                        .with_timeout(timeout)
                        .with_connect_timeout(tuning.connect_timeout),
                );
            if let Some((id, secret)) = &tuning.credentials {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
            }
            if let Some(e) = &location.endpoint {
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            }
            if let Some(r) = &location.region {
                b = b.with_region(r);
            }
            b.build().map_err(|e| Error::Backend {
                endpoint: endpoint.clone(),
                op: format!("configuring bucket {}", location.bucket),
                detail: e.to_string(),
            })
        };
        let store = build(
            tuning.max_retries,
            tuning.retry_timeout,
            tuning.request_timeout,
        )?;
        let probe = build(0, Duration::from_secs(3), Duration::from_secs(3))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ocidb-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the object-store runtime", e))?;
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(S3Blobs {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                probe: Arc::new(probe),
                prefix: location.prefix.clone(),
                location: location.clone(),
                endpoint,
                rt,
                seq: AtomicU64::new(0),
                boot,
            }),
        })
    }

    /// The location, in its canonical form.
    pub fn location(&self) -> &S3Location {
        &self.inner.location
    }
}

impl Inner {
    /// Runs `fut` on the backend's runtime and waits for it.
    fn run<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| Error::Internal("the object-store runtime dropped a request".into()))
    }

    fn key(&self, rest: &str) -> Result<Key> {
        let full = if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        };
        Key::parse(&full).map_err(|e| Error::Internal(format!("object key `{full}`: {e}")))
    }

    fn blob_key(&self, d: &Digest) -> Result<Key> {
        let mut buf = [0u8; 128];
        self.key(&format!(
            "blobs/{}/{}",
            d.algorithm().name(),
            d.encode_hex(&mut buf)
        ))
    }

    fn staged_key(&self, s: &Staged) -> Result<Key> {
        let name = s.name();
        let ok = name.strip_prefix("s3-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        });
        if !ok {
            return Err(Error::Corrupt(format!(
                "staged blob name `{}` is not one this backend gives (expected `s3-<digits and dashes>`)",
                crate::text::quote_untrusted(name)
            )));
        }
        self.key(&format!("staging/{name}"))
    }

    fn upload_dir(&self, id: &str) -> Result<Key> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(Error::InvalidArgument {
                value: crate::text::quote_untrusted(id),
                expected: "an upload id: hex digits and dashes, at most 64".into(),
            });
        }
        self.key(&format!("uploads/{id}"))
    }

    fn err(&self, op: &str, key: &Key, e: &object_store::Error) -> Error {
        Error::Backend {
            endpoint: self.endpoint.clone(),
            op: format!("{op} s3://{}/{key}", self.location.bucket),
            detail: e.to_string(),
        }
    }

    /// The object's metadata; `None` when there is none.
    fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let (store, k) = (Arc::clone(&self.store), key.clone());
        match self.run(async move { head(&*store, &k).await })? {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("HEAD", key, &e)),
        }
    }

    /// Deletes an object; absent is not an error.
    fn delete(&self, key: &Key) -> Result<()> {
        self.delete_all(vec![key.clone()])
    }

    /// Deletes objects (S3's bulk DeleteObjects, a thousand keys a
    /// request); absent ones are no error. A bulk delete reports failures
    /// per key inside a successful response, which the client does not
    /// retry (Garage answers "database is locked" there under load), so
    /// the whole set is retried here: deletes are idempotent.
    fn delete_all(&self, keys: Vec<Key>) -> Result<()> {
        let Some(first) = keys.first().cloned() else {
            return Ok(());
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let (store, ks) = (Arc::clone(&self.store), keys.clone());
            let failed = self.run(async move {
                let input = futures_util::stream::iter(ks.into_iter().map(Ok)).boxed();
                let mut out = store.delete_stream(input);
                let mut first_err = None;
                while let Some(r) = out.next().await {
                    match r {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                first_err
            })?;
            match failed {
                None => return Ok(()),
                Some(e) if attempt >= DELETE_RETRIES => {
                    let what = if keys.len() == 1 {
                        "DELETE".to_string()
                    } else {
                        format!("DELETE of {} objects (bulk), from", keys.len())
                    };
                    return Err(self.err(&what, &first, &e));
                }
                Some(e) => {
                    tracing::warn!(error = %e, attempt, "object delete failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }

    fn put(&self, key: &Key, bytes: bytes::Bytes) -> Result<()> {
        let (store, k) = (Arc::clone(&self.store), key.clone());
        self.run(async move {
            store
                .put_opts(&k, PutPayload::from(bytes), Default::default())
                .await
        })?
        .map(drop)
        .map_err(|e| self.err("PUT", key, &e))
    }

    /// Every object below `dir`, sent to `each` as the listing pages in.
    fn list(&self, dir: &Key, each: &mut dyn FnMut(ObjectMeta) -> Result<()>) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let (store, d) = (Arc::clone(&self.store), dir.clone());
        let task = self.rt.spawn(async move {
            let mut s = store.list(Some(&d));
            while let Some(item) = s.next().await {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        let _abort = AbortOnDrop(task.abort_handle());
        while let Some(item) = rx.blocking_recv() {
            each(item.map_err(|e| self.err("LIST", dir, &e))?)?;
        }
        Ok(())
    }

    /// The names directly below `dir` that have objects under them.
    fn list_dirs(&self, dir: &Key) -> Result<Vec<String>> {
        let (store, d) = (Arc::clone(&self.store), dir.clone());
        let listed = self
            .run(async move { store.list_with_delimiter(Some(&d)).await })?
            .map_err(|e| self.err("LIST", dir, &e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// The chunk objects of an upload session, in offset order, each as
    /// (offset, length, key). Checks that they tile the bytes from 0.
    fn upload_parts(&self, id: &str) -> Result<Vec<(u64, u64, Key)>> {
        let dir = self.upload_dir(id)?;
        let mut parts = Vec::new();
        self.list(&dir, &mut |m| {
            let name = m.location.filename().unwrap_or_default();
            if name == SESSION {
                return Ok(());
            }
            let at: u64 = name.parse().map_err(|_| {
                Error::Corrupt(format!(
                    "object {} in upload {id} is not named by an offset",
                    m.location
                ))
            })?;
            parts.push((at, m.size, m.location));
            Ok(())
        })?;
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }
}

async fn head(store: &dyn ObjectStore, key: &Key) -> object_store::Result<ObjectMeta> {
    let opts = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    Ok(store.get_opts(key, opts).await?.meta)
}

/// Copies a staged object to its final key; on failure, the operation's
/// name and the error.
async fn copy_staged(
    store: &dyn ObjectStore,
    from: &Key,
    to: &Key,
) -> std::result::Result<(), (&'static str, object_store::Error)> {
    let opts = CopyOptions::new().with_mode(CopyMode::Overwrite);
    match store.copy_opts(from, to, opts).await {
        Ok(()) => Ok(()),
        // Committed before a crash, the staging object deleted since: the
        // final object is there (checked, not assumed).
        Err(object_store::Error::NotFound { .. }) => head(store, to)
            .await
            .map(drop)
            .map_err(|e| ("COPY (the staged object is gone; HEAD of)", e)),
        Err(e) => Err(("COPY to", e)),
    }
}

/// Aborts a task of the backend's runtime when its waiter goes away.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn to_io(e: Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl S3Blobs {
    /// One quick request (no retries, a 3 s deadline) that proves the
    /// bucket is reachable with these credentials.
    pub fn check(&self) -> Result<()> {
        let key = self.inner.key("staging")?;
        let (probe, k) = (Arc::clone(&self.inner.probe), key.clone());
        match self.inner.run(async move { head(&*probe, &k).await })? {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.inner.err("HEAD", &key, &e)),
        }
    }
}

impl S3Blobs {
    /// Claims the location's prefix for the store `store_id`: the first
    /// claim writes a marker object, a later one from another store is
    /// refused (two stores on one prefix would collect each other's
    /// blobs). Without conditional PUT (Garage 2.5 has none) two stores
    /// created at the same moment can both succeed: keep prefixes apart.
    pub fn claim(&self, store_id: &str) -> Result<()> {
        let key = self.inner.key(MARKER)?;
        let (store, k) = (Arc::clone(&self.inner.store), key.clone());
        let got = self.inner.run(async move {
            store
                .get_opts(&k, GetOptions::default())
                .await?
                .bytes()
                .await
        })?;
        match got {
            Ok(b) if b.as_ref() == store_id.as_bytes() => Ok(()),
            Ok(b) => Err(Error::InvalidArgument {
                value: self.inner.location.to_string(),
                expected: format!(
                    "a prefix no other store uses: this one belongs to store {} (this store is {store_id}); give each store its own prefix",
                    crate::text::quote_untrusted(&String::from_utf8_lossy(&b))
                ),
            }),
            Err(object_store::Error::NotFound { .. }) => self
                .inner
                .put(&key, bytes::Bytes::copy_from_slice(store_id.as_bytes())),
            Err(e) => Err(self.inner.err("GET", &key, &e)),
        }
    }
}

// ---- staged writes ----------------------------------------------------

/// A staged blob being written: one PUT when it fits in a part, else a
/// multipart upload with at most [`IN_FLIGHT`] parts on the wire.
struct S3Write {
    inner: Arc<Inner>,
    /// Parts sent so far.
    parts: usize,
    name: String,
    key: Key,
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl S3Write {
    fn part_size(&self) -> usize {
        PART << (self.parts / PARTS_PER_STEP).min(6)
    }

    fn start_multipart(&mut self) -> Result<()> {
        let (store, k) = (Arc::clone(&self.inner.store), self.key.clone());
        let up = self
            .inner
            .run(async move { store.put_multipart_opts(&k, Default::default()).await })?
            .map_err(|e| {
                self.inner
                    .err("starting a multipart upload of", &self.key, &e)
            })?;
        self.upload = Some(up);
        Ok(())
    }

    /// Sends the buffered bytes as the next part, after waiting for room.
    fn send_part(&mut self) -> Result<()> {
        if self.upload.is_none() {
            self.start_multipart()?;
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.wait_one()?;
        }
        self.parts += 1;
        let next = Vec::with_capacity(self.part_size());
        let data = bytes::Bytes::from(std::mem::replace(&mut self.buf, next));
        let Some(up) = self.upload.as_mut() else {
            return Err(Error::Internal("multipart upload vanished".into()));
        };
        let part = up.put_part(PutPayload::from(data));
        self.in_flight.push_back(self.inner.rt.spawn(part));
        Ok(())
    }

    fn wait_one(&mut self) -> Result<()> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.inner.run(h)? {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.inner.err("uploading a part of", &self.key, &e)),
            Err(e) => Err(Error::Internal(format!("a part upload task failed: {e}"))),
        }
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.upload.is_none() {
            let data = bytes::Bytes::from(std::mem::take(&mut self.buf));
            return self.inner.put(&self.key, data);
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_one()?;
        }
        let Some(mut up) = self.upload.take() else {
            return Err(Error::Internal("multipart upload vanished".into()));
        };
        let done = self.inner.run(async move { up.complete().await })?;
        done.map(drop).map_err(|e| {
            self.inner
                .err("completing the multipart upload of", &self.key, &e)
        })
    }
}

impl io::Write for S3Write {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let part = self.part_size();
        let n = data.len().min(part.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= part {
            self.send_part().map_err(to_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for S3Write {
    fn finish(mut self: Box<Self>, _durable: bool) -> Result<Staged> {
        // An object store acknowledges a PUT or a completed multipart
        // upload only once it is stored (Garage: with data_fsync and
        // metadata_fsync set, on disk): every finish is durable.
        self.finish_inner()?;
        Ok(Staged::new(std::mem::take(&mut self.name)))
    }
}

impl Drop for S3Write {
    fn drop(&mut self) {
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        if let Some(mut up) = self.upload.take() {
            // Best effort: a multipart upload left behind holds only
            // unlisted parts, which the bucket's lifecycle rules expire.
            self.inner.rt.spawn(async move {
                let _ = up.abort().await;
            });
        }
    }
}

// ---- reads ------------------------------------------------------------

/// Positional reads of one object. Sequential reads stream: one GET per
/// window, its body read ahead into a bounded channel; a seek starts anew.
struct S3Read {
    inner: Arc<Inner>,
    key: Key,
    len: u64,
    cursor: Mutex<Option<Cursor>>,
}

struct Cursor {
    /// The offset of the next byte `pending` or the channel yields.
    pos: u64,
    /// Where the current request ends.
    end: u64,
    pending: bytes::Bytes,
    rx: tokio::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    _task: AbortOnDrop,
}

impl S3Read {
    fn new(inner: &Arc<Inner>, key: Key, len: u64) -> S3Read {
        S3Read {
            inner: Arc::clone(inner),
            key,
            len,
            cursor: Mutex::new(None),
        }
    }

    /// A reader of the object at `key`, sized by a HEAD; `None` when there
    /// is none.
    fn open(inner: &Arc<Inner>, key: Key) -> Result<Option<Box<dyn BlobRead>>> {
        Ok(inner
            .head(&key)?
            .map(|m| Box::new(S3Read::new(inner, key, m.size)) as Box<dyn BlobRead>))
    }

    fn open_cursor(&self, pos: u64) -> Cursor {
        let end = pos.saturating_add(WINDOW).min(self.len);
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let (store, k) = (Arc::clone(&self.inner.store), self.key.clone());
        let task = self.inner.rt.spawn(async move {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(pos..end)),
                ..GetOptions::default()
            };
            match store.get_opts(&k, opts).await {
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
                Ok(res) => {
                    let mut s = res.into_stream();
                    while let Some(item) = s.next().await {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Cursor {
            pos,
            end,
            pending: bytes::Bytes::new(),
            rx,
            _task: AbortOnDrop(task.abort_handle()),
        }
    }
}

impl BlobRead for S3Read {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let mut guard = self
            .cursor
            .lock()
            .map_err(|_| io::Error::other("a reader panicked"))?;
        let mut failures = 0;
        loop {
            let cur = match guard.as_mut() {
                Some(c) if c.pos == offset && c.pos < c.end => c,
                _ => guard.insert(self.open_cursor(offset)),
            };
            if !cur.pending.is_empty() {
                let n = buf.len().min(cur.pending.len());
                buf[..n].copy_from_slice(&cur.pending[..n]);
                let _ = cur.pending.split_to(n);
                cur.pos += n as u64;
                return Ok(n);
            }
            match cur.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    failures = 0;
                    cur.pending = chunk;
                }
                Some(Err(e)) if failures < RESUMES => {
                    failures += 1;
                    tracing::warn!(key = %self.key, error = %e, "object read failed mid-body; resuming");
                    *guard = None;
                }
                Some(Err(e)) => {
                    return Err(to_io(self.inner.err("GET", &self.key, &e)));
                }
                None if cur.pos < cur.end && failures < RESUMES => {
                    // The body ended early: ask again for the rest.
                    failures += 1;
                    *guard = None;
                }
                None if cur.pos < cur.end => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "GET s3://{}/{} at {}: the body ended at byte {} of {}",
                            self.inner.location.bucket,
                            self.key,
                            self.inner.endpoint,
                            cur.pos,
                            self.len
                        ),
                    ));
                }
                None => {
                    // The window is done; the next one starts at `pos`.
                    *guard = None;
                }
            }
        }
    }
}

/// Reads across an upload session's chunk objects.
struct PartsRead {
    inner: Arc<Inner>,
    parts: Vec<(u64, u64, Key)>,
    len: u64,
}

impl BlobRead for PartsRead {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let i = self.parts.partition_point(|p| p.0 + p.1 <= offset);
        let Some((at, len, key)) = self.parts.get(i) else {
            return Ok(0);
        };
        let start = offset - at;
        let end = (start + buf.len() as u64).min(*len);
        let (store, k) = (Arc::clone(&self.inner.store), key.clone());
        let got = self
            .inner
            .run(async move {
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    ..GetOptions::default()
                };
                store.get_opts(&k, opts).await?.bytes().await
            })
            .map_err(to_io)?
            .map_err(|e| to_io(self.inner.err("GET", key, &e)))?;
        let n = got.len().min(buf.len());
        buf[..n].copy_from_slice(&got[..n]);
        Ok(n)
    }
}

// ---- upload sessions --------------------------------------------------

/// Bytes appended to a session: a chunk object per [`PART`] bytes, the
/// rest at commit.
struct S3UploadWrite {
    inner: Arc<Inner>,
    dir: Key,
    at: u64,
    buf: Vec<u8>,
}

impl S3UploadWrite {
    fn flush_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let key = self.inner.key(&format!(
            "{}/{:020}",
            strip(&self.inner, &self.dir),
            self.at
        ))?;
        let data = bytes::Bytes::from(std::mem::take(&mut self.buf));
        let n = data.len() as u64;
        self.inner.put(&key, data)?;
        self.at += n;
        Ok(())
    }
}

/// A key below the prefix, without the prefix.
fn strip<'a>(inner: &Inner, key: &'a Key) -> &'a str {
    let s = key.as_ref();
    if inner.prefix.is_empty() {
        s
    } else {
        s.strip_prefix(&inner.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(s)
    }
}

impl io::Write for S3UploadWrite {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART {
            self.flush_chunk().map_err(to_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UploadWrite for S3UploadWrite {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_chunk()
    }
}

// ---- the backend ------------------------------------------------------

impl BlobBackend for S3Blobs {
    fn stage(&self) -> Result<Box<dyn BlobWrite>> {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("s3-{}-{}-{n}", std::process::id(), self.inner.boot);
        let key = self.inner.key(&format!("staging/{name}"))?;
        Ok(Box::new(S3Write {
            inner: Arc::clone(&self.inner),
            parts: 0,
            name,
            key,
            buf: Vec::with_capacity(PART),
            upload: None,
            in_flight: VecDeque::new(),
        }))
    }

    fn sync_staging(&self, _unsynced: &[Staged]) -> Result<()> {
        // Every staged object was durable when its write finished.
        Ok(())
    }

    fn commit(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        self.commit_all(&[(staged.clone(), *digest)])
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no commit result".into())))
    }

    fn commit_all(&self, items: &[(Staged, Digest)]) -> Vec<Result<()>> {
        // Keys first: a staged name this backend never gave fails alone.
        let keys: Vec<Result<(Key, Key)>> = items
            .iter()
            .map(|(s, d)| Ok((self.inner.staged_key(s)?, self.inner.blob_key(d)?)))
            .collect();
        let jobs: Vec<(Key, Key)> = keys
            .iter()
            .filter_map(|k| k.as_ref().ok().cloned())
            .collect();
        let store = Arc::clone(&self.inner.store);
        let done = self.inner.run(async move {
            futures_util::stream::iter(jobs)
                .map(|(from, to)| {
                    let store = Arc::clone(&store);
                    async move { copy_staged(&*store, &from, &to).await }
                })
                .buffered(COMMITS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        });
        let mut done = match done {
            Ok(d) => d.into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return items
                    .iter()
                    .map(|_| Err(Error::Internal(msg.clone())))
                    .collect();
            }
        };
        let mut copied = Vec::new();
        let results = keys
            .into_iter()
            .map(|k| {
                let (from, to) = k?;
                match done.next() {
                    Some(Ok(())) => {
                        copied.push(from);
                        Ok(())
                    }
                    Some(Err((op, e))) => Err(self.inner.err(op, &to, &e)),
                    None => Err(Error::Internal("a commit result went missing".into())),
                }
            })
            .collect();
        // The blobs are committed: staging objects left behind are orphans
        // that the next open removes (they are no intent's any more).
        if let Err(e) = self.inner.delete_all(copied) {
            tracing::warn!("could not delete staging objects after their commits: {e}");
        }
        results
    }

    fn sync(&self, _names: &[Digest]) -> Result<()> {
        // Copies and deletes are durable when acknowledged.
        Ok(())
    }

    fn discard(&self, staged: &Staged) -> Result<()> {
        let key = self.inner.staged_key(staged)?;
        self.inner.delete(&key)
    }

    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
        S3Read::open(&self.inner, self.inner.blob_key(digest)?)
    }

    fn open_staged(&self, staged: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
        S3Read::open(&self.inner, self.inner.staged_key(staged)?)
    }

    fn len(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.inner.blob_key(digest)?;
        Ok(self.inner.head(&key)?.map(|m| m.size))
    }

    fn remove(&self, digest: &Digest) -> Result<bool> {
        let key = self.inner.blob_key(digest)?;
        if self.inner.head(&key)?.is_none() {
            return Ok(false);
        }
        self.inner.delete(&key)?;
        Ok(true)
    }

    fn remove_all(&self, digests: &[Digest]) -> Result<()> {
        let keys = digests
            .iter()
            .map(|d| self.inner.blob_key(d))
            .collect::<Result<Vec<Key>>>()?;
        keys.chunks(1000)
            .try_for_each(|chunk| self.inner.delete_all(chunk.to_vec()))
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
        let dir = self.inner.key("blobs")?;
        self.inner.list(&dir, &mut |m| {
            let rel = strip(&self.inner, &m.location);
            let parsed = rel
                .strip_prefix("blobs/")
                .and_then(|r| r.split_once('/'))
                .and_then(|(alg, hex)| {
                    let spelled = format!("{alg}:{hex}");
                    let d: Digest = spelled.parse().ok()?;
                    // Only the canonical spelling is ours.
                    (d.to_string() == spelled).then_some(d)
                });
            each(match parsed {
                Some(d) => Listed::Blob(d),
                None => Listed::Stray(rel.to_string()),
            })
        })
    }

    fn list_staged(&self) -> Result<Vec<Staged>> {
        let dir = self.inner.key("staging")?;
        let mut out = Vec::new();
        self.inner.list(&dir, &mut |m| {
            if let Some(name) = m.location.filename().filter(|n| n.starts_with("s3-")) {
                out.push(Staged::new(name));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn upload_create(&self, id: &str) -> Result<()> {
        let dir = self.inner.upload_dir(id)?;
        let key = self
            .inner
            .key(&format!("{}/{SESSION}", strip(&self.inner, &dir)))?;
        self.inner.put(&key, bytes::Bytes::new())
    }

    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
        let dir = self.inner.upload_dir(id)?;
        let mut have = 0u64;
        for (at, len, key) in self.inner.upload_parts(id)? {
            if at >= offset {
                // Written but never acknowledged: drop it.
                self.inner.delete(&key)?;
            } else if at != have || at + len > offset {
                return Err(Error::Corrupt(format!(
                    "upload {id}: chunk {key} ({len} bytes at {at}) does not continue the {have} bytes before it within the acknowledged {offset}"
                )));
            } else {
                have += len;
            }
        }
        if have != offset {
            return Err(Error::Corrupt(format!(
                "upload {id} holds {have} bytes, fewer than the acknowledged {offset}"
            )));
        }
        Ok(Box::new(S3UploadWrite {
            inner: Arc::clone(&self.inner),
            dir,
            at: offset,
            buf: Vec::new(),
        }))
    }

    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
        let dir = self.inner.upload_dir(id)?;
        let marker = self
            .inner
            .key(&format!("{}/{SESSION}", strip(&self.inner, &dir)))?;
        let parts = self.inner.upload_parts(id)?;
        if parts.is_empty() && self.inner.head(&marker)?.is_none() {
            return Ok(None);
        }
        let len = parts.last().map_or(0, |p| p.0 + p.1);
        Ok(Some(Box::new(PartsRead {
            inner: Arc::clone(&self.inner),
            parts,
            len,
        })))
    }

    fn upload_finish(&self, id: &str) -> Result<Staged> {
        // S3 has no server-side concatenation that takes chunks under
        // 5 MiB, so the session's bytes are copied through, a window at a
        // time, into a staged object.
        let parts = self.inner.upload_parts(id)?;
        let mut w = self.stage()?;
        let mut buf = vec![0u8; 1 << 20];
        for (_, len, key) in &parts {
            let r = S3Read::new(&self.inner, key.clone(), *len);
            let mut off = 0u64;
            while off < *len {
                let n = r
                    .read_at(&mut buf, off)
                    .map_err(|e| Error::io(format!("reading upload {id}"), e))?;
                if n == 0 {
                    return Err(Error::Corrupt(format!(
                        "upload {id}: chunk {key} ended at {off} of {len} bytes"
                    )));
                }
                io::Write::write_all(&mut w, &buf[..n])
                    .map_err(|e| Error::io(format!("staging upload {id}"), e))?;
                off += n as u64;
            }
        }
        let staged = w.finish(true)?;
        self.upload_remove(id)?;
        Ok(staged)
    }

    fn upload_remove(&self, id: &str) -> Result<()> {
        let dir = self.inner.upload_dir(id)?;
        let mut keys = Vec::new();
        self.inner.list(&dir, &mut |m| {
            keys.push(m.location);
            Ok(())
        })?;
        // The marker goes last, so a crash leaves the session listable.
        keys.sort_by_key(|k| k.filename() == Some(SESSION));
        for k in &keys {
            self.inner.delete(k)?;
        }
        Ok(())
    }

    fn upload_list(&self) -> Result<Vec<String>> {
        let dir = self.inner.key("uploads")?;
        self.inner.list_dirs(&dir)
    }
}
