//! The outbox (`events`, `event_cursors`): each change a consumer may want
//! to hear of, written in the transaction that makes the change, so that
//! an event exists if and only if its change committed.

use redb::ReadableTable as _;

use super::counters::next_counter;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::Result;
use crate::schema::record::{EventKind, EventRecord};

/// The `meta` counter that numbers events: commit order.
const SEQ_COUNTER: &str = "event_seq";

/// The longest `detail` stored: a quota message, say; cut, not refused.
const MAX_DETAIL: usize = 1024;

/// An event about `digest` in repository `repo_id` (0: the whole store).
pub(crate) fn event(kind: EventKind, repo_id: u64, digest: Option<&Digest>) -> EventRecord {
    EventRecord {
        kind: Some(kind),
        repo_id,
        digest: digest.copied(),
        ..EventRecord::default()
    }
}

/// Appends `ev` to the outbox in this transaction, when the store records
/// events ([`crate::StoreOptions::events`]).
pub(crate) fn emit(b: &mut Batch<'_>, mut ev: EventRecord) -> Result<()> {
    if !b.shared.events {
        return Ok(());
    }
    if ev.detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !ev.detail.is_char_boundary(cut) {
            cut -= 1;
        }
        ev.detail.truncate(cut);
    }
    let seq = next_counter(b, SEQ_COUNTER)?;
    ev.time_ms = b.now_ms;
    b.t.events.insert(seq, ev.encode()?.as_slice())?;
    Ok(())
}

/// Removes up to `max` events at or below `upto`, oldest first; returns
/// how many.
pub(crate) fn prune_upto(b: &mut Batch<'_>, upto: u64, max: usize) -> Result<u64> {
    let mut doomed = Vec::new();
    for e in b.t.events.range(..=upto)? {
        if doomed.len() >= max {
            break;
        }
        doomed.push(e?.0.value());
    }
    for seq in &doomed {
        b.t.events.remove(*seq)?;
    }
    Ok(doomed.len() as u64)
}
