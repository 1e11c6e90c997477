//! Putting blobs: streaming, in memory, in batches, and the re-put of
//! stored content.

use std::io::{self, Read};

use std::sync::Arc;

use super::{BlobInfo, Store};
use crate::blob::{BlobBackend, BlobWrite, Staged};
use crate::digest::{Algorithm, Digest};
use crate::engine::Batch;
use crate::error::{Error, IoContext as _, Result};
use crate::index::blobs::{insert_blob, record_in, refresh};
use crate::index::leases::{add_to_lease, check_lease};
use crate::index::repos::{add_member, ensure_repo};
use crate::oci::hasher::Verifier;
use crate::oci::names;
use crate::schema::keys::MEMBER_BLOB;

/// Size of one chunk in the streaming put pipeline.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the reading, hashing and writing stages.
const POOL: usize = 4;

/// Discards staged blobs that were not handed to the writer.
struct StagedGuard<'a> {
    backend: &'a dyn BlobBackend,
    staged: Vec<Staged>,
}

impl Drop for StagedGuard<'_> {
    fn drop(&mut self) {
        for s in self.staged.drain(..) {
            let _ = self.backend.discard(&s);
        }
    }
}

/// How to put one blob.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// The digest the content must hash to.
    pub digest: Option<Digest>,
    /// The size the content must have.
    pub size: Option<u64>,
    /// The media type to record (informational for plain blobs).
    pub media_type: Option<String>,
    /// Skip fsync: the blob may be lost on power loss until the next durable
    /// commit. Never leaves a record pointing at missing bytes after a crash
    /// (see ARCHITECTURE.md).
    pub no_sync: bool,
    /// Make the blob a member of this repository (as a registry's blob
    /// upload to `/v2/<name>/blobs/` does).
    pub repository: Option<String>,
    /// Hold the blob under this lease (see [`Store::create_lease`]).
    pub lease: Option<u64>,
}

impl PutOptions {
    /// Sets [`PutOptions::digest`].
    #[must_use]
    pub fn digest(mut self, digest: impl Into<Option<Digest>>) -> Self {
        self.digest = digest.into();
        self
    }

    /// Sets [`PutOptions::size`].
    #[must_use]
    pub fn size(mut self, size: impl Into<Option<u64>>) -> Self {
        self.size = size.into();
        self
    }

    /// Sets [`PutOptions::media_type`].
    #[must_use]
    pub fn media_type(mut self, media_type: impl crate::store::OptionalString) -> Self {
        self.media_type = media_type.into_option();
        self
    }

    /// Sets [`PutOptions::no_sync`].
    #[must_use]
    pub fn no_sync(mut self, no_sync: bool) -> Self {
        self.no_sync = no_sync;
        self
    }

    /// Sets [`PutOptions::repository`].
    #[must_use]
    pub fn repository(mut self, repository: impl crate::store::OptionalString) -> Self {
        self.repository = repository.into_option();
        self
    }

    /// Sets [`PutOptions::lease`].
    #[must_use]
    pub fn lease(mut self, lease: impl Into<Option<u64>>) -> Self {
        self.lease = lease.into();
        self
    }
}

impl PutOptions {
    /// Options that verify against an expected digest.
    pub fn expect(digest: Digest) -> PutOptions {
        PutOptions {
            digest: Some(digest),
            ..PutOptions::default()
        }
    }
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// False when the blob was already stored (nothing was written).
    pub created: bool,
}

impl Store {
    /// Stores a blob read from `reader`, verifying it against the expected
    /// digest and size when given. On any mismatch nothing is stored.
    ///
    /// A blob already stored is not written again, but its bytes are still
    /// read and hashed: naming a digest proves nothing, so a repository
    /// only gains a blob whose bytes it received (see docs/guarantees.md,
    /// "Isolation"). The one shortcut is a put to a repository the blob is
    /// already a member of, which gains nothing.
    pub fn put(&self, mut reader: impl Read, opts: &PutOptions) -> Result<PutResult> {
        self.shared.check()?;
        if let Some(existing) = self.reput_member(opts)? {
            return Ok(existing);
        }
        if let Some(d) = opts.digest
            && self.exists(&d)?
        {
            return self.verify_then_link(reader, d, opts);
        }
        let mut v = Verifier::new(opts.digest, opts.size, Algorithm::Sha256);
        let threshold = self.opts.inline_threshold;
        let hint = opts
            .size
            .map_or(8192, |s| s.min(threshold as u64 + 1) as usize);
        let mut head = Vec::with_capacity(hint);
        (&mut reader)
            .take(threshold as u64 + 1)
            .read_to_end(&mut head)
            .context(|| "reading blob content".to_string())?;
        if head.len() <= threshold {
            v.update(&head)?;
            let (digest, size) = v.finish()?;
            return self.commit_inline(digest, size, head, opts);
        }
        let staged = self.stage(head, &mut reader, &mut v, !opts.no_sync)?;
        let (digest, size) = match v.finish() {
            Ok(x) => x,
            Err(e) => {
                let _ = self.backend.discard(&staged);
                return Err(e);
            }
        };
        self.commit_staged(digest, size, staged, opts)
    }

