//! Opening a store: the database, its schema and format, and the settling
//! of what a crash left in flight.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, WriteTransaction};

use crate::blob::{BlobBackend, Staged};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::log::ship::Shipper;
use crate::schema::keys;
use crate::schema::record::{self, Placement};
use crate::schema::tables::{self, WriteTables, INTENTS, META};
use crate::sync_points::Injector;

/// File name of the redb database inside a store directory.
pub const DB_FILE: &str = "ocidb.redb";
/// The on-disk format this release writes (see docs/format.md).
pub const STORE_FORMAT: u8 = 5;
/// The META key that holds the format.
pub(crate) const FORMAT_KEY: &str = "format";
/// The META key of the secret that signs referrers cursors.
const CURSOR_KEY: &str = "cursor_key";

/// The file in a store directory that names the process holding the store,
/// so that another process's "locked" error can say who: `pid N: command`.
pub(crate) const HOLDER_FILE: &str = "ocidb.holder";

/// Records this process as the store's holder (after redb's lock is
/// taken, so only the holder writes it). Best effort: a store works
/// without it, and a read-only directory is no reason to refuse an open.
pub(crate) fn write_holder(root: &Path) {
    let command = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let line = format!("pid {}: {command}\n", std::process::id());
    let tmp = root.join(format!("{HOLDER_FILE}.{}", std::process::id()));
    if std::fs::write(&tmp, line).is_ok() && std::fs::rename(&tmp, root.join(HOLDER_FILE)).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Removes the holder file if this process wrote it.
pub(crate) fn clear_holder(root: &Path) {
    let path = root.join(HOLDER_FILE);
    let ours = format!("pid {}:", std::process::id());
    if std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with(&ours)) {
        let _ = std::fs::remove_file(&path);
    }
}

/// Who holds the store, as the holder recorded it: one line, cut short
/// and with control characters escaped (the file is in a directory
/// others may write).
fn read_holder(root: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(root.join(HOLDER_FILE))
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| crate::text::quote_untrusted(line))
}

/// Store directories open in this process (canonical paths): a second open
/// of one is refused by name before redb's file lock says "locked", which
/// would send the caller looking for another process.
static OPEN_HERE: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// This process's claim on a store directory, released when dropped.
#[derive(Debug)]
pub(crate) struct OpenClaim(std::path::PathBuf);

impl OpenClaim {
    /// Claims `root` (which exists) for one `Store`, or says that this
    /// process already has it open.
    pub(crate) fn take(root: &Path) -> Result<OpenClaim> {
        let key = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let mut open = OPEN_HERE
            .lock()
            .map_err(|_| Error::Internal("the open-store registry lock is poisoned".into()))?;
        if !open.insert(key.clone()) {
            return Err(Error::AlreadyOpen {
                path: root.to_path_buf(),
            });
        }
        Ok(OpenClaim(key))
    }
}

impl Drop for OpenClaim {
    fn drop(&mut self) {
        if let Ok(mut open) = OPEN_HERE.lock() {
            open.remove(&self.0);
        }
    }
}

/// Opens (or creates) the database file, with injected faults when given.
pub(crate) fn open_database(
    root: &Path,
    cache_size: usize,
    faults: Option<&Arc<dyn Injector>>,
) -> Result<Database> {
    let db_path = root.join(DB_FILE);
    let mut builder = Database::builder();
    builder.set_cache_size(cache_size);
    let created = match faults {
        None => builder.create(&db_path),
        Some(faults) => Arc::clone(faults).open_database(&mut builder, &db_path),
    };
    created.map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            path: root.to_path_buf(),
            holder: read_holder(root),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            Error::io(format!("opening database {}", db_path.display()), io)
        }
        other => Error::from(other),
    })
}

