//! The redb table definitions (format 3): the whole schema in one place.
//! Key layouts are documented in docs/format.md; every key that holds a
//! digest holds its key form, `[algorithm tag][hash]` (33 bytes for
//! sha256), which is self-delimiting, so composite keys need no padding.

use redb::{ReadTransaction, ReadableDatabase as _, TableDefinition, WriteTransaction};

use super::logged::{Changes, Logged};
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
/// group commit do not pay for reopening them. Writes go through
/// [`Logged`], which records them when the store ships an index log.
pub(crate) struct WriteTables<'t> {
    pub meta: Logged<'t, &'static str, &'static [u8]>,
    pub blobs: Logged<'t, &'static DKey, &'static [u8]>,
    pub inline: Logged<'t, &'static DKey, &'static [u8]>,
    pub edges_out: Logged<'t, &'static DKey, &'static [u8]>,
    pub edges_in: Logged<'t, &'static [u8], ()>,
    pub referrers: Logged<'t, &'static [u8], &'static [u8]>,
    pub artifact_types: Logged<'t, &'static str, u32>,
    pub repos: Logged<'t, &'static str, u64>,
    pub tags: Logged<'t, &'static [u8], &'static DKey>,
    pub tagged: Logged<'t, &'static [u8], ()>,
    pub members: Logged<'t, &'static [u8], u8>,
    pub member_of: Logged<'t, &'static [u8], ()>,
    pub leases: Logged<'t, u64, &'static [u8]>,
    pub lease_items: Logged<'t, &'static [u8], ()>,
    pub intents: Logged<'t, &'static DKey, &'static [u8]>,
    pub uploads: Logged<'t, &'static str, &'static [u8]>,
}

impl<'t> WriteTables<'t> {
    /// Opens the tables; `record`: remember every change for the log.
    pub fn open(txn: &'t WriteTransaction, record: bool) -> Result<WriteTables<'t>> {
        Ok(WriteTables {
            meta: Logged::new(txn.open_table(META)?, record),
            blobs: Logged::new(txn.open_table(BLOBS)?, record),
            inline: Logged::new(txn.open_table(INLINE)?, record),
            edges_out: Logged::new(txn.open_table(EDGES_OUT)?, record),
            edges_in: Logged::new(txn.open_table(EDGES_IN)?, record),
            referrers: Logged::new(txn.open_table(REFERRERS)?, record),
            artifact_types: Logged::new(txn.open_table(ARTIFACT_TYPES)?, record),
            repos: Logged::new(txn.open_table(REPOS)?, record),
            tags: Logged::new(txn.open_table(TAGS)?, record),
            tagged: Logged::new(txn.open_table(TAGGED)?, record),
            members: Logged::new(txn.open_table(MEMBERS)?, record),
            member_of: Logged::new(txn.open_table(MEMBER_OF)?, record),
            leases: Logged::new(txn.open_table(LEASES)?, record),
            lease_items: Logged::new(txn.open_table(LEASE_ITEMS)?, record),
            intents: Logged::new(txn.open_table(INTENTS)?, record),
            uploads: Logged::new(txn.open_table(UPLOADS)?, record),
        })
    }

    /// The changes recorded since the last call, per table (by its id in
    /// [`TABLE_NAMES`]), leaving out tables that did not change.
    pub fn take_changes(&mut self) -> Vec<(u8, Changes)> {
        let all = [
            self.meta.take_changes(),
            self.blobs.take_changes(),
            self.inline.take_changes(),
            self.edges_out.take_changes(),
            self.edges_in.take_changes(),
            self.referrers.take_changes(),
            self.artifact_types.take_changes(),
            self.repos.take_changes(),
            self.tags.take_changes(),
            self.tagged.take_changes(),
            self.members.take_changes(),
            self.member_of.take_changes(),
            self.leases.take_changes(),
            self.lease_items.take_changes(),
            self.intents.take_changes(),
            self.uploads.take_changes(),
        ];
        all.into_iter()
            .zip(0u8..)
            .filter(|(c, _)| !c.is_empty())
            .map(|(c, id)| (id, c))
            .collect()
    }
}

/// Every table, in the order of their ids in the index log and snapshots
/// (docs/format.md, "Index log"): append only.
pub(crate) const TABLE_NAMES: [&str; 16] = [
    "meta",
    "blobs",
    "inline",
    "edges_out",
    "edges_in",
    "referrers",
    "artifact_types",
    "repos",
    "tags",
    "tagged",
    "members",
    "member_of",
    "leases",
    "lease_items",
    "intents",
    "uploads",
];

/// Creates every table so that read transactions never meet a missing one.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<()> {
    drop(WriteTables::open(txn, false)?);
    Ok(())
}

/// Starts a read snapshot.
pub(crate) fn begin_read(db: &redb::Database) -> Result<ReadTransaction> {
    Ok(db.begin_read()?)
}