    /// Stores a blob held in memory.
    pub fn put_bytes(&self, data: &[u8], opts: &PutOptions) -> Result<PutResult> {
        if data.len() > self.opts.inline_threshold {
            return match self.put(data, opts) {
                // Swept while its bytes were verified: they are still here,
                // so store them afresh rather than ask for a retry.
                Err(Error::Swept { .. }) => self.put(data, opts),
                r => r,
            };
        }
        self.shared.check()?;
        if let Some(existing) = self.reput_member(opts)? {
            return Ok(existing);
        }
        let mut v = Verifier::new(opts.digest, opts.size, Algorithm::Sha256);
        v.update(data)?;
        let (digest, size) = v.finish()?;
        self.commit_inline(digest, size, data.to_vec(), opts)
    }

    /// Stores many in-memory blobs in one transaction (one fsync for all,
    /// unless `no_sync`). Hashing happens on this thread before the writer
    /// is involved; blobs larger than the inline threshold are written as
    /// files first. On any mismatch nothing is stored.
    pub fn put_blobs(&self, items: &[(&[u8], PutOptions)]) -> Result<Vec<PutResult>> {
        self.shared.check()?;
        enum Ready {
            Inline(Vec<u8>),
            Staged(Staged),
        }
        struct Item {
            digest: Digest,
            size: u64,
            media_type: Option<String>,
            repo: Option<String>,
            lease: Option<u64>,
            synced: bool,
            data: Ready,
        }
        let mut ready = Vec::with_capacity(items.len());
        // Staged blobs not yet handed to the writer: discarded on an error.
        let mut guard = StagedGuard {
            backend: &*self.backend,
            staged: Vec::new(),
        };
        let mut durable = false;
        for (data, o) in items {
            check_options(o)?;
            durable |= !o.no_sync;
            let mut v = Verifier::new(o.digest, o.size, Algorithm::Sha256);
            let (digest, size, data) = if data.len() <= self.opts.inline_threshold {
                v.update(data)?;
                let (d, n) = v.finish()?;
                (d, n, Ready::Inline(data.to_vec()))
            } else {
                let staged = self.stage(Vec::new(), &mut &data[..], &mut v, !o.no_sync)?;
                guard.staged.push(staged.clone());
                let (d, n) = v.finish()?;
                (d, n, Ready::Staged(staged))
            };
            ready.push(Item {
                digest,
                size,
                media_type: o.media_type.clone(),
                repo: o.repository.clone(),
                lease: o.lease,
                synced: !o.no_sync,
                data,
            });
        }
        guard.staged.clear();
        self.submit(durable, move |b| {
            for it in &ready {
                if let Some(l) = it.lease
                    && let Err(e) = check_lease(b, l)
                {
                    for it in &ready {
                        if let Ready::Staged(s) = &it.data {
                            b.discard_staged(s.clone());
                        }
                    }
                    return Err(e);
                }
            }
            let mut out = Vec::with_capacity(ready.len());
            for it in &ready {
                let inserted = match &it.data {
                    Ready::Inline(bytes) => {
                        insert_blob(b, &it.digest, it.size, it.media_type.clone(), Some(bytes))?
                    }
                    Ready::Staged(s) => {
                        let inserted =
                            insert_blob(b, &it.digest, it.size, it.media_type.clone(), None)?;
                        b.place_staged(inserted.created, it.digest, s, it.synced)?;
                        inserted
                    }
                };
                link(b, it.repo.as_deref(), it.lease, &it.digest, inserted.size)?;
                out.push(PutResult {
                    digest: it.digest,
                    size: it.size,
                    created: inserted.created,
                });
            }
            Ok(out)
        })
    }

