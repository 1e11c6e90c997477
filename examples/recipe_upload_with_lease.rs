//! Recipe: a registry's push, safe against online GC.
//!
//! A client uploads layers first and pushes the manifest that references
//! them later. Until then nothing reaches the layers, so a GC with a short
//! grace period could take them. Hold them under a lease for the push,
//! pass the lease to the manifest put, and treat `ErrorKind::Retry` as
//! "upload again". Then query the referrers API with a filter, and run a
//! GC that keeps only what tags reach.
//!
//! `cargo run --example recipe_upload_with_lease`

use std::time::Duration;

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{ErrorKind, GcPolicy, ManifestOptions, PutOptions, ReferrersQuery, Result, Store};

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ocidb-recipe-{}", std::process::id()));
    let store = Store::create(&dir)?;

    // 1. One lease per push session; it expires by itself if the client
    //    goes away.
    let lease = store.create_lease(Duration::from_secs(15 * 60))?;
    let upload = |bytes: &[u8]| {
        store.put_bytes(
            bytes,
            &PutOptions::default()
                .repository("library/app")
                .lease(lease.id),
        )
    };
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer_bytes = b"layer bytes";
    let config = upload(config_bytes)?;
    let layer = upload(layer_bytes)?;

    // 2. The manifest put names the lease too, and needs its children.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest, "size": layer.size}],
    })
    .to_string();
    let opts = ManifestOptions::default()
        .tags(vec!["v1".to_string()])
        .lease(lease.id);
    let mut attempts = 0;
    let image = loop {
        match store.put_manifest("library/app", manifest.as_bytes(), &opts) {
            Ok(p) => break p,
            // Without a lease (or once it expired), a GC could have swept a
            // layer in between: upload the children again and retry. A
            // registry answers MANIFEST_BLOB_UNKNOWN and the client does it.
            Err(e) if e.kind() == ErrorKind::Retry && attempts < 3 => {
                attempts += 1;
                upload(config_bytes)?;
                upload(layer_bytes)?;
            }
            Err(e) => return Err(e),
        }
    };
    // The tag holds the image now; the lease can go.
    store.release_lease(lease.id)?;

    // 3. A signature as a referrer, and a filtered referrers query.
    let sig = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.notary.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": store.put_bytes(b"{}", &PutOptions::default())?.digest, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size},
    })
    .to_string();
    store.put_manifest("library/app", sig.as_bytes(), &ManifestOptions::default())?;
    let page = store.referrers(
        "library/app",
        &image.digest,
        &ReferrersQuery::default()
            .artifact_type("application/vnd.cncf.notary.signature")
            .limit(100),
    )?;
    println!(
        "{} signature(s) of {}; filters applied: {:?}",
        page.index.manifests.len(),
        image.digest,
        page.filters_applied
    );

    // 4. Online GC: untagged manifests go after an hour's grace; tagged
    //    images and their referrers stay.
    let report = store.gc(&GcPolicy::default().delete_untagged(true))?;
    println!(
        "gc kept {} records and deleted {} (mark {} ms, sweep {} ms)",
        report.kept,
        report.deleted_manifests + report.deleted_blobs,
        report.mark_ms,
        report.sweep_ms
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
