//! The helpers of the engine's tests (tests/common at the top), plus those
//! that drive the `ocidb` binary: only this crate's tests can name it.
#![allow(dead_code, unused_imports)]

#[path = "../../../../tests/common/mod.rs"]
mod engine;
pub use engine::*;

pub mod cli;
pub mod crash;
pub mod etcd;
pub mod garage;
pub mod prometheus;
pub mod server;
pub mod tenants;
