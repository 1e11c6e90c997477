//! The benchmarking harness behind `ocidb bench`: a seeded generator of
//! synthetic registries ([`gen`]), the scenarios with their same-run
//! baselines ([`run`]), and the table, JSON and SVG output ([`report`]).
//! Peer approaches (SQLite, the ocidir crate, an oras-style in-memory
//! graph) are built with the `peers` feature.

pub mod etcd;
pub mod garage;
pub mod measure;
#[cfg(feature = "peers")]
pub mod peers;
pub mod ports;
pub mod registry;
pub mod report;
pub mod run;
#[cfg(feature = "s3")]
pub mod s3;
pub mod synth;
