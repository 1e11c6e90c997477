//! Typed builders for the manifests a registry host writes: image
//! manifests, image indexes, and artifacts that refer to a subject. Each
//! `build()` returns the canonical JSON bytes to hand to
//! [`crate::store::Store::put_manifest`], so that no host writes manifest
//! JSON by hand.
//!
//! ```
//! use ocidb::build::{ImageIndex, ImageManifest};
//! use ocidb::{Algorithm, Descriptor, Hasher, Platform};
//!
//! let config = Descriptor::new(
//!     "application/vnd.oci.image.config.v1+json",
//!     Hasher::digest_of(Algorithm::Sha256, b"{}"),
//!     2,
//! );
//! let layer = Descriptor::new(
//!     "application/vnd.oci.image.layer.v1.tar+gzip",
//!     Hasher::digest_of(Algorithm::Sha256, b"layer"),
//!     5,
//! );
//! let image = ImageManifest::new(config).layer(layer).build();
//! let index = ImageIndex::new()
//!     .manifest(image.descriptor(), Platform::new("linux", "amd64"))
//!     .build();
//! assert!(index.bytes.starts_with(b"{\"schemaVersion\":2"));
//! ```

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::{Algorithm, Digest};
use crate::oci::hasher::Hasher;
use crate::oci::manifest::{Descriptor, Platform, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};

/// The empty JSON object `{}`: the config of an artifact with no config of
/// its own, as the image spec's guidance for artifacts says.
pub const EMPTY_JSON: &[u8] = b"{}";

/// A built manifest: its bytes, digest and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The manifest's JSON, as it is to be stored.
    pub bytes: Vec<u8>,
    /// The sha256 digest of `bytes`.
    pub digest: Digest,
    /// Its media type.
    pub media_type: &'static str,
    /// Its artifact type, if it has one.
    pub artifact_type: Option<String>,
}

impl Built {
    fn new(
        media_type: &'static str,
        artifact_type: Option<String>,
        body: &impl Serialize,
    ) -> Built {
        // Serializing these types cannot fail: every field is a string,
        // a number, or a map of strings.
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        Built {
            digest: Hasher::digest_of(Algorithm::Sha256, &bytes),
            bytes,
            media_type,
            artifact_type,
        }
    }

    /// A descriptor of this manifest, to put in an index or a subject.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(self.media_type, self.digest, self.bytes.len() as u64);
        d.artifact_type.clone_from(&self.artifact_type);
        d
    }
}

/// The descriptor of [`EMPTY_JSON`] as a config (`application/vnd.oci.empty.v1+json`).
pub fn empty_config() -> Descriptor {
    Descriptor::new(
        OCI_EMPTY,
        Hasher::digest_of(Algorithm::Sha256, EMPTY_JSON),
        EMPTY_JSON.len() as u64,
    )
}

