//! Shipping a commit's changes before the commit: the writer's half of
//! the index log.

use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTable};

use super::codec::{Encoder, Header, Kind};
use super::{log_name, IndexLog, LogHead};
use crate::error::{Error, Result};
use crate::schema::tables::{WriteTables, META};

/// The META key of the last log position the store holds (u64 LE; absent:
/// 0, nothing shipped). Written outside the log: it says how far the
/// local tables are, not what they hold.
pub(crate) const POSITION_KEY: &str = "log_position";

/// `meta` key of a point-in-time copy (`Store::restore_to`): the log
/// position it stopped at (u64 LE). Such a store neither follows nor
/// writes the log, and refuses every write: it shares its bucket with the
/// store it was copied from.
pub(crate) const DETACHED_KEY: &str = "detached_at";

/// The position a point-in-time copy stopped at, if this is one.
pub(crate) fn detached_at(db: &Database) -> Result<Option<u64>> {
    let r = db.begin_read()?;
    let meta = r.open_table(META)?;
    let v = meta.get(DETACHED_KEY)?;
    v.map(|g| {
        <[u8; 8]>::try_from(g.value())
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Corrupt(format!("meta.{DETACHED_KEY} is not 8 bytes")))
    })
    .transpose()
}

/// The position recorded in `meta`.
pub(crate) fn position_in(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    match meta.get(POSITION_KEY)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Corrupt(format!("meta.{POSITION_KEY} is not 8 bytes"))),
    }
}

/// The position the database holds now.
pub(crate) fn position(db: &Database) -> Result<u64> {
    let r = db.begin_read()?;
    position_in(&r.open_table(META)?)
}

/// Writes `position` into the transaction's tables, outside the log.
pub(crate) fn set_position(t: &mut WriteTables<'_>, position: u64) -> Result<()> {
    t.meta
        .insert_unlogged(POSITION_KEY, position.to_le_bytes().as_slice())?;
    Ok(())
}

/// Ships each transaction's changes as the next log object. It keeps no
/// position of its own: the next one is read in the transaction, so that
/// a recovery's transactions at reconnect and the writer's agree.
#[derive(Clone)]
pub(crate) struct Shipper {
    log: Arc<dyn IndexLog>,
    store_id: String,
    /// Who makes a written object part of the log, when several
    /// processes may write it.
    head: Option<Arc<dyn LogHead>>,
    /// Called when a publish fails, to poison the store: whether the head
    /// moved is then unknown, and rewriting that position could change
    /// what a member already applied. Only a reopen (which reads the
    /// head) goes on.
    on_failed_publish: OnFailedPublish,
}

/// What a [`Shipper`] calls when a publish fails.
pub(crate) type OnFailedPublish = Arc<dyn Fn(&Error) + Send + Sync>;

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("log", &self.log)
            .field("store_id", &self.store_id)
            .field("head", &self.head)
            .finish()
    }
}

impl Shipper {
    pub(crate) fn new(
        log: Arc<dyn IndexLog>,
        store_id: String,
        head: Option<Arc<dyn LogHead>>,
        on_failed_publish: OnFailedPublish,
    ) -> Shipper {
        Shipper {
            log,
            store_id,
            head,
            on_failed_publish,
        }
    }

    /// The epoch this store writes in (0: the log's only writer).
    pub(crate) fn epoch(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.epoch())
    }

    /// The head of the log: the last position that is part of it
    /// (`None`: all that is written is).
    pub(crate) fn head(&self) -> Result<Option<u64>> {
        self.head.as_ref().map_or(Ok(None), |h| h.head())
    }

    /// Ships what `t` recorded as the log object after the position `t`
    /// holds, and writes that position into `t`. `Ok(false)`: nothing
    /// changed, nothing was shipped. On `Err` nothing may be committed:
    /// the log may or may not hold the object, and the next ship writes
    /// that position again.
    pub(crate) fn ship(&self, t: &mut WriteTables<'_>, now_ms: u64) -> Result<bool> {
        let changes = t.take_changes();
        if changes.is_empty() {
            return Ok(false);
        }
        let next = position_in(&*t.meta)? + 1;
        let header = Header {
            kind: Kind::Log,
            store_id: self.store_id.clone(),
            position: next,
            time_ms: now_ms,
        };
        let mut e = Encoder::new(Vec::new(), &header)?;
        for (table, rows) in &changes {
            for (k, v) in rows {
                e.entry(*table, k, v.as_deref())?;
            }
        }
        self.log.put(&log_name(next, self.epoch()), e.finish()?)?;
        if let Some(h) = &self.head
            && let Err(e) = h.publish(next)
        {
            (self.on_failed_publish)(&e);
            return Err(e);
        }
        set_position(t, next)?;
        Ok(true)
    }

    /// The id of the store whose log it is.
    pub(crate) fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Where it ships.
    pub(crate) fn log(&self) -> &Arc<dyn IndexLog> {
        &self.log
    }
}