    /// A put to a repository that already holds the digest: no bytes are
    /// read or written (the repository gains nothing it did not have), but
    /// the put still counts as one. In one writer job, so that no GC sweep
    /// step can commit between the check and the rescue: the membership
    /// is re-checked, the record's grace period restarts, a running GC is
    /// told it is reachable, and the lease takes effect. `None` when the
    /// put names no digest or no repository, or the repository does not
    /// hold the digest (by then): the caller reads the bytes.
    fn reput_member(&self, opts: &PutOptions) -> Result<Option<PutResult>> {
        check_options(opts)?;
        let (Some(d), Some(repo)) = (opts.digest, opts.repository.clone()) else {
            return Ok(None);
        };
        // Cheap pre-check on a snapshot; the writer job decides.
        if !self.is_member(&repo, &d)? {
            return Ok(None);
        }
        let (size, lease) = (opts.size, opts.lease);
        self.submit(!opts.no_sync, move |b| {
            if crate::index::repos::member_kind(b, &repo, &d)?.is_none() {
                return Ok(None);
            }
            let Some(rec) = record_in(b, &d)? else {
                return Ok(None);
            };
            check_size(&d, size, rec.size)?;
            if let Some(l) = lease {
                check_lease(b, l)?;
            }
            let size = rec.size;
            b.note_reachable(&d)?;
            refresh(b, &d, rec)?;
            link(b, Some(&repo), lease, &d, size)?;
            Ok(Some(PutResult {
                digest: d,
                size,
                created: false,
            }))
        })
    }

    /// A put of a digest that is stored (but not in the put's repository):
    /// the bytes are read and hashed, not written, and only bytes that
    /// hash to `d` link it. If the blob is gone by the time they have been
    /// read (a GC swept it), the put fails with [`Error::Swept`], which a
    /// client retries: the bytes were consumed and cannot be written now.
    fn verify_then_link(
        &self,
        reader: impl Read,
        d: Digest,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let mut v = Verifier::new(Some(d), opts.size, d.algorithm());
        hash_stream(reader, &mut v)?;
        let (d, size) = v.finish()?;
        let (repo, lease) = (opts.repository.clone(), opts.lease);
        self.submit(!opts.no_sync, move |b| {
            let Some(rec) = record_in(b, &d)? else {
                return Err(Error::Swept {
                    digest: Box::new(d),
                });
            };
            check_size(&d, Some(size), rec.size)?;
            if let Some(l) = lease {
                check_lease(b, l)?;
            }
            b.note_reachable(&d)?;
            refresh(b, &d, rec)?;
            // check_size made the verified size the record's.
            link(b, repo.as_deref(), lease, &d, size)?;
            Ok(PutResult {
                digest: d,
                size,
                created: false,
            })
        })
    }

    /// Mounts a blob into `repo` (`POST /v2/<repo>/blobs/uploads/?mount=`).
    /// With `from`, the blob must be a member of `from` (the caller is
    /// trusted to have checked that its client may read `from`). Without
    /// it, only a blob that `repo` already holds mounts: a digest alone
    /// must not reach another repository's content. Returns `Ok(None)`
    /// when the mount cannot be made; a registry then opens an upload.
    pub fn mount_blob(
        &self,
        repo: &str,
        d: &Digest,
        from: Option<&str>,
    ) -> Result<Option<BlobInfo>> {
        names::validate_repository(repo)?;
        if let Some(f) = from {
            names::validate_repository(f)?;
        }
        let source = from.unwrap_or(repo).to_string();
        let (repo, d) = (repo.to_string(), *d);
        self.submit(true, move |b| {
            let Some((_, _)) = crate::index::repos::member_kind(b, &source, &d)? else {
                return Ok(None);
            };
            let Some(rec) = record_in(b, &d)? else {
                return Ok(None);
            };
            let id = ensure_repo(b, &repo)?;
            add_member(b, id, &d, MEMBER_BLOB, rec.size)?;
            b.note_reachable(&d)?;
            refresh(b, &d, rec.clone())?;
            Ok(Some(super::info(&d, rec)))
        })
    }

    fn commit_inline(
        &self,
        digest: Digest,
        size: u64,
        bytes: Vec<u8>,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let media_type = opts.media_type.clone();
        let repo = opts.repository.clone();
        let lease = opts.lease;
        self.submit(!opts.no_sync, move |b| {
            if let Some(l) = lease {
                check_lease(b, l)?;
            }
            let inserted = insert_blob(b, &digest, size, media_type.clone(), Some(&bytes))?;
            link(b, repo.as_deref(), lease, &digest, inserted.size)?;
            Ok(PutResult {
                digest,
                size,
                created: inserted.created,
            })
        })
    }

    fn commit_staged(
        &self,
        digest: Digest,
        size: u64,
        staged: Staged,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let media_type = opts.media_type.clone();
        let synced = !opts.no_sync;
        let repo = opts.repository.clone();
        let lease = opts.lease;
        self.submit(synced, move |b| {
            if let Some(l) = lease
                && let Err(e) = check_lease(b, l)
            {
                b.discard_staged(staged.clone());
                return Err(e);
            }
            let inserted = insert_blob(b, &digest, size, media_type.clone(), None)?;
            link(b, repo.as_deref(), lease, &digest, inserted.size)?;
            let created = inserted.created;
            b.place_staged(created, digest, &staged, synced)?;
            Ok(PutResult {
                digest,
                size,
                created,
            })
        })
    }

