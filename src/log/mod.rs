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

/// The directory of log objects.
pub(crate) const LOG_DIR: &str = "log";
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
