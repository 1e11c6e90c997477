//! Deleting: a blob from the store, a manifest from a repository, a blob
//! from a repository.

use crate::index::repos::{member_kind, remove_member};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::blobs::record_in;
use crate::index::events;
use crate::index::remove::{remove_blob_in, remove_manifest_from};
use crate::oci::names::{self};
use crate::schema::keys::MEMBER_MANIFEST;
use crate::schema::record::{BlobRecord, EventKind, EventRecord};
use crate::store::not_found;

impl Store {
    /// Removes a blob and its bytes, and everything that indexes it.
    /// Errors with [`Error::BlobUnknown`] if absent.
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let d = *d;
        self.submit(true, move |b| {
            let rec = record_in(b, &d)?.ok_or_else(|| not_found(&d))?;
            remove_blob_in(b, &d, &rec)?;
            events::emit(b, store_deletion(&d, &rec, "delete"))
        })
    }

    /// Deletes a manifest from a repository: its membership, tags and
    /// referrer entries there. When no repository holds it any more, its
    /// edges and bytes go too (children stay until gc collects them).
    pub fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<()> {
        names::validate_repository(repo)?;
        let (repo, d) = (repo.to_string(), *d);
        self.submit(true, move |b| {
            let Some((repo_id, MEMBER_MANIFEST)) = member_kind(b, &repo, &d)? else {
                return Err(Error::ManifestUnknown {
                    digest: d,
                    hint: format!(" in repository `{repo}`"),
                });
            };
            remove_manifest_from(b, repo_id, &d)?;
            events::emit(
                b,
                events::event(EventKind::ManifestDeleted, repo_id, Some(&d)),
            )
        })
    }

    /// Removes a blob from a repository (the bytes stay for other
    /// repositories, or until gc). A manifest goes through the manifest
    /// delete path, so that no tag is left pointing at it.
    pub fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        names::validate_repository(repo)?;
        let (repo, d) = (repo.to_string(), *d);
        self.submit(true, move |b| {
            let Some((id, kind)) = member_kind(b, &repo, &d)? else {
                return Err(Error::BlobUnknown {
                    digest: d,
                    hint: format!(" in repository `{repo}`"),
                });
            };
            let kind = if kind == MEMBER_MANIFEST {
                remove_manifest_from(b, id, &d)?;
                EventKind::ManifestDeleted
            } else {
                remove_member(b, id, &d)?;
                EventKind::BlobDeleted
            };
            events::emit(b, events::event(kind, id, Some(&d)))
        })
    }
}

/// The event of `d` leaving the store outright (`why`: `gc`, `delete`).
pub(crate) fn store_deletion(d: &Digest, rec: &BlobRecord, why: &str) -> EventRecord {
    let kind = if rec.manifest {
        EventKind::ManifestDeleted
    } else {
        EventKind::BlobDeleted
    };
    let mut ev = events::event(kind, 0, Some(d));
    ev.size = rec.size;
    ev.media_type = rec.media_type.clone().unwrap_or_default();
    ev.detail = why.to_string();
    ev
}
