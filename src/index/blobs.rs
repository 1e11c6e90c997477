//! Blob records: look one up, insert one, refresh its grace period.

use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::index::counters::next_counter;
use crate::schema::body;
use crate::schema::record::{self, BlobRecord, Placement};

/// The `meta` counter that hands out body ids (1 first).
pub(crate) const BODY_COUNTER: &str = "next_body";

/// Stores an inline blob's packed bytes under a new body id and returns
/// it. Ids only grow, so the row is an append to `bodies`.
pub(crate) fn store_body(b: &mut Batch<'_>, packed: &[u8]) -> Result<u64> {
    let id = next_counter(b, BODY_COUNTER)?;
    b.t.bodies.insert(id, packed)?;
    Ok(id)
}

/// A put of stored content counts as fresh: its grace period restarts, so
/// that "upload the layer, then push the manifest" is safe from a GC that
/// starts in between, without a lease. (Callers tell a running GC.)
pub(crate) fn refresh(b: &mut Batch<'_>, d: &Digest, mut rec: BlobRecord) -> Result<()> {
    if rec.created_ms < b.now_ms {
        rec.created_ms = b.now_ms;
        b.t.blobs
            .insert(d.to_key().as_slice(), rec.encode()?.as_slice())?;
    }
    Ok(())
}

/// What [`insert_blob`] did.
pub(crate) struct Inserted {
    /// False when the digest was already stored (the put refreshed it).
    pub created: bool,
    /// The size the blob's record holds, for the membership's usage count.
    pub size: u64,
}

/// Inserts a blob record (and inline bytes) unless the digest is already
/// stored, in which case the put refreshes it.
pub(crate) fn insert_blob(
    b: &mut Batch<'_>,
    digest: &Digest,
    size: u64,
    media_type: Option<String>,
    inline: Option<&[u8]>,
) -> Result<Inserted> {
    let key = digest.to_key();
    // A put during a GC run counts as a commit of that blob, even when the
    // bytes were already there: the running GC must not sweep it.
    b.note_reachable(digest)?;
    if let Some(rec) = record_in(b, digest)? {
        let size = rec.size;
        refresh(b, digest, rec)?;
        return Ok(Inserted {
            created: false,
            size,
        });
    }
    let (placement, body) = match inline {
        Some(bytes) => (Placement::Inline, store_body(b, &body::pack(bytes))?),
        None => (Placement::File, 0),
    };
    let rec = BlobRecord {
        size,
        created_ms: b.now_ms,
        placement,
        body,
        manifest: false,
        media_type,
        artifact_type: None,
    };
    b.t.blobs.insert(key.as_slice(), rec.encode()?.as_slice())?;
    Ok(Inserted {
        created: true,
        size,
    })
}

/// A blob's record as the writer's transaction sees it.
pub(crate) fn record_in(b: &mut Batch<'_>, d: &Digest) -> Result<Option<BlobRecord>> {
    record::lookup(&*b.t.blobs, d)
}
