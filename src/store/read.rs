//! Reading blobs: records, whole and ranged readers, verification, and
//! the deletion of one blob.

use std::borrow::Cow;
use std::io::Read;

use super::Store;
use crate::blob::{hash_all, BlobRead, BlobReader, Source, Staged, VerifiedReader};
use crate::digest::{Digest, DigestText};
use crate::error::{Error, IoContext as _, Result};
use crate::oci::hasher::Hasher;
use crate::schema::body;
use crate::schema::record::{self, BlobRecord, Placement};
use crate::schema::tables::{self, BLOBS, BODIES, INTENTS, MEMBERS};

/// Metadata of a stored blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlobInfo {
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type, when known.
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Whether the blob was indexed as a manifest.
    #[serde(skip)]
    pub manifest: bool,
    /// Where the bytes live.
    #[serde(skip)]
    pub placement: Placement,
    /// When it was first stored (milliseconds since the Unix epoch).
    #[serde(skip)]
    pub created_ms: u64,
}

impl Store {
    /// Reads a blob's record.
    pub(crate) fn record(&self, d: &Digest) -> Result<Option<BlobRecord>> {
        let txn = tables::begin_read(&self.db)?;
        record::lookup(&txn.open_table(BLOBS)?, d)
    }

    /// Size and media type of a blob.
    pub fn stat(&self, d: &Digest) -> Result<BlobInfo> {
        let rec = self.record(d)?.ok_or_else(|| not_found(d))?;
        Ok(info(d, rec))
    }

    /// Whether the store holds nothing: no blob, repository, lease or
    /// upload session (what a command that failed on a new store leaves).
    pub fn is_empty(&self) -> Result<bool> {
        use redb::ReadableTable as _;
        let txn = tables::begin_read(&self.db)?;
        Ok(txn.open_table(BLOBS)?.first()?.is_none()
            && txn.open_table(tables::REPOS)?.first()?.is_none()
            && txn.open_table(tables::LEASES)?.first()?.is_none()
            && txn.open_table(tables::UPLOADS)?.first()?.is_none())
    }

    /// The one stored digest `text` names: a whole digest (returned as
    /// parsed, stored or not), or a [`DigestPrefix`](crate::DigestPrefix) that exactly one
    /// stored blob's digest starts with, as git accepts abbreviated hashes.
    /// A prefix that matches none, or more than one, is refused, naming
    /// the prefix and (for several) two of its matches.
    pub fn resolve_digest(&self, text: &str) -> Result<Digest> {
        let prefix = match DigestText::parse(text)? {
            DigestText::Whole(d) => return Ok(d),
            DigestText::Prefix(p) => p,
        };
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(BLOBS)?;
        let mut found = Vec::new();
        for alg in prefix.algorithms() {
            let (lo, hi) = prefix.key_range(alg);
            for e in t.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?.take(2) {
                found.push(Digest::from_key(e?.0.value())?);
            }
        }
        match found.as_slice() {
            [d] => Ok(*d),
            [] => Err(Error::InvalidArgument {
                value: prefix.to_string(),
                expected: "a digest, or the start of a stored blob's digest; no stored digest starts with it".into(),
            }),
            [a, b, ..] => Err(Error::InvalidArgument {
                value: prefix.to_string(),
                expected: format!(
                    "an unambiguous digest prefix; {a} and {b} both start with it (give more digits)"
                ),
            }),
        }
    }

