//! Tag history (`tag_history`, `tag_history_time`): every change of a tag,
//! written in the transaction that makes it, so the history can never
//! disagree with the tags.

use redb::{ReadTransaction, ReadableTable as _};

use super::blobs::record_in;
use super::counters::next_counter;
use super::events;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::schema::keys;
use crate::schema::record::{EventKind, TagAction, TagCause, TagEventRecord};
use crate::schema::tables::{TAG_HISTORY, TAG_HISTORY_TIME};

/// The `meta` counter that numbers history events: a total order across
/// tags, stable however close in time two changes are.
const SEQ_COUNTER: &str = "tag_history_seq";

/// Who changes a tag and why: what the history records beside the change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TagChange<'a> {
    pub cause: TagCause,
    pub user: Option<&'a str>,
}

impl<'a> TagChange<'a> {
    pub fn new(cause: TagCause, user: Option<&'a str>) -> TagChange<'a> {
        TagChange { cause, user }
    }
}

/// Appends one event to `tag`'s history in this transaction.
pub(crate) fn record(
    b: &mut Batch<'_>,
    repo_id: u64,
    tag: &str,
    action: TagAction,
    digest: &Digest,
    previous: Option<&Digest>,
    change: TagChange<'_>,
) -> Result<()> {
    let seq = next_counter(b, SEQ_COUNTER)?;
    // A record that is gone or does not decode (fsck --repair removing
    // it) records no size or type: the tag change itself must go on.
    let (size, media_type) = match record_in(b, digest) {
        Ok(Some(r)) => (r.size, r.media_type),
        Ok(None) | Err(_) => (0, None),
    };
    let ev = TagEventRecord {
        time_ms: b.now_ms,
        action,
        cause: change.cause,
        digest: *digest,
        previous: previous.copied(),
        size,
        media_type,
        user: change.user.map(str::to_string),
    };
    b.t.tag_history.insert(
        keys::history(repo_id, tag, seq).as_slice(),
        ev.encode()?.as_slice(),
    )?;
    b.t.tag_history_time.insert(
        keys::history_time(b.now_ms, seq).as_slice(),
        keys::tag(repo_id, tag).as_slice(),
    )?;
    let kind = match action {
        TagAction::Created => EventKind::TagChanged,
        TagAction::Deleted => EventKind::TagDeleted,
    };
    let mut out = events::event(kind, repo_id, Some(digest));
    out.previous = ev.previous;
    out.tag = tag.to_string();
    out.size = ev.size;
    out.media_type = ev.media_type.unwrap_or_default();
    out.user = ev.user.unwrap_or_default();
    out.detail = cause_name(change.cause).to_string();
    events::emit(b, out)
}

/// How an event names a tag change's cause.
fn cause_name(c: TagCause) -> &'static str {
    match c {
        TagCause::Tagged => "tagged",
        TagCause::Untagged => "untagged",
        TagCause::ManifestDeleted => "manifest deleted",
        TagCause::Restored => "restored",
    }
}

/// One stored event with its sequence number.
pub(crate) struct StoredEvent {
    pub seq: u64,
    pub event: TagEventRecord,
}

/// `tag`'s events, newest first, with seq below `before_seq` when given,
/// that `keep` accepts, at most `limit`; and the cursor (a `before_seq`)
/// of the rest when more may follow. `keep` answers None to stop early
/// (a scan budget spent): the cursor then resumes where it stopped.
pub(crate) fn read_history(
    txn: &ReadTransaction,
    repo_id: u64,
    tag: &str,
    before_seq: Option<u64>,
    limit: usize,
    mut keep: impl FnMut(&TagEventRecord) -> Option<bool>,
) -> Result<(Vec<StoredEvent>, Option<u64>)> {
    let t = txn.open_table(TAG_HISTORY)?;
    let lo = keys::history(repo_id, tag, 0);
    let hi = keys::history(repo_id, tag, before_seq.unwrap_or(u64::MAX));
    let mut out = Vec::new();
    for e in t.range(lo.as_slice()..hi.as_slice())?.rev() {
        let (k, v) = e?;
        let seq = keys::history_seq(k.value())?;
        let event = TagEventRecord::decode(v.value())?;
        // A cursor only when another event is accepted (or the budget
        // ran out before the end was known): no empty last page.
        match keep(&event) {
            None => return Ok((out, Some(seq.saturating_add(1)))),
            Some(false) => {}
            Some(true) if out.len() >= limit => return Ok((out, Some(seq.saturating_add(1)))),
            Some(true) => out.push(StoredEvent { seq, event }),
        }
    }
    Ok((out, None))
}

/// The digests that tag history events at or after `since_ms` name as a
/// former target (deleted, or moved away from): what the undelete window
/// keeps for a restore.
pub(crate) fn window_targets(txn: &ReadTransaction, since_ms: u64) -> Result<Vec<Digest>> {
    let by_time = txn.open_table(TAG_HISTORY_TIME)?;
    let events = txn.open_table(TAG_HISTORY)?;
    let mut out = Vec::new();
    let lo = keys::history_time(since_ms, 0);
    for e in by_time.range(lo.as_slice()..)? {
        let (k, v) = e?;
        let seq = keys::history_seq(k.value())?;
        let key = primary_key(v.value(), seq);
        let Some(g) = events.get(key.as_slice())? else {
            return Err(Error::Corrupt(format!(
                "tag history event {seq} is in the time index but not in the history"
            )));
        };
        let ev = TagEventRecord::decode(g.value())?;
        match ev.action {
            TagAction::Deleted => out.push(ev.digest),
            TagAction::Created => out.extend(ev.previous),
        }
    }
    Ok(out)
}

/// Removes up to `max` events older than `before_ms`, oldest first;
/// returns how many, and whether older ones remain.
pub(crate) fn prune(b: &mut Batch<'_>, before_ms: u64, max: usize) -> Result<(u64, bool)> {
    let hi = keys::history_time(before_ms, 0);
    let mut doomed = Vec::new();
    for e in b.t.tag_history_time.range(..hi.as_slice())? {
        let (k, v) = e?;
        if doomed.len() >= max {
            break;
        }
        doomed.push((k.value().to_vec(), v.value().to_vec()));
    }
    let more = doomed.len() >= max;
    for (k, tag_key) in &doomed {
        let seq = keys::history_seq(k)?;
        b.t.tag_history
            .remove(primary_key(tag_key, seq).as_slice())?;
        b.t.tag_history_time.remove(k.as_slice())?;
    }
    Ok((doomed.len() as u64, more))
}

/// The `tag_history` key of event `seq`, from the `repo(8) tag` value its
/// time-index entry holds.
pub(crate) fn primary_key(tag_key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(tag_key.len() + 9);
    k.extend_from_slice(tag_key);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}
