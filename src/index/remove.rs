//! Removing content: a member from a repository, a manifest from a
//! repository, a blob outright.

use super::blobs::record_in;
use super::edges::{parents_by, unindex_manifest};
use super::history::{self, TagChange};
use super::referrers::{remove_referrer_any, remove_referrer_source};
use super::repos::repos_holding;
use super::tags::{tags_of, unapply_fallback_tag};
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::oci::manifest::EdgeKind;
use crate::oci::names;
use crate::schema::keys::{self, SOURCE_FALLBACK_TAG, SOURCE_SUBJECT};
use crate::schema::record::{BlobRecord, Placement, TagAction, TagCause};
use crate::schema::reverse::Set;
use redb::ReadableTable as _;

/// Subjects whose fallback-tag index in `repo_id` lists `d`.
pub(crate) fn schema_subjects_listing(
    b: &mut Batch<'_>,
    repo_id: u64,
    d: &Digest,
) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for p in parents_by(b, d, EdgeKind::Manifest)? {
        out.extend(
            tags_of(b, repo_id, &p)?
                .iter()
                .filter_map(|t| names::referrers_tag_subject(t)),
        );
    }
    Ok(out)
}

/// Removes `d` from one repository: membership, its tags there, and (for a
/// referrer) its referrer entry there.
pub(crate) fn remove_member(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<()> {
    if super::repos::remove_member(b, repo_id, d)? {
        b.t.pulls.remove(keys::member(repo_id, d).as_slice())?;
    }
    for tag in tags_of(b, repo_id, d)? {
        unapply_fallback_tag(b, repo_id, &tag, d)?;
        b.t.tags.remove(keys::tag(repo_id, &tag).as_slice())?;
        b.t.tagged
            .remove(keys::tagged(repo_id, d, &tag).as_slice())?;
        let change = TagChange::new(TagCause::ManifestDeleted, None);
        history::record(b, repo_id, &tag, TagAction::Deleted, d, None, change)?;
    }
    let subject = match b.t.edges_out.get(d.to_key().as_slice())? {
        Some(g) => keys::decode_subject(d, g.value())?,
        None => None,
    };
    if let Some((s, own)) = subject {
        remove_referrer_source(b, repo_id, &s, &own, SOURCE_SUBJECT)?;
    }
    // Entries that fallback-tag indexes of this repository made for d.
    for s in schema_subjects_listing(b, repo_id, d)? {
        remove_referrer_any(b, repo_id, &s, d, SOURCE_FALLBACK_TAG)?;
    }
    Ok(())
}

/// Deletes a blob outright: its index entries, memberships, tags, record and
/// bytes (the file after the commit).
pub(crate) fn remove_blob_in(b: &mut Batch<'_>, d: &Digest, rec: &BlobRecord) -> Result<()> {
    for r in repos_holding(b, d)? {
        remove_member(b, r, d)?;
    }
    if rec.manifest {
        unindex_manifest(b, d)?;
    }
    let key = d.to_key();
    b.t.blobs.remove(key.as_slice())?;
    match rec.placement {
        Placement::Inline => {
            b.t.bodies.remove(rec.body)?;
        }
        Placement::File => b.remove_blob_bytes(*d)?,
    }
    Ok(())
}

/// A manifest leaves a repository with its tags and referrer entries
/// there; with no repository left holding it, its record and edges go.
pub(crate) fn remove_manifest_from(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<()> {
    remove_member(b, repo_id, d)?;
    let (lo, hi) = keys::member_of_range(d);
    let still_held = b.t.any_in(Set::MemberOf, &lo, &hi)?;
    if !still_held && let Some(rec) = record_in(b, d)? {
        remove_blob_in(b, d, &rec)?;
    }
    Ok(())
}