/// `n` random bytes as lowercase hex (upload ids: unguessable, so that a
/// client cannot append to another's session).
pub(crate) fn random_hex(n: usize) -> String {
    let key = random_key();
    let mut out = String::with_capacity(n * 2);
    for b in key.iter().cycle().take(n) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// 32 bytes from the OS's random source, by way of std's randomly keyed
/// SipHash (no extra dependency for one key per store).
fn random_key() -> [u8; 32] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// Creates the tables, checks the format, and returns the cursor key.
pub(crate) fn init_schema(db: &Database, root: &Path) -> Result<[u8; 32]> {
    let txn = db.begin_write()?;
    let mut cursor_key = [0u8; 32];
    {
        // The format is read before any other table is opened: v1's tables
        // have other key types, and opening them as v2's would fail with a
        // less helpful error.
        let found = txn
            .open_table(META)?
            .get(FORMAT_KEY)?
            .map(|g| g.value().to_vec());
        if let Some(&[found @ 1..STORE_FORMAT]) = found.as_deref() {
            return Err(Error::FormatUpgradeRequired {
                path: root.to_path_buf(),
                found,
                expected: STORE_FORMAT,
            });
        }
        tables::create_all(&txn)?;
        backfill_usage(&txn)?;
        let mut meta = txn.open_table(META)?;
        match found.as_deref() {
            None => {
                meta.insert(FORMAT_KEY, [STORE_FORMAT].as_slice())?;
            }
            Some([STORE_FORMAT]) => {}
            Some(other) => {
                return Err(Error::NotAStore {
                    path: root.to_path_buf(),
                    reason: format!(
                        "on-disk format {other:?} is not supported; this build reads format [{STORE_FORMAT}]"
                    ),
                })
            }
        }
        let stored = meta.get(CURSOR_KEY)?.map(|g| g.value().to_vec());
        match stored {
            Some(k) if k.len() == 32 => cursor_key.copy_from_slice(&k),
            _ => {
                cursor_key = random_key();
                meta.insert(CURSOR_KEY, cursor_key.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(cursor_key)
}

/// Removes upload bytes that no session names (a crash while one began),
/// and sessions whose bytes are gone. Returns how many of each.
pub(crate) fn settle_uploads(
    db: &Database,
    backend: &dyn BlobBackend,
    shipper: Option<&Shipper>,
    now_ms: u64,
) -> Result<(usize, usize)> {
    let ids: Vec<(String, u64)> = {
        let r = db.begin_read()?;
        let t = r.open_table(tables::UPLOADS)?;
        let mut v = Vec::new();
        for e in t.iter()? {
            let (k, val) = e?;
            let rec = crate::schema::record::UploadRecord::decode(val.value())?;
            v.push((k.value().to_string(), rec.lease));
        }
        v
    };
    let known: std::collections::HashSet<&str> = ids.iter().map(|(i, _)| i.as_str()).collect();
    let mut stray = 0;
    let present: Vec<String> = backend.upload_list()?;
    for id in &present {
        if !known.contains(id.as_str()) {
            backend.upload_remove(id)?;
            stray += 1;
        }
    }
    let gone: Vec<&(String, u64)> = ids
        .iter()
        .filter(|(i, _)| !present.iter().any(|p| p == i))
        .collect();
    if !gone.is_empty() {
        let txn = db.begin_write()?;
        {
            let mut t = WriteTables::open(&txn, shipper.is_some())?;
            for (i, _) in &gone {
                t.uploads.remove(i.as_str())?;
            }
            if let Some(s) = shipper {
                s.ship(&mut t, now_ms)?;
            }
        }
        txn.commit()?;
    }
    Ok((stray, gone.len()))
}

/// Settles every intent a crash left, then discards every staged blob
/// (none is wanted once the intents are settled). `legacy` are digests from
/// an older build's intent file, settled as removals. O(intents + staged),
/// never O(store). Returns how many intents were settled.
pub(crate) fn settle_intents(
    db: &Database,
    backend: &dyn BlobBackend,
    legacy: &[Digest],
    shipper: Option<&Shipper>,
    now_ms: u64,
) -> Result<usize> {
    // The common case, a clean shutdown, costs a read and no commit.
    let nothing_left = legacy.is_empty() && {
        let r = db.begin_read()?;
        r.open_table(INTENTS)?.first()?.is_none()
    };
    if nothing_left {
        discard_all_staged(backend)?;
        return Ok(0);
    }
    let txn = db.begin_write()?;
    let mut names = Vec::new();
    let settled;
    {
        let mut t = WriteTables::open(&txn, shipper.is_some())?;
        let mut rows: Vec<(Digest, Option<Staged>)> = Vec::new();
        for e in t.intents.iter()? {
            let (k, v) = e?;
            let d = Digest::from_key(k.value())?;
            let staged = match v.value() {
                [] => None,
                name => Some(Staged::new(String::from_utf8_lossy(name).into_owned())),
            };
            rows.push((d, staged));
        }
        rows.extend(legacy.iter().map(|d| (*d, None)));
        settled = rows.len();
        for (d, staged) in rows {
            let as_file =
                record::lookup(&*t.blobs, &d)?.is_some_and(|r| r.placement == Placement::File);
            match (as_file, staged) {
                // The record committed: roll its bytes forward, unless
                // they were committed before the crash.
                (true, Some(s)) => {
                    if backend.open_staged(&s)?.is_some() {
                        backend.sync_staging(std::slice::from_ref(&s))?;
                        backend.commit(&s, &d)?;
                        tracing::info!("recovery: committed the staged bytes of {d}");
                    }
                    names.push(d);
                }
                (true, None) => {}
                // No record: the bytes (if any got there) must go.
                (false, staged) => {
                    if let Some(s) = staged {
                        backend.discard(&s)?;
                    }
                    if backend.remove(&d)? {
                        tracing::info!("recovery: removed the bytes of {d}, which has no record");
                        names.push(d);
                    }
                }
            }
            t.intents.remove(d.to_key().as_slice())?;
        }
        if let Some(s) = shipper {
            s.ship(&mut t, now_ms)?;
        }
    }
    backend.sync(&names)?;
    txn.commit()?;
    discard_all_staged(backend)?;
    Ok(settled)
}

/// No staged blob is wanted once the intents are settled.
fn discard_all_staged(backend: &dyn BlobBackend) -> Result<()> {
    for s in backend.list_staged()? {
        backend.discard(&s)?;
    }
    Ok(())
}

/// `meta` key set once the usage counters and `repo_names` cover the store.
const USAGE_READY_KEY: &str = "usage_version";

/// Fills `repo_names` and `usage` for a store written before they existed
/// (once, at open, in the open's transaction): one pass over the
/// repositories and their members.
pub(crate) fn backfill_usage(txn: &WriteTransaction) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    if meta.get(USAGE_READY_KEY)?.is_some() {
        return Ok(());
    }
    let repos = txn.open_table(tables::REPOS)?;
    let mut names = txn.open_table(tables::REPO_NAMES)?;
    let mut by_id = std::collections::BTreeMap::new();
    for e in repos.iter()? {
        let (k, v) = e?;
        names.insert(v.value(), k.value())?;
        by_id.insert(v.value(), k.value().to_string());
    }
    let members = txn.open_table(tables::MEMBERS)?;
    let blobs = txn.open_table(tables::BLOBS)?;
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for e in members.iter()? {
        let (k, _) = e?;
        let id = keys::repo_prefix(k.value());
        let d = keys::member_digest(k.value())?;
        let size = crate::schema::record::lookup(&blobs, &d)
            .ok()
            .flatten()
            .map_or(0, |r| r.size);
        let Some(repo) = by_id.get(&id) else { continue };
        for scope in keys::usage_scopes(repo) {
            let t = totals.entry(scope.to_string()).or_default();
            t.0 += size;
            t.1 += 1;
        }
    }
    let mut usage = txn.open_table(tables::USAGE)?;
    for (scope, (bytes, n)) in totals {
        usage.insert(
            scope.as_str(),
            crate::schema::record::encode_usage(bytes, n).as_slice(),
        )?;
    }
    meta.insert(USAGE_READY_KEY, [1u8].as_slice())?;
    Ok(())
}
