//! Batch-ingest rate of synthetic image manifests, batch by batch.
//! `cargo run --release -p ocidb-bench --example ingest_rate -- DIR COUNT [durable]` (CACHE_MB sets the redb cache).
use ocidb::{ManifestOptions, Store};
use std::time::Instant;
fn fake(kind: &str, n: u64) -> ocidb::Digest {
    ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, format!("{kind}-{n}").as_bytes())
}
fn image_manifest(n: u64) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":2}}]}}"#,
        fake("config", n), 100 + n % 900, fake("base", n % 1000), fake("layer", n)).into_bytes()
}
fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: ingest_rate STORE_DIR COUNT");
    let total: u64 = std::env::args()
        .nth(2)
        .expect("usage: ingest_rate STORE_DIR COUNT")
        .parse()
        .expect("COUNT is a number");
    let durable = std::env::args().nth(3).is_some();
    let cache: usize = std::env::var("CACHE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let store = Store::open_with(
        &dir,
        ocidb::StoreOptions::default().cache_size(cache << 20),
        true,
    )
    .expect("experiment step");
    let t0 = Instant::now();
    for start in (0..total).step_by(10_000) {
        let bodies: Vec<Vec<u8>> = (start..start + 10_000).map(image_manifest).collect();
        let t = Instant::now();
        let prep = Instant::now();
        let batch: Vec<(&[u8], ManifestOptions)> = bodies
            .iter()
            .map(|b| (b.as_slice(), ManifestOptions::default().no_sync(!durable)))
            .collect();
        let _ = prep;
        store
            .put_manifests("bench/images", &batch)
            .expect("experiment step");
        let el = t.elapsed();
        let size = std::fs::metadata(format!("{dir}/ocidb.redb"))
            .expect("experiment step")
            .len();
        if start % 50_000 == 0 {
            eprintln!(
                "{start}: {:.0}/s, file {} MB",
                10_000.0 / el.as_secs_f64(),
                size >> 20
            );
        }
    }
    eprintln!("total {:.0}/s", total as f64 / t0.elapsed().as_secs_f64());
}