#[derive(Serialize)]
struct ManifestBody<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u8,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// An image manifest (`application/vnd.oci.image.manifest.v1+json`): a
/// config and layers; with an artifact type and a subject it is an
/// artifact that refers to another manifest (a signature, an SBOM).
#[derive(Clone, Debug)]
pub struct ImageManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
    artifact_type: Option<String>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// An image with this config and no layers yet.
    pub fn new(config: Descriptor) -> ImageManifest {
        ImageManifest {
            config,
            layers: Vec::new(),
            artifact_type: None,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// An artifact of `artifact_type` with the empty config, referring to
    /// `subject`: what `oras attach` pushes. Add its blobs with
    /// [`ImageManifest::layer`].
    pub fn artifact(artifact_type: impl Into<String>, subject: Descriptor) -> ImageManifest {
        ImageManifest::new(empty_config())
            .artifact_type(artifact_type)
            .subject(subject)
    }

    /// Appends a layer (or an artifact's blob).
    #[must_use]
    pub fn layer(mut self, layer: Descriptor) -> ImageManifest {
        self.layers.push(layer);
        self
    }

    /// Sets the artifact type.
    #[must_use]
    pub fn artifact_type(mut self, artifact_type: impl Into<String>) -> ImageManifest {
        self.artifact_type = Some(artifact_type.into());
        self
    }

    /// Sets the subject: the manifest this one refers to.
    #[must_use]
    pub fn subject(mut self, subject: Descriptor) -> ImageManifest {
        self.subject = Some(subject);
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageManifest {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The manifest's bytes and digest.
    pub fn build(&self) -> Built {
        Built::new(
            OCI_MANIFEST,
            self.artifact_type.clone(),
            &ManifestBody {
                schema_version: 2,
                media_type: OCI_MANIFEST,
                artifact_type: self.artifact_type.as_deref(),
                config: &self.config,
                layers: &self.layers,
                subject: self.subject.as_ref(),
                annotations: &self.annotations,
            },
        )
    }
}

#[derive(Serialize)]
struct IndexBody<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u8,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    manifests: &'a [Descriptor],
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// An image index (`application/vnd.oci.image.index.v1+json`): a list of
/// manifests, each usually for one platform.
#[derive(Clone, Debug, Default)]
pub struct ImageIndex {
    manifests: Vec<Descriptor>,
    artifact_type: Option<String>,
    subject: Option<Descriptor>,
    annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An empty index.
    pub fn new() -> ImageIndex {
        ImageIndex::default()
    }

    /// Appends a manifest for `platform`.
    #[must_use]
    pub fn manifest(mut self, mut manifest: Descriptor, platform: Platform) -> ImageIndex {
        manifest.platform = Some(Box::new(platform));
        self.manifests.push(manifest);
        self
    }

    /// Appends an entry as it is (no platform, or one already set).
    #[must_use]
    pub fn entry(mut self, entry: Descriptor) -> ImageIndex {
        self.manifests.push(entry);
        self
    }

    /// Sets the artifact type.
    #[must_use]
    pub fn artifact_type(mut self, artifact_type: impl Into<String>) -> ImageIndex {
        self.artifact_type = Some(artifact_type.into());
        self
    }

    /// Sets the subject: the manifest this index refers to.
    #[must_use]
    pub fn subject(mut self, subject: Descriptor) -> ImageIndex {
        self.subject = Some(subject);
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageIndex {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The index's bytes and digest.
    pub fn build(&self) -> Built {
        Built::new(
            OCI_INDEX,
            self.artifact_type.clone(),
            &IndexBody {
                schema_version: 2,
                media_type: OCI_INDEX,
                artifact_type: self.artifact_type.as_deref(),
                manifests: &self.manifests,
                subject: self.subject.as_ref(),
                annotations: &self.annotations,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{classify, ParserRegistry};

    fn blob(n: &str) -> Descriptor {
        Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            Hasher::digest_of(Algorithm::Sha256, n.as_bytes()),
            n.len() as u64,
        )
    }

    #[test]
    fn built_manifests_parse_back_to_what_was_built() {
        let parsers = ParserRegistry::default();
        let image = ImageManifest::new(blob("config"))
            .layer(blob("a"))
            .layer(blob("b"))
            .annotation("org.example", "x")
            .build();
        assert_eq!(
            image.digest,
            Hasher::digest_of(Algorithm::Sha256, &image.bytes)
        );
        let (mt, parsed) = classify(&parsers, Some(image.media_type), &image.bytes).expect("image");
        assert_eq!(mt.as_deref(), Some(OCI_MANIFEST));
        let parsed = parsed.expect("parsed");
        assert_eq!(parsed.children.len(), 3, "{:?}", parsed.children);

        let sig =
            ImageManifest::artifact("application/vnd.cncf.notary.signature", image.descriptor())
                .layer(blob("sig"))
                .build();
        let parsed = classify(&parsers, Some(sig.media_type), &sig.bytes)
            .expect("artifact")
            .1
            .expect("parsed");
        assert_eq!(parsed.subject.map(|s| s.digest), Some(image.digest));
        assert_eq!(
            parsed.artifact_type.as_deref(),
            Some("application/vnd.cncf.notary.signature")
        );

        let index = ImageIndex::new()
            .manifest(
                image.descriptor(),
                Platform::new("linux", "arm64").variant("v8"),
            )
            .build();
        let parsed = classify(&parsers, Some(index.media_type), &index.bytes)
            .expect("index")
            .1
            .expect("parsed");
        assert_eq!(parsed.children.len(), 1);
        let text = String::from_utf8_lossy(&index.bytes);
        assert!(
            text.contains(r#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#),
            "{text}"
        );
    }
}
