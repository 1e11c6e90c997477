//! Sample content: what `ocidb demo` loads, and what the tests, examples
//! and benchmarks use as realistic small images; and reproducible bytes
//! for blobs that must not compress to nothing.

use serde_json::json;

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST, ORAS_ARTIFACT};
use ocidb::{Digest, ManifestOptions, PutOptions, Result, Store};

/// Digests of the sample content.
#[derive(Clone, Debug)]
pub struct SampleContent {
    /// The repository it was loaded into.
    pub repo: String,
    /// The multi-arch index, tagged `v1`.
    pub index: Digest,
    /// The amd64 and arm64 image manifests.
    pub images: [Digest; 2],
    /// The layer both images share.
    pub shared_layer: Digest,
    /// A notation-style signature whose subject is the index.
    pub signature: Digest,
    /// An SPDX SBOM whose subject is the index.
    pub sbom: Digest,
    /// An in-toto attestation whose subject is the SBOM.
    pub attestation: Digest,
    /// The Helm chart artifact (ORAS artifact manifest) whose blobs include
    /// both images. Tagged `chart-1.0.0`.
    pub chart: Digest,
}

fn blob(store: &Store, repo: &str, bytes: &[u8], media_type: &str) -> Result<serde_json::Value> {
    let put = store.put_bytes(
        bytes,
        &PutOptions::default()
            .media_type(media_type)
            .repository(repo),
    )?;
    Ok(json!({"mediaType": media_type, "digest": put.digest, "size": put.size}))
}

fn manifest(
    store: &Store,
    repo: &str,
    body: &serde_json::Value,
    tags: &[&str],
) -> Result<(Digest, serde_json::Value)> {
    let bytes = body.to_string().into_bytes();
    let mt = body["mediaType"]
        .as_str()
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let put = store.put_manifest(
        repo,
        &bytes,
        &ManifestOptions::default().tags(tags.iter().copied()),
    )?;
    Ok((
        put.digest,
        json!({"mediaType": mt, "digest": put.digest, "size": put.size}),
    ))
}

/// Loads the sample content into `repo`.
pub fn load(store: &Store, repo: &str) -> Result<SampleContent> {
    let layer_mt = "application/vnd.oci.image.layer.v1.tar+gzip";
    let shared = blob(
        store,
        repo,
        &deterministic_bytes(b"base-layer", 200_000),
        layer_mt,
    )?;
    let mut images = Vec::new();
    let mut index_entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Entrypoint": ["/app"]}
        })
        .to_string();
        let cfg = blob(
            store,
            repo,
            config.as_bytes(),
            "application/vnd.oci.image.config.v1+json",
        )?;
        let app = blob(
            store,
            repo,
            &deterministic_bytes(arch.as_bytes(), 30_000),
            layer_mt,
        )?;
        let (d, mut desc) = manifest(
            store,
            repo,
            &json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": cfg, "layers": [shared.clone(), app]
            }),
            &[],
        )?;
        desc["platform"] = json!({"architecture": arch, "os": "linux"});
        images.push(d);
        index_entries.push(desc);
    }
    let (index, index_desc) = manifest(
        store,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}),
        &["v1"],
    )?;
    let empty = blob(store, repo, b"{}", "application/vnd.oci.empty.v1+json")?;
    let sig_blob = blob(
        store,
        repo,
        b"{\"payload\":\"demo-signature\"}",
        "application/jose+json",
    )?;
    let (signature, _) = manifest(
        store,
        repo,
        &json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.cncf.notary.signature",
            "config": empty.clone(), "layers": [sig_blob], "subject": index_desc.clone(),
            "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[\"demo\"]"}
        }),
        &[],
    )?;
    let sbom_blob = blob(
        store,
        repo,
        b"{\"spdxVersion\":\"SPDX-2.3\",\"name\":\"demo\"}",
        "application/spdx+json",
    )?;
    let (sbom, sbom_desc) = manifest(
        store,
        repo,
        &json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": empty.clone(), "layers": [sbom_blob], "subject": index_desc,
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
        }),
        &[],
    )?;
    let att_blob = blob(
        store,
        repo,
        b"{\"_type\":\"https://in-toto.io/Statement/v1\"}",
        "application/vnd.in-toto+json",
    )?;
    let (attestation, _) = manifest(
        store,
        repo,
        &json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.in-toto+json",
            "config": empty, "layers": [att_blob], "subject": sbom_desc
        }),
        &[],
    )?;
    let helm_cfg = blob(
        store,
        repo,
        b"{\"name\":\"demo\",\"version\":\"1.0.0\"}",
        "application/vnd.cncf.helm.config.v1+json",
    )?;
    let chart_tgz = blob(
        store,
        repo,
        &deterministic_bytes(b"chart", 4_000),
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    )?;
    let prov = blob(
        store,
        repo,
        b"-----BEGIN PGP SIGNED MESSAGE-----\ndemo\n",
        "application/vnd.cncf.helm.chart.provenance.v1.prov",
    )?;
    let img = |i: usize| json!({"mediaType": OCI_MANIFEST, "digest": images[i], "size": index_entries[i]["size"]});
    let (chart, _) = manifest(
        store,
        repo,
        &json!({
            "mediaType": ORAS_ARTIFACT,
            "artifactType": "application/vnd.cncf.helm.vFuture+json",
            "blobs": [helm_cfg, chart_tgz, prov, img(0), img(1)]
        }),
        &["chart-1.0.0"],
    )?;
    let shared_layer = Digest::parse(shared["digest"].as_str().unwrap_or_default())?;
    Ok(SampleContent {
        repo: repo.to_string(),
        index,
        images: [images[0], images[1]],
        shared_layer,
        signature,
        sbom,
        attestation,
        chart,
    })
}

/// Pseudo-random but reproducible bytes (xorshift), so that sample layers
/// have stable digests and do not compress to nothing.
pub fn deterministic_bytes(seed: &[u8], len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for &b in seed {
        x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
