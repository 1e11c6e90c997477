//! Resumable upload sessions: a blob that arrives in chunks over many
//! requests, survives a restart of the process, and is hashed once.
//!
//! A session is a record in the `uploads` table (repository, algorithm,
//! bytes acknowledged, the hash state after them, its lease) and bytes in
//! the blob backend. An append writes and syncs the bytes, then commits the
//! record with the new offset and hash state: what was acknowledged
//! survives `kill -9` and power loss, and a write that was not acknowledged
//! is dropped by the next append. Finishing checks the digest from the
//! saved state (no re-read, unless the client names another algorithm),
//! then turns the bytes into a blob without copying them.

use std::collections::HashSet;
use std::io::{Read, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use redb::ReadableTable as _;

use super::{PutResult, Store};
use crate::blob::hash_all;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext as _, Result};
use crate::index::uploads::{self, unknown};
use crate::oci::hasher::Hasher;
use crate::oci::names;
use crate::schema::record::UploadRecord;
use crate::schema::tables::{self, UPLOADS};

/// Size of one read from a chunk's body.
const CHUNK: usize = 1 << 20;

/// How to begin an upload.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UploadOptions {
    /// The algorithm to hash with as bytes arrive (default sha256). A
    /// finish with a digest of another algorithm re-reads the bytes once.
    pub algorithm: Option<Algorithm>,
    /// How long the session's lease holds what it uploads (default 24 h).
    pub lease_ttl: Option<Duration>,
}

impl UploadOptions {
    /// Sets [`UploadOptions::algorithm`].
    #[must_use]
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// Sets [`UploadOptions::lease_ttl`].
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }
}

/// Where an upload session stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadStatus {
    /// The session id (hex): the `<uuid>` of a registry's upload URL.
    pub id: String,
    /// The repository it uploads to.
    pub repository: String,
    /// Bytes acknowledged so far: the next append starts here.
    pub offset: u64,
    /// When it began (milliseconds since the Unix epoch).
    pub created_ms: u64,
    /// When bytes last arrived.
    pub updated_ms: u64,
}

/// Sessions with an append or finish in progress in this process.
#[derive(Default)]
pub(crate) struct BusyUploads(Mutex<HashSet<String>>);

/// Marks a session busy until dropped.
struct BusyGuard<'a> {
    set: &'a BusyUploads,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.set.0.lock() {
            g.remove(&self.id);
        }
    }
}

impl BusyUploads {
    fn take<'a>(&'a self, id: &str) -> Result<BusyGuard<'a>> {
        let mut g = self
            .0
            .lock()
            .map_err(|_| Error::lock("upload sessions lock"))?;
        if !g.insert(id.to_string()) {
            return Err(Error::UploadBusy { id: id.to_string() });
        }
        Ok(BusyGuard {
            set: self,
            id: id.to_string(),
        })
    }
}

fn status(id: &str, r: &UploadRecord) -> UploadStatus {
    UploadStatus {
        id: id.to_string(),
        repository: r.repo.clone(),
        offset: r.offset,
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
    }
}

impl Store {
    /// Begins an upload session to `repo`, holding a lease for what it
    /// uploads.
    pub fn begin_upload(&self, repo: &str, opts: &UploadOptions) -> Result<UploadStatus> {
        names::validate_repository(repo)?;
        self.shared.check()?;
        let algorithm = opts.algorithm.unwrap_or(Algorithm::Sha256);
        let lease = self.create_lease(opts.lease_ttl.unwrap_or(Duration::from_secs(24 * 3600)))?;
        let id = crate::engine::open::random_hex(16);
        self.backend.upload_create(&id)?;
        let now = self.shared.now_ms();
        let rec = UploadRecord {
            repo: repo.to_string(),
            algorithm,
            offset: 0,
            created_ms: now,
            updated_ms: now,
            lease: lease.id,
            state: Hasher::new(algorithm).save_state(),
        };
        let value = rec.encode()?;
        let key = id.clone();
        let r = self.submit(true, move |b| uploads::put_upload(b, &key, &value));
        if let Err(e) = r {
            let _ = self.backend.upload_remove(&id);
            let _ = self.release_lease(lease.id);
            return Err(e);
        }
        Ok(status(&id, &rec))
    }

