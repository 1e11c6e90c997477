//! The redb table definitions (format 5): the whole schema in one place.
//! Key layouts are documented in docs/format.md; every key that holds a
//! digest holds its key form, `[algorithm tag][hash]` (33 bytes for
//! sha256), which is self-delimiting, so composite keys need no padding.

use redb::{Key, ReadTransaction, ReadableDatabase as _, TableDefinition, Value, WriteTransaction};

use super::logged::{Changes, Logged};
use crate::error::{Error, Result};

/// Digest key (see [`crate::digest::DigestKey`]).
pub(crate) type DKey = [u8];

/// `name -> value`: format version and counters.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `digest -> BlobRecord`.
pub(crate) const BLOBS: TableDefinition<&DKey, &[u8]> = TableDefinition::new("blobs");
/// Format 3's `digest -> packed bytes` of inline blobs, read only by the
/// migration: format 4 keeps them in [`BODIES`], and this table stays
/// empty (its id in the index log is never reused).
pub(crate) const INLINE: TableDefinition<&DKey, &[u8]> = TableDefinition::new("inline");
/// `body id -> packed bytes` (`schema::body`) of blobs at or under the
/// inline threshold, the id named by the blob's record. Ids are handed out
/// in order from the `next_body` counter and never reused, so a new body
/// is an append to this, the largest tree, not an insert at a random key.
pub(crate) const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// `bodies` opened for reading.
pub(crate) type BodiesTable = redb::ReadOnlyTable<u64, &'static [u8]>;
/// `parent -> adjacency list`: one value per manifest, written once.
pub(crate) const EDGES_OUT: TableDefinition<&DKey, &[u8]> = TableDefinition::new("edges_out");
/// `child parent kind(1) -> ()`: with [`EDGES_IN_STAGED`], one set (see
/// `schema::reverse`: read both, through it).
pub(crate) const EDGES_IN: TableDefinition<&[u8], ()> = TableDefinition::new("edges_in");
/// New `edges_in` keys, until the writer merges them into [`EDGES_IN`].
pub(crate) const EDGES_IN_STAGED: TableDefinition<&[u8], ()> =
    TableDefinition::new("edges_in_staged");
/// `repo(8) subject artifact_type_id(4) referrer -> descriptor value`.
pub(crate) const REFERRERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("referrers");
/// `artifact type string -> id(4)`.
pub(crate) const ARTIFACT_TYPES: TableDefinition<&str, u32> =
    TableDefinition::new("artifact_types");
/// `repository name -> id(8)`.
pub(crate) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
/// `repo(8) tag bytes -> digest`.
pub(crate) const TAGS: TableDefinition<&[u8], &DKey> = TableDefinition::new("tags");
/// `repo(8) digest tag bytes -> ()`: the tags pointing at a digest, so
/// that deleting a manifest never scans a repository's tags.
pub(crate) const TAGGED: TableDefinition<&[u8], ()> = TableDefinition::new("tagged");
/// `repo(8) digest -> kind(1)`: the repository's members.
pub(crate) const MEMBERS: TableDefinition<&[u8], u8> = TableDefinition::new("members");
/// `digest repo(8) -> ()`: which repositories hold a digest; with
/// [`MEMBER_OF_STAGED`], one set (see `schema::reverse`).
pub(crate) const MEMBER_OF: TableDefinition<&[u8], ()> = TableDefinition::new("member_of");
/// New `member_of` keys, until the writer merges them into [`MEMBER_OF`].
pub(crate) const MEMBER_OF_STAGED: TableDefinition<&[u8], ()> =
    TableDefinition::new("member_of_staged");