    /// Writes a blob's bytes to a new staged blob while hashing them. With
    /// `durable`, a failure to make them so poisons the store: the kernel
    /// may have dropped the dirty pages, so a retry that succeeds proves
    /// nothing (the fsyncgate lesson); only a reopen starts clean.
    fn stage(
        &self,
        head: Vec<u8>,
        reader: &mut impl Read,
        v: &mut Verifier,
        durable: bool,
    ) -> Result<Staged> {
        let mut w = self.backend.stage()?;
        stream_to(head, reader, &mut *w, v)?;
        w.finish(durable).inspect_err(|e| {
            if durable {
                self.shared.poison_failed_write(e);
            }
        })
    }
}

/// What a put's options name is checked before any byte is read.
fn check_options(opts: &PutOptions) -> Result<()> {
    if let Some(r) = &opts.repository {
        names::validate_repository(r)?;
    }
    if let Some(mt) = opts.media_type.as_deref().filter(|m| !m.is_empty()) {
        names::validate_media_type(mt)?;
    }
    Ok(())
}
/// A stored record's size against the size a put declared.
fn check_size(d: &Digest, declared: Option<u64>, stored: u64) -> Result<()> {
    match declared {
        Some(want) if want != stored => Err(Error::SizeMismatch {
            what: d.to_string(),
            expected: want,
            actual: stored,
            more: "",
        }),
        _ => Ok(()),
    }
}

/// Reads `reader` to its end through the verifier, writing nothing: the
/// size limit is checked per chunk, so a body longer than declared stops
/// early.
fn hash_stream(mut reader: impl Read, v: &mut Verifier) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading blob content", e)),
        };
        v.update(&buf[..n])?;
    }
}

/// Adds `d` (its record holding `size` bytes) to the lease and the
/// repository the put names.
fn link(
    b: &mut Batch<'_>,
    repo: Option<&str>,
    lease: Option<u64>,
    d: &Digest,
    size: u64,
) -> Result<()> {
    if let Some(l) = lease {
        add_to_lease(b, l, d)?;
    }
    if let Some(r) = repo {
        let id = ensure_repo(b, r)?;
        add_member(b, id, d, MEMBER_BLOB, size)?;
    }
    Ok(())
}

/// Reads, hashes and writes in a pipeline: this thread reads and writes the
/// staged blob while a helper hashes, so a put runs at the speed of the slower of
/// the two instead of their sum.
fn stream_to(
    head: Vec<u8>,
    reader: &mut impl Read,
    out: &mut dyn BlobWrite,
    v: &mut Verifier,
) -> Result<()> {
    let mut hasher = v.take_hasher();
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(POOL + 1);
    let (hash_tx, hash_rx) = crossbeam_channel::bounded::<Arc<Vec<u8>>>(POOL);
    for _ in 0..POOL {
        let _ = free_tx.send(Vec::with_capacity(CHUNK));
    }

    std::thread::scope(|s| -> Result<()> {
        let recycle = free_tx.clone();
        let hashing = s.spawn(move || {
            for chunk in hash_rx {
                hasher.update(&chunk);
                if let Some(buf) = Arc::into_inner(chunk) {
                    let _ = recycle.send(buf);
                }
            }
            hasher
        });
        let feed = || -> Result<()> {
            // An empty head is no end of stream: the reader has it all.
            let mut next = Some(head).filter(|h| !h.is_empty());
            loop {
                let buf = match next.take() {
                    Some(b) => b,
                    None => {
                        let mut buf = free_rx.recv().unwrap_or_default();
                        buf.clear();
                        (&mut *reader)
                            .take(CHUNK as u64)
                            .read_to_end(&mut buf)
                            .context(|| "reading blob content".to_string())?;
                        buf
                    }
                };
                if buf.is_empty() {
                    return Ok(());
                }
                v.check_size(buf.len())?;
                v.account(buf.len());
                let chunk = Arc::new(buf);
                hash_tx
                    .send(Arc::clone(&chunk))
                    .map_err(|_| Error::io("hashing", io::Error::other("hash thread stopped")))?;
                out.write_all(&chunk)
                    .context(|| "writing a staged blob".to_string())?;
                if let Some(buf) = Arc::into_inner(chunk) {
                    let _ = free_tx.send(buf);
                }
            }
        };
        let r = feed();
        drop(hash_tx);
        match hashing.join() {
            Ok(h) => v.restore_hasher(h),
            Err(_) => {
                return Err(Error::io(
                    "hashing",
                    io::Error::other("hash thread panicked"),
                ))
            }
        }
        r
    })
}
