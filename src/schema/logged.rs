//! A table of a write transaction that remembers what it changed, so that
//! the writer can ship the transaction's logical changes (the index log,
//! `crate::log`) before it commits.
//!
//! Every write of the index goes through [`WriteTables`](super::tables::WriteTables),
//! whose tables are [`Logged`]: reads pass through (`Deref`), and the only
//! ways to write, [`Logged::insert`] and [`Logged::remove`], record the key's
//! new value. Since `Deref` gives no `&mut`, no write can bypass the record.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use redb::{AccessGuard, Key, StorageError, Table, Value};

/// A key's value after a transaction: `None` when it was removed.
pub(crate) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A write transaction's table that records its changes when asked to.
pub(crate) struct Logged<'t, K: Key + 'static, V: Value + 'static> {
    table: Table<'t, K, V>,
    /// The last value written per key (`None`: not recording). Keeping
    /// only the last write makes a log object the transaction's net effect
    /// and its replay independent of the order of tables.
    changes: Option<Changes>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Logged<'t, K, V> {
    pub(crate) fn new(table: Table<'t, K, V>, record: bool) -> Self {
        Logged {
            table,
            changes: record.then(BTreeMap::new),
        }
    }

    /// As `redb::Table::insert`, recording the new value.
    pub(crate) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        if let Some(c) = &mut self.changes {
            c.insert(
                K::as_bytes(key.borrow()).as_ref().to_vec(),
                Some(V::as_bytes(value.borrow()).as_ref().to_vec()),
            );
        }
        self.table.insert(key, value)
    }

    /// As `redb::Table::remove`, recording the removal.
    pub(crate) fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        if let Some(c) = &mut self.changes {
            c.insert(K::as_bytes(key.borrow()).as_ref().to_vec(), None);
        }
        self.table.remove(key)
    }

    /// A write that is not part of the shipped index (the store's own log
    /// position, which differs between a store and its restored copy only
    /// in when it was written).
    pub(crate) fn insert_unlogged<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), StorageError> {
        self.table.insert(key, value).map(drop)
    }

    /// What was recorded, leaving nothing recorded.
    pub(crate) fn take_changes(&mut self) -> Changes {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> std::ops::Deref for Logged<'t, K, V> {
    type Target = Table<'t, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTable as _;

    const T: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("t");

    #[test]
    fn records_the_last_write_per_key_and_reads_pass_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db")).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let mut t = Logged::new(txn.open_table(T).expect("table"), true);
            t.insert("a", 1).expect("insert");
            t.insert("b", 2).expect("insert");
            t.insert("a", 3).expect("insert");
            t.remove("b").expect("remove");
            t.insert_unlogged("c", 4).expect("insert");
            assert_eq!(t.get("a").expect("get").map(|g| g.value()), Some(3));
            assert_eq!(t.get("c").expect("get").map(|g| g.value()), Some(4));
            let c = t.take_changes();
            assert_eq!(c.len(), 2, "{c:?}");
            assert_eq!(c[b"a".as_slice()], Some(3u64.to_le_bytes().to_vec()));
            assert_eq!(c[b"b".as_slice()], None);
            assert!(t.take_changes().is_empty());
            drop(t);
            let mut quiet = Logged::new(txn.open_table(T).expect("table"), false);
            quiet.insert("d", 5).expect("insert");
            assert!(quiet.take_changes().is_empty());
        }
        txn.commit().expect("commit");
    }
}