/// `lease id -> [version] expiry_ms(8)`.
pub(crate) const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
/// `lease id(8) digest -> ()`: what a lease holds.
pub(crate) const LEASE_ITEMS: TableDefinition<&[u8], ()> = TableDefinition::new("lease_items");
/// `digest -> staged name` (empty: removal): blob bytes whose commit under
/// the digest, or removal, follows the transaction that wrote the row.
/// Settled at open after a crash (see `engine::writer`).
pub(crate) const INTENTS: TableDefinition<&DKey, &[u8]> = TableDefinition::new("intents");
/// `upload id -> UploadRecord`: resumable upload sessions.
pub(crate) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// `repo(8) tag bytes 0x00 seq(8) -> TagEventRecord`: each tag's history,
/// oldest first (a tag never holds 0x00, so one tag's events are
/// contiguous and precede any longer tag's).
pub(crate) const TAG_HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tag_history");
/// `time_ms(8) seq(8) -> repo(8) tag bytes`: the same events by time, so
/// that GC finds those of the undelete window, and pruning the expired
/// ones, without a scan of every tag's history.
pub(crate) const TAG_HISTORY_TIME: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("tag_history_time");

/// `seq(8 BE) -> EventRecord`: the outbox of changes for delivery, written
/// in the transaction of each change (see `index::events`).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `consumer name -> seq(8 LE)`: how far each consumer of the outbox has
/// acknowledged.
pub(crate) const EVENT_CURSORS: TableDefinition<&str, u64> = TableDefinition::new("event_cursors");

/// `repository id -> name`: the reverse of `repos`, so that a change
/// known by id (a GC deletion) can name its repository's namespaces.
pub(crate) const REPO_NAMES: TableDefinition<u64, &str> = TableDefinition::new("repo_names");
/// `repository name, or a namespace prefix ending in `/` -> bytes(8 LE)
/// members(8 LE)`: what each holds, kept with every membership change.
pub(crate) const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("usage");

/// `repo(8) digest -> ms`: when a manifest was last pulled from a
/// repository, recorded in batches without fsync (retention's
/// "most recently pulled"; a crash may forget the last few seconds).
pub(crate) const PULLS: TableDefinition<&[u8], u64> = TableDefinition::new("pulls");

/// Something done to one table of a write transaction, whatever its key
/// and value types (replaying an index log entry).
pub(crate) trait EachTable {
    /// `name` is the table's; `text_key`: its keys are `str`.
    fn write<K: Key + 'static, V: Value + 'static>(
        &mut self,
        t: &mut Logged<'_, K, V>,
        name: &'static str,
        text_key: bool,
    ) -> Result<()>;
}

/// Something done with each table's definition (writing a snapshot).
pub(crate) trait EachDefinition {
    /// `id` is the table's id in the index log.
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        id: u8,
        def: TableDefinition<'static, K, V>,
    ) -> Result<()>;
}

