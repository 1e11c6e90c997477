//! Snapshots: every table as of a log position, written from a read
//! transaction (writers never wait), and the pruning of what the newest
//! snapshots make unnecessary.

use std::io::{BufWriter, Write as _};
use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::codec::{Encoder, Header, Kind};
use super::ship::position_in;
use super::{log_name, log_objects, object_name, positions, IndexLog, SNAPSHOT_DIR};
use crate::error::{Error, Result};
use crate::schema::tables::{self as t, EachDefinition};

/// What [`crate::Store::snapshot_index`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The last log position it includes.
    pub position: u64,
    /// Rows written.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Older snapshots removed (beyond the number kept).
    pub pruned_snapshots: usize,
    /// Log objects removed (those the oldest kept snapshot includes).
    pub pruned_log_objects: usize,
}

/// How many snapshots are kept; the log is kept from the oldest of them.
pub(crate) const KEEP: usize = 2;

/// Writes every row of each table it is given after the header.
struct Dump<'r, W: std::io::Write> {
    r: &'r ReadTransaction,
    e: &'r mut Encoder<W>,
    rows: u64,
}

impl<W: std::io::Write> EachDefinition for Dump<'_, W> {
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        id: u8,
        def: TableDefinition<'static, K, V>,
    ) -> Result<()> {
        for row in self.r.open_table(def)?.iter()? {
            let (k, v) = row?;
            self.e.entry(
                id,
                K::as_bytes(&k.value()).as_ref(),
                Some(V::as_bytes(&v.value()).as_ref()),
            )?;
            self.rows += 1;
        }
        Ok(())
    }
}

/// Writes every table of `r` after the header; returns the rows written.
fn dump_all<W: std::io::Write>(r: &ReadTransaction, e: &mut Encoder<W>) -> Result<u64> {
    let mut d = Dump { r, e, rows: 0 };
    t::each_definition(&mut d)?;
    Ok(d.rows)
}

/// Every table of `db` in snapshot encoding, with a header that depends on
/// nothing else (tests compare stores by it).
#[cfg(feature = "testing")]
pub(crate) fn image(db: &Database) -> Result<Vec<u8>> {
    let r = db.begin_read()?;
    let header = Header {
        kind: Kind::Snapshot,
        store_id: "0".repeat(32),
        position: 0,
        time_ms: 0,
    };
    let mut e = Encoder::new(Vec::new(), &header)?;
    dump_all(&r, &mut e)?;
    e.finish()
}

/// The rows in which two images (from [`image`]) differ, at most `limit`
/// of them, each as `table key: value in a / value in b` (hex; `-` for a
/// row one side lacks): a test comparing stores names what differs.
#[cfg(feature = "testing")]
pub(crate) fn image_diff(a: &[u8], b: &[u8], limit: usize) -> Result<Vec<String>> {
    use std::collections::BTreeMap;
    type Rows = BTreeMap<(u8, Vec<u8>), Vec<u8>>;
    let rows = |bytes: &[u8], what: &str| -> Result<Rows> {
        let (_, body) = super::codec::verify(bytes, what)?;
        let mut entries = super::codec::Entries::new(body, what);
        let mut out = Rows::new();
        while let Some(e) = entries.next_entry()? {
            out.insert(
                (e.table, e.key.to_vec()),
                e.value.unwrap_or_default().to_vec(),
            );
        }
        Ok(out)
    };
    let (a, b) = (rows(a, "image a")?, rows(b, "image b")?);
    let hex = |v: Option<&Vec<u8>>| {
        v.map_or_else(
            || "-".to_string(),
            |v| v.iter().map(|x| format!("{x:02x}")).collect(),
        )
    };
    let keys: std::collections::BTreeSet<&(u8, Vec<u8>)> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .take(limit)
        .map(|k| {
            let name = t::TABLE_NAMES.get(usize::from(k.0)).copied().unwrap_or("?");
            format!(
                "{name} {}: {} / {}",
                hex(Some(&k.1)),
                hex(a.get(k)),
                hex(b.get(k))
            )
        })
        .collect())
}

