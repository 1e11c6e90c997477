//! Maintenance: consistency checks and repair, statistics, compaction.

pub mod compact;
pub mod fsck;
pub mod migrate;
pub mod stats;
