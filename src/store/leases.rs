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

impl Store {
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
