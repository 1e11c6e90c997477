//! Maintenance: consistency checks and repair, statistics, compaction,
//! index snapshots and restore.

pub mod compact;
pub mod fsck;
pub mod index_log;
pub mod migrate;
#[cfg(feature = "s3")]
pub mod migrate_blobs;
pub mod scrub;
pub mod stats;
