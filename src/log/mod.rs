//! The index log: what makes a store whose blobs live in a bucket
//! recoverable from the bucket alone.
//!
//! Every group commit of such a store first writes its logical changes
//! (the net effect on each table, inline bodies included) as one object,
//! `log/<position>`, and only then commits locally and acknowledges. A
//! snapshot, `snapshots/<position>`, is every table as of a log position,
//! taken from a read transaction. A store is rebuilt from the newest
//! snapshot plus the log objects after it (`restore`), and a store that
//! finds log objects beyond its own position at open applies them first
//! (`catch_up`): the log, not the local file, is the record of what was
//! acknowledged. Byte layouts are in docs/format.md, "Index log".

pub(crate) mod codec;
mod memory;
pub(crate) mod restore;
pub(crate) mod ship;
pub(crate) mod snapshot;

use std::fmt;
use std::path::Path;

use crate::error::Result;

pub use memory::MemoryLog;
pub use restore::RestoreProgress;
pub use snapshot::SnapshotInfo;

/// Where a store keeps its index log and snapshots: named objects, each
/// written whole. With `--blobs s3://…`, the bucket, below the store's
/// prefix (`<prefix>/index/`); a host may give its own
/// ([`StoreOptions::index_log`](crate::store::StoreOptions::index_log)).
pub trait IndexLog: Send + Sync + fmt::Debug {
    /// Writes `name` whole, replacing any object of that name; durable
    /// when it returns.
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// Writes the file at `path` as `name` (snapshots, which may be large).
    fn put_file(&self, name: &str, path: &Path) -> Result<()>;
    /// The whole of `name`, if it exists; an object longer than `max_len`
    /// is refused, naming it.
    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>>;
    /// Copies `name` into the file at `path`; `false` if there is no such
    /// object.
    fn get_to_file(&self, name: &str, path: &Path) -> Result<bool>;
    /// The names of the objects directly below `dir` (without `dir/`).
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// Removes `name` (absent is not an error).
    fn delete(&self, name: &str) -> Result<()>;
}

/// Who decides which log objects are part of the log, when more than one
/// process may write it (cluster members, one primary at a time). A log
/// object becomes part of the log only when [`LogHead::publish`] accepts
/// its position; members apply the log only up to [`LogHead::head`].
/// Without one, a store is the log's only writer and every object it
/// wrote is part of it.
///
/// `ocidb-server` implements it on etcd: the head is a key that only the
/// holder of the primary's lease can move (a compare-and-set), so a
/// primary that lost its lease can write objects but never make one part
/// of the log, and never acknowledges what they hold.
pub trait LogHead: Send + Sync + fmt::Debug {
    /// The epoch this process writes in: it names the log objects it
    /// writes, and is larger than every epoch before it. Never 0.
    fn epoch(&self) -> u64;
    /// The last position made part of the log (`None`: no position yet,
    /// a log that had a single writer so far: all of it counts).
    fn head(&self) -> Result<Option<u64>>;
    /// Makes `position`, which this process has just written in its
    /// epoch, part of the log. `Err` when it may no longer (another
    /// process holds the epoch now): nothing is then acknowledged.
    fn publish(&self, position: u64) -> Result<()>;
}

/// The directory of log objects.
pub(crate) const LOG_DIR: &str = "log";
/// The directory of epoch markers: `epochs/<epoch>` holds the position
/// the log had when that epoch's writer started (decimal), written before
/// its first log object.
pub(crate) const EPOCH_DIR: &str = "epochs";

/// A log object's name: its position, and the epoch of its writer when
/// there was more than one (epoch 0: a single writer, the name is the
/// position alone).
pub(crate) fn log_name(position: u64, epoch: u64) -> String {
    if epoch == 0 {
        object_name(LOG_DIR, position)
    } else {
        format!("{LOG_DIR}/{position:020}-{epoch:020}")
    }
}

/// The log objects kept, as (position, epoch), ascending. Names ocidb did
/// not write are skipped, with a warning.
pub(crate) fn log_objects(log: &dyn IndexLog) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for name in log.list(LOG_DIR)? {
        let parsed = match name.split_once('-') {
            None if name.len() == 20 => name.parse::<u64>().ok().map(|p| (p, 0)),
            Some((p, e)) if p.len() == 20 && e.len() == 20 => {
                p.parse::<u64>().ok().zip(e.parse::<u64>().ok())
            }
            _ => None,
        };
        match parsed {
            Some(pe) => out.push(pe),
            None => tracing::warn!(
                "index log: ignoring {LOG_DIR}/{}, which is not a log object's name",
                crate::text::quote_untrusted(&name)
            ),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Each epoch marker: epoch → the position the log had when it started.
pub(crate) fn epoch_starts(log: &dyn IndexLog) -> Result<std::collections::BTreeMap<u64, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for e in positions(log, EPOCH_DIR)? {
        let name = object_name(EPOCH_DIR, e);
        let Some(body) = log.get(&name, 64)? else {
            continue;
        };
        let start = std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                crate::error::Error::Corrupt(format!(
                    "{name} does not hold a log position (decimal)"
                ))
            })?;
        out.insert(e, start);
    }
    Ok(out)
}

/// The log as it stands: for each position, the epoch of the object that
/// is part of the log. An object of epoch `e` at position `p` is not when
/// a later epoch started at a position before `p` (that epoch's writer
/// owned `p`; the object is a deposed writer's, never acknowledged). Of
/// the rest, the latest epoch's object is the one.
pub(crate) fn current_log(log: &dyn IndexLog) -> Result<Vec<(u64, u64)>> {
    let objects = log_objects(log)?;
    let starts = if objects.iter().any(|&(_, e)| e != 0) {
        epoch_starts(log)?
    } else {
        Default::default()
    };
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(objects.len());
    for (p, e) in objects {
        let superseded = starts.range(e + 1..).any(|(_, &start)| start < p);
        if superseded {
            continue;
        }
        match out.last_mut() {
            // Ascending order: a later epoch of the same position comes last.
            Some(last) if last.0 == p => last.1 = e,
            _ => out.push((p, e)),
        }
    }
    Ok(out)
}
/// The directory of snapshots.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";

/// A position as an object name: 20 digits, so that names sort as numbers.
pub(crate) fn object_name(dir: &str, position: u64) -> String {
    format!("{dir}/{position:020}")
}

/// The positions of the objects in `dir`, ascending. Names that are not
/// positions (nothing ocidb wrote) are skipped, with a warning.
pub(crate) fn positions(log: &dyn IndexLog, dir: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for name in log.list(dir)? {
        match name.parse::<u64>() {
            Ok(p) if name.len() == 20 => out.push(p),
            _ => tracing::warn!(
                "index log: ignoring {dir}/{}, which is not a position",
                crate::text::quote_untrusted(&name)
            ),
        }
    }
    out.sort_unstable();
    Ok(out)
}
