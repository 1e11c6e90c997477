//! Blob bytes behind a backend: the [`BlobBackend`] trait, local files as its
//! first implementation, and the readers the store hands out.
//!
//! The engine never knows where bytes live. It stages a blob through the
//! backend, records it in redb, and only then commits the staged bytes under
//! their digest. Which staged blob becomes which digest is kept in redb's
//! intent table (see `docs/format.md`), so a crash at any point is settled at
//! the next open, whatever the backend: a commit that reached the disk rolls
//! forward, one that did not leaves only staged bytes, which are discarded.

mod local;
mod location;
mod mapped;
mod memory;
mod reader;
#[cfg(feature = "s3")]
mod s3;
#[doc(hidden)]
pub mod suite;

use std::fmt;
use std::io;
use std::path::Path;

pub use local::LocalFiles;
pub use location::{BlobLocation, S3Location};
pub use mapped::MappedBytes;
pub use memory::MemoryBlobs;
pub(crate) use reader::{hash_all, Source};
pub use reader::{BlobReader, VerifiedReader};
#[cfg(feature = "s3")]
pub use s3::{S3Blobs, S3Options};

use crate::digest::Digest;
use crate::error::Result;

/// A blob whose bytes are written (and, if asked, durable) but not yet
/// readable under its digest. The name is the backend's own; the engine only
/// stores it and hands it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Staged {
    name: String,
}

impl Staged {
    /// A staged blob known to its backend as `name`.
    pub fn new(name: impl Into<String>) -> Staged {
        Staged { name: name.into() }
    }

    /// The backend's name for it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A staged write in progress. Dropping it without [`BlobWrite::finish`]
/// discards what was written.
pub trait BlobWrite: io::Write + Send {
    /// Ends the write. With `durable`, the bytes are on stable storage when
    /// this returns; a failure then means they may not be, and the engine
    /// stops accepting writes until it is reopened.
    fn finish(self: Box<Self>, durable: bool) -> Result<Staged>;
}

/// Bytes appended to an upload session. Dropping it without
/// [`UploadWrite::commit`] leaves what was written, unacknowledged: the
/// next append drops it.
pub trait UploadWrite: io::Write + Send {
    /// Makes what was appended durable.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Positional reads of one blob's bytes, from any thread.
pub trait BlobRead: Send + Sync {
    /// The length of the bytes, as stored.
    fn len(&self) -> io::Result<u64>;

    /// Reads at `offset` into `buf`; `Ok(0)` only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Whether the blob is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `len` bytes from `offset` mapped into memory instead of read, for a
    /// backend whose blobs are local files; `None` (the default) where
    /// they are not, and the caller reads instead.
    fn map(&self, offset: u64, len: usize) -> Option<io::Result<MappedBytes>> {
        let _ = (offset, len);
        None
    }
}

/// What a listing of a backend's committed blobs finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// Bytes under a digest.
    Blob(Digest),
    /// Something that is not named by a digest (left alone, reported).
    Stray(String),
}

/// Where blob bytes above the inline threshold live.
///
/// The engine calls it in this order for a put: [`stage`](Self::stage) and
/// write (on the caller's thread), [`sync_staging`](Self::sync_staging)
/// before the durable commit that records the staged blob, then
/// [`commit`](Self::commit) after that commit, from the writer thread only.
/// (A blob recorded by a non-durable commit stays staged until the next
/// durable one: a crash may lose that commit, and the bytes must then not
/// be found under the digest.) Removals are [`remove`](Self::remove) after
/// the durable commit that deleted the record. [`sync`](Self::sync) makes
/// those commits and removals durable. The engine never calls `commit` or
/// `remove` for one digest from two threads at once.
///
/// One suite of tests (`ocidb::blob::suite`) checks any implementation.
pub trait BlobBackend: Send + Sync + fmt::Debug {
    /// Starts writing a new staged blob.
    fn stage(&self) -> Result<Box<dyn BlobWrite>>;

    /// Makes staged blobs findable after a crash: the names of all staged
    /// so far, and the bytes of `unsynced` (finished without `durable`).
    fn sync_staging(&self, unsynced: &[Staged]) -> Result<()>;

    /// Makes `staged` readable under `digest`, replacing what was there,
    /// and forgets the staged name. Idempotent for a staged blob that is
    /// already committed (after a crash, the engine may commit it again).
    fn commit(&self, staged: &Staged, digest: &Digest) -> Result<()>;

    /// Commits many staged blobs (each as [`commit`](Self::commit)),
    /// returning one result per item, in order. The writer commits a group
    /// commit's blobs with one call, so that a backend whose commit is a
    /// network round trip (S3's server-side copy) overlaps them.
    fn commit_all(&self, items: &[(Staged, Digest)]) -> Vec<Result<()>> {
        items.iter().map(|(s, d)| self.commit(s, d)).collect()
    }

    /// Makes the commits and removals of `names` durable.
    fn sync(&self, names: &[Digest]) -> Result<()>;

    /// Discards a staged blob. Absent is not an error.
    fn discard(&self, staged: &Staged) -> Result<()>;

    /// Opens a committed blob; `None` when there is none under `digest`.
    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn BlobRead>>>;

    /// Opens a staged blob; `None` when it is gone (committed or discarded).
    fn open_staged(&self, staged: &Staged) -> Result<Option<Box<dyn BlobRead>>>;

    /// The length of a committed blob; `None` when there is none.
    fn len(&self, digest: &Digest) -> Result<Option<u64>> {
        self.open(digest)?
            .map(|r| r.len())
            .transpose()
            .map_err(|e| crate::error::Error::io(format!("length of blob {digest}"), e))
    }

    /// Removes a committed blob. Returns whether there was one.
    fn remove(&self, digest: &Digest) -> Result<bool>;

    /// Removes many committed blobs (absent ones are no error). A GC sweep
    /// calls it once per batch, so that a backend with a bulk delete (S3's
    /// DeleteObjects) makes one request per thousand blobs, not one each.
    fn remove_all(&self, digests: &[Digest]) -> Result<()> {
        for d in digests {
            self.remove(d)?;
        }
        Ok(())
    }

    /// Calls `each` for every committed blob, in no particular order.
    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()>;

    /// Every staged blob, for the engine to discard at open those that no
    /// intent names.
    fn list_staged(&self) -> Result<Vec<Staged>>;

    /// Starts the bytes of a resumable upload session, empty.
    fn upload_create(&self, id: &str) -> Result<()>;

    /// Opens a session's bytes for appending at `offset`, after dropping
    /// whatever lies beyond it (a write that was never acknowledged).
    /// Fails when fewer than `offset` bytes are there.
    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>>;

    /// Opens a session's bytes for reading; `None` when there are none.
    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>>;

    /// Turns a session's bytes into a staged blob without copying them.
    fn upload_finish(&self, id: &str) -> Result<Staged>;

    /// Removes a session's bytes. Absent is not an error.
    fn upload_remove(&self, id: &str) -> Result<()>;

    /// Every session that has bytes, for the engine to remove those that
    /// no session record names.
    fn upload_list(&self) -> Result<Vec<String>>;

    /// Answers one cheap request now, to say whether the backend is
    /// reachable (a readiness probe). The default answers `Ok`: a backend
    /// in memory or on a local disk is there while the process is.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Optional capability: makes `dst` a hard link to a committed blob's
    /// bytes. `Ok(false)` when the backend cannot (the caller copies).
    fn hard_link(&self, digest: &Digest, dst: &Path) -> Result<bool> {
        let _ = (digest, dst);
        Ok(false)
    }
}
