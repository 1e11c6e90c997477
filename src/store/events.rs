//! The outbox as a cursor: events in commit order for hosts that deliver
//! them their own way, and per-consumer acknowledgements that let the
//! store forget what every consumer has.

use redb::ReadableTable as _;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::events::prune_upto;
use crate::index::repos::repo_names;
use crate::schema::record::EventRecord;
use crate::schema::tables::{self, EVENTS, EVENT_CURSORS};

pub use crate::schema::record::EventKind;

/// The most events one [`Store::events_after`] call returns.
pub const MAX_EVENT_PAGE: usize = 10_000;

/// Events pruned per acknowledgement, at most: an acknowledgement is one
/// short writer job however far behind the slowest consumer was.
const PRUNE_PER_ACK: usize = 4096;

/// The longest consumer name.
const MAX_CONSUMER_LEN: usize = 1024;

/// A change, as the outbox recorded it with the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its place in commit order (the cursor to acknowledge).
    pub seq: u64,
    /// When the change committed (ms since the epoch, the store's clock).
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// Where: None for the store as a whole (a GC deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The manifest or blob concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// A tag moved off another manifest: that manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    /// The tag concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A manifest's media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The content's size, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Who, when the writer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Why, in words (`gc`, a quota's message…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn check_consumer(consumer: &str) -> Result<()> {
    if consumer.is_empty() || consumer.len() > MAX_CONSUMER_LEN {
        return Err(Error::InvalidArgument {
            value: crate::text::quote_untrusted(consumer),
            expected: format!("a consumer name of 1 to {MAX_CONSUMER_LEN} bytes"),
        });
    }
    Ok(())
}

impl Store {
    /// Whether this store writes changes to the outbox
    /// ([`crate::StoreOptions::events`]).
    pub fn events_enabled(&self) -> bool {
        self.shared.events
    }

    /// Up to `limit` events after `after` (exclusive), in commit order:
    /// repeat with the last one's `seq` to follow the outbox. Events stay
    /// until every consumer has acknowledged them ([`Store::ack_events`]).
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        if limit > MAX_EVENT_PAGE {
            return Err(Error::InvalidArgument {
                value: limit.to_string(),
                expected: format!("at most {MAX_EVENT_PAGE} events a page"),
            });
        }
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(EVENTS)?;
        let mut raw = Vec::new();
        for e in t.range(after.saturating_add(1)..)? {
            if raw.len() >= limit {
                break;
            }
            let (k, v) = e?;
            raw.push((k.value(), EventRecord::decode(v.value())?));
        }
        let names = if raw.iter().any(|(_, r)| r.repo_id != 0) {
            repo_names(&txn)?
        } else {
            Default::default()
        };
        raw.into_iter()
            .map(|(seq, r)| {
                let kind = r
                    .kind
                    .ok_or_else(|| Error::Corrupt(format!("outbox event {seq} has no kind")))?;
                Ok(Event {
                    seq,
                    time_ms: r.time_ms,
                    kind,
                    repository: (r.repo_id != 0).then(|| {
                        names
                            .get(&r.repo_id)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", r.repo_id))
                    }),
                    digest: r.digest,
                    previous: r.previous,
                    tag: some(r.tag),
                    media_type: some(r.media_type),
                    size: (r.size != 0).then_some(r.size),
                    user: some(r.user),
                    detail: some(r.detail),
                })
            })
            .collect()
    }

    /// How far `consumer` has acknowledged (0: nothing yet).
    pub fn event_cursor(&self, consumer: &str) -> Result<u64> {
        check_consumer(consumer)?;
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(EVENT_CURSORS)?;
        Ok(t.get(consumer)?.map_or(0, |g| g.value()))
    }

    /// Records that `consumer` has every event up to `upto`, and forgets
    /// the events every consumer has. The first acknowledgement registers
    /// the consumer (`upto` 0: it has nothing yet, so the outbox keeps
    /// every event from then on for it). Not synced on its own (the next
    /// durable commit carries it): a crash may forget an acknowledgement,
    /// and the events are delivered again: at least once.
    pub fn ack_events(&self, consumer: &str, upto: u64) -> Result<()> {
        check_consumer(consumer)?;
        let consumer = consumer.to_string();
        self.submit(false, move |b| {
            let cur = b.t.event_cursors.get(consumer.as_str())?.map(|g| g.value());
            if cur.is_none_or(|c| upto > c) {
                b.t.event_cursors.insert(consumer.as_str(), upto)?;
            }
            let mut min = u64::MAX;
            for e in b.t.event_cursors.iter()? {
                min = min.min(e?.1.value());
            }
            prune_upto(b, min, PRUNE_PER_ACK)?;
            Ok(())
        })
    }

    /// Forgets a consumer, so that the outbox no longer keeps events for it.
    pub fn remove_event_consumer(&self, consumer: &str) -> Result<()> {
        check_consumer(consumer)?;
        let consumer = consumer.to_string();
        self.submit(true, move |b| {
            b.t.event_cursors.remove(consumer.as_str())?;
            Ok(())
        })
    }
}
