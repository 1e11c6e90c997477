//! The client side of the S3 backend: options and credentials, the keys
//! below the prefix, and the requests every part of the backend shares.

pub(super) use std::collections::VecDeque;
pub(super) use std::fmt;
pub(super) use std::future::Future;
pub(super) use std::io;
pub(super) use std::sync::atomic::{AtomicU64, Ordering};
pub(super) use std::sync::{Arc, Mutex};
pub(super) use std::time::Duration;

pub(super) use futures_util::StreamExt as _;
pub(super) use object_store::aws::AmazonS3Builder;
pub(super) use object_store::path::Path as Key;
pub(super) use object_store::{
    BackoffConfig, ClientOptions, CopyMode, CopyOptions, GetOptions, GetRange, MultipartUpload,
    ObjectMeta, ObjectStore, PutPayload, RetryConfig,
};

pub(super) use crate::blob::location::S3Location;
pub(super) use crate::blob::{BlobBackend, BlobRead, BlobWrite, Listed, Staged, UploadWrite};
pub(super) use crate::digest::Digest;
pub(super) use crate::error::{Error, Result};

/// Bytes per multipart part and per upload-session chunk object. S3 wants
/// at least 5 MiB for every part but the last.
pub(super) const PART: usize = 6 << 20;
/// Parts per size step: every thousand parts the part size doubles (S3
/// allows at most 10,000 parts), so a blob is not limited to 10,000 ×
/// `PART` bytes; memory grows only past 6 GB.
pub(super) const PARTS_PER_STEP: usize = 1000;
/// Parts of one staged write in flight at once: with the part being
/// filled, a write holds at most `(IN_FLIGHT + 1) × PART` bytes.
pub(super) const IN_FLIGHT: usize = 2;
/// Bytes a reader asks for per GET: a slow consumer never holds one
/// request open for a whole large blob (requests have a deadline).
pub(super) const WINDOW: u64 = 16 << 20;
/// Body chunks a reader buffers ahead of its consumer.
pub(super) const READ_AHEAD: usize = 16;
/// Times a reader re-requests the rest of a window after a failure
/// mid-body, on top of the client's own retries of each request.
pub(super) const RESUMES: u32 = 3;
/// Commits (server-side copies) of one group commit in flight at once.
pub(super) const COMMITS_IN_FLIGHT: usize = 8;
/// Retries of a delete whose response reported a per-key failure.
pub(super) const DELETE_RETRIES: u32 = 5;
/// The marker object that makes an empty upload session listable.
pub(super) const SESSION: &str = "session";
/// The object naming the store that owns the prefix.
pub(super) const MARKER: &str = "ocidb-store";

/// Set to `1` to let the AWS credential chain ask the instance metadata
/// service when no key is in the environment.
pub const INSTANCE_CREDENTIALS: &str = "OCIDB_S3_INSTANCE_CREDENTIALS";

/// Whether the environment names credentials the AWS chain can use
/// without the instance metadata service (or allows that service).
pub(super) fn credentials_in_environment() -> bool {
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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The same bucket with one short attempt per request, for the check
    /// at open: an unreachable endpoint is reported in seconds.
    pub(super) probe: Arc<dyn ObjectStore>,
    pub(super) location: S3Location,
    pub(super) endpoint: String,
    pub(super) prefix: String,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) seq: AtomicU64,
    /// Distinguishes this process's staged names from a crashed one's.
    pub(super) boot: u64,
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
    pub(super) fn run<F>(&self, fut: F) -> Result<F::Output>
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

    pub(super) fn key(&self, rest: &str) -> Result<Key> {
        let full = if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        };
        Key::parse(&full).map_err(|e| Error::Internal(format!("object key `{full}`: {e}")))
    }

    pub(super) fn blob_key(&self, d: &Digest) -> Result<Key> {
        let mut buf = [0u8; 128];
        self.key(&format!(
            "blobs/{}/{}",
            d.algorithm().name(),
            d.encode_hex(&mut buf)
        ))
    }

    pub(super) fn staged_key(&self, s: &Staged) -> Result<Key> {
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

    pub(super) fn upload_dir(&self, id: &str) -> Result<Key> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(Error::InvalidArgument {
                value: crate::text::quote_untrusted(id),
                expected: "an upload id: hex digits and dashes, at most 64".into(),
            });
        }
        self.key(&format!("uploads/{id}"))
    }

    pub(super) fn err(&self, op: &str, key: &Key, e: &object_store::Error) -> Error {
        Error::Backend {
            endpoint: self.endpoint.clone(),
            op: format!("{op} s3://{}/{key}", self.location.bucket),
            detail: e.to_string(),
        }
    }

    /// The object's metadata; `None` when there is none.
    pub(super) fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let (store, k) = (Arc::clone(&self.store), key.clone());
        match self.run(async move { head(&*store, &k).await })? {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("HEAD", key, &e)),
        }
    }

    /// Deletes an object; absent is not an error.
    pub(super) fn delete(&self, key: &Key) -> Result<()> {
        self.delete_all(vec![key.clone()])
    }

    /// Deletes objects (S3's bulk DeleteObjects, a thousand keys a
    /// request); absent ones are no error. A bulk delete reports failures
    /// per key inside a successful response, which the client does not
    /// retry (Garage answers "database is locked" there under load), so
    /// the whole set is retried here: deletes are idempotent.
    pub(super) fn delete_all(&self, keys: Vec<Key>) -> Result<()> {
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

    pub(super) fn put(&self, key: &Key, bytes: bytes::Bytes) -> Result<()> {
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
    pub(super) fn list(
        &self,
        dir: &Key,
        each: &mut dyn FnMut(ObjectMeta) -> Result<()>,
    ) -> Result<()> {
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
    pub(super) fn list_dirs(&self, dir: &Key) -> Result<Vec<String>> {
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
    pub(super) fn upload_parts(&self, id: &str) -> Result<Vec<(u64, u64, Key)>> {
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

pub(super) async fn head(store: &dyn ObjectStore, key: &Key) -> object_store::Result<ObjectMeta> {
    let opts = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    Ok(store.get_opts(key, opts).await?.meta)
}

/// Copies a staged object to its final key; on failure, the operation's
/// name and the error.
pub(super) async fn copy_staged(
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
pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn to_io(e: Error) -> io::Error {
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
