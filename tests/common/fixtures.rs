//! OCI image layouts built by the tests themselves, so that a fresh clone
//! (with no `../shared/corpus`) still tests import, referrers and sparse
//! layouts on the shapes that real tools write:
//! - `gen-signed`: an image signed twice, notation style (each signature an
//!   image manifest with `subject` and artifactType
//!   `application/vnd.cncf.notary.signature`), plus the `sha256-<hex>`
//!   fallback-tag index that lists both signatures;
//! - `gen-multiarch`: an image index over two platform images;
//! - `gen-sparse`: an image whose layer blob the layout does not carry.

use std::path::{Path, PathBuf};

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST, REF_NAME};
use ocidb::{Algorithm, Digest, Hasher};
use serde_json::{json, Value};

/// The artifact type of a Notary Project signature.
pub const NOTARY: &str = "application/vnd.cncf.notary.signature";

/// One layout being written.
pub struct LayoutWriter {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl LayoutWriter {
    pub fn new(dir: &Path) -> LayoutWriter {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dirs");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        LayoutWriter {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Writes a blob and returns its descriptor.
    pub fn blob(&mut self, mt: &str, bytes: &[u8]) -> Value {
        let d = Hasher::digest_of(Algorithm::Sha256, bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).expect("blob");
        json!({"mediaType": mt, "digest": d.to_string(), "size": bytes.len()})
    }

    /// A descriptor of content the layout does not carry.
    pub fn absent(mt: &str, bytes: &[u8]) -> Value {
        let d = Hasher::digest_of(Algorithm::Sha256, bytes);
        json!({"mediaType": mt, "digest": d.to_string(), "size": bytes.len()})
    }

    /// Writes a manifest document and returns its descriptor.
    pub fn manifest(&mut self, doc: &Value) -> Value {
        let mt = doc["mediaType"].as_str().expect("mediaType").to_string();
        let mut d = self.blob(&mt, doc.to_string().as_bytes());
        if let Some(at) = doc.get("artifactType") {
            d["artifactType"] = at.clone();
        }
        d
    }

    /// An image manifest over a config and layers.
    pub fn image(&mut self, name: &str, layers: usize, platform: Option<(&str, &str)>) -> Value {
        let mut cfg = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
        if let Some((os, arch)) = platform {
            cfg["os"] = json!(os);
            cfg["architecture"] = json!(arch);
        }
        let cfg = self.blob(
            "application/vnd.oci.image.config.v1+json",
            cfg.to_string().as_bytes(),
        );
        let layers: Vec<Value> = (0..layers)
            .map(|i| {
                self.blob(
                    "application/vnd.oci.image.layer.v1.tar",
                    format!("{name} layer {i}").as_bytes(),
                )
            })
            .collect();
        let mut d = self.manifest(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers,
        }));
        if let Some((os, arch)) = platform {
            d["platform"] = json!({"os": os, "architecture": arch});
        }
        d
    }

    /// A notation-style signature of `subject`.
    pub fn signature(&mut self, subject: &Value, n: usize) -> Value {
        let cfg = self.blob(NOTARY, b"{}");
        let env = self.blob(
            "application/jose+json",
            format!("signature envelope {n}").as_bytes(),
        );
        let subject = json!({"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]});
        self.manifest(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTARY,
            "config": cfg, "layers": [env], "subject": subject,
            "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": format!("[\"{n}\"]")},
        }))
    }

    /// Lists `desc` in `index.json`, tagged when `tag` is given.
    pub fn entry(&mut self, desc: &Value, tag: Option<&str>) {
        let mut e = desc.clone();
        if let Some(t) = tag {
            e["annotations"] = json!({ REF_NAME: t });
        }
        self.entries.push(e);
    }

    pub fn finish(self) -> PathBuf {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), idx.to_string()).expect("index.json");
        self.dir
    }
}

/// The fallback tag of the referrers tag schema for a digest.
pub fn fallback_tag(d: &Digest) -> String {
    d.to_string().replace(':', "-")
}

/// Writes the generated layouts under `root`; returns their paths and the
/// digest the sparse one lacks.
pub fn generated_layouts(root: &Path) -> (Vec<PathBuf>, Digest) {
    let mut out = Vec::new();

    let mut w = LayoutWriter::new(&root.join("gen-signed"));
    let img = w.image("signed", 2, None);
    let s1 = w.signature(&img, 1);
    let s2 = w.signature(&img, 2);
    let fallback =
        w.manifest(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [s1, s2]}));
    let subject = Digest::parse(img["digest"].as_str().expect("digest")).expect("parse");
    w.entry(&img, Some("v1"));
    w.entry(&fallback, Some(&fallback_tag(&subject)));
    out.push(w.finish());

    let mut w = LayoutWriter::new(&root.join("gen-multiarch"));
    let amd = w.image("amd", 1, Some(("linux", "amd64")));
    let arm = w.image("arm", 1, Some(("linux", "arm64")));
    let idx =
        w.manifest(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]}));
    w.entry(&idx, Some("latest"));
    out.push(w.finish());

    let mut w = LayoutWriter::new(&root.join("gen-sparse"));
    let cfg = w.blob(
        "application/vnd.oci.image.config.v1+json",
        b"{\"os\":\"linux\"}",
    );
    let layer = LayoutWriter::absent("application/vnd.oci.image.layer.v1.tar", b"not carried");
    let missing = Digest::parse(layer["digest"].as_str().expect("digest")).expect("parse");
    let m = w.manifest(
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}),
    );
    w.entry(&m, Some("sparse"));
    out.push(w.finish());

    (out, missing)
}
