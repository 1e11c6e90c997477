//! Store statistics: sizes, deduplication and referrers by artifact type.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable as _, ReadableTableMetadata as _};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::index::repos::repo_names;
use crate::schema::keys;
use crate::schema::record::{BlobRecord, Placement};
use crate::schema::tables::{self, BLOBS, MEMBERS, REFERRERS, TAGS};
use crate::store::{Store, DB_FILE};

/// One repository's share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoStats {
    /// Name.
    pub name: String,
    /// Member manifests.
    pub manifests: u64,
    /// Member blobs.
    pub blobs: u64,
    /// Tags.
    pub tags: u64,
    /// Bytes of its members (as if stored alone).
    pub bytes: u64,
}

/// Whole-store statistics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    /// Repositories.
    pub repositories: u64,
    /// Indexed manifests.
    pub manifests: u64,
    /// Other blobs.
    pub blobs: u64,
    /// Tags across repositories.
    pub tags: u64,
    /// Bytes stored once (every digest counted once).
    pub unique_bytes: u64,
    /// Bytes as the repositories see them (shared content counted per repository).
    pub total_bytes: u64,
    /// total_bytes / unique_bytes.
    pub dedupe_ratio: f64,
    /// Referrer entries by artifactType, across repositories.
    pub referrers_by_artifact_type: BTreeMap<String, u64>,
    /// The largest repositories by bytes, at most 5.
    pub largest_repositories: Vec<RepoStats>,
    /// Size of the redb file.
    pub database_file_bytes: u64,
    /// Bytes of blobs held inline in redb.
    pub inline_bytes: u64,
    /// Bytes of blobs held as files.
    pub file_bytes: u64,
}

impl Store {
    /// Computes statistics from one read snapshot.
    pub fn stats(&self) -> Result<Stats> {
        let txn = tables::begin_read(&self.db)?;
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        let (mut manifests, mut blobs, mut inline_bytes, mut file_bytes) = (0, 0, 0, 0);
        for e in txn.open_table(BLOBS)?.iter()? {
            let (k, v) = e?;
            let d = Digest::from_key(k.value())?;
            let r = BlobRecord::decode(v.value())?;
            if r.manifest {
                manifests += 1;
            } else {
                blobs += 1;
            }
            match r.placement {
                Placement::Inline => inline_bytes += r.size,
                Placement::File => file_bytes += r.size,
            }
            sizes.insert(d, r.size);
        }
        let names = repo_names(&txn)?;
        let mut per_repo: BTreeMap<u64, RepoStats> = names
            .iter()
            .map(|(id, n)| {
                (
                    *id,
                    RepoStats {
                        name: n.clone(),
                        manifests: 0,
                        blobs: 0,
                        tags: 0,
                        bytes: 0,
                    },
                )
            })
            .collect();
        for e in txn.open_table(MEMBERS)?.iter()? {
            let (k, v) = e?;
            let mut id = [0u8; 8];
            id.copy_from_slice(&k.value()[..8]);
            let d = keys::member_digest(k.value())?;
            if let Some(r) = per_repo.get_mut(&u64::from_be_bytes(id)) {
                if v.value() == crate::schema::keys::MEMBER_MANIFEST {
                    r.manifests += 1;
                } else {
                    r.blobs += 1;
                }
                r.bytes += sizes.get(&d).copied().unwrap_or(0);
            }
        }
        let tags_t = txn.open_table(TAGS)?;
        let tags = tags_t.len()?;
        for e in tags_t.iter()? {
            let (k, _) = e?;
            let mut id = [0u8; 8];
            id.copy_from_slice(&k.value()[..8]);
            if let Some(r) = per_repo.get_mut(&u64::from_be_bytes(id)) {
                r.tags += 1;
            }
        }
        let mut referrers_by_artifact_type = BTreeMap::new();
        for e in txn.open_table(REFERRERS)?.iter()? {
            let (k, v) = e?;
            let (_, desc) = keys::decode_referrer(k.value(), v.value())?;
            *referrers_by_artifact_type
                .entry(desc.artifact_type.unwrap_or_else(|| "(none)".into()))
                .or_insert(0) += 1;
        }
        let unique_bytes: u64 = sizes.values().sum();
        let total_bytes: u64 = per_repo.values().map(|r| r.bytes).sum();
        let mut largest: Vec<RepoStats> = per_repo.into_values().collect();
        largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
        largest.truncate(5);
        Ok(Stats {
            repositories: names.len() as u64,
            manifests,
            blobs,
            tags,
            unique_bytes,
            total_bytes,
            dedupe_ratio: if unique_bytes == 0 {
                1.0
            } else {
                total_bytes as f64 / unique_bytes as f64
            },
            referrers_by_artifact_type,
            largest_repositories: largest,
            database_file_bytes: self.database_file_bytes(),
            inline_bytes,
            file_bytes,
        })
    }
}

/// Counts that cost no scan: each is a table's length, which redb keeps in
/// the table's root, so a metrics scrape may read them every few seconds
/// on a store of any size (unlike [`Store::stats`], which reads every
/// record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Blob records (manifests included).
    pub records: u64,
    /// Indexed manifests.
    pub manifests: u64,
    /// Repositories.
    pub repositories: u64,
    /// Tags across repositories.
    pub tags: u64,
    /// Leases, expired ones not yet dropped included.
    pub leases: u64,
    /// Open upload sessions.
    pub uploads: u64,
    /// Size of the redb file.
    pub database_file_bytes: u64,
    /// Jobs sent to the writer and not yet taken by it.
    pub writer_queue: u64,
    /// Rows of the reverse sets (`edges_in`, `member_of`) in their staging
    /// trees, not yet merged into the main trees (docs/format.md, "Staged
    /// reverse sets"): hovers near [`crate::StoreOptions::staged_rows`]
    /// or, during a bulk ingest, a few commits' worth.
    pub staged_reverse_rows: u64,
}

impl Store {
    /// The redb file's size now (0 if it cannot be read).
    fn database_file_bytes(&self) -> u64 {
        std::fs::metadata(self.root.join(DB_FILE)).map_or(0, |m| m.len())
    }

    /// [`Counts`] from one read snapshot, without a scan.
    pub fn counts(&self) -> Result<Counts> {
        use crate::schema::tables::{
            EDGES_IN_STAGED, EDGES_OUT, LEASES, MEMBER_OF_STAGED, REPOS, UPLOADS,
        };
        let txn = tables::begin_read(&self.db)?;
        Ok(Counts {
            records: txn.open_table(BLOBS)?.len()?,
            manifests: txn.open_table(EDGES_OUT)?.len()?,
            repositories: txn.open_table(REPOS)?.len()?,
            tags: txn.open_table(TAGS)?.len()?,
            leases: txn.open_table(LEASES)?.len()?,
            uploads: txn.open_table(UPLOADS)?.len()?,
            database_file_bytes: self.database_file_bytes(),
            writer_queue: self.writer_queue() as u64,
            staged_reverse_rows: txn.open_table(EDGES_IN_STAGED)?.len()?
                + txn.open_table(MEMBER_OF_STAGED)?.len()?,
        })
    }
}
