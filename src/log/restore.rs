//! Rebuilding a store's tables from its index log: a snapshot, then the
//! log objects after it, each checked (hash, store, position) before a
//! byte of it is applied.

use std::io::{BufReader, Seek as _, SeekFrom};
use std::path::Path;

use redb::{Database, Durability};

use super::codec::{self, Entries, Kind, MAX_LOG_OBJECT};
use super::ship::{position, set_position};
use super::{current_log, log_name, object_name, positions, IndexLog, LOG_DIR, SNAPSHOT_DIR};
use crate::error::{Error, Result};
use crate::schema::tables::WriteTables;

/// Where a restore is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// `"snapshot"` (rows applied) or `"log"` (log objects applied).
    pub phase: &'static str,
    /// Done so far.
    pub done: u64,
    /// Of how many (for the snapshot: its size in bytes, as rows are not
    /// counted in advance).
    pub total: u64,
}

/// Rows applied per transaction while loading a snapshot: bounds the
/// memory of one transaction.
const ROWS_PER_TXN: u64 = 100_000;

/// Loads snapshot `at` from `log` into the empty `db` (staging it in
/// `tmp`). Returns the store id it names and its rows and bytes.
pub(crate) fn load_snapshot(
    db: &Database,
    log: &dyn IndexLog,
    at: u64,
    tmp: &Path,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<(String, u64, u64)> {
    let name = object_name(SNAPSHOT_DIR, at);
    let file = tmp.join(".snapshot-download");
    if !log.get_to_file(&name, &file)? {
        return Err(Error::Corrupt(format!(
            "snapshot {name} vanished while restoring"
        )));
    }
    let loaded = (|| {
        let header = codec::verify_file(&file, &name)?;
        if header.kind != Kind::Snapshot || header.position != at {
            return Err(Error::Corrupt(format!(
                "{name} holds a {:?} object of position {}, not a snapshot of position {at}",
                header.kind, header.position
            )));
        }
        let io = |e| Error::io(format!("reading {}", file.display()), e);
        let mut f = std::fs::File::open(&file).map_err(io)?;
        let total = f.metadata().map_err(io)?.len();
        f.seek(SeekFrom::Start(codec::HEADER_LEN as u64))
            .map_err(io)?;
        let mut entries = Entries::new(BufReader::with_capacity(1 << 20, f), &name);
        let mut rows = 0u64;
        loop {
            let txn = db.begin_write()?;
            let mut more = false;
            {
                let mut t = WriteTables::open(&txn, false)?;
                while let Some(e) = entries.next_entry()? {
                    codec::apply(&mut t, &e)?;
                    rows += 1;
                    if rows.is_multiple_of(ROWS_PER_TXN) {
                        more = true;
                        break;
                    }
                }
            }
            txn.commit()?;
            progress(RestoreProgress {
                phase: "snapshot",
                done: rows,
                total,
            });
            if !more {
                return Ok((header.store_id, rows, total));
            }
        }
    })();
    let _ = std::fs::remove_file(&file);
    loaded
}

/// Applies the log objects after the position `db` holds, up to `upto`
/// (all of them when `None`), each in its own transaction. Returns how
/// many and their bytes. A gap in the log is an error naming the missing
/// position: nothing after it can be applied.
pub(crate) fn catch_up(
    db: &Database,
    log: &dyn IndexLog,
    store_id: &str,
    upto: Option<u64>,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<(u64, u64)> {
    let from = position(db)?;
    let todo: Vec<(u64, u64)> = current_log(log)?
        .into_iter()
        .filter(|&(p, _)| p > from && upto.is_none_or(|u| p <= u))
        .collect();
    let (mut applied, mut bytes) = (0u64, 0u64);
    let total = todo.len() as u64;
    for (i, (p, epoch)) in todo.iter().copied().enumerate() {
        let expected = from + 1 + i as u64;
        if p != expected {
            return Err(Error::Corrupt(format!(
                "the index log lacks {} (it holds {}): the log after position {} cannot be applied",
                object_name(LOG_DIR, expected),
                log_name(p, epoch),
                expected - 1
            )));
        }
        let name = log_name(p, epoch);
        bytes += apply_one(db, log, store_id, p, epoch, i + 1 == todo.len())?
            .ok_or_else(|| Error::Corrupt(format!("{name} vanished while it was applied")))?;
        applied += 1;
        progress(RestoreProgress {
            phase: "log",
            done: applied,
            total,
        });
    }
    if applied > 0 {
        tracing::info!(
            "index log: applied positions {}..={} ({bytes} bytes)",
            from + 1,
            from + applied
        );
    }
    Ok((applied, bytes))
}

/// Applies log object `p` of `epoch` in its own transaction (durable or
/// not): its bytes, or `None` if there is no such object.
fn apply_one(
    db: &Database,
    log: &dyn IndexLog,
    store_id: &str,
    p: u64,
    epoch: u64,
    durable: bool,
) -> Result<Option<u64>> {
    let name = log_name(p, epoch);
    let Some(bytes_of) = log.get(&name, MAX_LOG_OBJECT)? else {
        return Ok(None);
    };
    let (header, body) = codec::verify(&bytes_of, &name)?;
    if header.kind != Kind::Log || header.position != p || header.store_id != store_id {
        return Err(Error::Corrupt(format!(
            "{name} is a {:?} object of position {} by store {}, not log position {p} of store {store_id}",
            header.kind, header.position, header.store_id
        )));
    }
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(Durability::None)?;
    }
    {
        let mut t = WriteTables::open(&txn, false)?;
        let mut entries = Entries::new(body, &name);
        while let Some(e) = entries.next_entry()? {
            codec::apply(&mut t, &e)?;
        }
        set_position(&mut t, p)?;
    }
    txn.commit()?;
    Ok(Some(bytes_of.len() as u64))
}

/// A replica's step: applies the log after the position `db` holds up to
/// `upto`, the head, which epoch `epoch` published. Reads each object by
/// name (the head's epoch wrote every position since it started), with
/// no listing of the log; a position that epoch did not write (one from
/// before it started) sends the rest through [`catch_up`], which lists.
/// Returns how many objects and bytes it applied.
pub(crate) fn follow(
    db: &Database,
    log: &dyn IndexLog,
    store_id: &str,
    upto: u64,
    epoch: u64,
) -> Result<(u64, u64)> {
    let (mut applied, mut bytes) = (0u64, 0u64);
    let mut p = position(db)? + 1;
    while p <= upto {
        match apply_one(db, log, store_id, p, epoch, p == upto)? {
            Some(b) => {
                applied += 1;
                bytes += b;
                p += 1;
            }
            None => {
                let (a, b) = catch_up(db, log, store_id, Some(upto), &mut |_| {})?;
                return Ok((applied + a, bytes + b));
            }
        }
    }
    Ok((applied, bytes))
}

/// The newest snapshot at or before `upto`.
pub(crate) fn newest_snapshot(log: &dyn IndexLog, upto: Option<u64>) -> Result<u64> {
    positions(log, SNAPSHOT_DIR)?
        .into_iter()
        .rev()
        .find(|&p| upto.is_none_or(|u| p <= u))
        .ok_or_else(|| Error::InvalidArgument {
            value: format!("{log:?}"),
            expected: format!(
                "an index log with a snapshot{}: a store writes one at its first open with a log",
                upto.map(|u| format!(" at or before position {u}"))
                    .unwrap_or_default()
            ),
        })
}

/// The time a log object was written (its header's), for a restore to a
/// point in time.
fn log_time(log: &dyn IndexLog, (p, epoch): (u64, u64)) -> Result<u64> {
    let name = log_name(p, epoch);
    let bytes = log
        .get(&name, MAX_LOG_OBJECT)?
        .ok_or_else(|| Error::Corrupt(format!("{name} vanished while it was read")))?;
    Ok(codec::verify(&bytes, &name)?.0.time_ms)
}

/// The last log position written at or before `time_ms`, by binary search
/// over the log kept (writers' clocks only move forward in it but for
/// adjustments; a clock set back can make the answer one of the commits
/// around the time asked). Errors when the log kept starts after it.
pub(crate) fn position_at(log: &dyn IndexLog, time_ms: u64) -> Result<u64> {
    let kept = current_log(log)?;
    let Some(&first) = kept.first() else {
        // Only snapshots: nothing says when they were taken without
        // reading them whole.
        return Err(Error::InvalidArgument {
            value: crate::clock::rfc3339(time_ms),
            expected: format!(
                "an index log with log objects to search by time; it holds only snapshots (the newest at position {}): restore to that position",
                newest_snapshot(log, None)?
            ),
        });
    };
    let first_time = log_time(log, first)?;
    if first_time > time_ms {
        return Err(Error::InvalidArgument {
            value: crate::clock::rfc3339(time_ms),
            expected: format!(
                "a time the index log kept reaches: it starts at position {}, written {}",
                first.0,
                crate::clock::rfc3339(first_time)
            ),
        });
    }
    let (mut lo, mut hi) = (0usize, kept.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if log_time(log, kept[mid])? <= time_ms {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(kept[lo].0)
}
