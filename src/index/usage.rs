//! Usage counters (`usage`) and quotas: what each repository and each
//! namespace prefix holds, kept in the transaction of every membership
//! change, and the quota check of that same transaction.
//!
//! A repository's bytes are the sizes of its members (every blob and
//! manifest it received or mounted). A namespace's (`team/`, `team/web/`)
//! are the sum of its repositories': a blob two of them hold counts twice,
//! as each repository sees it. What is exclusive to a repository or
//! namespace, and what it shares, is computed on demand from membership,
//! in time linear in its members (`store::usage`).

use redb::{ReadableTable as _, WriteTransaction};

use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::schema::keys;
use crate::schema::record::le8;
use crate::schema::tables::{MEMBERS, META, REPOS, REPO_NAMES, USAGE};

/// `meta` key set once the counters and `repo_names` cover the store.
const READY_KEY: &str = "usage_version";

/// A limit on what a repository or a namespace holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// A repository name, or a namespace prefix ending in `/`.
    pub scope: String,
    /// At most this many bytes.
    pub max_bytes: u64,
}

/// Bytes and member count of one scope.
pub(crate) fn decode(v: &[u8]) -> (u64, u64) {
    if v.len() < 16 {
        return (0, 0);
    }
    (
        u64::from_le_bytes(le8(&v[..8])),
        u64::from_le_bytes(le8(&v[8..16])),
    )
}

fn encode(bytes: u64, members: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&bytes.to_le_bytes());
    v[8..].copy_from_slice(&members.to_le_bytes());
    v
}

/// The scopes a repository counts in: each namespace prefix (`a/`,
/// `a/b/`), then the repository itself.
pub(crate) fn scopes(repo: &str) -> Vec<&str> {
    let mut out: Vec<&str> = repo.match_indices('/').map(|(i, _)| &repo[..=i]).collect();
    out.push(repo);
    out
}

/// The name of repository `id`, from `repo_names`.
fn name_of(b: &mut Batch<'_>, id: u64) -> Result<String> {
    b.t.repo_names
        .get(id)?
        .map(|g| g.value().to_string())
        .ok_or_else(|| Error::Corrupt(format!("repository id {id} has no name in repo_names")))
}

/// Counts `d` into repository `id` (it just joined), and refuses it with
/// [`Error::OverQuota`] if that takes any of its scopes past a quota.
pub(crate) fn joined(b: &mut Batch<'_>, id: u64, d: &Digest) -> Result<()> {
    let size = crate::index::blobs::record_in(b, d)?.map_or(0, |r| r.size);
    let repo = name_of(b, id)?;
    let quotas = b.shared.quotas();
    for scope in scopes(&repo) {
        let (held, members) = b.t.usage.get(scope)?.map_or((0, 0), |g| decode(g.value()));
        let would_be = held.saturating_add(size);
        if let Some(q) = quotas.iter().find(|q| q.scope == scope)
            && would_be > q.max_bytes
            && size > 0
        {
            return Err(Error::OverQuota {
                scope: scope.to_string(),
                limit: q.max_bytes,
                held,
                would_be,
                repository: repo.clone(),
                digest: Box::new(*d),
                size,
            });
        }
        b.t.usage
            .insert(scope, encode(would_be, members + 1).as_slice())?;
    }
    Ok(())
}

/// Takes `d` out of repository `id`'s counts (it just left).
pub(crate) fn left(b: &mut Batch<'_>, id: u64, d: &Digest) -> Result<()> {
    // A record that no longer decodes counts as empty: the repair that
    // removes it must go on.
    let size = crate::index::blobs::record_in(b, d)
        .ok()
        .flatten()
        .map_or(0, |r| r.size);
    let repo = name_of(b, id)?;
    for scope in scopes(&repo) {
        let (held, members) = b.t.usage.get(scope)?.map_or((0, 0), |g| decode(g.value()));
        let (held, members) = (held.saturating_sub(size), members.saturating_sub(1));
        if members == 0 {
            b.t.usage.remove(scope)?;
        } else {
            b.t.usage.insert(scope, encode(held, members).as_slice())?;
        }
    }
    Ok(())
}

/// Fills `repo_names` and `usage` for a store written before they existed
/// (once, at open, in the open's transaction): one pass over the
/// repositories and their members.
pub(crate) fn backfill(txn: &WriteTransaction) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    if meta.get(READY_KEY)?.is_some() {
        return Ok(());
    }
    let repos = txn.open_table(REPOS)?;
    let mut names = txn.open_table(REPO_NAMES)?;
    let mut by_id = std::collections::BTreeMap::new();
    for e in repos.iter()? {
        let (k, v) = e?;
        names.insert(v.value(), k.value())?;
        by_id.insert(v.value(), k.value().to_string());
    }
    let members = txn.open_table(MEMBERS)?;
    let blobs = txn.open_table(crate::schema::tables::BLOBS)?;
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for e in members.iter()? {
        let (k, _) = e?;
        let id = keys::repo_prefix(k.value());
        let d = keys::member_digest(k.value())?;
        let size = crate::schema::record::lookup(&blobs, &d)
            .ok()
            .flatten()
            .map_or(0, |r| r.size);
        let Some(repo) = by_id.get(&id) else { continue };
        for scope in scopes(repo) {
            let t = totals.entry(scope.to_string()).or_default();
            t.0 += size;
            t.1 += 1;
        }
    }
    let mut usage = txn.open_table(USAGE)?;
    for (scope, (bytes, n)) in totals {
        usage.insert(scope.as_str(), encode(bytes, n).as_slice())?;
    }
    meta.insert(READY_KEY, [1u8].as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_counts_in_each_namespace_above_it() {
        assert_eq!(scopes("a/b/c"), ["a/", "a/b/", "a/b/c"]);
        assert_eq!(scopes("app"), ["app"]);
    }
}
