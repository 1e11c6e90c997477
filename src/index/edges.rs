//! Manifest edges (`edges_out`, `edges_in`).

use redb::ReadableTable;

use super::blobs::record_in;
use super::referrers::remove_referrer_source;
use super::repos::repos_holding;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::oci::manifest::{self, Descriptor, EdgeKind};
use crate::schema::keys::{self, SOURCE_SUBJECT};
use crate::schema::reverse::Set;
use crate::schema::tables::DKey;

/// Index entries of a manifest (its `manifests`), read from its edges.
pub(crate) fn index_entries(b: &mut Batch<'_>, d: &Digest) -> Result<Vec<Descriptor>> {
    Ok(edges_of(&*b.t.edges_out, d)?
        .into_iter()
        .filter(|(kind, _, _)| *kind == EdgeKind::Manifest)
        .map(|(_, _, desc)| desc)
        .collect())
}

pub(crate) fn is_index(b: &mut Batch<'_>, d: &Digest) -> Result<bool> {
    Ok(record_in(b, d)?.is_some_and(|r| {
        r.manifest && r.media_type.as_deref().is_some_and(manifest::is_index_type)
    }))
}

/// A manifest's stored edges (empty for a blob or an unindexed manifest).
pub(crate) fn edges_of(
    t: &impl redb::ReadableTable<&'static DKey, &'static [u8]>,
    d: &Digest,
) -> Result<Vec<keys::StoredEdge>> {
    match t.get(d.to_key().as_slice())? {
        Some(g) => keys::decode_edges(d, g.value()),
        None => Ok(Vec::new()),
    }
}

/// The manifests whose edge of `kind` points at `child` (all repositories),
/// from both trees of `edges_in`.
pub(crate) fn parents_by(b: &Batch<'_>, child: &Digest, kind: EdgeKind) -> Result<Vec<Digest>> {
    let (lo, hi) = keys::edge_in_range(child);
    let mut out = Vec::new();
    b.t.keys_in(Set::EdgesIn, &lo, &hi, |k| {
        let (_, parent, k_kind) = keys::split_edge_in(k)?;
        if k_kind == kind {
            out.push(parent);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Removes a manifest's edges and referrer entries (in every repository).
pub(crate) fn unindex_manifest(b: &mut Batch<'_>, d: &Digest) -> Result<()> {
    let Some(value) =
        b.t.edges_out
            .get(d.to_key().as_slice())?
            .map(|g| g.value().to_vec())
    else {
        return Ok(());
    };
    let repos = repos_holding(b, d)?;
    b.t.edges_out.remove(d.to_key().as_slice())?;
    for (kind, child, _) in keys::decode_edges(d, &value)? {
        b.t.remove_key(Set::EdgesIn, &keys::edge_in(&child, d, kind))?;
    }
    if let Some((subject, own)) = keys::decode_subject(d, &value)? {
        for &r in &repos {
            remove_referrer_source(b, r, &subject, &own, SOURCE_SUBJECT)?;
        }
    }
    Ok(())
}
