//! Which media types are manifests, and what their edges are.
//!
//! `successors` is the whole "which types do we parse" decision, in one
//! place, as in oras-go's `content.Successors`. Anything it does not know is
//! stored opaque: never an error, never parsed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::json_keys::check_keys;
pub use crate::oci::json_keys::MAX_JSON_DEPTH;

/// Manifests larger than this are refused (the distribution-spec asks
/// registries to accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.docker.distribution.manifest.v2+json`
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.oci.artifact.manifest.v1+json` (OCI 1.1 release candidates)
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// `application/vnd.cncf.oras.artifact.manifest.v1+json`
pub const ORAS_ARTIFACT: &str = "application/vnd.cncf.oras.artifact.manifest.v1+json";
/// The empty descriptor's media type.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The annotation that names a tag in an OCI image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const BUILTIN: [&str; 6] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    OCI_ARTIFACT,
    ORAS_ARTIFACT,
];

/// Whether a media type is one of the built-in manifest types.
pub fn is_builtin_manifest_type(media_type: &str) -> bool {
    BUILTIN.contains(&media_type)
}

/// Whether a media type is an index (its `manifests` are children).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// An OCI content descriptor. Unknown fields (such as a non-standard
/// `comment`) are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    #[serde(deserialize_with = "size_field")]
    pub size: u64,
    /// The artifact type, for manifests that carry one.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform of an index entry. Boxed: most descriptors have none, and
    /// a descriptor is in every frame of a graph walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Box<Platform>>,
    /// Where else the content may be fetched from (non-distributable
    /// layers carry these instead of being pushed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Whether a registry may lack the bytes: a non-distributable
    /// ("foreign") layer, or content the descriptor says lives at `urls`.
    /// Registries accept manifests without these blobs, and so does
    /// [`crate::store::Children::InRepository`].
    pub fn is_external(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
            || self.media_type.contains(".nondistributable.")
            || self.media_type.contains(".foreign.")
    }
}

/// The platform of an index entry: what an image runs on.
///
/// `os` and `architecture` are required by the image spec; a manifest that
/// leaves them out is still accepted (as registries do) and reads them as
/// empty. Fields the spec does not define are kept in `other`, so that a
/// descriptor reads back as it was pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture (`amd64`, `arm64`, …).
    #[serde(default)]
    pub architecture: String,
    /// The operating system (`linux`, `windows`, …).
    #[serde(default)]
    pub os: String,
    /// The operating system's version (`os.version`).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required operating-system features (`os.features`).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// The CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Reserved by the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// Fields the spec does not define, as they came.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Platform {
    /// `os`/`architecture`, the two fields every platform has.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            ..Platform::default()
        }
    }

    /// Sets the CPU variant.
    #[must_use]
    pub fn variant(mut self, variant: impl Into<String>) -> Platform {
        self.variant = Some(variant.into());
        self
    }
}

impl std::fmt::Display for Platform {
    /// `os/architecture[/variant]`, as `docker` and `crane` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Sizes are int64 in the spec: a whole number from 0 to 2^63-1.
fn size_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    match n.as_u64() {
        Some(v) if v <= i64::MAX as u64 => Ok(v),
        _ => Err(serde::de::Error::custom(format!(
            "descriptor size `{n}` is invalid: expected a whole number of bytes from 0 to {}",
            i64::MAX
        ))),
    }
}

impl Descriptor {
    /// A descriptor with just the three required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }
}

/// The kind of an edge in the reference graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// An image's config blob.
    Config,
    /// An image layer.
    Layer,
    /// A child manifest (index entry, or any descriptor with a manifest media type).
    Manifest,
    /// An artifact's blob.
    Blob,
    /// From a referrer to its subject.
    Subject,
}

/// A set of edge kinds (how one parent refers to one child: an index may
/// list the same manifest as a child and be its referrer). Iterates, prints
/// and serializes as a list in code order. A set, not a `Vec`, so that
/// listing thousands of parents allocates nothing per parent.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EdgeKinds(u8);

impl EdgeKinds {
    /// The set holding `kind`.
    pub fn of(kind: EdgeKind) -> EdgeKinds {
        EdgeKinds(1 << kind.code())
    }

    /// Adds `kind`.
    pub fn insert(&mut self, kind: EdgeKind) {
        self.0 |= 1 << kind.code();
    }

    /// Whether `kind` is in the set.
    pub fn contains(&self, kind: EdgeKind) -> bool {
        self.0 & (1 << kind.code()) != 0
    }

    /// How many kinds.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The kinds, in code order (config, layer, manifest, blob, subject).
    pub fn iter(&self) -> impl Iterator<Item = EdgeKind> + '_ {
        (1..=5)
            .filter(|c| self.0 & (1 << c) != 0)
            .filter_map(EdgeKind::from_code)
    }
}

impl std::fmt::Debug for EdgeKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for EdgeKinds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl EdgeKind {
    pub(crate) const fn code(self) -> u8 {
        match self {
            EdgeKind::Config => 1,
            EdgeKind::Layer => 2,
            EdgeKind::Manifest => 3,
            EdgeKind::Blob => 4,
            EdgeKind::Subject => 5,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<EdgeKind> {
        Some(match c {
            1 => EdgeKind::Config,
            2 => EdgeKind::Layer,
            3 => EdgeKind::Manifest,
            4 => EdgeKind::Blob,
            5 => EdgeKind::Subject,
            _ => return None,
        })
    }

    /// A word for people.
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Config => "config",
            EdgeKind::Layer => "layer",
            EdgeKind::Manifest => "manifest",
            EdgeKind::Blob => "blob",
            EdgeKind::Subject => "subject",
        }
    }
}

/// What a manifest says about the graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedManifest {
    /// Forward edges, de-duplicated by (kind, digest), in document order.
    pub children: Vec<(EdgeKind, Descriptor)>,
    /// The subject, for referrers.
    pub subject: Option<Descriptor>,
    /// artifactType, falling back to `config.mediaType` for image manifests.
    pub artifact_type: Option<String>,
    /// The manifest's own annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parser for a user-defined manifest type.
pub trait ManifestParser: Send + Sync {
    /// Parses the body into edges. Errors reject the manifest.
    fn parse(&self, body: &[u8]) -> Result<ParsedManifest>;
}

/// User-registered manifest parsers, by media type.
#[derive(Default)]
pub struct ParserRegistry {
    custom: RwLock<HashMap<String, Arc<dyn ManifestParser>>>,
}

impl ParserRegistry {
    /// Registers (or replaces) the parser for `media_type`.
    pub fn register(&self, media_type: &str, parser: Arc<dyn ManifestParser>) {
        if let Ok(mut m) = self.custom.write() {
            m.insert(media_type.to_string(), parser);
        }
    }

    fn get(&self, media_type: &str) -> Option<Arc<dyn ManifestParser>> {
        self.custom.read().ok()?.get(media_type).cloned()
    }

    /// Whether a media type is a manifest type, built-in or registered.
    pub fn is_manifest_type(&self, media_type: &str) -> bool {
        is_builtin_manifest_type(media_type)
            || self
                .custom
                .read()
                .map(|m| m.contains_key(media_type))
                .unwrap_or(false)
    }
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    blobs: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Decides the media type of a manifest body and parses it.
///
/// Returns the effective media type (None when neither the caller nor the
/// body names one) and the parsed edges (None for opaque content).
pub fn classify(
    registry: &ParserRegistry,
    declared: Option<&str>,
    body: &[u8],
) -> Result<(Option<String>, Option<ParsedManifest>)> {
    if body.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            size: body.len() as u64,
            limit: MAX_MANIFEST_SIZE,
        });
    }
    let declared = declared.filter(|s| !s.is_empty());
    if let Some(mt) = declared {
        crate::oci::names::validate_media_type(mt)?;
        if let Some(p) = registry.get(mt) {
            return Ok((Some(mt.to_string()), Some(p.parse(body)?)));
        }
        if !is_builtin_manifest_type(mt) && !looks_like_json_object(body) {
            return Ok((Some(mt.to_string()), None));
        }
    }
    if declared.is_none_or(is_builtin_manifest_type)
        && let Err(reason) = check_keys(body)
    {
        return Err(Error::InvalidManifest {
            what: declared.unwrap_or("without a media type").to_string(),
            reason,
        });
    }
    let doc: Doc = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => {
            return match declared {
                Some(mt) if is_builtin_manifest_type(mt) => Err(Error::InvalidManifest {
                    what: mt.to_string(),
                    reason: format!("body is not a valid manifest: {e}"),
                }),
                Some(mt) => Ok((Some(mt.to_string()), None)),
                None => Err(Error::InvalidManifest {
                    what: "without a media type".into(),
                    reason: format!("body is not valid JSON: {e}"),
                }),
            }
        }
    };
    let body_mt = doc.media_type.clone().filter(|s| !s.is_empty());
    let effective = match (declared, body_mt.as_deref()) {
        (Some(d), Some(b)) if d != b => {
            return Err(Error::MediaTypeConflict {
                what: "manifest".into(),
                declared: d.to_string(),
                body: b.to_string(),
            })
        }
        (Some(d), _) => d.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => return Ok((None, None)),
    };
    crate::oci::names::validate_media_type(&effective)?;
    if let Some(p) = registry.get(&effective) {
        return Ok((Some(effective), Some(p.parse(body)?)));
    }
    if !is_builtin_manifest_type(&effective) {
        return Ok((Some(effective), None));
    }
    check_unambiguous(&effective, &doc)?;
    let parsed = successors(registry, &effective, doc)?;
    Ok((Some(effective), Some(parsed)))
}

pub(crate) fn looks_like_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Maps a known manifest document to its edges.
fn successors(registry: &ParserRegistry, media_type: &str, doc: Doc) -> Result<ParsedManifest> {
    let invalid = |reason: String| Error::InvalidManifest {
        what: media_type.to_string(),
        reason,
    };
    if let Some(v) = doc.schema_version
        && v != 2
    {
        return Err(invalid(format!("schemaVersion is {v}; expected 2")));
    }
    let mut out = ParsedManifest {
        annotations: doc.annotations,
        ..ParsedManifest::default()
    };
    for at in [&doc.artifact_type, &doc.media_type].into_iter().flatten() {
        if !at.is_empty() {
            crate::oci::names::validate_media_type(at)?;
        }
    }
    // Duplicate descriptors (same kind and digest) make one edge; a set
    // keeps that linear in the number of descriptors.
    let mut seen: std::collections::HashSet<(EdgeKind, Digest)> = std::collections::HashSet::new();
    let mut push = |kind: EdgeKind, d: Descriptor, out: &mut ParsedManifest| -> Result<()> {
        for mt in [Some(&d.media_type), d.artifact_type.as_ref()]
            .into_iter()
            .flatten()
        {
            if !mt.is_empty() {
                crate::oci::names::validate_media_type(mt)?;
            }
        }
        let kind = if registry.is_manifest_type(&d.media_type) {
            EdgeKind::Manifest
        } else {
            kind
        };
        if seen.insert((kind, d.digest)) {
            out.children.push((kind, d));
        }
        Ok(())
    };
    let takes_subject;
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = doc
                .config
                .ok_or_else(|| invalid("missing required field `config`".into()))?;
            out.artifact_type = doc
                .artifact_type
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| Some(config.media_type.clone()).filter(|s| !s.is_empty()));
            push(EdgeKind::Config, config, &mut out)?;
            for l in doc.layers.unwrap_or_default() {
                push(EdgeKind::Layer, l, &mut out)?;
            }
            takes_subject = media_type == OCI_MANIFEST;
        }
        OCI_INDEX | DOCKER_LIST => {
            out.artifact_type = doc.artifact_type.clone().filter(|s| !s.is_empty());
            let manifests = doc
                .manifests
                .ok_or_else(|| invalid("missing required field `manifests`".into()))?;
            for m in manifests {
                push(EdgeKind::Manifest, m, &mut out)?;
            }
            takes_subject = media_type == OCI_INDEX;
        }
        OCI_ARTIFACT | ORAS_ARTIFACT => {
            out.artifact_type = doc.artifact_type.clone().filter(|s| !s.is_empty());
            for b in doc.blobs.unwrap_or_default() {
                push(EdgeKind::Blob, b, &mut out)?;
            }
            takes_subject = true;
        }
        other => return Err(invalid(format!("no parser for `{other}`"))),
    }
    if takes_subject {
        if let Some(sub) = &doc.subject
            && !sub.media_type.is_empty()
        {
            crate::oci::names::validate_media_type(&sub.media_type)?;
        }
        out.subject = doc.subject;
    }
    Ok(out)
}

/// Refuses a document that reads as two kinds of manifest (the
/// CVE-2021-41190 class): an index with `config` or `layers`, or an
/// artifact's `blobs` beside either. Clients that pick the view from a
/// different media type than ours would see another graph.
fn check_unambiguous(media_type: &str, doc: &Doc) -> Result<()> {
    let image = doc.config.is_some() || doc.layers.is_some();
    let index = doc.manifests.is_some();
    let artifact = doc.blobs.is_some();
    let views = [
        (image, "`config`/`layers`"),
        (index, "`manifests`"),
        (artifact, "`blobs`"),
    ];
    let present: Vec<&str> = views.iter().filter(|v| v.0).map(|v| v.1).collect();
    if present.len() > 1 {
        return Err(Error::InvalidManifest {
            what: media_type.to_string(),
            reason: format!(
                "it has both {}; a manifest must be exactly one of image, index or artifact (CVE-2021-41190)",
                present.join(" and ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_kinds_list_in_code_order_as_the_vec_they_replace() {
        let mut k = EdgeKinds::of(EdgeKind::Subject);
        k.insert(EdgeKind::Manifest);
        k.insert(EdgeKind::Manifest);
        assert_eq!(k.len(), 2);
        assert!(k.contains(EdgeKind::Manifest) && !k.contains(EdgeKind::Layer));
        assert_eq!(
            k.iter().collect::<Vec<_>>(),
            vec![EdgeKind::Manifest, EdgeKind::Subject]
        );
        assert_eq!(format!("{k:?}"), "[Manifest, Subject]");
        assert_eq!(
            serde_json::to_string(&k).expect("json"),
            r#"["manifest","subject"]"#
        );
        assert!(EdgeKinds::default().is_empty());
    }
    use crate::oci::hasher::Hasher;
    use proptest::prelude::*;

    fn d(s: &str) -> Digest {
        Hasher::digest_of(crate::digest::Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn image_manifest_edges_and_artifact_type_fallback() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.cncf.notary.signature", "digest": d("c"), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d("l"), "size": 1},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d("l"), "size": 1}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 3},
            "unknown": {"ignored": true}
        });
        let reg = ParserRegistry::default();
        let (mt, p) = classify(&reg, None, body.to_string().as_bytes()).expect("parses");
        assert_eq!(mt.as_deref(), Some(OCI_MANIFEST));
        let p = p.expect("manifest");
        assert_eq!(p.children.len(), 2, "duplicate layer makes one edge");
        assert_eq!(p.children[0].0, EdgeKind::Config);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.cncf.notary.signature")
        );
        assert_eq!(p.subject.expect("subject").digest, d("s"));
    }

    #[test]
    fn manifest_typed_blobs_become_manifest_edges() {
        let body = serde_json::json!({
            "mediaType": ORAS_ARTIFACT,
            "artifactType": "application/vnd.cncf.helm.vFuture+json",
            "blobs": [
                {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": d("cfg"), "size": 1, "comment": "x"},
                {"mediaType": OCI_MANIFEST, "digest": d("img"), "size": 1, "comment": "y"}
            ]
        });
        let reg = ParserRegistry::default();
        let (_, p) = classify(&reg, Some(ORAS_ARTIFACT), body.to_string().as_bytes()).expect("ok");
        let p = p.expect("manifest");
        assert_eq!(p.children[0].0, EdgeKind::Blob);
        assert_eq!(p.children[1].0, EdgeKind::Manifest);
    }

    #[test]
    fn declared_and_body_types_must_agree() {
        let body = serde_json::json!({"mediaType": OCI_INDEX, "manifests": []}).to_string();
        let reg = ParserRegistry::default();
        let err = classify(&reg, Some(OCI_MANIFEST), body.as_bytes()).expect_err("conflict");
        assert!(matches!(err, Error::MediaTypeConflict { .. }), "{err}");
        let (mt, p) = classify(&reg, None, b"{\"schemaVersion\":2}").expect("opaque");
        assert!(mt.is_none() && p.is_none());
        let (mt, p) = classify(&reg, Some("application/x-thing"), b"\x00\x01").expect("opaque");
        assert_eq!(mt.as_deref(), Some("application/x-thing"));
        assert!(p.is_none());
    }

    #[test]
    fn deep_nesting_and_bad_sizes_are_errors_not_panics() {
        let reg = ParserRegistry::default();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(classify(&reg, Some(OCI_MANIFEST), deep.as_bytes()).is_err());
        let neg = serde_json::json!({"mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": d("x"), "size": -1}]}).to_string();
        let err = classify(&reg, None, neg.as_bytes()).expect_err("negative size");
        assert!(err.to_string().contains("-1"), "{err}");
        let huge = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        assert!(matches!(
            classify(&reg, Some(OCI_MANIFEST), &huge),
            Err(Error::ManifestTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), which in 0usize..7) {
            let reg = ParserRegistry::default();
            let declared = BUILTIN.get(which).copied();
            let _ = classify(&reg, declared, &body);
        }
    }
}
