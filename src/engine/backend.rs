//! Which blob backend a store opens with. The store records its blob
//! location in META at the first open that names one, so that a later open
//! never looks for the bytes in the wrong place: a location that differs
//! from the recorded one is refused, and a store whose blobs are local
//! files moves them with `ocidb migrate-blobs` rather than by a flag.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _};

use crate::blob::{BlobBackend, BlobLocation, LocalFiles, S3Location};
use crate::error::{Error, Result};
use crate::schema::tables::META;

/// The META key of the blob location (absent: local files).
const LOCATION_KEY: &str = "blob_location";

/// What an S3 store refuses when its bucket was unreachable at open.
pub(crate) const REFUSED_WHEN_UNAVAILABLE: &str =
    "writes, deletes, GC, fsck, export and reads of blobs above the inline threshold";

/// The location recorded in the store; `Local` when none is.
pub(crate) fn recorded(db: &Database) -> Result<BlobLocation> {
    let r = db.begin_read()?;
    let t = r.open_table(META)?;
    let Some(v) = t.get(LOCATION_KEY)? else {
        return Ok(BlobLocation::Local);
    };
    let text = std::str::from_utf8(v.value())
        .map_err(|_| Error::Corrupt("the recorded blob location is not UTF-8".into()))?;
    text.parse()
        .map_err(|e| Error::Corrupt(format!("the recorded blob location: {e}")))
}

