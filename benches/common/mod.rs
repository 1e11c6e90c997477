//! Shared set-up for the criterion benches: synthetic content and stores
//! that are built once and kept under target/ so that repeated runs do not
//! pay for a 1M-entry ingest each time.

#![allow(dead_code)]

use std::path::PathBuf;

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{Algorithm, Digest, Hasher};

/// Bumped whenever the on-disk format or the fixture content changes, so
/// stale prebuilt stores are not reused (f3: batch-ingest runs of earlier
/// versions added parents to the base layer the predecessors bench checks).
const FIXTURE_FORMAT: &str = "f3";

/// Where prebuilt bench stores live (`target/ocidb-bench/<name>-<format>`).
pub fn bench_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target
        .join("ocidb-bench")
        .join(format!("{name}-{FIXTURE_FORMAT}"))
}

/// A marker file written after a store is completely built.
pub fn is_built(dir: &std::path::Path) -> bool {
    dir.join("BUILT").is_file()
}

pub fn mark_built(dir: &std::path::Path) {
    std::fs::write(dir.join("BUILT"), b"ok").expect("marker");
}

pub fn fake_digest(kind: &str, n: u64) -> Digest {
    Hasher::digest_of(Algorithm::Sha256, format!("{kind}-{n}").as_bytes())
}

/// A small image manifest (about 500 bytes): a config, one of `bases`
/// shared base layers, and an own layer. Children are not stored (sparse):
/// the benches ingest them with `Children::AllowMissing`.
pub fn image_manifest(n: u64, bases: u64) -> Vec<u8> {
    let base = n % bases.max(1);
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        fake_digest("config", n),
        100 + n % 900,
        fake_digest("base", base),
        30_000_000 + base,
        fake_digest("layer", n),
        1000 + n % 100_000,
    )
    .into_bytes()
}

/// A referrer manifest with the given subject and artifact type.
pub fn referrer_manifest(
    subject: &Digest,
    subject_size: u64,
    artifact_type: &str,
    n: u64,
) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{subject_size}}},"annotations":{{"n":"{n}"}}}}"#,
        fake_digest("payload", n),
        100 + n % 1000,
    )
    .into_bytes()
}

/// Short warm-up and measurement: the machine is small and shared.
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
}
