//! Leases and what they hold (`leases`, `lease_items`).

use redb::{ReadTransaction, ReadableTable as _};

use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::schema::keys;
use crate::schema::record::{le8, VALUE_FORMAT_V1};
use crate::schema::tables::LEASES;
use serde::{Deserialize, Serialize};

/// A time-limited GC root that protects in-flight work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Its id, to pass in `PutOptions::lease` and friends.
    pub id: u64,
    /// When it stops protecting anything (milliseconds since the Unix epoch).
    pub expires_ms: u64,
}

pub(crate) fn lease_range(lease: u64) -> (Vec<u8>, Vec<u8>) {
    // Same layout as a repository member key: id(8) then digest.
    keys::member_range(lease)
}

pub(crate) fn decode_lease(v: &[u8]) -> Result<u64> {
    match v {
        [VALUE_FORMAT_V1, rest @ ..] if rest.len() == 8 => Ok(u64::from_le_bytes(le8(rest))),
        _ => Err(Error::Corrupt(
            "a lease record has an unknown format".into(),
        )),
    }
}

/// The counter that numbers leases.
const NEXT_LEASE: &str = "next_lease_id";

/// A new lease that expires `ttl_ms` from now: its id and expiry.
pub(crate) fn new_lease(b: &mut Batch<'_>, ttl_ms: u64) -> Result<(u64, u64)> {
    let id = super::counters::next_counter(b, NEXT_LEASE)?;
    let expires_ms = b.now_ms.saturating_add(ttl_ms);
    let mut v = vec![crate::schema::record::VALUE_FORMAT_V1];
    v.extend_from_slice(&expires_ms.to_le_bytes());
    b.t.leases.insert(id, v.as_slice())?;
    Ok((id, expires_ms))
}

/// Fails unless the lease exists and has not expired.
pub(crate) fn check_lease(b: &mut Batch<'_>, lease: u64) -> Result<()> {
    let expires = match b.t.leases.get(lease)? {
        Some(g) => decode_lease(g.value())?,
        None => {
            return Err(Error::InvalidArgument {
                value: lease.to_string(),
                expected: "the id of an existing lease".into(),
            })
        }
    };
    if expires <= b.now_ms {
        return Err(Error::InvalidArgument {
            value: lease.to_string(),
            expected: "a lease that has not expired; take a new one".into(),
        });
    }
    Ok(())
}

pub(crate) fn add_to_lease(b: &mut Batch<'_>, lease: u64, d: &Digest) -> Result<()> {
    b.t.lease_items
        .insert(keys::member(lease, d).as_slice(), ())?;
    b.note_reachable(d)
}

/// Deletes a lease and what it holds.
pub(crate) fn remove_lease(b: &mut Batch<'_>, lease: u64) -> Result<()> {
    b.t.leases.remove(lease)?;
    let (lo, hi) = lease_range(lease);
    // One removal per item (not `retain_in`), so that each is recorded
    // for the index log.
    let mut items = Vec::new();
    for e in
        b.t.lease_items
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
    {
        items.push(e?.0.value().to_vec());
    }
    for k in items {
        b.t.lease_items.remove(k.as_slice())?;
    }
    Ok(())
}

pub(crate) fn live_leases(txn: &ReadTransaction, now: u64) -> Result<Vec<Lease>> {
    let t = txn.open_table(LEASES)?;
    let mut out = Vec::new();
    for e in t.iter()? {
        let (k, v) = e?;
        let expires_ms = decode_lease(v.value())?;
        if expires_ms > now {
            out.push(Lease {
                id: k.value(),
                expires_ms,
            });
        }
    }
    Ok(out)
}
