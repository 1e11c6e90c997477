//! The engine room: the single writer with group commit, the state it
//! shares with callers, and opening a store (schema, crash recovery).

pub(crate) mod backend;
pub(crate) mod open;
pub(crate) mod repo_ids;
pub(crate) mod shared;
pub(crate) mod writer;

pub use shared::Quota;
pub(crate) use shared::Shared;
pub(crate) use writer::{Batch, Job, SweepHook, SweepSlot, Writer};
