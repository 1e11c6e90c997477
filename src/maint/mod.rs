//! Maintenance: consistency checks and repair, statistics, compaction.

pub mod compact;
pub mod fsck;
pub mod migrate;
#[cfg(feature = "s3")]
pub mod migrate_blobs;
pub mod scrub;
pub mod stats;
