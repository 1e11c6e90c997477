//! Peer approaches, run on the same generated data as ocidb (feature
//! `peers`):
//!
//! - [`SqliteIndex`]: the fair SQLite peer, holding the same index as
//!   ocidb (WITHOUT ROWID tables keyed by digest bytes: blobs, edges with a
//!   child index, referrers, members, tags), prepared statements, WAL and
//!   `synchronous=FULL`;
//! - [`SqliteJson`]: manifests as JSON rows queried with `json_extract`
//!   (the design trow uses): a weak configuration of SQLite, labelled so;
//! - [`Ocidir`]: the ocidir crate reading the generated OCI layout; a
//!   referrer search is a linear scan of index.json and every manifest it
//!   lists (what a layout-only tool, or zot's and ocidir's scan, does);
//! - [`OrasGraph`]: every manifest parsed at open into an in-memory
//!   predecessor graph, as oras-go's OCI store does.

mod ocidir_scan;
mod oras;
mod sqlite_index;
mod sqlite_json;

pub use ocidir_scan::Ocidir;
pub use oras::OrasGraph;
pub use sqlite_index::SqliteIndex;
pub use sqlite_json::SqliteJson;

use ocidb::{Error, Result};

/// Now, in ms since the epoch: the creation time the fair peer's rows
/// record (0 for a clock before the epoch).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn peer_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        value: format!("{what}: {e}"),
        expected: "the peer to run (see the bench harness's peers)".into(),
    }
}

/// Locks a peer's connection.
/// Gives a SQLite connection a page cache of `bytes`: the budget of the
/// ocidb store it is measured against (redb's cache, 256 MiB by
/// default), so that neither engine runs with more memory than the other.
/// SQLite's own default is 2 MiB.
fn set_cache(conn: &rusqlite::Connection, bytes: usize) -> Result<()> {
    let kib = bytes / 1024;
    conn.execute_batch(&format!("PRAGMA cache_size=-{kib};"))
        .map_err(|e| peer_err("sqlite cache_size", e))
}

fn lock(
    conn: &std::sync::Mutex<rusqlite::Connection>,
) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>> {
    conn.lock().map_err(|_| peer_err("sqlite", "lock poisoned"))
}

/// Begins a peer's batch transaction.
fn begin(conn: &mut std::sync::Mutex<rusqlite::Connection>) -> Result<rusqlite::Transaction<'_>> {
    conn.get_mut()
        .map_err(|_| peer_err("sqlite", "lock poisoned"))?
        .transaction()
        .map_err(|e| peer_err("sqlite begin", e))
}

/// A SQLite database's bytes on disk after a WAL checkpoint: the file and
/// what is left of its WAL.
fn sqlite_disk_bytes(
    conn: &std::sync::Mutex<rusqlite::Connection>,
    path: &std::path::Path,
) -> Result<u64> {
    lock(conn)?
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(|e| peer_err("sqlite checkpoint", e))?;
    Ok(["", "-wal", "-shm"]
        .iter()
        .filter_map(|ext| std::fs::metadata(format!("{}{ext}", path.display())).ok())
        .map(|m| m.len())
        .sum())
}
