//! Leases: time-limited GC roots for work in flight.

use redb::ReadableTable as _;

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::leases::add_to_lease;
use crate::index::leases::check_lease;
use crate::index::leases::live_leases;
use crate::index::leases::new_lease;
pub use crate::index::leases::Lease;
use crate::index::leases::{decode_lease, remove_lease};
use crate::schema::tables::{self};
use std::time::Duration;

/// A live lease with what it holds and, when an upload session took it,
/// that session: what an operator asks before releasing one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseInfo {
    /// Its id.
    pub id: u64,
    /// When it stops protecting anything (milliseconds since the Unix epoch).
    pub expires_ms: u64,
    /// Who holds it: `upload ID to REPO` for an upload session's lease;
    /// `None` for one a library caller took.
    pub owner: Option<String>,
    /// How many digests it holds.
    pub held: u64,
    /// The first [`LeaseInfo::SHOWN`] of them, in key order.
    pub digests: Vec<Digest>,
}

impl LeaseInfo {
    /// The most digests listed per lease.
    pub const SHOWN: usize = 100;
}

impl Store {
    /// Every live lease with its owner and contents, from one read
    /// snapshot. Costs a pass over the upload sessions plus each lease's
    /// items.
    pub fn lease_details(&self) -> Result<Vec<LeaseInfo>> {
        use crate::schema::record::UploadRecord;
        use crate::schema::tables::{LEASE_ITEMS, UPLOADS};
        let txn = tables::begin_read(&self.db)?;
        let mut owners = std::collections::HashMap::new();
        for e in txn.open_table(UPLOADS)?.iter()? {
            let (k, v) = e?;
            let r = UploadRecord::decode(v.value())?;
            owners.insert(r.lease, format!("upload {} to {}", k.value(), r.repo));
        }
        let items = txn.open_table(LEASE_ITEMS)?;
        let mut out = Vec::new();
        for l in live_leases(&txn, self.shared.now_ms())? {
            let (lo, hi) = crate::index::leases::lease_range(l.id);
            let (mut held, mut digests) = (0u64, Vec::new());
            for e in items.range(lo.as_slice()..hi.as_slice())? {
                let (k, _) = e?;
                held += 1;
                if digests.len() < LeaseInfo::SHOWN {
                    let key = k.value();
                    digests.push(Digest::from_key(key.get(8..).unwrap_or_default())?);
                }
            }
            out.push(LeaseInfo {
                id: l.id,
                expires_ms: l.expires_ms,
                owner: owners.remove(&l.id),
                held,
                digests,
            });
        }
        Ok(out)
    }

    /// Takes a lease that protects what is added to it for `ttl`.
    pub fn create_lease(&self, ttl: Duration) -> Result<Lease> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.submit(true, move |b| {
            let (id, expires_ms) = new_lease(b, ttl_ms)?;
            Ok(Lease { id, expires_ms })
        })
    }

    /// Adds digests to a live lease. A digest need not be stored yet (a
    /// lease may protect what an upload is about to write); the ones that
    /// are not stored when the lease takes them are returned, so that a
    /// caller who expected them stored can tell.
    pub fn lease_add(&self, lease: u64, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        self.submit(true, move |b| {
            check_lease(b, lease)?;
            let mut absent = Vec::new();
            for d in &digests {
                add_to_lease(b, lease, d)?;
                if b.t.blobs.get(d.to_key().as_slice())?.is_none() {
                    absent.push(*d);
                }
            }
            Ok(absent)
        })
    }

    /// Ends a lease early: what it held is no longer protected by it.
    pub fn release_lease(&self, lease: u64) -> Result<()> {
        self.submit(true, move |b| {
            if b.t.leases.get(lease)?.is_none() {
                return Err(Error::InvalidArgument {
                    value: lease.to_string(),
                    expected: "the id of an existing lease".into(),
                });
            }
            remove_lease(b, lease)
        })
    }

    /// Deletes every expired lease and what it held; returns how many.
    /// Every GC run does it.
    pub fn drop_expired_leases(&self) -> Result<usize> {
        self.submit_background(true, move |b| {
            let mut expired = Vec::new();
            for e in b.t.leases.iter()? {
                let (k, v) = e?;
                if decode_lease(v.value())? <= b.now_ms {
                    expired.push(k.value());
                }
            }
            for lease in &expired {
                remove_lease(b, *lease)?;
            }
            Ok(expired.len())
        })
    }

    /// Leases that have not expired.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let txn = tables::begin_read(&self.db)?;
        live_leases(&txn, self.shared.now_ms())
    }
}
