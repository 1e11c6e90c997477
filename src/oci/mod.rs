//! OCI values above the digest: hashing, names and media types, and
//! manifest parsing. No storage here.

pub mod build;
pub mod hasher;
mod json_keys;
pub mod manifest;
pub mod names;