    fn upload_record(&self, id: &str) -> Result<UploadRecord> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(UPLOADS)?;
        let g = t.get(id)?.ok_or_else(|| unknown(id))?;
        UploadRecord::decode(g.value())
    }

    /// Where a session stands.
    pub fn upload_status(&self, id: &str) -> Result<UploadStatus> {
        Ok(status(id, &self.upload_record(id)?))
    }

    /// Appends the bytes of `body` at `offset`, which must be the bytes
    /// acknowledged so far ([`Error::UploadOffset`] otherwise, with the
    /// current offset). Returns the new status once the bytes are durable.
    pub fn append_upload(&self, id: &str, offset: u64, body: impl Read) -> Result<UploadStatus> {
        let _busy = self.uploads_busy.take(id)?;
        let rec = self.append_locked(id, offset, body)?;
        Ok(status(id, &rec))
    }

    fn append_locked(&self, id: &str, offset: u64, mut body: impl Read) -> Result<UploadRecord> {
        self.shared.check()?;
        let mut rec = self.upload_record(id)?;
        if offset != rec.offset {
            return Err(Error::UploadOffset {
                id: id.to_string(),
                expected: rec.offset,
                given: offset,
            });
        }
        let mut hasher = Hasher::restore(rec.algorithm, &rec.state)?;
        let mut out = self.backend.upload_append(id, rec.offset)?;
        let mut buf = vec![0u8; CHUNK];
        let mut added = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("reading the body of upload {id}"), e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .context(|| format!("writing upload {id}"))?;
            added += n as u64;
        }
        if added == 0 {
            return Ok(rec);
        }
        out.commit()
            .inspect_err(|e| self.shared.poison_failed_write(e))?;
        rec.offset += added;
        rec.state = hasher.save_state();
        rec.updated_ms = self.shared.now_ms();
        let value = rec.encode()?;
        let (key, before) = (id.to_string(), offset);
        self.submit(true, move |b| {
            uploads::advance_upload(b, &key, before, &value)
        })?;
        Ok(rec)
    }

    /// Appends `tail` (may be empty), checks the whole upload against
    /// `expected`, and stores it as a blob of the session's repository,
    /// held by its lease. On a mismatch nothing is stored and the session
    /// stays open.
    pub fn finish_upload(&self, id: &str, expected: &Digest, tail: impl Read) -> Result<PutResult> {
        let _busy = self.uploads_busy.take(id)?;
        let rec = self.upload_record(id)?;
        let rec = self.append_locked(id, rec.offset, tail)?;
        let actual = if expected.algorithm() == rec.algorithm {
            Hasher::restore(rec.algorithm, &rec.state)?.finish()
        } else {
            let r = self.backend.upload_open(id)?.ok_or_else(|| unknown(id))?;
            hash_all(&*r, expected.algorithm(), rec.offset)
                .context(|| format!("hashing upload {id}"))?
        };
        if actual != *expected {
            return Err(Error::DigestMismatch {
                expected: Box::new(*expected),
                actual: Box::new(actual),
            });
        }
        let staged = self.backend.upload_finish(id)?;
        let (key, d, size, repo, lease) =
            (id.to_string(), *expected, rec.offset, rec.repo, rec.lease);
        self.submit(true, move |b| {
            let created = uploads::complete_upload(b, &key, &d, size, &repo, lease, &staged)?;
            Ok(PutResult {
                digest: d,
                size,
                created,
            })
        })
    }

    /// Cancels a session: its bytes go, and its lease is released.
    pub fn cancel_upload(&self, id: &str) -> Result<()> {
        let _busy = self.uploads_busy.take(id)?;
        let rec = self.upload_record(id)?;
        let key = id.to_string();
        self.submit(true, move |b| uploads::remove_upload(b, &key))?;
        self.backend.upload_remove(id)?;
        let _ = self.release_lease(rec.lease);
        Ok(())
    }

    /// Every open session.
    pub fn uploads(&self) -> Result<Vec<UploadStatus>> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(status(k.value(), &UploadRecord::decode(v.value())?));
        }
        Ok(out)
    }

    /// Cancels every session that received nothing for `idle`; returns how
    /// many. A registry runs it on a schedule (distribution purges after a
    /// week by default).
    pub fn purge_uploads(&self, idle: Duration) -> Result<usize> {
        let now = self.shared.now_ms();
        let limit = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let mut n = 0;
        for s in self.uploads()? {
            if now.saturating_sub(s.updated_ms) >= limit {
                match self.cancel_upload(&s.id) {
                    Ok(()) => n += 1,
                    // In use right now: not stale after all.
                    Err(Error::UploadBusy { .. } | Error::UploadUnknown { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }
}