/// The one list of tables with their ids in the index log and snapshots
/// (docs/format.md, "Index log": append only, never renumbered), their
/// key and value types, and whether the key is text. Everything that must
/// agree on the tables and their ids is generated from it: the open
/// tables of a write transaction, their recorded changes, the log's table
/// names, and the dispatch of log entries and snapshot rows.
macro_rules! tables {
    ($($id:literal $field:ident $def:ident <$k:ty, $v:ty> $text:literal;)*) => {
        /// Opens every table once per write transaction, so that
        /// operations in a group commit do not pay for reopening them.
        /// Writes go through [`Logged`], which records them when the store
        /// ships an index log.
        pub(crate) struct WriteTables<'t> {
            $(pub $field: Logged<'t, $k, $v>,)*
        }

        impl<'t> WriteTables<'t> {
            /// Opens the tables; `record`: remember every change for the log.
            pub fn open(txn: &'t WriteTransaction, record: bool) -> Result<WriteTables<'t>> {
                Ok(WriteTables {
                    $($field: Logged::new(txn.open_table($def)?, record),)*
                })
            }

            /// The changes recorded since the last call, per table (by its
            /// id), leaving out tables that did not change.
            pub fn take_changes(&mut self) -> Vec<(u8, Changes)> {
                let mut out = Vec::new();
                $(
                    let c = self.$field.take_changes();
                    if !c.is_empty() {
                        out.push(($id, c));
                    }
                )*
                out
            }

            /// Runs `f` on the table whose id is `id`.
            pub fn with_table(&mut self, id: u8, f: &mut impl EachTable) -> Result<()> {
                match id {
                    $($id => f.write(&mut self.$field, stringify!($field), $text),)*
                    other => Err(Error::Corrupt(format!(
                        "index log: table id {other}, which this build does not know"
                    ))),
                }
            }
        }

        /// Every table's name, at its id.
        pub(crate) const TABLE_NAMES: &[&str] = &[$(stringify!($field),)*];

        /// Runs `f` on every table's definition, in id order.
        pub(crate) fn each_definition(f: &mut impl EachDefinition) -> Result<()> {
            $(f.table($id, $def)?;)*
            Ok(())
        }
    };
}

tables! {
    0 meta META<&'static str, &'static [u8]> true;
    1 blobs BLOBS<&'static DKey, &'static [u8]> false;
    2 inline INLINE<&'static DKey, &'static [u8]> false;
    3 edges_out EDGES_OUT<&'static DKey, &'static [u8]> false;
    4 edges_in EDGES_IN<&'static [u8], ()> false;
    5 referrers REFERRERS<&'static [u8], &'static [u8]> false;
    6 artifact_types ARTIFACT_TYPES<&'static str, u32> true;
    7 repos REPOS<&'static str, u64> true;
    8 tags TAGS<&'static [u8], &'static DKey> false;
    9 tagged TAGGED<&'static [u8], ()> false;
    10 members MEMBERS<&'static [u8], u8> false;
    11 member_of MEMBER_OF<&'static [u8], ()> false;
    12 leases LEASES<u64, &'static [u8]> false;
    13 lease_items LEASE_ITEMS<&'static [u8], ()> false;
    14 intents INTENTS<&'static DKey, &'static [u8]> false;
    15 uploads UPLOADS<&'static str, &'static [u8]> true;
    16 tag_history TAG_HISTORY<&'static [u8], &'static [u8]> false;
    17 tag_history_time TAG_HISTORY_TIME<&'static [u8], &'static [u8]> false;
    18 events EVENTS<u64, &'static [u8]> false;
    19 event_cursors EVENT_CURSORS<&'static str, u64> true;
    20 repo_names REPO_NAMES<u64, &'static str> false;
    21 usage USAGE<&'static str, &'static [u8]> true;
    22 pulls PULLS<&'static [u8], u64> false;
    23 bodies BODIES<u64, &'static [u8]> false;
    24 edges_in_staged EDGES_IN_STAGED<&'static [u8], ()> false;
    25 member_of_staged MEMBER_OF_STAGED<&'static [u8], ()> false;
}

/// Creates every table so that read transactions never meet a missing one.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<()> {
    drop(WriteTables::open(txn, false)?);
    Ok(())
}

/// Starts a read snapshot.
pub(crate) fn begin_read(db: &redb::Database) -> Result<ReadTransaction> {
    Ok(db.begin_read()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableHandle as _;

    /// Ids run 0, 1, 2… in the list's order, and each id's name is its
    /// definition's: a table added out of order, or named apart from its
    /// field, would make the log name the wrong table.
    #[test]
    fn ids_are_dense_and_name_their_definitions() {
        struct Check(u8);
        impl EachDefinition for Check {
            fn table<K: Key + 'static, V: Value + 'static>(
                &mut self,
                id: u8,
                def: TableDefinition<'static, K, V>,
            ) -> Result<()> {
                assert_eq!(id, self.0, "ids in order, none skipped");
                assert_eq!(TABLE_NAMES[usize::from(id)], def.name());
                self.0 += 1;
                Ok(())
            }
        }
        let mut c = Check(0);
        each_definition(&mut c).expect("each");
        assert_eq!(usize::from(c.0), TABLE_NAMES.len());
    }
}
