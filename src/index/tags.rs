//! Tags (`tags`, `tagged`), and the referrer entries a fallback tag
//! (`sha256-<hex>`) on an index makes.

use redb::{ReadTransaction, ReadableTable as _};

use super::edges::{index_entries, is_index};
use super::history::{self, TagChange};
use super::referrers::{add_referrer, fallback_tag_entry, remove_referrer_any};
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Error;
use crate::error::Result;
use crate::oci::names;
use crate::schema::keys::{self, SOURCE_FALLBACK_TAG};
use crate::schema::record::TagAction;
use crate::schema::tables::TAGS;

/// Points `tag` at `d`, recording the change in the tag's history; returns
/// the digest it pointed at before, when it moved.
pub(crate) fn set_tag(
    b: &mut Batch<'_>,
    repo_id: u64,
    tag: &str,
    d: &Digest,
    change: TagChange<'_>,
) -> Result<Option<Digest>> {
    b.note_reachable(d)?;
    let key = keys::tag(repo_id, tag);
    let old = b.t.tags.get(key.as_slice())?.map(|g| g.value().to_vec());
    let old = old.map(|o| Digest::from_key(&o)).transpose()?;
    if let Some(old) = &old {
        if old == d {
            return Ok(None);
        }
        unapply_fallback_tag(b, repo_id, tag, old)?;
        b.t.tagged
            .remove(keys::tagged(repo_id, old, tag).as_slice())?;
    }
    history::record(b, repo_id, tag, TagAction::Created, d, old.as_ref(), change)?;
    b.t.tags.insert(key.as_slice(), d.to_key().as_slice())?;
    b.t.tagged
        .insert(keys::tagged(repo_id, d, tag).as_slice(), ())?;
    if let Some(subject) = names::referrers_tag_subject(tag)
        && is_index(b, d)?
    {
        for entry in index_entries(b, d)? {
            if let Some(desc) = fallback_tag_entry(b, repo_id, &subject, &entry)? {
                add_referrer(b, repo_id, &subject, &desc, SOURCE_FALLBACK_TAG)?;
            }
        }
    }
    Ok(old)
}

/// Removes `tag` from a repository; returns the digest it pointed at.
pub(crate) fn remove_tag(
    b: &mut Batch<'_>,
    repo_id: u64,
    repo: &str,
    tag: &str,
    change: TagChange<'_>,
) -> Result<Digest> {
    let key = keys::tag(repo_id, tag);
    let Some(old) = b.t.tags.get(key.as_slice())?.map(|g| g.value().to_vec()) else {
        return Err(Error::TagUnknown {
            repository: repo.to_string(),
            tag: tag.to_string(),
            hint: String::new(),
        });
    };
    let old = Digest::from_key(&old)?;
    unapply_fallback_tag(b, repo_id, tag, &old)?;
    b.t.tags.remove(key.as_slice())?;
    b.t.tagged
        .remove(keys::tagged(repo_id, &old, tag).as_slice())?;
    history::record(b, repo_id, tag, TagAction::Deleted, &old, None, change)?;
    Ok(old)
}

pub(crate) fn unapply_fallback_tag(
    b: &mut Batch<'_>,
    repo_id: u64,
    tag: &str,
    old: &Digest,
) -> Result<()> {
    let Some(subject) = names::referrers_tag_subject(tag) else {
        return Ok(());
    };
    if is_index(b, old)? {
        for entry in index_entries(b, old)? {
            remove_referrer_any(b, repo_id, &subject, &entry.digest, SOURCE_FALLBACK_TAG)?;
        }
    }
    Ok(())
}

/// The tags of `repo_id` that point at `d`, from the reverse index.
pub(crate) fn tags_of(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<Vec<String>> {
    let prefix = keys::member(repo_id, d);
    let mut out = Vec::new();
    for e in b.t.tagged.range(prefix.as_slice()..)? {
        let (k, _) = e?;
        let k = k.value();
        if !k.starts_with(&prefix) {
            break;
        }
        out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
    }
    Ok(out)
}

pub(crate) fn list_tags(
    txn: &ReadTransaction,
    repo_id: u64,
    last: Option<&str>,
    n: Option<usize>,
) -> Result<Vec<String>> {
    Ok(read_tags(txn, repo_id, last, n)?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

pub(crate) fn tag_entries(txn: &ReadTransaction, repo_id: u64) -> Result<Vec<(String, Digest)>> {
    read_tags(txn, repo_id, None, None)
}

/// A repository's tags in order, after `last` (exclusive), at most `n`.
pub(crate) fn read_tags(
    txn: &ReadTransaction,
    repo_id: u64,
    last: Option<&str>,
    n: Option<usize>,
) -> Result<Vec<(String, Digest)>> {
    let t = txn.open_table(TAGS)?;
    let lo = keys::tag(repo_id, last.unwrap_or(""));
    let hi = (repo_id + 1).to_be_bytes();
    let mut out = Vec::new();
    for e in t.range(lo.as_slice()..hi.as_slice())? {
        let (k, v) = e?;
        let tag = std::str::from_utf8(&k.value()[8..])
            .map_err(|_| Error::Corrupt("a tag key is not UTF-8".into()))?;
        if last == Some(tag) {
            continue;
        }
        if n.is_some_and(|n| out.len() >= n) {
            break;
        }
        out.push((tag.to_string(), Digest::from_key(v.value())?));
    }
    Ok(out)
}
