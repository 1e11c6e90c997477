//! fsck's repairs, inside a writer job: each re-checks what it removes,
//! where no put can be in flight.

use std::collections::HashSet;

use redb::ReadableTable as _;

use crate::blob::BlobBackend;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::schema::keys;
use crate::schema::record::{BlobRecord, Placement};

/// Removes records that do not decode, with everything indexed under them
/// (file, edges, memberships, tags, referrer entries). An inline body is
/// found through its record, so a corrupt record's body is left to the
/// repair of stray bodies, which the same fsck reports. Returns the
/// digests removed.
pub(crate) fn remove_corrupt_records(
    b: &mut Batch<'_>,
    backend: &dyn BlobBackend,
    digests: &[Digest],
) -> Result<HashSet<Digest>> {
    let mut removed = HashSet::new();
    for d in digests {
        let Some(raw) =
            b.t.blobs
                .get(d.to_key().as_slice())?
                .map(|g| g.value().to_vec())
        else {
            continue;
        };
        if BlobRecord::decode(&raw).is_ok() {
            continue;
        }
        // Stand-in record: it decides only what remove_blob_in clears. A
        // file is removed if there is one; body 0 is never a body's id.
        let stand_in = BlobRecord {
            size: 0,
            created_ms: 0,
            placement: if backend.len(d)?.is_some() {
                Placement::File
            } else {
                Placement::Inline
            },
            body: 0,
            manifest: b.t.edges_out.get(d.to_key().as_slice())?.is_some(),
            media_type: None,
            artifact_type: None,
        };
        super::remove::remove_blob_in(b, d, &stand_in)?;
        removed.insert(*d);
    }
    Ok(removed)
}

/// Removes the bodies of `ids` (bodies no record names).
pub(crate) fn remove_bodies(b: &mut Batch<'_>, ids: &[u64]) -> Result<()> {
    for id in ids {
        b.t.bodies.remove(*id)?;
    }
    Ok(())
}

/// Removes referrer entries that list what their repository does not hold,
/// or list a referrer a second time: a duplicate goes only if another entry
/// of that referrer stays, and the one keyed by the manifest's own
/// artifactType is kept.
pub(crate) fn remove_referrer_entries(b: &mut Batch<'_>, entries: &[Vec<u8>]) -> Result<()> {
    for k in entries {
        let (repo, subject, at, referrer) = keys::split_referrer(k)?;
        let rec = super::blobs::record_in(b, &referrer)?;
        let member =
            b.t.members
                .get(keys::member(repo, &referrer).as_slice())?
                .is_some();
        if rec.is_none() || !member {
            b.t.referrers.remove(k.as_slice())?;
            continue;
        }
        let own_at = match rec.and_then(|r| r.artifact_type) {
            Some(t) => b.t.artifact_types.get(t.as_str())?.map(|g| g.value()),
            None => Some(0),
        };
        let (lo, hi) = keys::referrer_range(repo, &subject, None);
        let mut others = 0;
        for e in
            b.t.referrers
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        {
            let (ok, _) = e?;
            if ok.value() != k && keys::referrer_parts(ok.value())?.1 == referrer {
                others += 1;
            }
        }
        if others > 0 && own_at != Some(at) {
            b.t.referrers.remove(k.as_slice())?;
        }
    }
    Ok(())
}

/// Deletes orphan bytes, after re-checking that each has no record and no
/// intent (no commit of a staged blob can be in flight in the writer).
pub(crate) fn remove_orphans(
    b: &mut Batch<'_>,
    backend: &dyn BlobBackend,
    orphans: &[Digest],
) -> Result<HashSet<Digest>> {
    let mut removed = HashSet::new();
    for d in orphans {
        if b.t.blobs.get(d.to_key().as_slice())?.is_none() && !b.in_flight(d)? {
            backend.remove(d)?;
            removed.insert(*d);
        }
    }
    Ok(removed)
}