/// Records `loc` as the store's blob location, durably.
pub(crate) fn record(db: &Database, loc: &BlobLocation) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(META)?;
        match loc {
            BlobLocation::Local => {
                t.remove(LOCATION_KEY)?;
            }
            other => {
                t.insert(LOCATION_KEY, other.to_string().as_bytes())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The store's id, as it claims an object-store prefix: derived from its
/// random cursor key (which stays secret) so that it needs no new state.
pub(crate) fn store_id(cursor_key: &[u8; 32]) -> String {
    let d = crate::oci::hasher::Hasher::digest_of(
        crate::digest::Algorithm::Sha256,
        &[b"ocidb store id\0".as_slice(), cursor_key.as_slice()].concat(),
    );
    d.hex()[..32].to_string()
}

/// Whether local blob files or upload bytes exist below `root`.
pub(crate) fn has_local_bytes(root: &Path) -> bool {
    ["blobs/sha256", "blobs/sha512", "uploads"]
        .iter()
        .any(|d| std::fs::read_dir(root.join(d)).is_ok_and(|mut it| it.next().is_some()))
}

/// The location this open uses, and whether it is new to the store: the
/// recorded one, or `requested` when the store has none yet and holds no
/// local blob bytes. The caller records a new one once it has connected.
pub(crate) fn resolve(
    db: &Database,
    root: &Path,
    requested: Option<&BlobLocation>,
) -> Result<(BlobLocation, bool)> {
    let have = recorded(db)?;
    let Some(want) = requested else {
        return Ok((have, false));
    };
    if *want == have {
        return Ok((have, false));
    }
    // The same bucket and prefix through another endpoint (a cluster
    // member talks to its nearest node; a store moved behind a new
    // address): the same place. The recorded location stays.
    if let (BlobLocation::S3(w), BlobLocation::S3(h)) = (want, &have)
        && w.bucket == h.bucket
        && w.prefix == h.prefix
    {
        return Ok((want.clone(), false));
    }
    if have == BlobLocation::Local && !has_local_bytes(root) {
        return Ok((want.clone(), true));
    }
    let how = match (&have, want) {
        (BlobLocation::Local, _) => format!(
            "to move its blobs, run `ocidb --store {} migrate-blobs --to {want}`",
            root.display()
        ),
        _ => "blobs move only from local files into a bucket (`ocidb migrate-blobs`), not out of one or between buckets".to_string(),
    };
    Err(Error::InvalidArgument {
        value: want.to_string(),
        expected: format!(
            "the blob location of store {}, which is `{have}`; {how}",
            root.display()
        ),
    })
}

/// What the store's options say about blobs (the engine does not see the
/// store's own option type).
pub(crate) struct Wanted<'a> {
    /// The location asked for, if any.
    pub location: Option<&'a BlobLocation>,
    /// Injected faults for local files (tests).
    pub faults: Option<Arc<dyn crate::sync_points::Injector>>,
    /// Credentials, retries and deadlines for a bucket.
    #[cfg(feature = "s3")]
    pub s3: &'a crate::blob::S3Options,
}

/// What [`open`] found.
pub(crate) struct Opened {
    pub backend: Arc<dyn BlobBackend>,
    /// Digests of an older build's crash-intent file (local files only).
    pub legacy: Vec<crate::digest::Digest>,
    pub location: BlobLocation,
    /// The same backend, when the bucket did not answer at open: the
    /// store retries it through [`Unreachable::reconnect`].
    pub unreachable: Option<Arc<Unreachable>>,
    /// The bucket's index log (`crate::log`), for a store on S3: built
    /// whether or not the bucket answered, as its requests fail alike.
    pub index_log: Option<Arc<dyn crate::log::IndexLog>>,
}

/// The backend a store opens with, its crash-intent names of an older
/// build (local files only), and its location. An unreachable bucket that
/// the store already uses leaves it read-only (`shared` says why); one
/// that a new store was to use fails the open, recording nothing.
pub(crate) fn open(
    db: &Database,
    root: &Path,
    opts: &Wanted<'_>,
    cursor_key: &[u8; 32],
    shared: &crate::engine::Shared,
) -> Result<Opened> {
    let (s3, new) = match resolve(db, root, opts.location)? {
        (BlobLocation::Local, _) => {
            let local = LocalFiles::with_faults(root, opts.faults.clone())?;
            let legacy = local.legacy_intent();
            return Ok(Opened {
                backend: Arc::new(local),
                legacy,
                location: BlobLocation::Local,
                unreachable: None,
                index_log: None,
            });
        }
        (BlobLocation::S3(s3), new) => (s3, new),
    };
    let (connected, index_log) = connect(&s3, opts, &store_id(cursor_key))?;
    match connected {
        Ok(b) => {
            let loc = BlobLocation::S3(s3);
            if new {
                record(db, &loc)?;
            }
            Ok(Opened {
                backend: b,
                legacy: Vec::new(),
                location: loc,
                unreachable: None,
                index_log,
            })
        }
        Err(reason) if new => Err(Error::Backend {
            endpoint: s3.endpoint.clone().unwrap_or_default(),
            op: format!("the first use of {s3} by store {}", root.display()),
            detail: reason,
        }),
        Err(reason) => {
            let down = Arc::new(Unreachable::new(&s3, reason, opts, &store_id(cursor_key)));
            tracing::warn!("{}", down.error());
            shared.set_unavailable(down.location.clone(), down.reason.clone());
            Ok(Opened {
                backend: Arc::clone(&down) as Arc<dyn BlobBackend>,
                legacy: Vec::new(),
                location: BlobLocation::S3(s3),
                unreachable: Some(down),
                index_log,
            })
        }
    }
}

/// What [`connect`] gives: the backend, or why the bucket did not answer.
type Connected = std::result::Result<Arc<dyn BlobBackend>, String>;

/// A backend for the bucket at `loc`, and the index log in the same bucket
/// (sharing its client, whether or not the bucket answered: the log's
/// requests fail alike). One quick request checks that it is reachable;
/// when it is not, the reason comes back as `Err` in the first place, so
/// that the store can open without it.
fn connect(
    loc: &S3Location,
    opts: &Wanted<'_>,
    store_id: &str,
) -> Result<(Connected, Option<Arc<dyn crate::log::IndexLog>>)> {
    #[cfg(feature = "s3")]
    {
        let b = crate::blob::S3Blobs::with_options(loc, opts.s3)?;
        let log = Some(b.index_log());
        if let Err(e) = b.check() {
            return Ok((Err(e.to_string()), log));
        }
        b.claim(store_id)?;
        Ok((Ok(Arc::new(b)), log))
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (opts, store_id);
        Err(Error::InvalidArgument {
            value: loc.to_string(),
            expected: "a blob location this build supports: it was built without feature `s3`"
                .into(),
        })
    }
}

/// The backend of a store whose object store was unreachable at open:
/// every call fails with [`Error::Unavailable`] until [`Unreachable::reconnect`]
/// connects, after which every call goes to the bucket.
pub(crate) struct Unreachable {
    pub location: String,
    pub reason: String,
    /// What a later connection needs.
    #[cfg(feature = "s3")]
    again: Option<(S3Location, crate::blob::S3Options, String)>,
    /// The bucket, once it answered.
    connected: std::sync::RwLock<Option<Arc<dyn BlobBackend>>>,
    /// One reconnection at a time.
    reconnecting: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unreachable")
            .field("location", &self.location)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl Unreachable {
    fn new(
        location: &S3Location,
        reason: String,
        opts: &Wanted<'_>,
        store_id: &str,
    ) -> Unreachable {
        #[cfg(not(feature = "s3"))]
        let _ = (opts, store_id);
        Unreachable {
            location: location.to_string(),
            reason,
            #[cfg(feature = "s3")]
            again: Some((location.clone(), opts.s3.clone(), store_id.to_string())),
            connected: std::sync::RwLock::new(None),
            reconnecting: std::sync::Mutex::new(()),
        }
    }

    pub(crate) fn error(&self) -> Error {
        Error::Unavailable {
            location: self.location.clone(),
            reason: self.reason.clone(),
            refused: REFUSED_WHEN_UNAVAILABLE.into(),
        }
    }

    /// The bucket, once connected.
    fn inner(&self) -> Result<Arc<dyn BlobBackend>> {
        let g = match self.connected.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.clone().ok_or_else(|| self.error())
    }

    /// Tries the bucket again. When it answers, `settle` runs against it
    /// (the crash recovery that open skipped), then every call goes to it
    /// and `Ok(true)` is returned; `Ok(false)` while it still does not
    /// answer. The store refuses writes until the caller lifts that.
    pub(crate) fn reconnect(
        &self,
        settle: impl FnOnce(&dyn BlobBackend) -> Result<()>,
    ) -> Result<bool> {
        let _one = match self.reconnecting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.inner().is_ok() {
            return Ok(true);
        }
        #[cfg(feature = "s3")]
        {
            let Some((loc, s3, store_id)) = &self.again else {
                return Ok(false);
            };
            let wanted = Wanted {
                location: None,
                faults: None,
                s3,
            };
            // (The store keeps the index log it built at open.)
            let (Ok(b), _) = connect(loc, &wanted, store_id)? else {
                return Ok(false);
            };
            settle(&*b)?;
            match self.connected.write() {
                Ok(mut g) => *g = Some(b),
                Err(p) => *p.into_inner() = Some(b),
            }
            Ok(true)
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = settle;
            Ok(false)
        }
    }
}

impl BlobBackend for Unreachable {
    fn check(&self) -> Result<()> {
        self.inner()?.check()
    }
    fn stage(&self) -> Result<Box<dyn crate::blob::BlobWrite>> {
        self.inner()?.stage()
    }
    fn sync_staging(&self, staged: &[crate::blob::Staged]) -> Result<()> {
        self.inner()?.sync_staging(staged)
    }
    fn commit(&self, staged: &crate::blob::Staged, d: &crate::digest::Digest) -> Result<()> {
        self.inner()?.commit(staged, d)
    }
    fn commit_all(
        &self,
        items: &[(crate::blob::Staged, crate::digest::Digest)],
    ) -> Vec<Result<()>> {
        match self.inner() {
            Ok(b) => b.commit_all(items),
            Err(_) => items.iter().map(|_| Err(self.error())).collect(),
        }
    }
    fn sync(&self, names: &[crate::digest::Digest]) -> Result<()> {
        self.inner()?.sync(names)
    }
    fn discard(&self, staged: &crate::blob::Staged) -> Result<()> {
        self.inner()?.discard(staged)
    }
    fn open(&self, d: &crate::digest::Digest) -> Result<Option<Box<dyn crate::blob::BlobRead>>> {
        self.inner()?.open(d)
    }
    fn open_staged(
        &self,
        staged: &crate::blob::Staged,
    ) -> Result<Option<Box<dyn crate::blob::BlobRead>>> {
        self.inner()?.open_staged(staged)
    }
    fn len(&self, d: &crate::digest::Digest) -> Result<Option<u64>> {
        self.inner()?.len(d)
    }
    fn remove(&self, d: &crate::digest::Digest) -> Result<bool> {
        self.inner()?.remove(d)
    }
    fn remove_all(&self, digests: &[crate::digest::Digest]) -> Result<()> {
        self.inner()?.remove_all(digests)
    }
    fn list(&self, each: &mut dyn FnMut(crate::blob::Listed) -> Result<()>) -> Result<()> {
        self.inner()?.list(each)
    }
    fn list_staged(&self) -> Result<Vec<crate::blob::Staged>> {
        self.inner()?.list_staged()
    }
    fn upload_create(&self, id: &str) -> Result<()> {
        self.inner()?.upload_create(id)
    }
    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn crate::blob::UploadWrite>> {
        self.inner()?.upload_append(id, offset)
    }
    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn crate::blob::BlobRead>>> {
        self.inner()?.upload_open(id)
    }
    fn upload_finish(&self, id: &str) -> Result<crate::blob::Staged> {
        self.inner()?.upload_finish(id)
    }
    fn upload_remove(&self, id: &str) -> Result<()> {
        self.inner()?.upload_remove(id)
    }
    fn upload_list(&self) -> Result<Vec<String>> {
        self.inner()?.upload_list()
    }
    fn hard_link(&self, d: &crate::digest::Digest, dst: &Path) -> Result<bool> {
        self.inner()?.hard_link(d, dst)
    }
}
