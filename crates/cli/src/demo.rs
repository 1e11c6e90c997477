//! `ocidb demo`: load the built-in sample content and show what ocidb sees.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ocidb::{GcPolicy, ManifestOptions, PutOptions, Reference, ReferrersQuery, Result, Store};

use crate::cli::render::{self, human_size, short, Style};

/// Removes the demo's temporary store on the way out.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(store_flag: &Path) -> Result<()> {
    // The default store path means "no --store given": use a temp dir.
    let explicit = store_flag != Path::new("./ocidb-store");
    let (_guard, dir) = if explicit {
        (None, store_flag.to_path_buf())
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ocidb-demo-{}-{nanos}", std::process::id()));
        (Some(TempDir(dir.clone())), dir)
    };
    let st = Style::for_stdout();
    let started = Instant::now();
    let store = Store::create(&dir)?;
    let repo = "demo/app";
    let sample = ocidb_testkit::load(&store, repo)?;
    println!(
        "{} {} (store: {}, {} ms)\n",
        st.bold("Loaded sample content into"),
        repo,
        dir.display(),
        started.elapsed().as_millis()
    );

    println!(
        "{}",
        st.bold("1. The image, its children and its referrers (ocidb tree demo/app:v1)")
    );
    let walk = store.walk(repo, &Reference::Tag("v1".into()))?;
    print!("{}", render::tree(&walk, "demo/app:v1", st));

    println!(
        "\n{}",
        st.bold("2. The Helm chart refers to both images (ocidb tree demo/app:chart-1.0.0)")
    );
    let walk = store.walk(repo, &Reference::Tag("chart-1.0.0".into()))?;
    print!("{}", render::tree(&walk, "demo/app:chart-1.0.0", st));

    println!(
        "\n{}",
        st.bold(&format!(
            "3. Referrers API response for the index (ocidb referrers {repo}@{})",
            short(&sample.index)
        ))
    );
    let page = store.referrers(repo, &sample.index, &ReferrersQuery::default())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&page.index).unwrap_or_default()
    );
    let filtered = store.referrers(
        repo,
        &sample.index,
        &ReferrersQuery::default().artifact_type("application/spdx+json"),
    )?;
    println!(
        "with --artifact-type application/spdx+json: {} of {} (OCI-Filters-Applied: {})",
        filtered.index.manifests.len(),
        page.index.manifests.len(),
        filtered.filters_applied.join(",")
    );

    println!(
        "\n{}",
        st.bold(&format!(
            "4. Which manifests use the shared base layer {}?",
            short(&sample.shared_layer)
        ))
    );
    for p in store.predecessors(&sample.shared_layer)? {
        let info = store.stat(&p.digest)?;
        println!(
            "  {}  {}  {}",
            short(&p.digest),
            info.media_type.unwrap_or_default(),
            human_size(info.size)
        );
    }
    // A previous build that lost its tag: what gc is for.
    let stale_layer = store.put_bytes(
        &ocidb_testkit::deterministic_bytes(b"old build", 50_000),
        &PutOptions::default()
            .repository(repo.to_string())
            .media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
    )?;
    let stale = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": ocidb::manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": stale_layer.digest, "size": stale_layer.size}]
    });
    store.put_manifest(
        repo,
        stale.to_string().as_bytes(),
        &ManifestOptions::default(),
    )?;
    println!(
        "\n{}",
        st.bold(
            "5. What gc would collect (ocidb gc --dry-run --grace 0s --delete-untagged --verbose)"
        )
    );
    let report = store.gc(&GcPolicy::default()
        .dry_run(true)
        .delete_untagged(true)
        .grace(std::time::Duration::ZERO))?;
    println!("{}", render::gc_summary(&report));
    for d in &report.digests {
        let info = store.stat(d)?;
        println!(
            "  {}  {}  {}",
            short(d),
            info.media_type.unwrap_or_default(),
            human_size(info.size)
        );
    }

    println!("\n{}", st.bold("6. Store statistics (ocidb stats)"));
    print!("{}", render::stats(&store.stats()?));
    if explicit {
        println!(
            "\nThe store stays at {}; try: ocidb --store {} tree {repo}:v1",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}
