//! Incremental verification: re-hash the blobs of one slice of the store,
//! in key order, from a cursor, up to a byte budget. Repeated slices cover
//! the whole store without one long pass, so a registry can verify its
//! bytes continuously while it serves. The graph checks stay in
//! [`Store::fsck`], which needs the whole store at once.

use serde::{Deserialize, Serialize};

use super::fsck::{problem, Problem};
use crate::digest::Digest;
use crate::error::Result;
use crate::schema::record::BlobRecord;
use crate::schema::tables::{self, BLOBS, BODIES};
use crate::store::Store;

/// What one slice checked and found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrubSlice {
    /// Records whose bytes were re-hashed.
    pub records: u64,
    /// Bytes re-hashed.
    pub bytes_verified: u64,
    /// Everything wrong in the slice (nothing is repaired: a damaged blob
    /// is kept for inspection, as [`Store::fsck`] keeps it).
    pub problems: Vec<Problem>,
    /// Where the next slice starts (`None`: this slice reached the end of
    /// the store; the next pass starts from the beginning).
    pub next: Option<Digest>,
}

impl Store {
    /// Re-hashes the blobs after `after` (from the first when `None`), in
    /// key order, from one read snapshot, stopping after the record that
    /// takes the bytes re-hashed to `max_bytes` or more (at least one
    /// record, whatever its size). Writers are never blocked.
    pub fn scrub(&self, after: Option<&Digest>, max_bytes: u64) -> Result<ScrubSlice> {
        let txn = tables::begin_read(&self.db)?;
        let blobs = txn.open_table(BLOBS)?;
        let bodies = txn.open_table(BODIES)?;
        let mut slice = ScrubSlice::default();
        // The budget counts every record's size, damaged ones included.
        let mut spent = 0u64;
        let start = after.map(Digest::to_key);
        let range = match &start {
            Some(k) => blobs.range::<&[u8]>((
                std::ops::Bound::Excluded(k.as_slice()),
                std::ops::Bound::Unbounded,
            ))?,
            None => blobs.range::<&[u8]>(..)?,
        };
        for e in range {
            let (k, v) = e?;
            let d = match Digest::from_key(k.value()) {
                Ok(d) => d,
                Err(e) => {
                    slice.problems.push(problem("bad-key", None, e.to_string()));
                    continue;
                }
            };
            let rec = match BlobRecord::decode(v.value()) {
                Ok(r) => r,
                Err(e) => {
                    slice
                        .problems
                        .push(problem("corrupt-record", Some(d), e.to_string()));
                    continue;
                }
            };
            slice.records += 1;
            spent = spent.saturating_add(rec.size);
            match self.verify_record(&bodies, &d, &rec) {
                Some(p) => slice.problems.push(p),
                None => slice.bytes_verified += rec.size,
            }
            if spent >= max_bytes {
                slice.next = Some(d);
                break;
            }
        }
        drop((blobs, bodies, txn));
        self.forget_deleted_since(&mut slice.problems)?;
        Ok(slice)
    }
}
