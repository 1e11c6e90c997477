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
//!     &ManifestOptions::default().tags(["v1"]))?;
//! let page = store.referrers("library/hello", &put.digest, &ReferrersQuery::default())?;
//! assert!(page.index.manifests.is_empty());
//! # Ok(()) }
//! ```

// Layers, each using only those above it:
//   error, oci (values) · schema (redb tables and codecs) · blob (bytes)
//   · engine (writer, open) · index (operations in a writer job)
//   · store (the facade) · gc, maint, layout (built on the facade).
pub mod blob;
pub mod clock;
pub mod digest;
mod engine;
pub mod error;
#[cfg(feature = "testing")]
pub mod faults;
pub mod gc;
mod index;
pub mod layout;
pub mod log;
pub mod maint;
pub mod oci;
mod schema;
pub mod store;
mod sync_points;
pub mod text;

/// The referrers table's encodings and the database file's name, for the
/// harness's raw range-scan baseline (feature `internals`): no stability
/// promise, not for registries.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::engine::open::DB_FILE;
    pub use crate::schema::keys::{
        decode_referrer, encode_referrer, referrer, referrer_range, SOURCE_SUBJECT,
    };
}

pub use oci::{build, hasher, manifest, names};

pub use blob::{BlobBackend, BlobReader, LocalFiles, MemoryBlobs, VerifiedReader};
pub use clock::{Clock, ManualClock, SystemClock};
pub use digest::{Algorithm, Digest, DigestError, DigestPrefix, DigestText};
pub use error::{Error, ErrorKind, Result};
pub use gc::retention::{RetentionOptions, RetentionPolicy, RetentionReport, RetentionRule};
pub use gc::{GcPolicy, GcReport, SweepPace};
pub use hasher::{Hasher, Verifier};
pub use layout::{ExportOptions, ExportReport, ImportOptions, ImportReport};
pub use maint::fsck::{FsckOptions, FsckReport, Problem};
pub use maint::migrate::{MigrateOptions, MigrateReport, MigrateStep};
pub use maint::scrub::ScrubSlice;
pub use maint::stats::{Counts, RepoStats, Stats};
pub use manifest::{Descriptor, EdgeKind, EdgeKinds, ManifestParser, ParsedManifest, Platform};
pub use names::Reference;
pub use schema::record::Placement;
#[cfg(feature = "testing")]
pub use store::WriterPause;
pub use store::{
    BlobInfo, Children, Edge, ImageIndex, Inspection, Lease, LeaseInfo, ManifestOptions,
    ManifestPut, OptionalString, Parent, PutOptions, PutResult, ReferrersPage, ReferrersQuery,
    Relation, Store, StoreOptions, UploadOptions, UploadStatus, WalkNode, MAX_WALK_DEPTH,
};
