//! Tag history and undelete: every creation, move and deletion of a tag,
//! recorded in the transaction that makes it, and a tag put back where it
//! pointed before.

use redb::ReadableTable as _;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::history::{read_history, TagChange};
use crate::index::repos::{existing_repo, member_kind_in, repo_id};
use crate::index::tags::set_tag;
use crate::oci::names;
use crate::schema::keys::{self, MEMBER_MANIFEST};
use crate::schema::record::TagEventRecord;

pub use crate::schema::record::{TagAction, TagCause};

/// The longest user name the history records.
pub const MAX_USER_LEN: usize = 255;

/// The most events one history page holds; more are refused, not cut.
pub const MAX_HISTORY_PAGE: usize = 10_000;

/// How many events one history query examines at most before it returns
/// a page with a cursor, whatever its filters: a filter that matches
/// nothing in a long history costs a bounded scan per request.
const HISTORY_SCAN_BUDGET: usize = 100_000;

/// One change of a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEvent {
    /// Its place in the store's order of tag changes (a page cursor).
    pub seq: u64,
    /// When, by the store's clock, in milliseconds since the epoch.
    pub time_ms: u64,
    /// Created (pointed, moved, restored) or deleted.
    pub action: TagAction,
    /// Why.
    pub cause: TagCause,
    /// Created: the manifest the tag now names; deleted: the one it named.
    pub digest: Digest,
    /// Created over another target (a move): that target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    /// The manifest's size.
    pub size: u64,
    /// The manifest's media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Who, when the writer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl TagEvent {
    fn from_record(seq: u64, r: TagEventRecord) -> TagEvent {
        TagEvent {
            seq,
            time_ms: r.time_ms,
            action: r.action,
            cause: r.cause,
            digest: r.digest,
            previous: r.previous,
            size: r.size,
            media_type: r.media_type,
            user: r.user,
        }
    }
}

/// Which events of a tag's history to read, newest first.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Only events strictly older than this (ms since the epoch).
    pub before_ms: Option<u64>,
    /// Only events strictly newer than this.
    pub since_ms: Option<u64>,
    /// Only events about this manifest.
    pub digest: Option<Digest>,
    /// Continue a previous page ([`HistoryPage::next`]).
    pub cursor: Option<u64>,
    /// At most this many events (at most [`MAX_HISTORY_PAGE`]).
    pub limit: usize,
}

impl Default for HistoryQuery {
    fn default() -> HistoryQuery {
        HistoryQuery {
            before_ms: None,
            since_ms: None,
            digest: None,
            cursor: None,
            limit: 100,
        }
    }
}

impl HistoryQuery {
    /// Sets [`HistoryQuery::before_ms`].
    #[must_use]
    pub fn before_ms(mut self, ms: impl Into<Option<u64>>) -> Self {
        self.before_ms = ms.into();
        self
    }

    /// Sets [`HistoryQuery::since_ms`].
    #[must_use]
    pub fn since_ms(mut self, ms: impl Into<Option<u64>>) -> Self {
        self.since_ms = ms.into();
        self
    }

    /// Sets [`HistoryQuery::digest`].
    #[must_use]
    pub fn digest(mut self, d: impl Into<Option<Digest>>) -> Self {
        self.digest = d.into();
        self
    }

    /// Sets [`HistoryQuery::cursor`].
    #[must_use]
    pub fn cursor(mut self, cursor: impl Into<Option<u64>>) -> Self {
        self.cursor = cursor.into();
        self
    }

    /// Sets [`HistoryQuery::limit`].
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// A page of a tag's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub events: Vec<TagEvent>,
    /// The cursor of the next page, when more events may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// Where [`Store::restore_tag`] puts a tag back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// A manifest the tag pointed at before.
    Digest(Digest),
    /// Where the tag pointed at this time (ms since the epoch).
    At(u64),
}

/// What [`Store::restore_tag`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TagRestored {
    /// The manifest the tag names now.
    pub digest: Digest,
    /// What it named before the restore, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
}

/// A user name fit for the history, or the rule it breaks.
pub(crate) fn checked_user(user: Option<&str>) -> Result<Option<String>> {
    match user {
        Some(u) if u.len() > MAX_USER_LEN || u.chars().any(char::is_control) => {
            Err(Error::InvalidArgument {
                value: crate::text::quote_untrusted(u),
                expected: format!(
                    "a user name of at most {MAX_USER_LEN} bytes without control characters"
                ),
            })
        }
        Some("") | None => Ok(None),
        Some(u) => Ok(Some(u.to_string())),
    }
}

