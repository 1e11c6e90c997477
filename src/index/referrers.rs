//! Referrer entries (`referrers`, `artifact_types`): what the referrers API
//! lists, from subject fields and fallback-tag indexes.

use redb::{ReadTransaction, ReadableTable as _};

use super::blobs::record_in;
use super::counters::next_counter;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::oci::manifest::Descriptor;
use crate::schema::keys::SOURCE_SUBJECT;
use crate::schema::keys::{self, MEMBER_MANIFEST};
use crate::schema::tables::ARTIFACT_TYPES;

const NEXT_ARTIFACT_TYPE: &str = "next_artifact_type_id";

pub(crate) fn intern_artifact_type(b: &mut Batch<'_>, at: Option<&str>) -> Result<u32> {
    let Some(at) = at.filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    if let Some(id) = b.t.artifact_types.get(at)?.map(|g| g.value()) {
        return Ok(id);
    }
    let id = next_counter(b, NEXT_ARTIFACT_TYPE)?;
    let id = u32::try_from(id).map_err(|_| Error::LimitExceeded {
        what: "distinct artifact types".into(),
        limit: u64::from(u32::MAX),
    })?;
    b.t.artifact_types.insert(at, id)?;
    Ok(id)
}

pub(crate) fn artifact_type_id(txn: &ReadTransaction, at: &str) -> Result<Option<u32>> {
    if at.is_empty() {
        return Ok(Some(0));
    }
    let t = txn.open_table(ARTIFACT_TYPES)?;
    Ok(t.get(at)?.map(|g| g.value()))
}

pub(crate) fn add_referrer(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    desc: &Descriptor,
    source: u8,
) -> Result<()> {
    let k = referrer_key(b, repo_id, subject, desc)?;
    put_referrer(b, &k, desc, source)
}

/// The key of `desc`'s entry under (repo, subject); interns its artifact
/// type.
pub(crate) fn referrer_key(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    desc: &Descriptor,
) -> Result<Vec<u8>> {
    let at = intern_artifact_type(b, desc.artifact_type.as_deref())?;
    Ok(keys::referrer(repo_id, subject, at, &desc.digest))
}

/// Adds `source` to the entry under `k` (made by [`referrer_key`] for
/// `desc`), creating it if needed.
pub(crate) fn put_referrer(
    b: &mut Batch<'_>,
    k: &[u8],
    desc: &Descriptor,
    source: u8,
) -> Result<()> {
    let (sources, stored) = match b.t.referrers.get(k)? {
        Some(g) => keys::decode_referrer_of(&desc.digest, g.value())?,
        None => (0, desc.clone()),
    };
    // A subject-field entry describes the manifest itself; prefer it over the
    // copy in a tag-schema index.
    let value = if source == SOURCE_SUBJECT {
        desc
    } else {
        &stored
    };
    b.t.referrers.insert(
        k,
        keys::encode_referrer(sources | source, value)?.as_slice(),
    )?;
    Ok(())
}

pub(crate) fn remove_referrer_source(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    desc: &Descriptor,
    source: u8,
) -> Result<()> {
    let at = match desc.artifact_type.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(at) => match b.t.artifact_types.get(at)?.map(|g| g.value()) {
            Some(id) => id,
            None => return Ok(()),
        },
    };
    let k = keys::referrer(repo_id, subject, at, &desc.digest);
    let Some((sources, stored)) =
        b.t.referrers
            .get(k.as_slice())?
            .map(|g| keys::decode_referrer_of(&desc.digest, g.value()))
            .transpose()?
    else {
        return Ok(());
    };
    drop_source(b, &k, sources, &stored, source)
}

/// Takes `source` off a referrer entry; the entry goes with its last source.
pub(crate) fn drop_source(
    b: &mut Batch<'_>,
    k: &[u8],
    sources: u8,
    stored: &Descriptor,
    source: u8,
) -> Result<()> {
    let left = sources & !source;
    if left == 0 {
        b.t.referrers.remove(k)?;
    } else {
        b.t.referrers
            .insert(k, keys::encode_referrer(left, stored)?.as_slice())?;
    }
    Ok(())
}

/// Takes `source` off every entry of `referrer` under (repo, subject),
/// whatever artifact type it is keyed by.
pub(crate) fn remove_referrer_any(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    referrer: &Digest,
    source: u8,
) -> Result<()> {
    let (lo, hi) = keys::referrer_range(repo_id, subject, None);
    let mut hits = Vec::new();
    for e in
        b.t.referrers
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
    {
        let (k, v) = e?;
        if keys::referrer_parts(k.value())?.1 == *referrer {
            hits.push((
                k.value().to_vec(),
                keys::decode_referrer_of(referrer, v.value())?,
            ));
        }
    }
    for (k, (sources, stored)) in hits {
        drop_source(b, &k, sources, &stored, source)?;
    }
    Ok(())
}

/// What a fallback-tag index entry lists, as the referrers API returns
/// it: only a manifest this repository holds (a sparse entry lists
/// nothing), described by the manifest itself (its own artifactType wins
/// over the index's claim, so one referrer has one entry).
pub(crate) fn fallback_tag_entry(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    entry: &Descriptor,
) -> Result<Option<Descriptor>> {
    let d = entry.digest;
    if b.t
        .members
        .get(keys::member(repo_id, &d).as_slice())?
        .map(|g| g.value())
        != Some(MEMBER_MANIFEST)
    {
        return Ok(None);
    }
    let own_subject = match b.t.edges_out.get(d.to_key().as_slice())? {
        Some(g) => keys::decode_subject(&d, g.value())?,
        None => None,
    };
    if let Some((s, own)) = own_subject
        && s == *subject
    {
        return Ok(Some(own));
    }
    let Some(rec) = record_in(b, &d)? else {
        return Ok(None);
    };
    Ok(Some(Descriptor {
        media_type: rec.media_type.unwrap_or_else(|| entry.media_type.clone()),
        digest: d,
        size: rec.size,
        artifact_type: rec.artifact_type,
        annotations: entry.annotations.clone(),
        platform: None,
        urls: None,
    }))
}
