//! Upgrading a format 1, 2, 3 or 4 store to format 5 (docs/format.md,
//! "Upgrade").
//!
//! From formats 1 to 3, the new database is written beside the old file,
//! under a temporary name, from one read snapshot of it; it is made
//! durable, then renamed over `ocidb.redb` and the directory synced. A
//! crash before the rename leaves the old file untouched (the temporary
//! file is discarded by the next attempt); after it, the new file is
//! complete. Format 5 only adds two tables, empty, to format 4: that
//! upgrade is one transaction in place, which redb commits whole or not at
//! all. So a store is always one format or the other, never a mix. Blob
//! files, upload files and the store's layout outside the database do not
//! change between formats.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::manifest::{Descriptor, EdgeKind};
use crate::schema::body;
use crate::schema::keys;
use crate::schema::record::{BlobRecord, Placement, VALUE_FORMAT_V1};
use crate::schema::tables;
use crate::store::{Store, DB_FILE};

/// The format v1 tables whose types changed (the others keep theirs).
mod v1 {
    use redb::TableDefinition;
    pub type K = [u8; 65];
    pub const BLOBS: TableDefinition<&K, &[u8]> = TableDefinition::new("blobs");
    pub const INLINE: TableDefinition<&K, &[u8]> = TableDefinition::new("inline");
    pub const EDGES_OUT: TableDefinition<&K, &[u8]> = TableDefinition::new("edges_out");
    pub const EDGES_IN: TableDefinition<&[u8; 131], ()> = TableDefinition::new("edges_in");
    pub const REFERRERS: TableDefinition<&[u8; 142], &[u8]> = TableDefinition::new("referrers");
    pub const TAGS: TableDefinition<&[u8], &K> = TableDefinition::new("tags");
    pub const TAGGED: TableDefinition<&[u8], ()> = TableDefinition::new("tagged");
    pub const MEMBERS: TableDefinition<&[u8; 73], u8> = TableDefinition::new("members");
    pub const MEMBER_OF: TableDefinition<&[u8; 73], ()> = TableDefinition::new("member_of");
    pub const LEASE_ITEMS: TableDefinition<&[u8; 73], ()> = TableDefinition::new("lease_items");
    pub const INTENTS: TableDefinition<&K, &[u8]> = TableDefinition::new("intents");
}

/// Name of the v2 database while it is being written.
pub const MIGRATING_FILE: &str = "ocidb.redb.migrating";

/// What a migration did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MigrateReport {
    /// The format found (equal to `to` when there was nothing to do).
    pub from: u8,
    /// The format written.
    pub to: u8,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// The database file's size before and after, in bytes.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Wall time.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// A point the migration has reached, for progress display (and for the
/// crash tests, which abort the process at each one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrateStep {
    /// A batch of rows of `table` is committed (not yet durable) to the
    /// temporary file; `rows` so far.
    Copied {
        /// The table.
        table: &'static str,
        /// Rows of it written so far.
        rows: u64,
    },
    /// An upgrade in place (from format 4) has written its one
    /// transaction; its commit is next.
    InPlace,
    /// The temporary file is complete and durable; the rename is next.
    /// In place: the transaction is committed, and the upgrade done.
    Written,
    /// The v2 file has replaced the v1 file.
    Renamed,
}

/// How a migration runs.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// Rows per write transaction into the new file.
    pub batch_rows: usize,
}

impl Default for MigrateOptions {
    fn default() -> MigrateOptions {
        MigrateOptions { batch_rows: 50_000 }
    }
}

impl Store {
    /// Upgrades the store in `dir` to the format this build reads (see
    /// the module docs for why a crash at any point is safe). A store
    /// already in this format is left as it is. The store must not be open.
    pub fn migrate(dir: impl AsRef<Path>) -> Result<MigrateReport> {
        migrate(dir.as_ref(), &MigrateOptions::default(), &mut |_| {})
    }
}

