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

use redb::ReadableTable as _;

use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
pub(crate) use crate::schema::keys::usage_scopes as scopes;
pub(crate) use crate::schema::record::{decode_usage as decode, encode_usage as encode};

pub use crate::engine::Quota;

/// The name of repository `id`, from `repo_names`.
fn name_of(b: &mut Batch<'_>, id: u64) -> Result<String> {
    b.t.repo_names
        .get(id)?
        .map(|g| g.value().to_string())
        .ok_or_else(|| Error::Corrupt(format!("repository id {id} has no name in repo_names")))
}

/// Counts `d`, of `size` bytes (its record's), into repository `id` (it
/// just joined), and refuses it with [`Error::OverQuota`] if that takes any
/// of its scopes past a quota.
pub(crate) fn joined(b: &mut Batch<'_>, id: u64, d: &Digest, size: u64) -> Result<()> {
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

/// Recomputes `repo_names` and every usage counter from `repos` and
/// membership, in one writer job: the repair of `usage-mismatch` (a record removed as corrupt left with no
/// size to subtract). Time linear in the store.
pub(crate) fn rebuild(b: &mut Batch<'_>) -> Result<()> {
    // `repo_names` again from `repos`, first.
    let mut names = std::collections::BTreeMap::new();
    for e in b.t.repos.iter()? {
        let (name, id) = e?;
        names.insert(id.value(), name.value().to_string());
    }
    let mut stale = Vec::new();
    for e in b.t.repo_names.iter()? {
        stale.push(e?.0.value());
    }
    for id in stale {
        b.t.repo_names.remove(id)?;
    }
    for (id, name) in &names {
        b.t.repo_names.insert(*id, name.as_str())?;
    }
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut members = Vec::new();
    for e in b.t.members.iter()? {
        members.push(e?.0.value().to_vec());
    }
    for k in members {
        let d = crate::schema::keys::member_digest(&k)?;
        let Some(repo) = names.get(&crate::schema::keys::repo_prefix(&k)) else {
            continue;
        };
        let size = crate::index::blobs::record_in(b, &d)
            .ok()
            .flatten()
            .map_or(0, |r| r.size);
        for scope in scopes(repo) {
            let t = totals.entry(scope.to_string()).or_default();
            t.0 += size;
            t.1 += 1;
        }
    }
    let mut old = Vec::new();
    for e in b.t.usage.iter()? {
        old.push(e?.0.value().to_string());
    }
    for k in old {
        b.t.usage.remove(k.as_str())?;
    }
    for (scope, (bytes, n)) in totals {
        b.t.usage
            .insert(scope.as_str(), encode(bytes, n).as_slice())?;
    }
    Ok(())
}