    /// Whether a blob is stored.
    pub fn exists(&self, d: &Digest) -> Result<bool> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(BLOBS)?;
        Ok(t.get(d.to_key().as_slice())?.is_some())
    }

    /// A streaming reader over the whole blob.
    pub fn get(&self, d: &Digest) -> Result<BlobReader> {
        self.open_reader(d, None)
    }

    /// A streaming reader over bytes `start..=end` (inclusive, as in HTTP
    /// Range). An `end` past the blob is clamped to its last byte.
    pub fn get_range(&self, d: &Digest, start: u64, end: u64) -> Result<BlobReader> {
        self.open_reader(d, Some((start, end)))
    }

    /// A reader that hashes while it reads and fails with `InvalidData` at
    /// the end if the bytes do not match the digest (a corrupt blob file).
    pub fn get_verified(&self, d: &Digest) -> Result<VerifiedReader<BlobReader>> {
        let r = self.get(d)?;
        Ok(VerifiedReader::new(r, *d))
    }

    /// Reads a whole blob into memory. Meant for manifests and other small
    /// content; use [`Store::get`] for layers.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut r = self.get(d)?;
        let mut out = Vec::with_capacity(r.len() as usize);
        r.read_to_end(&mut out)
            .context(|| format!("reading blob {d}"))?;
        Ok(out)
    }

    /// Re-hashes a stored blob and fails with [`Error::Corrupt`] if its bytes
    /// no longer match its digest or recorded size.
    pub fn verify(&self, d: &Digest) -> Result<()> {
        let txn = tables::begin_read(&self.db)?;
        let rec = read_record(&txn, d)?;
        let actual = match rec.placement {
            Placement::Inline => {
                let t = txn.open_table(BODIES)?;
                let g = inline_bytes(&t, d, &rec)?;
                let bytes = body::unpack(g.value())?;
                check_len(d, &rec, bytes.len() as u64)?;
                Hasher::digest_of(d.algorithm(), &bytes)
            }
            Placement::File => {
                let r = self.open_bytes(&txn, d)?.ok_or_else(|| {
                    Error::Corrupt(format!("{d} is recorded but its bytes are missing"))
                })?;
                let len = r.len().context(|| format!("length of blob {d}"))?;
                check_len(d, &rec, len)?;
                hash_all(&*r, d.algorithm(), len).context(|| format!("hashing blob {d}"))?
            }
        };
        if actual != *d {
            return Err(Error::Corrupt(format!(
                "{d} hashes to {actual}; its bytes were changed on disk"
            )));
        }
        Ok(())
    }

    fn open_reader(&self, d: &Digest, range: Option<(u64, u64)>) -> Result<BlobReader> {
        let txn = tables::begin_read(&self.db)?;
        let rec = read_record(&txn, d)?;
        self.reader_in(&txn, d, rec, range)
    }

    /// A blob of a repository, as a registry serves `GET /v2/<repo>/blobs/`:
    /// the membership check, the record and the bytes from one read
    /// snapshot, so that a delete in between cannot split them. With
    /// `range` (inclusive, as HTTP), only those bytes.
    pub fn get_in_repo(
        &self,
        repo: &str,
        d: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<(BlobInfo, BlobReader)> {
        let txn = self.snapshot()?;
        let rec = self.record_in_repo(&txn, repo, d)?;
        let r = self.reader_in(&txn, d, rec.clone(), range)?;
        Ok((info(d, rec), r))
    }

    /// A blob's metadata if `repo` holds it (`HEAD /v2/<repo>/blobs/`), in
    /// one read snapshot.
    pub fn stat_in_repo(&self, repo: &str, d: &Digest) -> Result<BlobInfo> {
        let txn = self.snapshot()?;
        Ok(info(d, self.record_in_repo(&txn, repo, d)?))
    }

    fn record_in_repo(
        &self,
        txn: &super::snapshot::Snapshot,
        repo: &str,
        d: &Digest,
    ) -> Result<BlobRecord> {
        crate::oci::names::validate_repository(repo)?;
        let missing = || Error::BlobUnknown {
            digest: *d,
            hint: String::new(),
        };
        let Some(id) = self.repo_id(txn, repo)? else {
            return Err(missing());
        };
        let members = txn.open_table(MEMBERS)?;
        if members
            .get(crate::schema::keys::member(id, d).as_slice())?
            .is_none()
        {
            return Err(missing());
        }
        record::lookup(&txn.open_table(BLOBS)?, d)?.ok_or_else(missing)
    }

    fn reader_in(
        &self,
        txn: &redb::ReadTransaction,
        d: &Digest,
        rec: BlobRecord,
        range: Option<(u64, u64)>,
    ) -> Result<BlobReader> {
        let (start, end) = match range {
            None => (0, rec.size),
            Some((s, e)) => {
                if s > e || s >= rec.size {
                    return Err(Error::InvalidRange {
                        start: s,
                        end: e,
                        digest: *d,
                        size: rec.size,
                    });
                }
                (s, e.min(rec.size - 1) + 1)
            }
        };
        match rec.placement {
            Placement::Inline => {
                let t = txn.open_table(BODIES)?;
                let g = inline_bytes(&t, d, &rec)?;
                let bytes = body::unpack(g.value())?;
                let (s, e) = (start as usize, end as usize);
                if s > e || e > bytes.len() {
                    return Err(Error::Corrupt(format!(
                        "{d} is recorded as {} bytes but {} are stored",
                        rec.size,
                        bytes.len()
                    )));
                }
                // An unpacked body is already a copy: keep its range
                // instead of copying again.
                let range = match bytes {
                    Cow::Borrowed(b) => b[s..e].to_vec(),
                    Cow::Owned(mut v) => {
                        v.truncate(e);
                        v.drain(..s);
                        v
                    }
                };
                Ok(BlobReader::new(Source::Memory(range), 0, end - start))
            }
            Placement::File => {
                // Gone: deleted after our snapshot was taken.
                let r = self.open_bytes(txn, d)?.ok_or_else(|| not_found(d))?;
                Ok(BlobReader::new(Source::Backend(r), start, end))
            }
        }
    }

    /// Opens the bytes of a blob recorded as a backend blob in `txn`. In the
    /// moment between the commit of a put and the commit of its bytes under
    /// the digest, they are still staged: the intent row names them.
    fn open_bytes(
        &self,
        txn: &redb::ReadTransaction,
        d: &Digest,
    ) -> Result<Option<Box<dyn BlobRead>>> {
        if let Some(r) = self.backend.open(d)? {
            return Ok(Some(r));
        }
        let staged = txn
            .open_table(INTENTS)?
            .get(d.to_key().as_slice())?
            .filter(|g| !g.value().is_empty())
            .map(|g| Staged::new(String::from_utf8_lossy(g.value()).into_owned()));
        if let Some(s) = staged
            && let Some(r) = self.backend.open_staged(&s)?
        {
            return Ok(Some(r));
        }
        // Committed under the digest while we looked at the staged name.
        self.backend.open(d)
    }
}