/// [`Store::migrate`] with options and a progress callback.
pub fn migrate(
    dir: &Path,
    opts: &MigrateOptions,
    progress: &mut dyn FnMut(&MigrateStep),
) -> Result<MigrateReport> {
    let started = Instant::now();
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("{DB_FILE} is missing"),
        });
    }
    let tmp = dir.join(MIGRATING_FILE);
    remove_if_present(&tmp)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bytes_before = size(&path);
    // Both databases are read and written in key order: a small page
    // cache each keeps the migration's memory flat (redb's default is 1 GiB).
    let old = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .open(&path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
                path: dir.to_path_buf(),
                holder: None,
            },
            other => Error::from(other),
        })?;
    let from = format_of(&old, dir)?;
    let target = crate::engine::open::STORE_FORMAT;
    let mut report = MigrateReport {
        from,
        to: target,
        rows: BTreeMap::new(),
        bytes_before,
        bytes_after: bytes_before,
        elapsed: Duration::ZERO,
    };
    if from == target {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    if !(1..target).contains(&from) {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("on-disk format {from} cannot be upgraded to {target}"),
        });
    }
    tracing::info!(store = %dir.display(), from, to = target, "migrating the store's format");
    if from == 4 {
        // Format 5's staging trees of the reverse sets start empty
        // (schema::reverse): creating them and recording the format is
        // the whole upgrade, and one durable commit.
        let txn = old.begin_write()?;
        tables::create_all(&txn)?;
        txn.open_table(tables::META)?
            .insert(crate::engine::open::FORMAT_KEY, [target].as_slice())?;
        progress(&MigrateStep::InPlace);
        txn.commit()?;
        progress(&MigrateStep::Written);
        drop(old);
        report.bytes_after = size(&path);
        report.elapsed = started.elapsed();
        tracing::info!(store = %dir.display(), ms = report.elapsed.as_millis() as u64, "migrated in place");
        return Ok(report);
    }
    {
        let new = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&tmp)?;
        let mut copy = Copy {
            new: &new,
            batch: opts.batch_rows.max(1),
            progress,
            rows: &mut report.rows,
        };
        let snapshot = old.begin_read()?;
        let next_body = match from {
            1 => {
                copy.copy_v1(&snapshot)?;
                copy.blobs_and_bodies(
                    &snapshot,
                    v1::BLOBS,
                    v1::INLINE,
                    |k: &[u8; 65]| dkey(k),
                    BlobRecord::decode_v1,
                    body::pack,
                )?
            }
            // Formats 2 and 3 (the range check above admits nothing
            // else) share their blob records; format 2's bodies are not
            // yet packed.
            _ => {
                let body: fn(&[u8]) -> Vec<u8> = if from == 2 {
                    copy.copy_v2(&snapshot)?;
                    body::pack
                } else {
                    copy.copy_v3(&snapshot)?;
                    <[u8]>::to_vec
                };
                copy.blobs_and_bodies(
                    &snapshot,
                    tables::BLOBS,
                    tables::INLINE,
                    |k: &[u8]| Ok(k.to_vec()),
                    BlobRecord::decode_v2,
                    body,
                )?
            }
        };
        // Written last, with a durable commit that also makes every
        // earlier (non-durable) batch durable.
        let txn = new.begin_write()?;
        {
            let mut meta = txn.open_table(tables::META)?;
            meta.insert(
                crate::index::blobs::BODY_COUNTER,
                next_body.to_le_bytes().as_slice(),
            )?;
            meta.insert(crate::engine::open::FORMAT_KEY, [target].as_slice())?;
        }
        txn.commit()?;
    }
    progress(&MigrateStep::Written);
    std::fs::rename(&tmp, &path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    sync_dir(dir)?;
    drop(old);
    progress(&MigrateStep::Renamed);
    report.bytes_after = size(&path);
    report.elapsed = started.elapsed();
    tracing::info!(
        store = %dir.display(),
        ms = report.elapsed.as_millis() as u64,
        bytes_before,
        bytes_after = report.bytes_after,
        "migrated"
    );
    Ok(report)
}

