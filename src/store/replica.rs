//! A store as a cluster member: a replica applies the index log up to the
//! head it is told, and a promoted replica (or a primary at open) starts a
//! new epoch of the log.

use redb::Database;

use super::Store;
use crate::error::{Error, Result};
use crate::log::ship::{position, Shipper};
use crate::log::{log_name, log_objects, object_name, EPOCH_DIR};

/// Starts the shipper's epoch, once the store holds the whole log up to
/// its head: records where the epoch starts (so that a restore from the
/// bucket alone can tell a deposed writer's objects from the log), then
/// removes the objects past the head that earlier epochs wrote (written,
/// never made part of the log, never acknowledged). A single writer
/// (epoch 0) has nothing to do.
pub(crate) fn start_epoch(db: &Database, s: &Shipper) -> Result<()> {
    let epoch = s.epoch();
    if epoch == 0 {
        return Ok(());
    }
    let start = position(db)?;
    let log = s.log();
    log.put(
        &object_name(EPOCH_DIR, epoch),
        start.to_string().into_bytes(),
    )?;
    for (p, e) in log_objects(&**log)? {
        if p > start && e < epoch {
            tracing::info!(
                "index log: removing {}, written by a deposed primary (epoch {e}) and never part of the log",
                log_name(p, e)
            );
            log.delete(&log_name(p, e))?;
        }
    }
    tracing::info!("index log: epoch {epoch} starts after position {start}");
    Ok(())
}

impl Store {
    /// Whether the store is a replica (it refuses writes until
    /// [`Store::promote`]).
    pub fn is_replica(&self) -> bool {
        self.shared.is_replica()
    }

    /// The index log position the store's tables hold (0: none; a store
    /// without a log stays at 0).
    pub fn log_position(&self) -> Result<u64> {
        position(&self.db)
    }

    /// A replica: applies the index log up to position `upto`, the head
    /// its cluster published in `epoch` (the log objects since that epoch
    /// started are read by name, with no listing), each object in its own
    /// transaction, and returns the position it holds then. Readers see
    /// each object's changes whole. Errors on a store that is not a
    /// replica: a primary's tables only change through its writer.
    pub fn follow_log(&self, upto: u64, epoch: u64) -> Result<u64> {
        let _g = self
            .follow_lock
            .lock()
            .map_err(|_| Error::lock("replica follow lock"))?;
        let s = self.replica_shipper("follow the index log")?;
        if !self.shared.is_replica() {
            return Err(Error::InvalidArgument {
                value: self.root.display().to_string(),
                expected: "a replica to follow the index log: this store is the primary".into(),
            });
        }
        let (applied, _) =
            crate::log::restore::follow(&self.db, &**s.log(), s.store_id(), upto, epoch)?;
        if applied > 0 {
            // The log may have removed repositories: their cached ids go.
            self.shared.repo_ids.note_removal();
            self.shared.repo_ids.after_commit();
        }
        position(&self.db)
    }

    /// A replica becomes the primary: applies the log up to its head,
    /// starts its epoch (see [`crate::log::LogHead`]), settles what the
    /// last primary left in flight (blob intents, upload sessions), and
    /// takes writes from then on. Call it only once the cluster made this
    /// process the writer (its `LogHead` publishes in the new epoch). A
    /// store that is not a replica is left as it is.
    pub fn promote(&self) -> Result<()> {
        let _g = self
            .follow_lock
            .lock()
            .map_err(|_| Error::lock("replica follow lock"))?;
        if !self.shared.is_replica() {
            return Ok(());
        }
        let s = self.replica_shipper("be promoted")?;
        super::recover(
            &self.db,
            &self.root,
            &*self.backend,
            &[],
            Some(s),
            self.shared.now_ms(),
        )?;
        self.shared.repo_ids.note_removal();
        self.shared.repo_ids.after_commit();
        self.shared.set_replica(None);
        tracing::info!(
            "{} is the primary from position {} (epoch {})",
            self.root.display(),
            position(&self.db)?,
            s.epoch()
        );
        Ok(())
    }

    fn replica_shipper(&self, what: &str) -> Result<&Shipper> {
        self.shipper.as_ref().ok_or_else(|| Error::InvalidArgument {
            value: self.root.display().to_string(),
            expected: format!("a store with an index log to {what}"),
        })
    }
}