fn read_record(txn: &redb::ReadTransaction, d: &Digest) -> Result<BlobRecord> {
    record::lookup(&txn.open_table(BLOBS)?, d)?.ok_or_else(|| not_found(d))
}

/// An inline blob's packed bytes, found through its record's body id.
fn inline_bytes<'t>(
    t: &'t tables::BodiesTable,
    d: &Digest,
    rec: &BlobRecord,
) -> Result<redb::AccessGuard<'t, &'static [u8]>> {
    t.get(rec.body)?.ok_or_else(|| {
        Error::Corrupt(format!(
            "{d} is recorded inline as body {} but that body is missing",
            rec.body
        ))
    })
}

fn check_len(d: &Digest, rec: &BlobRecord, len: u64) -> Result<()> {
    if len != rec.size {
        return Err(Error::Corrupt(format!(
            "{d} is recorded as {} bytes but {len} are stored",
            rec.size
        )));
    }
    Ok(())
}

/// Hashes the first `len` bytes of a file with positional reads into one
/// reused buffer. (A mapping would save the copy, but a file truncated by
/// an outside actor would then kill the process with SIGBUS instead of
pub(crate) fn not_found(d: &Digest) -> Error {
    Error::BlobUnknown {
        digest: *d,
        hint: String::new(),
    }
}

pub(crate) fn info(d: &Digest, rec: BlobRecord) -> BlobInfo {
    BlobInfo {
        digest: *d,
        size: rec.size,
        media_type: rec.media_type,
        manifest: rec.manifest,
        placement: rec.placement,
        created_ms: rec.created_ms,
    }
}
