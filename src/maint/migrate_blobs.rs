//! Moving a store's blob bytes from local files into an S3-compatible
//! bucket (`ocidb migrate-blobs --to s3://…`), resumably.
//!
//! The store stays on local files until every blob and upload session is
//! in the bucket and verified there; only then does one durable commit
//! record the new location, and only after that are the local files
//! removed. A crash before the switch leaves a local store that a rerun
//! continues (objects already in the bucket are verified, not sent again);
//! a crash after it leaves local files that a rerun removes. The store is
//! held open throughout, so nothing else writes to it meanwhile.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::blob::{hash_all, BlobBackend, BlobLocation, Listed, S3Blobs, S3Location, S3Options};
use crate::digest::Digest;
use crate::engine::backend;
use crate::error::{Error, IoContext as _, Result};
use crate::store::{Store, StoreOptions};

/// What a migration did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateBlobsReport {
    /// Blobs sent to the bucket and verified there.
    pub copied: u64,
    /// Blobs already in the bucket (an earlier, interrupted run), verified.
    pub verified_present: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Upload sessions whose bytes were moved.
    pub uploads: u64,
    /// Local files removed after the switch.
    pub removed_local: u64,
    /// Local files not named by a digest, left where they are.
    pub strays: Vec<String>,
    /// Whether the store already used the bucket (a rerun after the switch).
    pub already_switched: bool,
}

/// One step, for progress reporting.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MigrateBlobsStep {
    /// A blob is in the bucket and verified (`sent`: this run sent it).
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Whether this run sent it (else it was there already).
        sent: bool,
    },
    /// The store now records the bucket as its blob location.
    Switched,
}

fn backend_err(d: &Digest, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} blob {d}"), e)
}

/// Copies one blob's bytes from `from` into `to`, verifying the digest of
/// what was sent and then of what the bucket holds.
fn copy_blob(from: &dyn BlobBackend, to: &dyn BlobBackend, d: &Digest) -> Result<u64> {
    let src = from
        .open(d)?
        .ok_or_else(|| Error::Corrupt(format!("blob {d} vanished from the local files")))?;
    let len = src.len().map_err(|e| backend_err(d, "reading", e))?;
    let mut w = to.stage()?;
    let mut h = crate::oci::hasher::Hasher::new(d.algorithm());
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let n = src
            .read_at(&mut buf, pos)
            .map_err(|e| backend_err(d, "reading", e))?;
        if n == 0 {
            return Err(Error::Corrupt(format!(
                "local blob {d} ended at {pos} of {len} bytes"
            )));
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n])
            .map_err(|e| backend_err(d, "sending", e))?;
        pos += n as u64;
    }
    let sent = h.finish();
    if sent != *d {
        return Err(Error::Corrupt(format!(
            "local blob {d} does not hash to its name (it hashes to {sent}); run `ocidb fsck --repair` first"
        )));
    }
    let staged = w.finish(true)?;
    to.commit(&staged, d)?;
    Ok(len)
}

/// Re-reads a blob from the bucket and checks its length and digest.
fn verify_remote(to: &dyn BlobBackend, d: &Digest, len: u64) -> Result<bool> {
    let Some(r) = to.open(d)? else {
        return Ok(false);
    };
    if r.len().map_err(|e| backend_err(d, "reading", e))? != len {
        return Ok(false);
    }
    let got = hash_all(&*r, d.algorithm(), len).map_err(|e| backend_err(d, "verifying", e))?;
    Ok(got == *d)
}

/// Moves the blob bytes of the store in `dir` into `to`. Credentials and
/// retries come from `s3` (its default: the `AWS_*` environment).
pub fn migrate_blobs(
    dir: &Path,
    to: &S3Location,
    s3: &S3Options,
    progress: &mut dyn FnMut(MigrateBlobsStep),
) -> Result<MigrateBlobsReport> {
    let target_loc = BlobLocation::S3(to.clone());
    let mut report = MigrateBlobsReport::default();
    let opts = StoreOptions::default().blobs(BlobLocation::Local);
    let store = match Store::open_with(dir, opts, false) {
        Ok(s) => s,
        Err(Error::InvalidArgument { .. }) => {
            // The store records another location: the switch happened.
            let store = Store::open_with(dir, StoreOptions::default(), false)?;
            if store.blob_location() != Some(&target_loc) {
                return Err(Error::InvalidArgument {
                    value: to.to_string(),
                    expected: format!(
                        "the store's blob location is `{}`: migrate-blobs moves local files into a bucket, not between buckets",
                        store
                            .blob_location()
                            .map_or_else(|| "unknown".to_string(), ToString::to_string)
                    ),
                });
            }
            drop(store);
            report.already_switched = true;
            report.removed_local = remove_local(dir)?;
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let target = S3Blobs::with_options(to, s3)?;
    target.check()?;
    target.claim(&store.store_id())?;
    let local = std::sync::Arc::clone(store.backend());

    let mut digests = Vec::new();
    local.list(&mut |l| {
        match l {
            Listed::Blob(d) => digests.push(d),
            Listed::Stray(name) => report.strays.push(name),
        }
        Ok(())
    })?;
    for d in &digests {
        let size = local
            .len(d)?
            .ok_or_else(|| Error::Corrupt(format!("blob {d} vanished from the local files")))?;
        let present =
            matches!(target.len(d)?, Some(n) if n == size) && verify_remote(&target, d, size)?;
        if present {
            report.verified_present += 1;
        } else {
            copy_blob(&*local, &target, d)?;
            if !verify_remote(&target, d, size)? {
                return Err(Error::Corrupt(format!(
                    "blob {d} does not read back from {to} as written"
                )));
            }
            report.copied += 1;
            report.bytes += size;
        }
        progress(MigrateBlobsStep::Blob {
            digest: *d,
            size,
            sent: !present,
        });
    }
    for id in local.upload_list()? {
        let Some(r) = local.upload_open(&id)? else {
            continue;
        };
        let len = r
            .len()
            .map_err(|e| Error::io(format!("reading upload {id}"), e))?;
        target.upload_remove(&id)?;
        target.upload_create(&id)?;
        let mut w = target.upload_append(&id, 0)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            let n = r
                .read_at(&mut buf, pos)
                .map_err(|e| Error::io(format!("reading upload {id}"), e))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])
                .map_err(|e| Error::io(format!("sending upload {id}"), e))?;
            pos += n as u64;
        }
        w.commit()?;
        report.uploads += 1;
    }
    backend::record(&store.db, &target_loc)?;
    progress(MigrateBlobsStep::Switched);
    drop(store);
    report.removed_local = remove_local(dir)?;
    Ok(report)
}

/// Removes the local blob files and upload bytes of a store that has
/// switched to a bucket. Returns how many files went.
fn remove_local(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for sub in ["blobs/sha256", "blobs/sha512", "uploads"] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.context(|| format!("listing {}", d.display()))?;
            let p = e.path();
            if p.is_file() {
                std::fs::remove_file(&p).context(|| format!("removing {}", p.display()))?;
                n += 1;
            }
        }
    }
    Ok(n)
}