impl Store {
    /// A page of `repo:tag`'s history, newest first. A tag with no history
    /// (or a repository that does not exist) has an empty one: history
    /// outlives the tag it describes.
    pub fn tag_history(&self, repo: &str, tag: &str, q: &HistoryQuery) -> Result<HistoryPage> {
        names::validate_repository(repo)?;
        names::validate_tag(tag)?;
        if q.limit > MAX_HISTORY_PAGE {
            return Err(Error::InvalidArgument {
                value: q.limit.to_string(),
                expected: format!("a page of at most {MAX_HISTORY_PAGE} events"),
            });
        }
        let txn = crate::schema::tables::begin_read(&self.db)?;
        let Some(id) = repo_id(&txn, repo)? else {
            return Ok(HistoryPage {
                events: Vec::new(),
                next: None,
            });
        };
        let mut examined = 0usize;
        let (found, next) = read_history(&txn, id, tag, q.cursor, q.limit, |e| {
            examined += 1;
            if examined > HISTORY_SCAN_BUDGET {
                return None;
            }
            Some(
                q.before_ms.is_none_or(|b| e.time_ms < b)
                    && q.since_ms.is_none_or(|s| e.time_ms > s)
                    && q.digest.is_none_or(|d| e.digest == d),
            )
        })?;
        Ok(HistoryPage {
            events: found
                .into_iter()
                .map(|s| TagEvent::from_record(s.seq, s.event))
                .collect(),
            next,
        })
    }

    /// Puts `repo:tag` back where it pointed before: at a manifest it named
    /// once, or where it pointed at a time. The manifest must still be
    /// stored in the repository: GC keeps what the undelete window needs
    /// ([`crate::GcPolicy::undelete_window`]); past it, a collected
    /// manifest has to be pushed again. Recorded in the history as a
    /// restore by `user`.
    pub fn restore_tag(
        &self,
        repo: &str,
        tag: &str,
        to: RestorePoint,
        user: Option<&str>,
    ) -> Result<TagRestored> {
        names::validate_repository(repo)?;
        names::validate_tag(tag)?;
        let user = checked_user(user)?;
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.submit(true, move |b| {
            let repo_id = existing_repo(b, &repo)?;
            let target = find_target(b, repo_id, &repo, &tag, to)?;
            if member_kind_in(b, repo_id, &target)? != Some(MEMBER_MANIFEST) {
                return Err(Error::ManifestUnknown {
                    digest: target,
                    hint: format!(
                        " in repository `{repo}`: it was deleted or collected since `{tag}` named it, \
                         and a restore needs it still stored (GC keeps it within the undelete window); push it again"
                    ),
                });
            }
            let change = TagChange::new(TagCause::Restored, user.as_deref());
            let previous = b
                .t
                .tags
                .get(keys::tag(repo_id, &tag).as_slice())?
                .map(|g| Digest::from_key(g.value()))
                .transpose()?;
            set_tag(b, repo_id, &tag, &target, change)?;
            Ok(TagRestored {
                digest: target,
                previous,
            })
        })
    }
}

/// The manifest `to` names in `tag`'s history, or why there is none.
fn find_target(
    b: &mut crate::engine::Batch<'_>,
    repo_id: u64,
    repo: &str,
    tag: &str,
    to: RestorePoint,
) -> Result<Digest> {
    let lo = keys::history(repo_id, tag, 0);
    let hi = keys::history(repo_id, tag, u64::MAX);
    for e in b.t.tag_history.range(lo.as_slice()..hi.as_slice())?.rev() {
        let (_, v) = e?;
        let ev = TagEventRecord::decode(v.value())?;
        match to {
            RestorePoint::Digest(d) if ev.digest == d || ev.previous == Some(d) => return Ok(d),
            RestorePoint::Digest(_) => {}
            RestorePoint::At(ms) if ev.time_ms <= ms => {
                return match ev.action {
                    TagAction::Created => Ok(ev.digest),
                    TagAction::Deleted => Err(Error::InvalidArgument {
                        value: crate::clock::rfc3339(ms),
                        expected: format!(
                            "a time when `{repo}:{tag}` existed; it was deleted at {} and not tagged again before that time",
                            crate::clock::rfc3339(ev.time_ms)
                        ),
                    }),
                };
            }
            RestorePoint::At(_) => {}
        }
    }
    Err(match to {
        RestorePoint::Digest(d) => Error::InvalidArgument {
            value: d.to_string(),
            expected: format!(
                "a manifest `{repo}:{tag}` pointed at before (see its history); to point it anywhere else, tag it"
            ),
        },
        RestorePoint::At(ms) => Error::InvalidArgument {
            value: crate::clock::rfc3339(ms),
            expected: format!("a time after `{repo}:{tag}` was first tagged"),
        },
    })
}
