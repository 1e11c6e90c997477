//! ocidb: an embedded storage engine for OCI content with a reference graph
//! index.
//!
//! A [`Store`] keeps every blob by its [`Digest`] in redb (small blobs inline,
//! large ones as `blobs/<alg>/<hex>` files), parses each manifest at ingest,
//! and answers the OCI referrers API and graph questions from range scans.
//!
//! ```no_run
//! use ocidb::{Store, PutOptions, ManifestOptions, ReferrersQuery};
//! # fn main() -> ocidb::Result<()> {
//! let store = Store::create("/tmp/my-store")?;
//! let cfg = store.put_bytes(b"{}", &PutOptions::default())?;
//! let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!   "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[]}}"#, cfg.digest);
//! let put = store.put_manifest("library/hello", manifest.as_bytes(),
//!     &ManifestOptions { tags: vec!["v1".into()], ..Default::default() })?;
//! let page = store.referrers("library/hello", &put.digest, &ReferrersQuery::default())?;
//! assert!(page.index.manifests.is_empty());
//! # Ok(()) }
//! ```
#![deny(clippy::unwrap_used, missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod digest;
pub mod error;
pub mod faults;
pub mod fsck;
pub mod graph;
pub mod hasher;
mod keys;
pub mod layout;
pub mod lifecycle;
pub mod manifest;
mod mark;
pub mod names;
mod record;
pub mod sample;
pub mod stats;
pub mod store;
mod tables;
mod writer;

pub use digest::{Algorithm, Digest};
pub use error::{Error, ErrorKind, Result};
pub use fsck::{FsckOptions, FsckReport, Problem};
pub use graph::{
    Edge, ImageIndex, Inspection, ManifestOptions, ManifestPut, Parent, ReferrersPage,
    ReferrersQuery, WalkNode, MAX_WALK_DEPTH,
};
pub use hasher::{Hasher, Verifier};
pub use layout::{ExportOptions, ExportReport, ImportOptions, ImportReport};
pub use lifecycle::{GcPolicy, GcReport, Lease, SweepPace};
pub use manifest::{Descriptor, EdgeKind, ManifestParser, ParsedManifest};
pub use names::Reference;
pub use record::Placement;
pub use stats::{RepoStats, Stats};
pub use store::{BlobInfo, BlobReader, PutOptions, PutResult, Store, StoreOptions, WriterPause};
