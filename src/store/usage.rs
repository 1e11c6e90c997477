//! Accounting and quotas: what a repository or namespace holds, how much
//! of it is its own and how much it shares, and limits enforced in the
//! writer job that would exceed them.

use std::collections::{HashMap, HashSet};

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::usage::decode;
use crate::oci::names;
use crate::schema::keys;
use crate::schema::record::EventKind;
use crate::schema::reverse;
use crate::schema::tables::{self, BLOBS, MEMBERS, MEMBER_OF, MEMBER_OF_STAGED, REPOS, USAGE};

pub use crate::index::usage::Quota;

/// What a repository or a namespace holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// A repository name, or a namespace prefix ending in `/`.
    pub scope: String,
    /// Repositories in it (1 for a repository that exists).
    pub repositories: u64,
    /// Memberships: blobs and manifests, once per repository holding them.
    pub members: u64,
    /// Bytes as its repositories see them: a blob two of them hold counts
    /// twice. What quotas limit.
    pub logical_bytes: u64,
    /// Bytes of its distinct content (each digest once).
    pub unique_bytes: u64,
    /// Of those, bytes no repository outside the scope holds: what
    /// deleting the scope's content would free.
    pub exclusive_bytes: u64,
    /// Of those, bytes a repository outside the scope also holds.
    pub shared_bytes: u64,
    /// The scope's quota, if one is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
}

/// A quota's scope, or the rule it breaks.
fn check_scope(scope: &str) -> Result<()> {
    match scope.strip_suffix('/') {
        Some(prefix) => names::validate_repository(prefix).map_err(|_| Error::InvalidArgument {
            value: crate::text::quote_untrusted(scope),
            expected: "a repository name, or a namespace: a repository-name prefix ending in `/` (e.g. team/)".into(),
        }),
        None => names::validate_repository(scope),
    }
}

/// The ids of the repositories `scope` covers.
fn scope_ids(txn: &ReadTransaction, scope: &str) -> Result<Vec<u64>> {
    let repos = txn.open_table(REPOS)?;
    if !scope.ends_with('/') {
        return Ok(repos.get(scope)?.map(|g| g.value()).into_iter().collect());
    }
    let mut out = Vec::new();
    for e in repos.range(scope..)? {
        let (k, v) = e?;
        if !k.value().starts_with(scope) {
            break;
        }
        out.push(v.value());
    }
    Ok(out)
}

impl Store {
    /// Puts `quotas` in force for every write from now on: a write that
    /// would take a scope past its limit fails whole with
    /// [`Error::OverQuota`] (a registry's 403 `DENIED`), and, with events
    /// on, writes a `quota_refused` event.
    pub fn set_quotas(&self, quotas: Vec<Quota>) -> Result<()> {
        let mut seen = HashSet::new();
        for q in &quotas {
            check_scope(&q.scope)?;
            if q.max_bytes == 0 {
                return Err(Error::InvalidArgument {
                    value: format!("{}=0", q.scope),
                    expected: "a quota above zero bytes".into(),
                });
            }
            if !seen.insert(q.scope.as_str()) {
                return Err(Error::InvalidArgument {
                    value: q.scope.clone(),
                    expected: "one quota per scope".into(),
                });
            }
        }
        self.shared.set_quotas(quotas)
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Vec<Quota> {
        self.shared.quotas().as_ref().clone()
    }

    /// What `scope` (a repository, or a namespace prefix ending in `/`)
    /// holds. Its logical bytes come from counters kept with every change;
    /// the exclusive and shared split reads the scope's members and who
    /// else holds each: time linear in the scope, not the store.
    pub fn usage(&self, scope: &str) -> Result<Usage> {
        check_scope(scope)?;
        let txn = tables::begin_read(&self.db)?;
        let ids = scope_ids(&txn, scope)?;
        let counters = txn.open_table(USAGE)?;
        let (logical, members) = counters.get(scope)?.map_or((0, 0), |g| decode(g.value()));
        let members_t = txn.open_table(MEMBERS)?;
        let member_of = txn.open_table(MEMBER_OF)?;
        let member_of_staged = txn.open_table(MEMBER_OF_STAGED)?;
        let blobs = txn.open_table(BLOBS)?;
        let inside: HashSet<u64> = ids.iter().copied().collect();
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for &id in &ids {
            let (lo, hi) = keys::member_range(id);
            for e in members_t.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
                let (k, _) = e?;
                let d = keys::member_digest(k.value())?;
                if sizes.contains_key(&d) {
                    continue;
                }
                let size = crate::schema::record::lookup(&blobs, &d)?.map_or(0, |r| r.size);
                sizes.insert(d, size);
            }
        }
        let mut u = Usage {
            scope: scope.to_string(),
            repositories: ids.len() as u64,
            members,
            logical_bytes: logical,
            quota: self
                .shared
                .quotas()
                .iter()
                .find(|q| q.scope == scope)
                .map(|q| q.max_bytes),
            ..Usage::default()
        };
        for (d, size) in sizes {
            u.unique_bytes += size;
            let (lo, hi) = keys::member_of_range(&d);
            let held_only_inside = reverse::all_in(&member_of, &member_of_staged, &lo, &hi, |k| {
                Ok(inside.contains(&keys::member_of_repo(k)?))
            })?;
            if !held_only_inside {
                u.shared_bytes += size;
            } else {
                u.exclusive_bytes += size;
            }
        }
        Ok(u)
    }

    /// Writes the `quota_refused` event of a refused write (its own
    /// transaction: the write's was rolled back).
    pub(crate) fn note_refusal(&self, e: &Error) {
        let Error::OverQuota {
            repository, digest, ..
        } = e
        else {
            return;
        };
        if !self.shared.events {
            return;
        }
        let (repo, d, detail) = (repository.clone(), **digest, e.to_string());
        let r = self.send(true, false, move |b| {
            let id = crate::index::repos::lookup_repo_w(b, &repo)?.unwrap_or(0);
            let mut ev = crate::index::events::event(EventKind::QuotaRefused, id, Some(&d));
            ev.detail = detail.clone();
            crate::index::events::emit(b, ev)
        });
        if let Err(x) = r {
            tracing::warn!("recording a quota refusal: {x}");
        }
    }
}
