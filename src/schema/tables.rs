//! The redb table definitions: the whole schema in one place. Key layouts are
//! documented in docs/format.md; every key that holds a digest holds its
//! 65-byte fixed-width form ([`crate::oci::digest::DIGEST_KEY_LEN`]).

use redb::{ReadTransaction, ReadableDatabase as _, TableDefinition, WriteTransaction};

use crate::error::Result;
use crate::oci::digest::DIGEST_KEY_LEN;

/// Digest key.
pub(crate) type DKey = [u8; DIGEST_KEY_LEN];

/// `name -> value`: format version and counters.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `digest -> BlobRecord`.
pub(crate) const BLOBS: TableDefinition<&DKey, &[u8]> = TableDefinition::new("blobs");
/// `digest -> bytes` for blobs at or under the inline threshold.
pub(crate) const INLINE: TableDefinition<&DKey, &[u8]> = TableDefinition::new("inline");
/// `parent(65) -> adjacency list`: one value per manifest, written once.
pub(crate) const EDGES_OUT: TableDefinition<&DKey, &[u8]> = TableDefinition::new("edges_out");
/// `child(65) parent(65) kind(1) -> ()`.
pub(crate) const EDGES_IN: TableDefinition<&[u8; EDGE_IN_LEN], ()> =
    TableDefinition::new("edges_in");
/// `repo(8) subject(65) artifact_type_id(4) referrer(65) -> descriptor value`.
pub(crate) const REFERRERS: TableDefinition<&[u8; REFERRER_LEN], &[u8]> =
    TableDefinition::new("referrers");
/// `artifact type string -> id(4)`.
pub(crate) const ARTIFACT_TYPES: TableDefinition<&str, u32> =
    TableDefinition::new("artifact_types");
/// `repository name -> id(8)`.
pub(crate) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
/// `repo(8) tag bytes -> digest(65)`.
pub(crate) const TAGS: TableDefinition<&[u8], &DKey> = TableDefinition::new("tags");
/// `repo(8) digest(65) tag bytes -> ()`: the tags pointing at a digest, so
/// that deleting a manifest never scans a repository's tags.
pub(crate) const TAGGED: TableDefinition<&[u8], ()> = TableDefinition::new("tagged");
/// `repo(8) digest(65) -> kind(1)`: the repository's members.
pub(crate) const MEMBERS: TableDefinition<&[u8; MEMBER_LEN], u8> = TableDefinition::new("members");
/// `digest(65) repo(8) -> ()`: which repositories hold a digest.
pub(crate) const MEMBER_OF: TableDefinition<&[u8; MEMBER_LEN], ()> =
    TableDefinition::new("member_of");
/// `lease id -> [version] expiry_ms(8)`.
pub(crate) const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
/// `lease id(8) digest(65) -> ()`: what a lease holds.
pub(crate) const LEASE_ITEMS: TableDefinition<&[u8; MEMBER_LEN], ()> =
    TableDefinition::new("lease_items");
/// `digest -> staged name` (empty: removal): blob bytes whose commit under
/// the digest, or removal, follows the transaction that wrote the row.
/// Settled at open after a crash (see `engine::writer`).
pub(crate) const INTENTS: TableDefinition<&DKey, &[u8]> = TableDefinition::new("intents");
/// `upload id -> UploadRecord`: resumable upload sessions.
pub(crate) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// Written by earlier builds while a GC ran (the change log now lives in
/// memory: a GC run does not outlive its process). Dropped at open.
pub(crate) const RETIRED_GC_LOG: TableDefinition<u64, &DKey> = TableDefinition::new("gc_log");

pub(crate) const EDGE_IN_LEN: usize = DIGEST_KEY_LEN * 2 + 1;
pub(crate) const REFERRER_LEN: usize = 8 + DIGEST_KEY_LEN + 4 + DIGEST_KEY_LEN;
pub(crate) const MEMBER_LEN: usize = 8 + DIGEST_KEY_LEN;

/// Opens every table once per write transaction, so that operations in a
/// group commit do not pay for reopening them.
pub(crate) struct WriteTables<'t> {
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
    pub blobs: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub inline: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub edges_out: redb::Table<'t, &'static DKey, &'static [u8]>,
    pub edges_in: redb::Table<'t, &'static [u8; EDGE_IN_LEN], ()>,
    pub referrers: redb::Table<'t, &'static [u8; REFERRER_LEN], &'static [u8]>,
    pub artifact_types: redb::Table<'t, &'static str, u32>,
    pub repos: redb::Table<'t, &'static str, u64>,
    pub tags: redb::Table<'t, &'static [u8], &'static DKey>,
    pub tagged: redb::Table<'t, &'static [u8], ()>,
    pub members: redb::Table<'t, &'static [u8; MEMBER_LEN], u8>,
    pub member_of: redb::Table<'t, &'static [u8; MEMBER_LEN], ()>,
    pub leases: redb::Table<'t, u64, &'static [u8]>,
    pub lease_items: redb::Table<'t, &'static [u8; MEMBER_LEN], ()>,
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
