//! Deleting manifests from repositories, and blobs from repositories.

use crate::index::repos::member_kind;

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::remove::remove_manifest_from;
use crate::oci::names::{self};
use crate::schema::keys::{self, MEMBER_MANIFEST};

impl Store {
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
            remove_manifest_from(b, repo_id, &d)
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
            if kind == MEMBER_MANIFEST {
                return remove_manifest_from(b, id, &d);
            }
            b.t.members.remove(keys::member(id, &d).as_slice())?;
            b.t.member_of.remove(keys::member_of(&d, id).as_slice())?;
            Ok(())
        })
    }
}