fn remove_if_present(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// The format recorded in META (1 when a v1 build wrote it).
fn format_of(db: &Database, dir: &Path) -> Result<u8> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(tables::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(Error::NotAStore {
                path: dir.to_path_buf(),
                reason: "the database has no meta table".into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    match meta
        .get(crate::engine::open::FORMAT_KEY)?
        .map(|g| g.value().to_vec())
    {
        Some(v) if v.len() == 1 => Ok(v[0]),
        other => Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("the recorded format {other:?} is not one byte"),
        }),
    }
}

/// Copies one snapshot of the v1 tables into the new file, converting keys
/// and values. v1 keys sort like their v2 forms (the padding only follows
/// the hash), so every table is written in key order: appends.
struct Copy<'a> {
    new: &'a Database,
    batch: usize,
    progress: &'a mut dyn FnMut(&MigrateStep),
    rows: &'a mut BTreeMap<String, u64>,
}

type Row = (Vec<u8>, Vec<u8>);

impl Copy<'_> {
    /// Format 3 differs from format 4 only in where inline bodies live
    /// ([`Copy::blobs_and_bodies`]): every other table is copied as it is,
    /// in key order.
    fn copy_v3(&mut self, old: &redb::ReadTransaction) -> Result<()> {
        struct AsIs<'c, 'a, 't> {
            copy: &'c mut Copy<'a>,
            old: &'t redb::ReadTransaction,
        }
        impl tables::EachDefinition for AsIs<'_, '_, '_> {
            fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
                &mut self,
                id: u8,
                def: TableDefinition<'static, K, V>,
            ) -> Result<()> {
                match tables::TABLE_NAMES[usize::from(id)] {
                    "blobs" | "inline" | "bodies" => Ok(()),
                    name => self.copy.as_is(self.old, def, name),
                }
            }
        }
        tables::each_definition(&mut AsIs { copy: self, old })
    }

    /// Format 2's tables other than `blobs` and `inline`, as format 4 has
    /// them: format 2 differs from format 3 only in the inline table's
    /// values (packed bodies, `schema::body`).
    fn copy_v2(&mut self, old: &redb::ReadTransaction) -> Result<()> {
        self.unchanged_since_v1(old)?;
        for (def, name) in [
            (tables::EDGES_OUT, "edges_out"),
            (tables::REFERRERS, "referrers"),
            (tables::TAGS, "tags"),
            (tables::INTENTS, "intents"),
        ] {
            self.convert(old, def, def, name, |k| Ok(k.to_vec()), <[u8]>::to_vec)?;
        }
        for (def, name) in [
            (tables::EDGES_IN, "edges_in"),
            (tables::TAGGED, "tagged"),
            (tables::MEMBER_OF, "member_of"),
            (tables::LEASE_ITEMS, "lease_items"),
        ] {
            if let Some(t) = existing(old.open_table(def))? {
                self.pump_keys(def, name, t.iter()?.map(|e| Ok(e?.0.value().to_vec())))?;
            }
        }
        let Some(t) = existing(old.open_table(tables::MEMBERS))? else {
            return Ok(());
        };
        let rows = t.iter()?.map(|e| {
            let (k, v) = e?;
            Ok((k.value().to_vec(), v.value()))
        });
        self.write_members(rows)
    }

    /// Copies a table whose values are bytes, its keys through `key` and
    /// its values through `value`.
    fn convert<K: redb::Key + 'static>(
        &mut self,
        old: &redb::ReadTransaction,
        from: TableDefinition<K, &[u8]>,
        to: TableDefinition<&[u8], &[u8]>,
        name: &'static str,
        key: impl for<'k> Fn(K::SelfType<'k>) -> Result<Vec<u8>>,
        value: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Result<()> {
        let Some(t) = existing(old.open_table(from))? else {
            return Ok(());
        };
        self.pump_bytes(
            to,
            name,
            t.iter()?.map(|e| {
                let (k, v) = e?;
                Ok((key(k.value())?, value(v.value())))
            }),
        )
    }

    fn write_members(&mut self, rows: impl Iterator<Item = Result<(Vec<u8>, u8)>>) -> Result<()> {
        self.pump(rows, "members", |txn, batch| {
            let mut t = txn.open_table(tables::MEMBERS)?;
            for (k, v) in batch.drain(..) {
                t.insert(k.as_slice(), v)?;
            }
            Ok(())
        })
    }

    /// The small tables no format changed. META's format entry is copied
    /// too and overwritten by the last commit.
    fn unchanged_since_v1(&mut self, old: &redb::ReadTransaction) -> Result<()> {
        self.as_is(old, tables::META, "meta")?;
        self.as_is(old, tables::ARTIFACT_TYPES, "artifact_types")?;
        self.as_is(old, tables::REPOS, "repos")?;
        self.as_is(old, tables::LEASES, "leases")?;
        self.as_is(old, tables::UPLOADS, "uploads")
    }

    /// Format 1's tables other than `blobs` and `inline`, converted.
    fn copy_v1(&mut self, old: &redb::ReadTransaction) -> Result<()> {
        self.unchanged_since_v1(old)?;
        let v1_key = |k: &[u8; 65]| dkey(k);
        self.convert(
            old,
            v1::INTENTS,
            tables::INTENTS,
            "intents",
            v1_key,
            <[u8]>::to_vec,
        )?;
        if let Some(t) = existing(old.open_table(v1::EDGES_OUT))? {
            self.pump_bytes(
                tables::EDGES_OUT,
                "edges_out",
                t.iter()?.map(|e| {
                    let (k, v) = e?;
                    let own = Digest::from_v1_key(k.value())?;
                    Ok((own.to_key().to_vec(), adjacency_v1_to_v2(&own, v.value())?))
                }),
            )?;
        }
        if let Some(t) = existing(old.open_table(v1::REFERRERS))? {
            self.pump_bytes(
                tables::REFERRERS,
                "referrers",
                t.iter()?.map(|e| {
                    let (k, v) = e?;
                    let k: &[u8; 142] = k.value();
                    let (repo, rest) = k.split_at(8);
                    let (subject, rest) = rest.split_at(65);
                    let (at, referrer) = rest.split_at(4);
                    let repo = u64::from_be_bytes(repo.try_into().unwrap_or_default());
                    let at = u32::from_be_bytes(at.try_into().unwrap_or_default());
                    let referrer = Digest::from_v1_key(referrer)?;
                    let key = keys::referrer(repo, &Digest::from_v1_key(subject)?, at, &referrer);
                    let (sources, desc) = referrer_v1(v.value())?;
                    Ok((key, keys::encode_referrer(sources, &desc)?))
                }),
            )?;
        }
        if let Some(t) = existing(old.open_table(v1::TAGS))? {
            self.pump_bytes(
                tables::TAGS,
                "tags",
                t.iter()?.map(|e| {
                    let (k, v) = e?;
                    Ok((k.value().to_vec(), dkey(v.value())?))
                }),
            )?;
        }

        if let Some(t) = existing(old.open_table(v1::EDGES_IN))? {
            self.pump_keys(
                tables::EDGES_IN,
                "edges_in",
                t.iter()?.map(|e| {
                    let (k, _) = e?;
                    let k: &[u8; 131] = k.value();
                    let (child, rest) = k.split_at(65);
                    let (parent, kind) = rest.split_at(65);
                    let kind = EdgeKind::from_code(kind[0]).ok_or_else(|| {
                        Error::Corrupt(format!("v1 edge kind {} is unknown", kind[0]))
                    })?;
                    Ok(keys::edge_in(
                        &Digest::from_v1_key(child)?,
                        &Digest::from_v1_key(parent)?,
                        kind,
                    ))
                }),
            )?;
        }
        if let Some(t) = existing(old.open_table(v1::TAGGED))? {
            self.pump_keys(
                tables::TAGGED,
                "tagged",
                t.iter()?.map(|e| {
                    let (k, _) = e?;
                    let k = k.value();
                    let bad = || {
                        Error::Corrupt(format!("v1 tagged key of {} bytes is malformed", k.len()))
                    };
                    let (repo, rest) = k.split_at_checked(8).ok_or_else(bad)?;
                    let (d, tag) = rest.split_at_checked(65).ok_or_else(bad)?;
                    let mut key = repo.to_vec();
                    key.extend_from_slice(&dkey(d)?);
                    key.extend_from_slice(tag);
                    Ok(key)
                }),
            )?;
        }
        if let Some(t) = existing(old.open_table(v1::MEMBER_OF))? {
            self.pump_keys(
                tables::MEMBER_OF,
                "member_of",
                t.iter()?.map(|e| {
                    let (k, _) = e?;
                    let k: &[u8; 73] = k.value();
                    let (d, repo) = k.split_at(65);
                    let mut key = dkey(d)?;
                    key.extend_from_slice(repo);
                    Ok(key)
                }),
            )?;
        }
        if let Some(t) = existing(old.open_table(v1::LEASE_ITEMS))? {
            self.pump_keys(
                tables::LEASE_ITEMS,
                "lease_items",
                t.iter()?.map(|e| {
                    let (k, _) = e?;
                    id_then_digest(k.value())
                }),
            )?;
        }
        let Some(t) = existing(old.open_table(v1::MEMBERS))? else {
            return Ok(());
        };
        let rows = t.iter()?.map(|e| {
            let (k, v) = e?;
            Ok((id_then_digest(k.value())?, v.value()))
        });
        self.write_members(rows)
    }

    /// Every blob record, each inline one with its body moved to `bodies`
    /// under a new id (1, 2, … in the records' key order), in batches of
    /// records and bodies together. `key` converts a record's key, `decode`
    /// reads an old record and `body` converts an old inline value.
    /// Returns the next body id. An inline record whose bytes the old
    /// store lacks keeps an id with no body, so that fsck reports the
    /// missing bytes as the old build's did.
    fn blobs_and_bodies<K: redb::Key + 'static>(
        &mut self,
        old: &redb::ReadTransaction,
        blobs: TableDefinition<K, &[u8]>,
        inline: TableDefinition<K, &[u8]>,
        key: impl for<'k> Fn(K::SelfType<'k>) -> Result<Vec<u8>>,
        decode: fn(&[u8]) -> Result<BlobRecord>,
        body: fn(&[u8]) -> Vec<u8>,
    ) -> Result<u64> {
        let mut next = 1u64;
        let Some(records) = existing(old.open_table(blobs))? else {
            return Ok(next);
        };
        let inline = existing(old.open_table(inline))?;
        let rows = records.iter()?.map(|e| {
            let (k, v) = e?;
            let mut rec = decode(v.value())?;
            let new_key = key(k.value())?;
            let mut bytes = None;
            if rec.placement == Placement::Inline {
                rec.body = next;
                next += 1;
                let found = match &inline {
                    Some(t) => t.get(k.value())?.map(|g| body(g.value())),
                    None => None,
                };
                if found.is_none() {
                    tracing::warn!(
                        record = %Digest::from_key(&new_key).map_or_else(|e| e.to_string(), |d| d.to_string()),
                        "an inline record has no bytes in the old store; carried over for fsck to report"
                    );
                }
                bytes = found.map(|b| (rec.body, b));
            }
            Ok(BlobRow {
                key: new_key,
                record: rec.encode()?,
                body: bytes,
            })
        });
        let bodies = std::cell::Cell::new(0u64);
        self.pump(rows, "blobs", |txn, batch| {
            let mut records = txn.open_table(tables::BLOBS)?;
            let mut stored = txn.open_table(tables::BODIES)?;
            for row in batch.drain(..) {
                records.insert(row.key.as_slice(), row.record.as_slice())?;
                if let Some((id, b)) = &row.body {
                    stored.insert(*id, b.as_slice())?;
                    bodies.set(bodies.get() + 1);
                }
            }
            Ok(())
        })?;
        self.rows.insert("bodies".into(), bodies.get());
        Ok(next)
    }

    /// Copies a table whose key and value types did not change, in key
    /// order, in batches (one non-durable transaction each).
    fn as_is<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        old: &redb::ReadTransaction,
        def: TableDefinition<K, V>,
        name: &'static str,
    ) -> Result<()> {
        let Some(src) = existing(old.open_table(def))? else {
            return Ok(());
        };
        let mut rows = src.iter()?;
        let mut n = 0u64;
        loop {
            let mut txn = self.new.begin_write()?;
            txn.set_durability(Durability::None)?;
            let (mut in_batch, mut bytes, mut done) = (0usize, 0usize, false);
            {
                let mut dst = txn.open_table(def)?;
                while in_batch < self.batch && bytes < MAX_BATCH_BYTES {
                    let Some(e) = rows.next() else {
                        done = true;
                        break;
                    };
                    let (k, v) = e.map_err(|e| in_table(name, e.into()))?;
                    bytes += K::as_bytes(&k.value()).as_ref().len()
                        + V::as_bytes(&v.value()).as_ref().len();
                    dst.insert(k.value(), v.value())?;
                    in_batch += 1;
                }
            }
            txn.commit()?;
            n += in_batch as u64;
            self.copied(name, n);
            if done {
                return Ok(());
            }
        }
    }

    /// Writes converted rows in batches, one (non-durable) transaction each.
    fn pump<T: RowBytes>(
        &mut self,
        rows: impl Iterator<Item = Result<T>>,
        name: &'static str,
        write: impl Fn(&redb::WriteTransaction, &mut Vec<T>) -> Result<()>,
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(self.batch.min(1 << 16));
        let mut bytes = 0;
        let mut n = 0u64;
        let mut rows = rows.peekable();
        while let Some(row) = rows.next() {
            let row = row.map_err(|e| in_table(name, e))?;
            bytes += row.bytes();
            batch.push(row);
            // Inline blob bodies reach 64 KiB each: a batch is bounded by
            // bytes as well as rows, so memory stays flat.
            if batch.len() == self.batch || bytes >= MAX_BATCH_BYTES || rows.peek().is_none() {
                bytes = 0;
                n += batch.len() as u64;
                let mut txn = self.new.begin_write()?;
                txn.set_durability(Durability::None)?;
                write(&txn, &mut batch)?;
                txn.commit()?;
                self.copied(name, n);
            }
        }
        Ok(())
    }

    /// Records and reports that `rows` rows of `table` are written.
    fn copied(&mut self, table: &'static str, rows: u64) {
        self.rows.insert(table.to_string(), rows);
        (self.progress)(&MigrateStep::Copied { table, rows });
    }

    fn pump_bytes(
        &mut self,
        to: TableDefinition<&[u8], &[u8]>,
        name: &'static str,
        rows: impl Iterator<Item = Result<Row>>,
    ) -> Result<()> {
        self.pump(rows, name, |txn, batch| {
            let mut t = txn.open_table(to)?;
            for (k, v) in batch.drain(..) {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    fn pump_keys(
        &mut self,
        to: TableDefinition<&[u8], ()>,
        name: &'static str,
        rows: impl Iterator<Item = Result<Vec<u8>>>,
    ) -> Result<()> {
        self.pump(rows, name, |txn, batch| {
            let mut t = txn.open_table(to)?;
            for k in batch.drain(..) {
                t.insert(k.as_slice(), ())?;
            }
            Ok(())
        })
    }
}

/// redb page cache of each database during a migration.
const CACHE_BYTES: usize = 64 << 20;

/// Most bytes of converted rows held before they are written.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// The size of a converted row, for [`MAX_BATCH_BYTES`].
trait RowBytes {
    fn bytes(&self) -> usize;
}

impl RowBytes for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl RowBytes for (Vec<u8>, Vec<u8>) {
    fn bytes(&self) -> usize {
        self.0.len() + self.1.len()
    }
}

/// A blob record in format 4, with its body when it is inline.
struct BlobRow {
    key: Vec<u8>,
    record: Vec<u8>,
    body: Option<(u64, Vec<u8>)>,
}

impl RowBytes for BlobRow {
    fn bytes(&self) -> usize {
        self.key.len() + self.record.len() + self.body.as_ref().map_or(0, |(_, b)| b.len())
    }
}

impl RowBytes for (Vec<u8>, u8) {
    fn bytes(&self) -> usize {
        self.0.len() + 1
    }
}

/// A v1 table, or None when the store never had it (a store last opened
/// by an early format-1 build lacks the tables added later; an absent
/// table is an empty one).
fn existing<T>(t: std::result::Result<T, redb::TableError>) -> Result<Option<T>> {
    match t {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn in_table(table: &str, e: Error) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("table {table} of the old format: {m}")),
        other => other,
    }
}

/// A v1 digest key as a v2 key.
fn dkey(v1: &[u8]) -> Result<Vec<u8>> {
    Ok(Digest::from_v1_key(v1)?.to_key().to_vec())
}

/// `id(8) digest(65)` (members, lease_items) as `id(8) digest`.
fn id_then_digest(k: &[u8]) -> Result<Vec<u8>> {
    let (id, d) = k
        .split_at_checked(8)
        .ok_or_else(|| Error::Corrupt(format!("v1 key of {} bytes is too short", k.len())))?;
    let mut key = id.to_vec();
    key.extend_from_slice(&dkey(d)?);
    Ok(key)
}

/// A v1 adjacency entry: the descriptor, and for the subject the
/// referrer's own descriptor under `_referrer`.
#[derive(serde::Deserialize)]
struct EdgeValueV1 {
    #[serde(flatten)]
    desc: Descriptor,
    #[serde(rename = "_referrer", default)]
    referrer: Option<Descriptor>,
}

/// A v1 `edges_out` value (`[1]` then JSON `[[kind, descriptor], …]`) in
/// v2's encoding.
fn adjacency_v1_to_v2(own: &Digest, v: &[u8]) -> Result<Vec<u8>> {
    let Some((&VALUE_FORMAT_V1, json)) = v.split_first() else {
        return Err(Error::Corrupt(format!(
            "v1 edges of {own} have an unknown format"
        )));
    };
    let list: Vec<(u8, EdgeValueV1)> = serde_json::from_slice(json)
        .map_err(|e| Error::Corrupt(format!("v1 edges of {own} are unreadable: {e}")))?;
    let mut children = Vec::new();
    let mut subject = None;
    for (code, ev) in list {
        let kind = EdgeKind::from_code(code)
            .ok_or_else(|| Error::Corrupt(format!("v1 edge kind {code} of {own} is unknown")))?;
        match (kind, ev.referrer) {
            (EdgeKind::Subject, Some(r)) => subject = Some((ev.desc, r)),
            (EdgeKind::Subject, None) => {
                return Err(Error::Corrupt(format!(
                    "v1 subject edge of {own} lacks the referrer's descriptor"
                )))
            }
            (kind, _) => children.push((kind, ev.desc)),
        }
    }
    keys::encode_adjacency(&children, subject.as_ref().map(|(s, r)| (s, r)))
}

/// A v1 referrer value: `[1] [sources]` then the descriptor as JSON.
fn referrer_v1(v: &[u8]) -> Result<(u8, Descriptor)> {
    match v {
        [VALUE_FORMAT_V1, sources, json @ ..] => Ok((
            *sources,
            serde_json::from_slice(json)
                .map_err(|e| Error::Corrupt(format!("v1 referrer is unreadable: {e}")))?,
        )),
        _ => Err(Error::Corrupt("v1 referrer has an unknown format".into())),
    }
}
