//! Recipe: the referrers API with an `artifactType` filter, page by page.
//!
//! Signatures and SBOMs point at an image through their `subject`. The
//! store lists them per repository and subject from one range scan; a
//! filter reads only the matching entries, and a page ends with a cursor
//! (the `Link` header's `last` value) that only this store accepts.
//!
//! `cargo run --example referrers_with_filter`

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{ManifestOptions, PutOptions, ReferrersQuery, Result, Store};

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ocidb-referrers-{}", std::process::id()));
    let store = Store::create(&dir)?;
    let repo = "library/app";

    let empty = store.put_bytes(b"{}", &PutOptions::default().repository(repo))?;
    let config = format!(
        r#"{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}}"#,
        empty.digest
    );
    let image = store.put_manifest(
        repo,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[]}}"#
        )
        .as_bytes(),
        &ManifestOptions::default().tags(["v1"]),
    )?;

    // Five signatures and five SBOMs about the image.
    for (i, artifact_type) in (0..10).map(|i| {
        let at = if i % 2 == 0 {
            "application/vnd.dev.cosign.signature"
        } else {
            "application/spdx+json"
        };
        (i, at)
    }) {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{config},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"n":"{i}"}}}}"#,
            image.digest, image.size
        );
        store.put_manifest(repo, body.as_bytes(), &ManifestOptions::default())?;
    }

    // All SBOMs, two per page.
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.referrers(
            repo,
            &image.digest,
            &ReferrersQuery::default()
                .artifact_type("application/spdx+json")
                .limit(2)
                .cursor(cursor.as_deref()),
        )?;
        pages += 1;
        for d in &page.index.manifests {
            println!(
                "page {pages}: {} {}",
                d.digest,
                d.artifact_type.as_deref().unwrap_or("")
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    println!("filters applied: artifactType; {pages} pages");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
