//! The README's "library in ten lines", compiled by `cargo test`:
//! `tests/architecture.rs` checks that the README shows exactly the lines
//! between the markers, so the README's code cannot drift from code that
//! builds. (`cargo run --example ten_lines` writes to /var/lib/registry.)

#[rustfmt::skip]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README begin
    use ocidb::{build::ImageManifest, Descriptor, ManifestOptions, PutOptions, ReferrersQuery, Store};

    let store = Store::create("/var/lib/registry/ocidb")?;         // Send + Sync: share it in an Arc
    let put = |b: &[u8], mt: &str| store.put_bytes(b, &PutOptions::default().media_type(mt).repository("library/app"));
    let config = put(b"{}", "application/vnd.oci.image.config.v1+json")?;   // verified bytes, into the repository
    let layer = put(b"layer bytes", "application/vnd.oci.image.layer.v1.tar")?;
    let image = ImageManifest::new(Descriptor::new("application/vnd.oci.image.config.v1+json", config.digest, config.size))
        .layer(Descriptor::new("application/vnd.oci.image.layer.v1.tar", layer.digest, layer.size)).build();
    store.put_manifest("library/app", &image.bytes, &ManifestOptions::default().tags(["v1"]))?;
    let sboms = store.referrers("library/app", &image.digest, &ReferrersQuery::default().artifact_type("application/spdx+json"))?;
    let users_of_layer = store.predecessors(&layer.digest)?;       // across repositories
    let report = store.gc(&ocidb::GcPolicy::default())?;          // online: writers keep going
    // README end
    let _ = (sboms, users_of_layer, report);
    Ok(())
}
