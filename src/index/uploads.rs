//! Upload sessions' rows, inside a writer job.

use redb::ReadableTable as _;

use super::blobs::insert_blob;
use super::leases::{add_to_lease, check_lease};
use super::repos::{add_member, ensure_repo};
use crate::blob::Staged;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::schema::keys::MEMBER_BLOB;
use crate::schema::record::UploadRecord;

/// No session with this id.
pub(crate) fn unknown(id: &str) -> Error {
    Error::UploadUnknown {
        id: crate::text::quote_untrusted(id),
    }
}

/// Records a new session.
pub(crate) fn put_upload(b: &mut Batch<'_>, id: &str, record: &[u8]) -> Result<()> {
    b.t.uploads.insert(id, record)?;
    Ok(())
}

/// Moves a session past appended bytes: its record had offset `before`.
/// Another process cannot hold the store, and the busy set keeps this
/// process to one append per session; the check stays.
pub(crate) fn advance_upload(
    b: &mut Batch<'_>,
    id: &str,
    before: u64,
    record: &[u8],
) -> Result<()> {
    let cur =
        b.t.uploads
            .get(id)?
            .map(|g| UploadRecord::decode(g.value()))
            .transpose()?
            .ok_or_else(|| unknown(id))?;
    if cur.offset != before {
        return Err(Error::UploadOffset {
            id: id.to_string(),
            expected: cur.offset,
            given: before,
        });
    }
    b.t.uploads.insert(id, record)?;
    Ok(())
}

/// Ends a verified session: the blob is recorded (its staged bytes become
/// its own unless the store had it), joins the session's repository and
/// its lease. Returns whether the blob is new to the store.
pub(crate) fn complete_upload(
    b: &mut Batch<'_>,
    id: &str,
    d: &Digest,
    size: u64,
    repo: &str,
    lease: u64,
    staged: &Staged,
) -> Result<bool> {
    b.t.uploads.remove(id)?;
    let inserted = insert_blob(b, d, size, None, None)?;
    let created = inserted.created;
    b.place_staged(created, *d, staged, true)?;
    let repo_id = ensure_repo(b, repo)?;
    add_member(b, repo_id, d, MEMBER_BLOB, inserted.size)?;
    if check_lease(b, lease).is_ok() {
        add_to_lease(b, lease, d)?;
    }
    Ok(created)
}

/// Forgets a session.
pub(crate) fn remove_upload(b: &mut Batch<'_>, id: &str) -> Result<()> {
    b.t.uploads.remove(id)?;
    Ok(())
}