/// Writes a snapshot of `db` as of now into `log`, staging it in a file in
/// `tmp_dir`, then prunes.
pub(crate) fn take(
    db: &Database,
    log: &dyn IndexLog,
    store_id: &str,
    tmp_dir: &Path,
    now_ms: u64,
) -> Result<SnapshotInfo> {
    let r = db.begin_read()?;
    let position = position_in(&r.open_table(t::META)?)?;
    // A name of this call's own: two snapshots at one position (an
    // operator's and the schedule's) must not write one file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = tmp_dir.join(format!(".snapshot-{}-{position}-{n}", std::process::id()));
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let written = (|| {
        let f = std::fs::File::create(&path).map_err(io)?;
        let header = Header {
            kind: Kind::Snapshot,
            store_id: store_id.to_string(),
            position,
            time_ms: now_ms,
        };
        let mut e = Encoder::new(BufWriter::with_capacity(1 << 20, f), &header)?;
        let rows = dump_all(&r, &mut e)?;
        drop(r);
        let mut w = e.finish()?;
        w.flush().map_err(io)?;
        let bytes = w.get_ref().metadata().map_err(io)?.len();
        log.put_file(&object_name(SNAPSHOT_DIR, position), &path)?;
        Ok::<_, Error>((rows, bytes))
    })();
    let _ = std::fs::remove_file(&path);
    let (rows, bytes) = written?;
    let (pruned_snapshots, pruned_log_objects) = prune(log, KEEP)?;
    tracing::info!("index snapshot at log position {position}: {rows} rows, {bytes} bytes");
    Ok(SnapshotInfo {
        position,
        rows,
        bytes,
        pruned_snapshots,
        pruned_log_objects,
    })
}

/// Removes staging files of snapshots a crash interrupted (only the
/// process holding the store writes them, and it is opening it).
pub(crate) fn remove_stale_files(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".snapshot-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Keeps the newest `keep` snapshots and the log objects after the oldest
/// of them. Returns how many snapshots and log objects went.
pub(crate) fn prune(log: &dyn IndexLog, keep: usize) -> Result<(usize, usize)> {
    let snaps = positions(log, SNAPSHOT_DIR)?;
    let Some(&oldest_kept) = snaps
        .len()
        .checked_sub(keep.max(1))
        .map_or(snaps.first(), |i| snaps.get(i))
    else {
        return Ok((0, 0));
    };
    let mut gone = (0, 0);
    for p in snaps.iter().filter(|&&p| p < oldest_kept) {
        log.delete(&object_name(SNAPSHOT_DIR, *p))?;
        gone.0 += 1;
    }
    for (p, epoch) in log_objects(log)?
        .into_iter()
        .filter(|&(p, _)| p <= oldest_kept)
    {
        log.delete(&log_name(p, epoch))?;
        gone.1 += 1;
    }
    Ok(gone)
}

/// A store that ships its log needs a snapshot to start from: the first
/// open with a log takes one (of what the store held before it shipped
/// anything). Log objects with no snapshot are refused: they cannot be
/// restored.
pub(crate) fn ensure_base(
    db: &Database,
    log: &dyn IndexLog,
    store_id: &str,
    tmp_dir: &Path,
    now_ms: u64,
) -> Result<Option<SnapshotInfo>> {
    if !positions(log, SNAPSHOT_DIR)?.is_empty() {
        return Ok(None);
    }
    if let Some(&(p, epoch)) = log_objects(log)?.first() {
        return Err(Error::Corrupt(format!(
            "the index log holds {} but no snapshot: it cannot be restored from; a snapshot is written at the first open of a store with a log, so one was removed",
            log_name(p, epoch)
        )));
    }
    take(db, log, store_id, tmp_dir, now_ms).map(Some)
}
