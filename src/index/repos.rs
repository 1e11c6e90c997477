//! Repositories and their members (`repos`, `members`, `member_of`).

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable as _};

use super::counters::next_counter;
use super::events;
use super::usage;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::schema::keys::{self, MEMBER_MANIFEST};
use crate::schema::record::EventKind;
use crate::schema::reverse::Set;
use crate::schema::tables::REPOS;

const NEXT_REPO: &str = "next_repo_id";

pub(crate) fn lookup_repo_w(b: &mut Batch<'_>, repo: &str) -> Result<Option<u64>> {
    Ok(b.t.repos.get(repo)?.map(|g| g.value()))
}

/// The repository's id, or [`Error::RepositoryUnknown`].
pub(crate) fn existing_repo(b: &mut Batch<'_>, repo: &str) -> Result<u64> {
    lookup_repo_w(b, repo)?.ok_or_else(|| crate::error::Error::RepositoryUnknown {
        repository: repo.to_string(),
        hint: String::new(),
    })
}

/// The repository's id and `d`'s membership kind there, without creating
/// the repository. None when either is absent.
pub(crate) fn member_kind(b: &mut Batch<'_>, repo: &str, d: &Digest) -> Result<Option<(u64, u8)>> {
    let Some(id) = lookup_repo_w(b, repo)? else {
        return Ok(None);
    };
    Ok(member_kind_in(b, id, d)?.map(|k| (id, k)))
}

/// `d`'s membership kind in the repository with id `repo_id`, if any.
pub(crate) fn member_kind_in(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<Option<u8>> {
    Ok(b.t
        .members
        .get(keys::member(repo_id, d).as_slice())?
        .map(|g| g.value()))
}

/// Removes a repository that holds no member and no tag (what a failed
/// import created). A repository with anything in it stays.
pub(crate) fn remove_repo_if_empty(b: &mut Batch<'_>, repo: &str) -> Result<()> {
    let Some(id) = lookup_repo_w(b, repo)? else {
        return Ok(());
    };
    let (lo, hi) = keys::member_range(id);
    if b.t
        .members
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())?
        .next()
        .is_some()
    {
        return Ok(());
    }
    let lo = id.to_be_bytes();
    let hi = id.wrapping_add(1).to_be_bytes();
    if b.t
        .tags
        .range(lo.as_slice()..hi.as_slice())?
        .next()
        .is_some()
    {
        return Ok(());
    }
    b.shared.repo_ids.note_removal();
    b.t.repos.remove(repo)?;
    b.t.repo_names.remove(id)?;
    Ok(())
}

pub(crate) fn ensure_repo(b: &mut Batch<'_>, repo: &str) -> Result<u64> {
    if let Some(id) = lookup_repo_w(b, repo)? {
        return Ok(id);
    }
    let id = next_counter(b, NEXT_REPO)?;
    b.t.repos.insert(repo, id)?;
    b.t.repo_names.insert(id, repo)?;
    Ok(id)
}

/// Makes `d` a member of `repo_id`; a blob that joins (pushed, mounted,
/// uploaded) is an outbox event. `size` is the size in `d`'s record, which
/// every caller has just read or written: the usage counters and the event
/// take it from there instead of looking the record up again. Returns
/// whether the membership is new.
pub(crate) fn add_member(
    b: &mut Batch<'_>,
    repo_id: u64,
    d: &Digest,
    kind: u8,
    size: u64,
) -> Result<bool> {
    b.note_reachable(d)?;
    let mk = keys::member(repo_id, d);
    let existing = b.t.members.get(mk.as_slice())?.map(|g| g.value());
    // A manifest membership is never downgraded to a blob membership.
    if existing == Some(MEMBER_MANIFEST) || existing == Some(kind) {
        return Ok(false);
    }
    b.t.members.insert(mk.as_slice(), kind)?;
    b.t.add_key(Set::MemberOf, &keys::member_of(d, repo_id))?;
    if existing.is_none() {
        usage::joined(b, repo_id, d, size)?;
    }
    if kind != MEMBER_MANIFEST {
        let mut ev = events::event(EventKind::BlobPushed, repo_id, Some(d));
        ev.size = size;
        events::emit(b, ev)?;
    }
    Ok(true)
}

/// Takes a blob out of a repository (both directions of membership, and
/// the usage counters): whether it was a member.
pub(crate) fn remove_member(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<bool> {
    let was =
        b.t.members
            .remove(keys::member(repo_id, d).as_slice())?
            .is_some();
    b.t.remove_key(Set::MemberOf, &keys::member_of(d, repo_id))?;
    if was {
        usage::left(b, repo_id, d)?;
    }
    Ok(was)
}

pub(crate) fn repos_holding(b: &mut Batch<'_>, d: &Digest) -> Result<Vec<u64>> {
    let (lo, hi) = keys::member_of_range(d);
    let mut out = Vec::new();
    b.t.keys_in(Set::MemberOf, &lo, &hi, |k| {
        out.push(keys::member_of_repo(k)?);
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn repo_id(txn: &ReadTransaction, repo: &str) -> Result<Option<u64>> {
    let t = txn.open_table(REPOS)?;
    Ok(t.get(repo)?.map(|g| g.value()))
}

pub(crate) fn repo_names(txn: &ReadTransaction) -> Result<BTreeMap<u64, String>> {
    let t = txn.open_table(REPOS)?;
    let mut out = BTreeMap::new();
    for e in t.iter()? {
        let (k, v) = e?;
        out.insert(v.value(), k.value().to_string());
    }
    Ok(out)
}
