//! Blob bytes as objects in an S3-compatible bucket (feature `s3`).
//!
//! Keys below the location's prefix:
//! - `blobs/<alg>/<hex>`: a committed blob, readable under its digest;
//! - `staging/<name>`: a staged blob (written, not yet findable);
//! - `ocidb-store`: the id of the store that owns the prefix;
//! - `uploads/<id>/session`: an upload session's marker, and
//!   `uploads/<id>/<offset, 20 digits>`: its bytes, one object per append
//!   chunk, tiling the session from offset 0.
//!
//! An object store has no rename and no transaction with redb, so a blob
//! is written under a staging key (multipart, parts in flight bounded),
//! becomes final by a server-side copy after the engine has verified its
//! digest and recorded it durably, and the staging object is deleted last.
//! The engine's intent table settles a crash anywhere in between (see
//! `docs/format.md`). Keys are content-addressed, so a copy that lands
//! twice writes the same verified bytes twice: nothing relies on
//! create-if-absent, which some stores (Garage 2.5) ignore.
//!
//! The engine is synchronous; the backend runs object_store's futures on a
//! small runtime of its own and waits on a channel, so it is safe to call
//! from any thread that is not one of that runtime's workers (plain
//! threads, and a host's `spawn_blocking` threads).
//!
//! One file per concern: `client` (options, keys, shared requests),
//! `write` (staged multipart writes), `read` (windowed reads), `uploads`
//! (upload-session chunks), `backend` (the `BlobBackend` the engine calls).

mod backend;
mod client;
mod log;
mod read;
mod uploads;
mod write;

pub use client::{S3Blobs, S3Options};
