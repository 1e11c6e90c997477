//! Operations on the index inside a writer job, one file per table family.
//! Each runs in the caller's [`Batch`](crate::engine::Batch): the job that
//! calls it commits or fails as a whole.

pub(crate) mod blobs;
pub(crate) mod counters;
pub(crate) mod edges;
pub(crate) mod events;
pub(crate) mod history;
pub(crate) mod ingest;
pub(crate) mod leases;
pub(crate) mod referrers;
pub(crate) mod remove;
pub(crate) mod repair;
pub(crate) mod repos;
pub(crate) mod tags;
pub(crate) mod uploads;
pub(crate) mod usage;
