//! Tags, repositories and membership, as the distribution API sees them.

use redb::ReadableTable as _;

use super::history::checked_user;
use super::snapshot::Snapshot;
use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::history::TagChange;
use crate::index::repos::existing_repo;
use crate::index::repos::member_kind;
use crate::index::repos::repo_names;
use crate::index::tags::list_tags;
use crate::index::tags::read_tags;
use crate::index::tags::remove_tag;
use crate::index::tags::set_tag;
use crate::oci::names::{self};
use crate::schema::keys::{self, MEMBER_MANIFEST};
use crate::schema::record::TagCause;
use crate::schema::reverse;
use crate::schema::tables::{self, MEMBERS, MEMBER_OF, MEMBER_OF_STAGED, REPOS};

impl Store {
    /// Points `tag` in `repo` at a manifest of that repository.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        self.set_tags(repo, vec![(tag.to_string(), *digest)])
    }

    /// Points many tags in one repository, in one durable transaction. Every
    /// target must be a manifest of the repository; otherwise nothing changes.
    pub fn set_tags(&self, repo: &str, tags: Vec<(String, Digest)>) -> Result<()> {
        self.set_tags_by(repo, tags, None)
    }

    /// [`Store::set_tags`], recording `user` in the tags' history.
    pub fn set_tags_by(
        &self,
        repo: &str,
        tags: Vec<(String, Digest)>,
        user: Option<&str>,
    ) -> Result<()> {
        names::validate_repository(repo)?;
        let user = checked_user(user)?;
        if tags.is_empty() {
            return Ok(());
        }
        for (t, _) in &tags {
            names::validate_tag(t)?;
        }
        let repo = repo.to_string();
        self.submit(true, move |b| {
            let mut repo_id = None;
            for (t, d) in &tags {
                let Some((id, MEMBER_MANIFEST)) = member_kind(b, &repo, d)? else {
                    let hint = format!(" in repository `{repo}` (for tag `{t}`)");
                    return Err(Error::ManifestUnknown {
                        digest: *d,
                        hint: format!("{hint}; push it there before tagging"),
                    });
                };
                repo_id = Some(id);
            }
            if let Some(repo_id) = repo_id {
                let change = TagChange::new(TagCause::Tagged, user.as_deref());
                for (t, d) in &tags {
                    set_tag(b, repo_id, t, d, change)?;
                }
            }
            Ok(())
        })
    }

    /// Removes a tag. The manifest stays (gc may collect it later, past
    /// the undelete window: see [`Store::restore_tag`]).
    pub fn untag(&self, repo: &str, tag: &str) -> Result<Digest> {
        self.untag_by(repo, tag, None)
    }

    /// [`Store::untag`], recording `user` in the tag's history.
    pub fn untag_by(&self, repo: &str, tag: &str, user: Option<&str>) -> Result<Digest> {
        names::validate_repository(repo)?;
        names::validate_tag(tag)?;
        let user = checked_user(user)?;
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.submit(true, move |b| {
            let repo_id = existing_repo(b, &repo)?;
            let change = TagChange::new(TagCause::Untagged, user.as_deref());
            remove_tag(b, repo_id, &repo, &tag, change)
        })
    }

    /// Whether a digest is a member of a repository.
    pub fn is_member(&self, repo: &str, d: &Digest) -> Result<bool> {
        Ok(self.member_as(repo, d)?.is_some())
    }

    /// How `d` belongs to `repo`: `Some(true)` as a manifest (what tags may
    /// point at, parsed or opaque), `Some(false)` as a blob.
    pub(crate) fn member_as(&self, repo: &str, d: &Digest) -> Result<Option<bool>> {
        let txn = self.snapshot()?;
        let Some(id) = self.repo_id(&txn, repo)? else {
            return Ok(None);
        };
        let t = txn.open_table(MEMBERS)?;
        Ok(t.get(keys::member(id, d).as_slice())?
            .map(|g| g.value() == MEMBER_MANIFEST))
    }

    /// Tags of a repository, sorted, after `last` (exclusive), at most `n`.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        let txn = self.snapshot()?;
        let repo_id = self.require_repo(&txn, repo)?;
        list_tags(&txn, repo_id, last, n)
    }

    /// Tags of a repository with their digests, sorted by tag.
    pub fn tag_map(&self, repo: &str) -> Result<Vec<(String, Digest)>> {
        self.tag_page(repo, None, None)
    }

    /// A page of [`Store::tag_map`]: the tags after `last` (exclusive), at
    /// most `n`, each with its digest, from one read snapshot.
    pub fn tag_page(
        &self,
        repo: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<(String, Digest)>> {
        let txn = self.snapshot()?;
        let repo_id = self.require_repo(&txn, repo)?;
        read_tags(&txn, repo_id, last, n)
    }

    /// A page of the catalog: repository names after `last` (exclusive),
    /// sorted, at most `n`, and whether more follow (`GET /v2/_catalog`).
    pub fn repositories_page(
        &self,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<(Vec<String>, bool)> {
        self.repositories_page_where(last, n, |_| true)
    }

    /// [`Store::repositories_page`] over the names `keep` accepts: the
    /// filter runs before the page is cut, so a page (and the `last` a
    /// caller puts in its next link) holds only accepted names, however
    /// many others lie between them. The scan is linear in the names it
    /// passes.
    pub fn repositories_page_where(
        &self,
        last: Option<&str>,
        n: Option<usize>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool)> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(REPOS)?;
        let limit = n.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let range = match last {
            Some(l) => {
                t.range::<&str>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        for e in range {
            let (k, _) = e?;
            let name = k.value();
            if !keep(name) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(name.to_string());
        }
        Ok((out, false))
    }

    /// All repository names, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(REPOS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, _) = e?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Repositories that hold a digest, sorted by name.
    pub fn repositories_of(&self, d: &Digest) -> Result<Vec<String>> {
        let txn = tables::begin_read(&self.db)?;
        let names = repo_names(&txn)?;
        let t = txn.open_table(MEMBER_OF)?;
        let staged = txn.open_table(MEMBER_OF_STAGED)?;
        let (lo, hi) = keys::member_of_range(d);
        let mut out = Vec::new();
        reverse::for_each_in(&t, &staged, &lo, &hi, |k| {
            if let Some(n) = names.get(&keys::member_of_repo(k)?) {
                out.push(n.clone());
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    /// Members of a repository: (digest, is_manifest).
    pub fn members(&self, repo: &str) -> Result<Vec<(Digest, bool)>> {
        let txn = self.snapshot()?;
        let repo_id = self.require_repo(&txn, repo)?;
        let t = txn.open_table(MEMBERS)?;
        let (lo, hi) = keys::member_range(repo_id);
        let mut out = Vec::new();
        for e in t.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = e?;
            out.push((
                keys::member_digest(k.value())?,
                v.value() == MEMBER_MANIFEST,
            ));
        }
        Ok(out)
    }

    pub(crate) fn require_repo(&self, snap: &Snapshot, repo: &str) -> Result<u64> {
        names::validate_repository(repo)?;
        match self.repo_id(snap, repo)? {
            Some(id) => Ok(id),
            // Only the name asked for: listing the others would leak
            // other tenants' names through a registry front.
            None => Err(Error::RepositoryUnknown {
                repository: repo.to_string(),
                hint: String::new(),
            }),
        }
    }
}
