//! The redb table definitions (format 3): the whole schema in one place.
//! Key layouts are documented in docs/format.md; every key that holds a
//! digest holds its key form, `[algorithm tag][hash]` (33 bytes for
//! sha256), which is self-delimiting, so composite keys need no padding.

use redb::{ReadTransaction, ReadableDatabase as _, TableDefinition, WriteTransaction};

use crate::error::Result;

/// Digest key (see [`crate::digest::DigestKey`]).
pub(crate) type DKey = [u8];

/// `name -> value`: format version and counters.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `digest -> BlobRecord`.
pub(crate) const BLOBS: TableDefinition<&DKey, &[u8]> = TableDefinition::new("blobs");
/// `digest -> bytes` for blobs at or under the inline threshold.
pub(crate) const INLINE: TableDefinition<&DKey, &[u8]> = TableDefinition::new("inline");
/// `parent -> adjacency list`: one value per manifest, written once.
pub(crate) const EDGES_OUT: TableDefinition<&DKey, &[u8]> = TableDefinition::new("edges_out");
/// `child parent kind(1) -> ()`.
pub(crate) const EDGES_IN: TableDefinition<&[u8], ()> = TableDefinition::new("edges_in");
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
/// `digest repo(8) -> ()`: which repositories hold a digest.
pub(crate) const MEMBER_OF: TableDefinition<&[u8], ()> = TableDefinition::new("member_of");
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

/// Opens every table once per write transaction, so that operations in a
/// group commit do not pay for reopening them.
pub(crate) struct WriteTables<'t> {
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
    pub blobs: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub inline: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub edges_out: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub edges_in: redb::Table<'t, &'static [u8], ()>,
    pub referrers: redb::Table<'t, &'static [u8], &'static [u8]>,
    pub artifact_types: redb::Table<'t, &'static str, u32>,
    pub repos: redb::Table<'t, &'static str, u64>,
    pub tags: redb::Table<'t, &'static [u8], &'static DKey>,
    pub tagged: redb::Table<'t, &'static [u8], ()>,
    pub members: redb::Table<'t, &'static [u8], u8>,
    pub member_of: redb::Table<'t, &'static [u8], ()>,
    pub leases: redb::Table<'t, u64, &'static [u8]>,
    pub lease_items: redb::Table<'t, &'static [u8], ()>,
    pub intents: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub uploads: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> WriteTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<WriteTables<'t>> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            blobs: txn.open_table(BLOBS)?,
            inline: txn.open_table(INLINE)?,
            edges_out: txn.open_table(EDGES_OUT)?,
            edges_in: txn.open_table(EDGES_IN)?,
            referrers: txn.open_table(REFERRERS)?,
            artifact_types: txn.open_table(ARTIFACT_TYPES)?,
            repos: txn.open_table(REPOS)?,
            tags: txn.open_table(TAGS)?,
            tagged: txn.open_table(TAGGED)?,
            members: txn.open_table(MEMBERS)?,
            member_of: txn.open_table(MEMBER_OF)?,
            leases: txn.open_table(LEASES)?,
            lease_items: txn.open_table(LEASE_ITEMS)?,
            intents: txn.open_table(INTENTS)?,
            uploads: txn.open_table(UPLOADS)?,
        })
    }
}

/// Creates every table so that read transactions never meet a missing one.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<()> {
    drop(WriteTables::open(txn)?);
    Ok(())
}

/// Starts a read snapshot.
pub(crate) fn begin_read(db: &redb::Database) -> Result<ReadTransaction> {
    Ok(db.begin_read()?)
}
