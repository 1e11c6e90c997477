//! Manifest ingest and the reference graph: edges, referrers, repositories,
//! tags, and the queries served from them.
//!
//! Every query is a range scan over fixed-width keys; no query re-reads a
//! manifest body.

use std::collections::{BTreeMap, HashSet};

use redb::{ReadTransaction, ReadableTable as _};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hasher::Hasher;
use crate::keys::{self, SOURCE_SUBJECT, SOURCE_TAG_SCHEMA};
use crate::manifest::{self, Descriptor, EdgeKind, ParsedManifest, OCI_INDEX};
use crate::names::{self, Reference};
use crate::record::{BlobRecord, Placement};
use crate::store::{BlobInfo, Store};
use crate::tables::{
    self, DKey, ARTIFACT_TYPES, BLOBS, EDGES_IN, EDGES_OUT, MEMBERS, MEMBER_OF, REFERRERS, REPOS,
    TAGS,
};
use crate::writer::Batch;

/// Membership kinds in the `members` table.
pub(crate) const MEMBER_MANIFEST: u8 = 1;
pub(crate) const MEMBER_BLOB: u8 = 2;

const NEXT_REPO: &str = "next_repo_id";
const NEXT_ARTIFACT_TYPE: &str = "next_artifact_type_id";

/// How to put one manifest.
#[derive(Clone, Debug, Default)]
pub struct ManifestOptions {
    /// The media type the caller declares (a registry's Content-Type).
    pub media_type: Option<String>,
    /// The digest the body must hash to.
    pub digest: Option<Digest>,
    /// Tags to point at the manifest, in the same commit.
    pub tags: Vec<String>,
    /// Refuse the manifest if any child is not stored (MANIFEST_BLOB_UNKNOWN).
    pub require_children: bool,
    /// Commit without fsync (see [`crate::PutOptions::no_sync`]).
    pub no_sync: bool,
    /// Hold the manifest under this lease (see [`Store::create_lease`]).
    pub lease: Option<u64>,
}

/// What a manifest put did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestPut {
    /// Digest of the body.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The media type in force (None: stored opaque).
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// False when the bytes were already stored.
    pub created: bool,
    /// The subject, when the manifest is a referrer.
    pub subject: Option<Digest>,
}

/// A manifest ready for the writer: hashed, classified and parsed.
pub(crate) struct PreparedManifest {
    pub repo: String,
    pub digest: Digest,
    pub body: Vec<u8>,
    pub media_type: Option<String>,
    pub parsed: Option<ParsedManifest>,
    pub tags: Vec<String>,
    pub require_children: bool,
    pub lease: Option<u64>,
}

/// One edge as seen from a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The kind of edge.
    pub kind: EdgeKind,
    /// The descriptor at the other end, as the manifest wrote it.
    #[serde(flatten)]
    pub descriptor: Descriptor,
}

/// A parent of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parent {
    /// The parent's digest.
    pub digest: Digest,
    /// How the parent refers to the child (subject: the parent is a referrer).
    pub kinds: Vec<EdgeKind>,
}

/// An OCI image index: the referrers API response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Always the OCI index media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The entries.
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// An index of the given entries.
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: OCI_INDEX.to_string(),
            manifests,
        }
    }
}

/// One page of a referrers listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrersPage {
    /// The response body.
    pub index: ImageIndex,
    /// Filters applied (`["artifactType"]` when filtered): the value of the
    /// `OCI-Filters-Applied` header.
    pub filters_applied: Vec<String>,
    /// Cursor for the next page (the `Link` header), if there is more.
    pub next: Option<String>,
}

/// A referrers query.
#[derive(Clone, Debug, Default)]
pub struct ReferrersQuery<'a> {
    /// Exact-match artifactType filter.
    pub artifact_type: Option<&'a str>,
    /// Resume after this cursor (from [`ReferrersPage::next`]).
    pub cursor: Option<&'a str>,
    /// Page size; None for all.
    pub limit: Option<usize>,
}

/// A node in an image walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalkNode {
    /// How this node hangs off its parent: a child edge kind, or `referrer`.
    pub relation: String,
    /// The descriptor (from the parent's manifest, or the referrers index).
    pub descriptor: Descriptor,
    /// Whether the bytes are stored (false: a sparse child or a dangling subject).
    pub present: bool,
    /// Tags in the walked repository that point at this node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// True when this node was already shown earlier in the walk.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// True when the node lies [`MAX_WALK_DEPTH`] levels down: its
    /// children are not expanded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Children and referrers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<WalkNode>,
}

/// Everything known about one digest.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The digest.
    pub digest: Digest,
    /// Media type, when known.
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Size.
    pub size: u64,
    /// Artifact type, for manifests that have one.
    #[serde(rename = "artifactType")]
    pub artifact_type: Option<String>,
    /// Forward edges.
    pub children: Vec<Edge>,
    /// Parents across all repositories (including referrers, as `subject`).
    pub parents: Vec<Parent>,
    /// Referrers (in `--repo` if given, else in every repository holding it).
    pub referrers: Vec<Descriptor>,
    /// Repositories that hold it.
    pub repositories: Vec<String>,
}

impl Store {
    /// Registers a parser for a custom manifest media type.
    pub fn register_parser(
        &self,
        media_type: &str,
        parser: std::sync::Arc<dyn manifest::ManifestParser>,
    ) {
        self.parsers.register(media_type, parser);
    }

    /// Hashes, classifies and parses a manifest on the caller's thread.
    pub(crate) fn prepare_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> Result<PreparedManifest> {
        names::validate_repository(repo)?;
        for t in &opts.tags {
            names::validate_tag(t)?;
        }
        if body.len() as u64 > manifest::MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: body.len() as u64,
                limit: manifest::MAX_MANIFEST_SIZE,
            });
        }
        let alg = opts
            .digest
            .map_or(crate::Algorithm::Sha256, |d| d.algorithm());
        let digest = Hasher::digest_of(alg, body);
        if let Some(expected) = opts.digest {
            if expected != digest {
                return Err(Error::DigestMismatch {
                    expected: Box::new(expected),
                    actual: Box::new(digest),
                });
            }
        }
        let (media_type, parsed) =
            manifest::classify(&self.parsers, opts.media_type.as_deref(), body).map_err(
                |e| match e {
                    Error::InvalidManifest { what, reason } => Error::InvalidManifest {
                        what: format!("{digest} ({what})"),
                        reason,
                    },
                    Error::MediaTypeConflict { declared, body, .. } => Error::MediaTypeConflict {
                        what: digest.to_string(),
                        declared,
                        body,
                    },
                    other => other,
                },
            )?;
        Ok(PreparedManifest {
            repo: repo.to_string(),
            digest,
            body: body.to_vec(),
            media_type,
            parsed,
            tags: opts.tags.clone(),
            require_children: opts.require_children,
            lease: opts.lease,
        })
    }

    /// Stores a manifest in a repository and indexes its graph, atomically
    /// with its bytes and tags.
    pub fn put_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> Result<ManifestPut> {
        let prepared = self.prepare_manifest(repo, body, opts)?;
        self.submit(!opts.no_sync, move |b| ingest_manifest(b, &prepared))
    }

    /// Stores many manifests in one transaction. Hashing and parsing happen
    /// here, before the writer is involved; on the first invalid manifest
    /// nothing is stored.
    pub fn put_manifests(
        &self,
        repo: &str,
        bodies: &[(&[u8], ManifestOptions)],
    ) -> Result<Vec<ManifestPut>> {
        let prepared = bodies
            .iter()
            .map(|(body, o)| self.prepare_manifest(repo, body, o))
            .collect::<Result<Vec<_>>>()?;
        let durable = bodies.iter().any(|(_, o)| !o.no_sync);
        self.submit(durable, move |b| {
            // Validate every manifest before touching any table, so that a
            // rejected batch leaves nothing behind.
            for p in &prepared {
                check_children(b, p)?;
            }
            // Applying in digest order turns most inserts (every table keyed
            // by the manifest digest) into sequential ones: far fewer pages
            // touched per transaction than in arrival order.
            let mut order: Vec<usize> = (0..prepared.len()).collect();
            order.sort_by_key(|&i| prepared[i].digest);
            let mut out: Vec<Option<ManifestPut>> = vec![None; prepared.len()];
            for i in order {
                out[i] = Some(ingest_manifest(b, &prepared[i])?);
            }
            Ok(out.into_iter().flatten().collect())
        })
    }

    /// Points `tag` in `repo` at a manifest of that repository.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        self.set_tags(repo, vec![(tag.to_string(), *digest)])
    }

    /// Points many tags in one repository, in one durable transaction. Every
    /// target must be a manifest of the repository; otherwise nothing changes.
    pub fn set_tags(&self, repo: &str, tags: Vec<(String, Digest)>) -> Result<()> {
        names::validate_repository(repo)?;
        if tags.is_empty() {
            return Ok(());
        }
        for (t, _) in &tags {
            names::validate_tag(t)?;
        }
        let repo = repo.to_string();
        self.submit(true, move |b| {
            let mut repo_id = None;
            for (t, d) in &tags {
                let Some((id, MEMBER_MANIFEST)) = member_kind(b, &repo, d)? else {
                    let hint = format!(" in repository `{repo}` (for tag `{t}`)");
                    return Err(Error::NotFound {
                        what: "manifest",
                        digest: *d,
                        hint: format!("{hint}; push it there before tagging"),
                    });
                };
                repo_id = Some(id);
            }
            if let Some(repo_id) = repo_id {
                for (t, d) in &tags {
                    set_tag(b, repo_id, t, d)?;
                }
            }
            Ok(())
        })
    }

    /// Removes a tag. The manifest stays (gc may collect it later).
    pub fn untag(&self, repo: &str, tag: &str) -> Result<Digest> {
        names::validate_repository(repo)?;
        names::validate_tag(tag)?;
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.submit(true, move |b| {
            let Some(repo_id) = lookup_repo_w(b, &repo)? else {
                return Err(Error::RepositoryNotFound {
                    repository: repo.clone(),
                    hint: String::new(),
                });
            };
            let key = keys::tag(repo_id, &tag);
            let Some(old) = b.t.tags.get(key.as_slice())?.map(|g| *g.value()) else {
                return Err(Error::TagNotFound {
                    repository: repo.clone(),
                    tag: tag.clone(),
                    hint: String::new(),
                });
            };
            let old = Digest::from_key(&old)?;
            unapply_tag_schema(b, repo_id, &tag, &old)?;
            b.t.tags.remove(key.as_slice())?;
            b.t.tagged
                .remove(keys::tagged(repo_id, &old, &tag).as_slice())?;
            Ok(old)
        })
    }

    /// Resolves a tag or digest inside a repository to a manifest digest.
    pub fn resolve(&self, repo: &str, reference: &Reference) -> Result<Digest> {
        let txn = tables::begin_read(&self.db)?;
        let repo_id = self.require_repo(&txn, repo)?;
        match reference {
            Reference::Tag(tag) => {
                let t = txn.open_table(TAGS)?;
                let got = t.get(keys::tag(repo_id, tag).as_slice())?;
                match got {
                    Some(g) => Digest::from_key(g.value()),
                    None => Err(Error::TagNotFound {
                        repository: repo.to_string(),
                        tag: tag.clone(),
                        hint: String::new(),
                    }),
                }
            }
            Reference::Digest(d) => {
                let t = txn.open_table(MEMBERS)?;
                if t.get(&keys::member(repo_id, d))?.is_some() {
                    Ok(*d)
                } else {
                    Err(Error::NotFound {
                        what: "manifest",
                        digest: *d,
                        hint: format!(" in repository `{repo}`"),
                    })
                }
            }
        }
    }

    /// A manifest's record and bytes, by tag or digest, from one repository.
    pub fn get_manifest(&self, repo: &str, reference: &Reference) -> Result<(BlobInfo, Vec<u8>)> {
        let d = self.resolve(repo, reference)?;
        let info = self.stat(&d)?;
        Ok((info, self.read(&d)?))
    }

    /// Whether a digest is a member of a repository.
    pub fn is_member(&self, repo: &str, d: &Digest) -> Result<bool> {
        Ok(self.member_as(repo, d)?.is_some())
    }

    /// How `d` belongs to `repo`: `Some(true)` as a manifest (what tags may
    /// point at, parsed or opaque), `Some(false)` as a blob.
    pub(crate) fn member_as(&self, repo: &str, d: &Digest) -> Result<Option<bool>> {
        let txn = tables::begin_read(&self.db)?;
        let Some(id) = repo_id(&txn, repo)? else {
            return Ok(None);
        };
        let t = txn.open_table(MEMBERS)?;
        Ok(t.get(&keys::member(id, d))?
            .map(|g| g.value() == MEMBER_MANIFEST))
    }

    /// Tags of a repository, sorted, after `last` (exclusive), at most `n`.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        let txn = tables::begin_read(&self.db)?;
        let repo_id = self.require_repo(&txn, repo)?;
        list_tags(&txn, repo_id, last, n)
    }

    /// Tags of a repository with their digests, sorted by tag.
    pub fn tag_map(&self, repo: &str) -> Result<Vec<(String, Digest)>> {
        let txn = tables::begin_read(&self.db)?;
        let repo_id = self.require_repo(&txn, repo)?;
        tag_entries(&txn, repo_id)
    }

    /// All repository names, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(REPOS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, _) = e?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// The OCI referrers API: manifests in `repo` whose subject is `subject`.
    ///
    /// Cost is O(results): the filter is part of the key, so a filtered
    /// query reads only matching entries.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        q: &ReferrersQuery<'_>,
    ) -> Result<ReferrersPage> {
        names::validate_repository(repo)?;
        let filters_applied = if q.artifact_type.is_some() {
            vec!["artifactType".to_string()]
        } else {
            Vec::new()
        };
        let empty = |filters_applied| ReferrersPage {
            index: ImageIndex::new(Vec::new()),
            filters_applied,
            next: None,
        };
        let txn = tables::begin_read(&self.db)?;
        // An unknown repository has no referrers: an empty list, never "not found".
        let Some(repo_id) = repo_id(&txn, repo)? else {
            return Ok(empty(filters_applied));
        };
        let at_id = match q.artifact_type {
            None => None,
            Some(at) => match artifact_type_id(&txn, at)? {
                Some(id) => Some(id),
                None => return Ok(empty(filters_applied)),
            },
        };
        let (mut lo, hi) = keys::referrer_range(repo_id, subject, at_id);
        if let Some(c) = q.cursor {
            let (cat, cd) = self.parse_cursor(c, repo_id, subject)?;
            // A filtered page continues only within its artifact type:
            // a cursor from elsewhere in the key space would widen the
            // range past the filter.
            if at_id.is_some_and(|id| id != cat) {
                return Err(bad_cursor(c, "it belongs to another artifactType filter"));
            }
            lo = keys::referrer(repo_id, subject, cat, &cd);
            // Step past the cursor entry itself.
            increment(&mut lo);
        }
        let limit = q.limit.unwrap_or(usize::MAX);
        let t = txn.open_table(REFERRERS)?;
        let mut manifests = Vec::new();
        let mut next = None;
        let mut last_key = None;
        for e in t.range::<&[u8; _]>(&lo..=&hi)? {
            let (k, v) = e?;
            if manifests.len() == limit {
                // The cursor names the last entry returned.
                if let Some(last) = &last_key {
                    next = Some(self.cursor_of(last, repo_id, subject)?);
                }
                break;
            }
            manifests.push(keys::decode_referrer(v.value())?.1);
            last_key = Some(*k.value());
        }
        Ok(ReferrersPage {
            index: ImageIndex::new(manifests),
            filters_applied,
            next,
        })
    }

    /// The referrers tag schema fallback: the index that a registry without
    /// the referrers API would hold under the tag `<alg>-<hex>`.
    pub fn referrers_tag_index(&self, repo: &str, subject: &Digest) -> Result<Vec<u8>> {
        let page = self.referrers(repo, subject, &ReferrersQuery::default())?;
        serde_json::to_vec(&page.index)
            .map_err(|e| Error::Corrupt(format!("referrers index does not serialise: {e}")))
    }

    /// Children of a node, in key order (kind, then digest).
    pub fn successors(&self, d: &Digest) -> Result<Vec<Edge>> {
        let txn = tables::begin_read(&self.db)?;
        successors_in(&txn, d)
    }

    /// Parents of a node across all repositories: the images that use a
    /// layer, the indexes that hold a manifest, the referrers of a subject.
    pub fn predecessors(&self, d: &Digest) -> Result<Vec<Parent>> {
        let txn = tables::begin_read(&self.db)?;
        let t = txn.open_table(EDGES_IN)?;
        let (lo, hi) = keys::edge_in_range(d);
        let mut out: Vec<Parent> = Vec::new();
        for e in t.range::<&[u8; _]>(&lo..=&hi)? {
            let (k, _) = e?;
            let (_, parent, kind) = keys::split_edge_in(k.value())?;
            // Keys sort by parent then kind, so one parent's kinds are adjacent.
            match out.last_mut() {
                Some(p) if p.digest == parent => p.kinds.push(kind),
                _ => out.push(Parent {
                    digest: parent,
                    kinds: vec![kind],
                }),
            }
        }
        Ok(out)
    }

    /// Walks an image from a tag or digest: children (index → manifests →
    /// config and layers) and, transitively, referrers in the same
    /// repository. Each node is expanded once; later sightings are marked
    /// `repeated`. Missing nodes are reported, not errors.
    pub fn walk(&self, repo: &str, reference: &Reference) -> Result<WalkNode> {
        let root = self.resolve(repo, reference)?;
        let txn = tables::begin_read(&self.db)?;
        let repo_id = self.require_repo(&txn, repo)?;
        let tags = tag_entries(&txn, repo_id)?;
        let mut tags_by_digest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (t, d) in tags {
            tags_by_digest.entry(d).or_default().push(t);
        }
        let blobs = txn.open_table(BLOBS)?;
        let rec = blobs
            .get(&root.to_key())?
            .map(|g| BlobRecord::decode(g.value()))
            .transpose()?
            .ok_or_else(|| crate::store::not_found(&root))?;
        let root_desc = Descriptor {
            artifact_type: own_artifact_type(&txn, &root)?,
            ..Descriptor::new(rec.media_type.clone().unwrap_or_default(), root, rec.size)
        };
        let mut w = Walker {
            txn: &txn,
            repo_id,
            tags: &tags_by_digest,
            seen: HashSet::new(),
            depth: 0,
        };
        w.node("root", root_desc)
    }

    /// Everything the index knows about one digest.
    pub fn inspect(&self, d: &Digest, repo: Option<&str>) -> Result<Inspection> {
        let rec = self.record(d)?;
        let txn = tables::begin_read(&self.db)?;
        let children = successors_in(&txn, d)?;
        drop(txn);
        let parents = self.predecessors(d)?;
        let repositories = self.repositories_of(d)?;
        if rec.is_none() && parents.is_empty() {
            return Err(crate::store::not_found(d));
        }
        let repos: Vec<String> = match repo {
            Some(r) => vec![r.to_string()],
            None => repositories.clone(),
        };
        let mut referrers = Vec::new();
        let mut seen = HashSet::new();
        for r in &repos {
            for desc in self
                .referrers(r, d, &ReferrersQuery::default())?
                .index
                .manifests
            {
                if seen.insert(desc.digest) {
                    referrers.push(desc);
                }
            }
        }
        let txn = tables::begin_read(&self.db)?;
        let artifact_type = own_artifact_type(&txn, d)?;
        let (media_type, size) = match &rec {
            Some(r) => (r.media_type.clone(), r.size),
            None => (None, 0),
        };
        Ok(Inspection {
            digest: *d,
            media_type,
            size,
            artifact_type,
            children,
            parents,
            referrers,
            repositories,
        })
    }

    /// Repositories that hold a digest, sorted by name.
    pub fn repositories_of(&self, d: &Digest) -> Result<Vec<String>> {
        let txn = tables::begin_read(&self.db)?;
        let names = repo_names(&txn)?;
        let t = txn.open_table(MEMBER_OF)?;
        let (lo, hi) = keys::member_of_range(d);
        let mut out = Vec::new();
        for e in t.range::<&[u8; _]>(&lo..=&hi)? {
            let (k, _) = e?;
            if let Some(n) = names.get(&keys::member_of_repo(k.value())) {
                out.push(n.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Members of a repository: (digest, is_manifest).
    pub fn members(&self, repo: &str) -> Result<Vec<(Digest, bool)>> {
        let txn = tables::begin_read(&self.db)?;
        let repo_id = self.require_repo(&txn, repo)?;
        let t = txn.open_table(MEMBERS)?;
        let (lo, hi) = keys::member_range(repo_id);
        let mut out = Vec::new();
        for e in t.range::<&[u8; _]>(&lo..=&hi)? {
            let (k, v) = e?;
            out.push((
                keys::member_digest(k.value())?,
                v.value() == MEMBER_MANIFEST,
            ));
        }
        Ok(out)
    }

    /// Reads a blob only if it belongs to `repo` (repository isolation for
    /// blob reads).
    pub fn get_in(&self, repo: &str, d: &Digest) -> Result<crate::store::BlobReader> {
        if !self.is_member(repo, d)? {
            return Err(Error::NotFound {
                what: "blob",
                digest: *d,
                hint: format!(" in repository `{repo}`"),
            });
        }
        self.get(d)
    }

    fn require_repo(&self, txn: &ReadTransaction, repo: &str) -> Result<u64> {
        names::validate_repository(repo)?;
        match repo_id(txn, repo)? {
            Some(id) => Ok(id),
            // Only the name asked for: listing the others would leak
            // other tenants' names through a registry front.
            None => Err(Error::RepositoryNotFound {
                repository: repo.to_string(),
                hint: String::new(),
            }),
        }
    }
}

fn increment(k: &mut [u8]) {
    for b in k.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return;
        }
    }
}

fn bad_cursor(c: &str, why: &str) -> Error {
    Error::InvalidArgument {
        value: crate::digest::truncate_for_message(c),
        expected: format!(
            "a cursor that a previous page of this same referrers query returned ({why})"
        ),
    }
}

impl Store {
    /// `<type id>.<digest>.<mac>`: the mac binds the position to the
    /// repository and subject under the store's secret key.
    fn cursor_mac(&self, repo_id: u64, subject: &Digest, at: u32, d: &Digest) -> String {
        let mut m = Vec::with_capacity(32 + 8 + 2 * crate::digest::DIGEST_KEY_LEN + 4);
        m.extend_from_slice(&self.cursor_key);
        m.extend_from_slice(&repo_id.to_le_bytes());
        m.extend_from_slice(&subject.to_key());
        m.extend_from_slice(&at.to_le_bytes());
        m.extend_from_slice(&d.to_key());
        let h = Hasher::digest_of(crate::Algorithm::Sha256, &m).hex();
        h[..24].to_string()
    }

    fn cursor_of(
        &self,
        k: &[u8; tables::REFERRER_LEN],
        repo_id: u64,
        subject: &Digest,
    ) -> Result<String> {
        let (at, d) = keys::referrer_parts(k)?;
        Ok(format!(
            "{at}.{d}.{}",
            self.cursor_mac(repo_id, subject, at, &d)
        ))
    }

    fn parse_cursor(&self, c: &str, repo_id: u64, subject: &Digest) -> Result<(u32, Digest)> {
        let mut parts = c.splitn(3, '.');
        let (Some(at), Some(d), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad_cursor(c, "it is not of the form <n>.<digest>.<mac>"));
        };
        let at: u32 = at
            .parse()
            .map_err(|_| bad_cursor(c, "its type id is not a number"))?;
        let d = Digest::parse(d).map_err(|_| bad_cursor(c, "its digest is malformed"))?;
        if mac != self.cursor_mac(repo_id, subject, at, &d) {
            return Err(bad_cursor(
                c,
                "it was not issued by this store for this repository and subject",
            ));
        }
        Ok((at, d))
    }
}

pub(crate) fn repo_id(txn: &ReadTransaction, repo: &str) -> Result<Option<u64>> {
    let t = txn.open_table(REPOS)?;
    Ok(t.get(repo)?.map(|g| g.value()))
}

pub(crate) fn repo_names(txn: &ReadTransaction) -> Result<BTreeMap<u64, String>> {
    let t = txn.open_table(REPOS)?;
    let mut out = BTreeMap::new();
    for e in t.iter()? {
        let (k, v) = e?;
        out.insert(v.value(), k.value().to_string());
    }
    Ok(out)
}

fn artifact_type_id(txn: &ReadTransaction, at: &str) -> Result<Option<u32>> {
    if at.is_empty() {
        return Ok(Some(0));
    }
    let t = txn.open_table(ARTIFACT_TYPES)?;
    Ok(t.get(at)?.map(|g| g.value()))
}

pub(crate) fn list_tags(
    txn: &ReadTransaction,
    repo_id: u64,
    last: Option<&str>,
    n: Option<usize>,
) -> Result<Vec<String>> {
    Ok(read_tags(txn, repo_id, last, n)?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

pub(crate) fn tag_entries(txn: &ReadTransaction, repo_id: u64) -> Result<Vec<(String, Digest)>> {
    read_tags(txn, repo_id, None, None)
}

/// A repository's tags in order, after `last` (exclusive), at most `n`.
fn read_tags(
    txn: &ReadTransaction,
    repo_id: u64,
    last: Option<&str>,
    n: Option<usize>,
) -> Result<Vec<(String, Digest)>> {
    let t = txn.open_table(TAGS)?;
    let lo = keys::tag(repo_id, last.unwrap_or(""));
    let hi = (repo_id + 1).to_be_bytes();
    let mut out = Vec::new();
    for e in t.range(lo.as_slice()..hi.as_slice())? {
        let (k, v) = e?;
        let tag = std::str::from_utf8(&k.value()[8..])
            .map_err(|_| Error::Corrupt("a tag key is not UTF-8".into()))?;
        if last == Some(tag) {
            continue;
        }
        if n.is_some_and(|n| out.len() >= n) {
            break;
        }
        out.push((tag.to_string(), Digest::from_key(v.value())?));
    }
    Ok(out)
}

pub(crate) fn successors_in(txn: &ReadTransaction, d: &Digest) -> Result<Vec<Edge>> {
    let t = txn.open_table(EDGES_OUT)?;
    Ok(edges_of(&t, d)?
        .into_iter()
        .map(|(kind, _, descriptor)| Edge { kind, descriptor })
        .collect())
}

/// A manifest's stored edges (empty for a blob or an unindexed manifest).
pub(crate) fn edges_of(
    t: &impl redb::ReadableTable<&'static DKey, &'static [u8]>,
    d: &Digest,
) -> Result<Vec<keys::StoredEdge>> {
    match t.get(&d.to_key())? {
        Some(g) => keys::decode_edges(g.value()),
        None => Ok(Vec::new()),
    }
}

/// A manifest's own artifactType (with the image-manifest fallback to
/// `config.mediaType`). None for plain blobs.
fn own_artifact_type(txn: &ReadTransaction, d: &Digest) -> Result<Option<String>> {
    let t = txn.open_table(BLOBS)?;
    let got = t.get(&d.to_key())?;
    Ok(got
        .map(|g| BlobRecord::decode(g.value()))
        .transpose()?
        .and_then(|r| r.artifact_type))
}

/// How deep a walk goes. Real images are a few levels deep (index,
/// manifest, layers, a chain of referrers); a chain of thousands of
/// nested indexes or referrers is data a client made up. Bounding the
/// depth bounds the walk's recursion, and that of whatever renders,
/// serialises or drops its tree, by a constant instead of by the input.
pub const MAX_WALK_DEPTH: usize = 128;

struct Walker<'a> {
    txn: &'a ReadTransaction,
    repo_id: u64,
    tags: &'a BTreeMap<Digest, Vec<String>>,
    seen: HashSet<Digest>,
    depth: usize,
}

impl Walker<'_> {
    fn node(&mut self, relation: &str, descriptor: Descriptor) -> Result<WalkNode> {
        let d = descriptor.digest;
        let blobs = self.txn.open_table(BLOBS)?;
        let present = blobs.get(&d.to_key())?.is_some();
        drop(blobs);
        let tags = self.tags.get(&d).cloned().unwrap_or_default();
        let repeated = self.seen.contains(&d);
        if repeated || self.depth >= MAX_WALK_DEPTH {
            return Ok(WalkNode {
                relation: relation.to_string(),
                descriptor,
                present,
                tags,
                repeated,
                truncated: !repeated,
                children: Vec::new(),
            });
        }
        self.seen.insert(d);
        self.depth += 1;
        let children = self.children(&d);
        self.depth -= 1;
        Ok(WalkNode {
            relation: relation.to_string(),
            descriptor,
            present,
            tags,
            repeated: false,
            truncated: false,
            children: children?,
        })
    }

    fn children(&mut self, d: &Digest) -> Result<Vec<WalkNode>> {
        let mut children = Vec::new();
        for e in successors_in(self.txn, d)? {
            if e.kind == EdgeKind::Subject {
                continue;
            }
            children.push(self.node(e.kind.name(), e.descriptor)?);
        }
        let rt = self.txn.open_table(REFERRERS)?;
        let (lo, hi) = keys::referrer_range(self.repo_id, d, None);
        let mut refs = Vec::new();
        for e in rt.range::<&[u8; _]>(&lo..=&hi)? {
            let (_, v) = e?;
            refs.push(keys::decode_referrer(v.value())?.1);
        }
        drop(rt);
        for r in refs {
            children.push(self.node("referrer", r)?);
        }
        Ok(children)
    }
}

// ---- write side -------------------------------------------------------

fn lookup_repo_w(b: &mut Batch<'_>, repo: &str) -> Result<Option<u64>> {
    Ok(b.t.repos.get(repo)?.map(|g| g.value()))
}

/// The repository's id and `d`'s membership kind there, without creating
/// the repository. None when either is absent.
pub(crate) fn member_kind(b: &mut Batch<'_>, repo: &str, d: &Digest) -> Result<Option<(u64, u8)>> {
    let Some(id) = lookup_repo_w(b, repo)? else {
        return Ok(None);
    };
    Ok(b.t
        .members
        .get(&keys::member(id, d))?
        .map(|g| (id, g.value())))
}

/// Takes the next value of a named counter in `meta` (1 first).
pub(crate) fn next_counter(b: &mut Batch<'_>, name: &str) -> Result<u64> {
    let cur =
        b.t.meta
            .get(name)?
            .map(|g| crate::record::le8(g.value()))
            .map_or(1, u64::from_le_bytes);
    b.t.meta
        .insert(name, cur.wrapping_add(1).to_le_bytes().as_slice())?;
    Ok(cur)
}

/// Removes a repository that holds no member and no tag (what a failed
/// import created). A repository with anything in it stays.
pub(crate) fn remove_repo_if_empty(b: &mut Batch<'_>, repo: &str) -> Result<()> {
    let Some(id) = lookup_repo_w(b, repo)? else {
        return Ok(());
    };
    let (lo, hi) = keys::member_range(id);
    if b.t.members.range::<&[u8; _]>(&lo..=&hi)?.next().is_some() {
        return Ok(());
    }
    let lo = id.to_be_bytes();
    let hi = id.wrapping_add(1).to_be_bytes();
    if b.t
        .tags
        .range(lo.as_slice()..hi.as_slice())?
        .next()
        .is_some()
    {
        return Ok(());
    }
    b.t.repos.remove(repo)?;
    Ok(())
}

pub(crate) fn ensure_repo(b: &mut Batch<'_>, repo: &str) -> Result<u64> {
    if let Some(id) = lookup_repo_w(b, repo)? {
        return Ok(id);
    }
    let id = next_counter(b, NEXT_REPO)?;
    b.t.repos.insert(repo, id)?;
    Ok(id)
}

fn intern_artifact_type(b: &mut Batch<'_>, at: Option<&str>) -> Result<u32> {
    let Some(at) = at.filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    if let Some(id) = b.t.artifact_types.get(at)?.map(|g| g.value()) {
        return Ok(id);
    }
    let id = next_counter(b, NEXT_ARTIFACT_TYPE)?;
    let id =
        u32::try_from(id).map_err(|_| Error::Corrupt("more than 2^32 artifact types".into()))?;
    b.t.artifact_types.insert(at, id)?;
    Ok(id)
}

fn check_children(b: &mut Batch<'_>, p: &PreparedManifest) -> Result<()> {
    if let Some(l) = p.lease {
        crate::lifecycle::check_lease(b, l)?;
    }
    if !p.require_children {
        return Ok(());
    }
    if let Some(parsed) = &p.parsed {
        for (_, child) in &parsed.children {
            if child.is_external() {
                continue;
            }
            if b.t.blobs.get(&child.digest.to_key())?.is_none() && !b.pending_install(&child.digest)
            {
                return Err(b.shared.missing(
                    &child.digest,
                    Error::MissingChild {
                        manifest: Box::new(p.digest),
                        child: Box::new(child.digest),
                        media_type: child.media_type.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn add_member(b: &mut Batch<'_>, repo_id: u64, d: &Digest, kind: u8) -> Result<()> {
    b.note_reachable(d)?;
    let mk = keys::member(repo_id, d);
    let existing = b.t.members.get(&mk)?.map(|g| g.value());
    // A manifest membership is never downgraded to a blob membership.
    if existing == Some(MEMBER_MANIFEST) || existing == Some(kind) {
        return Ok(());
    }
    b.t.members.insert(&mk, kind)?;
    b.t.member_of.insert(&keys::member_of(d, repo_id), ())?;
    Ok(())
}

/// The writer half of a manifest put. Validates first, then mutates.
pub(crate) fn ingest_manifest(b: &mut Batch<'_>, p: &PreparedManifest) -> Result<ManifestPut> {
    check_children(b, p)?;
    let key = p.digest.to_key();
    let size = p.body.len() as u64;
    let existing = crate::store::record_in(b, &p.digest)?;
    if let Some(rec) = &existing {
        if rec.manifest && rec.media_type != p.media_type {
            return Err(Error::ManifestTypeConflict {
                digest: Box::new(p.digest),
                stored: rec.media_type.clone().unwrap_or_default(),
                requested: p.media_type.clone().unwrap_or_default(),
            });
        }
    }
    let created = existing.is_none();
    let newly_indexed = p.parsed.is_some() && !existing.as_ref().is_some_and(|r| r.manifest);
    let rec = match existing {
        None => {
            b.t.inline.insert(&key, p.body.as_slice())?;
            BlobRecord {
                size,
                created_ms: b.now_ms,
                placement: Placement::Inline,
                manifest: p.parsed.is_some(),
                media_type: p.media_type.clone(),
                artifact_type: p.parsed.as_ref().and_then(|x| x.artifact_type.clone()),
            }
        }
        Some(mut rec) => {
            if newly_indexed || (rec.media_type.is_none() && p.media_type.is_some()) {
                rec.manifest |= p.parsed.is_some();
                rec.media_type = p.media_type.clone().or(rec.media_type);
                if let Some(parsed) = &p.parsed {
                    rec.artifact_type = parsed.artifact_type.clone();
                }
            }
            // A re-put counts as fresh: its grace period restarts.
            rec.created_ms = rec.created_ms.max(b.now_ms);
            rec
        }
    };
    b.t.blobs.insert(&key, rec.encode()?.as_slice())?;
    let own = p.parsed.as_ref().map(|parsed| Descriptor {
        media_type: p.media_type.clone().unwrap_or_default(),
        digest: p.digest,
        size,
        artifact_type: parsed.artifact_type.clone(),
        annotations: parsed.annotations.clone(),
        platform: None,
        urls: None,
    });
    if newly_indexed {
        if let (Some(parsed), Some(own)) = (&p.parsed, &own) {
            // One adjacency value per manifest; the subject edge carries the
            // referrer's own descriptor: it is what a referrers listing returns.
            let subject = parsed.subject.as_ref().map(|s| (s, own));
            b.t.edges_out.insert(
                &key,
                keys::encode_adjacency(&parsed.children, subject).as_slice(),
            )?;
            for (kind, child) in &parsed.children {
                b.t.edges_in
                    .insert(&keys::edge_in(&child.digest, &p.digest, *kind), ())?;
            }
            if let Some(s) = &parsed.subject {
                b.t.edges_in
                    .insert(&keys::edge_in(&s.digest, &p.digest, EdgeKind::Subject), ())?;
            }
        }
    }
    let repo_id = ensure_repo(b, &p.repo)?;
    add_member(b, repo_id, &p.digest, MEMBER_MANIFEST)?;
    if let Some(parsed) = &p.parsed {
        for (kind, child) in &parsed.children {
            if *kind != EdgeKind::Manifest && b.t.blobs.get(&child.digest.to_key())?.is_some() {
                add_member(b, repo_id, &child.digest, MEMBER_BLOB)?;
            }
        }
    }
    crate::faults::ingest_checkpoint(b.shared.faults.as_deref())?;
    let subject = p.parsed.as_ref().and_then(|x| x.subject.as_ref());
    if let (Some(subject), Some(own)) = (subject, &own) {
        add_referrer(b, repo_id, &subject.digest, own, SOURCE_SUBJECT)?;
    }
    for t in &p.tags {
        set_tag(b, repo_id, t, &p.digest)?;
    }
    if let Some(l) = p.lease {
        crate::lifecycle::add_to_lease(b, l, &p.digest)?;
    }
    Ok(ManifestPut {
        digest: p.digest,
        size,
        media_type: p.media_type.clone(),
        created,
        subject: subject.map(|s| s.digest),
    })
}

fn add_referrer(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    desc: &Descriptor,
    source: u8,
) -> Result<()> {
    let at = intern_artifact_type(b, desc.artifact_type.as_deref())?;
    let k = keys::referrer(repo_id, subject, at, &desc.digest);
    let (sources, stored) = match b.t.referrers.get(&k)? {
        Some(g) => keys::decode_referrer(g.value())?,
        None => (0, desc.clone()),
    };
    // A subject-field entry describes the manifest itself; prefer it over the
    // copy in a tag-schema index.
    let value = if source == SOURCE_SUBJECT {
        desc
    } else {
        &stored
    };
    b.t.referrers.insert(
        &k,
        keys::encode_referrer(sources | source, value).as_slice(),
    )?;
    Ok(())
}

fn remove_referrer_source(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    desc: &Descriptor,
    source: u8,
) -> Result<()> {
    let at = match desc.artifact_type.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(at) => match b.t.artifact_types.get(at)?.map(|g| g.value()) {
            Some(id) => id,
            None => return Ok(()),
        },
    };
    let k = keys::referrer(repo_id, subject, at, &desc.digest);
    let Some((sources, stored)) =
        b.t.referrers
            .get(&k)?
            .map(|g| keys::decode_referrer(g.value()))
            .transpose()?
    else {
        return Ok(());
    };
    drop_source(b, &k, sources, &stored, source)
}

/// Takes `source` off a referrer entry; the entry goes with its last source.
fn drop_source(
    b: &mut Batch<'_>,
    k: &[u8; tables::REFERRER_LEN],
    sources: u8,
    stored: &Descriptor,
    source: u8,
) -> Result<()> {
    let left = sources & !source;
    if left == 0 {
        b.t.referrers.remove(k)?;
    } else {
        b.t.referrers
            .insert(k, keys::encode_referrer(left, stored).as_slice())?;
    }
    Ok(())
}

/// Index entries of a manifest (its `manifests`), read from its edges.
fn index_entries(b: &mut Batch<'_>, d: &Digest) -> Result<Vec<Descriptor>> {
    Ok(edges_of(&b.t.edges_out, d)?
        .into_iter()
        .filter(|(kind, _, _)| *kind == EdgeKind::Manifest)
        .map(|(_, _, desc)| desc)
        .collect())
}

fn is_index(b: &mut Batch<'_>, d: &Digest) -> Result<bool> {
    Ok(crate::store::record_in(b, d)?.is_some_and(|r| {
        r.manifest && r.media_type.as_deref().is_some_and(manifest::is_index_type)
    }))
}

pub(crate) fn set_tag(b: &mut Batch<'_>, repo_id: u64, tag: &str, d: &Digest) -> Result<()> {
    b.note_reachable(d)?;
    let key = keys::tag(repo_id, tag);
    let old = b.t.tags.get(key.as_slice())?.map(|g| *g.value());
    if let Some(old) = old {
        let old = Digest::from_key(&old)?;
        if old == *d {
            return Ok(());
        }
        unapply_tag_schema(b, repo_id, tag, &old)?;
        b.t.tagged
            .remove(keys::tagged(repo_id, &old, tag).as_slice())?;
    }
    b.t.tags.insert(key.as_slice(), &d.to_key())?;
    b.t.tagged
        .insert(keys::tagged(repo_id, d, tag).as_slice(), ())?;
    if let Some(subject) = names::referrers_tag_subject(tag) {
        if is_index(b, d)? {
            for entry in index_entries(b, d)? {
                if let Some(desc) = schema_entry(b, repo_id, &subject, &entry)? {
                    add_referrer(b, repo_id, &subject, &desc, SOURCE_TAG_SCHEMA)?;
                }
            }
        }
    }
    Ok(())
}

/// What a fallback-tag index entry lists, as the referrers API returns
/// it: only a manifest this repository holds (a sparse entry lists
/// nothing), described by the manifest itself (its own artifactType wins
/// over the index's claim, so one referrer has one entry).
fn schema_entry(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    entry: &Descriptor,
) -> Result<Option<Descriptor>> {
    let d = entry.digest;
    if b.t
        .members
        .get(&keys::member(repo_id, &d))?
        .map(|g| g.value())
        != Some(MEMBER_MANIFEST)
    {
        return Ok(None);
    }
    let own_subject = match b.t.edges_out.get(&d.to_key())? {
        Some(g) => keys::decode_subject(g.value())?,
        None => None,
    };
    if let Some((s, own)) = own_subject {
        if s == *subject {
            return Ok(Some(own));
        }
    }
    let Some(rec) = crate::store::record_in(b, &d)? else {
        return Ok(None);
    };
    Ok(Some(Descriptor {
        media_type: rec.media_type.unwrap_or_else(|| entry.media_type.clone()),
        digest: d,
        size: rec.size,
        artifact_type: rec.artifact_type,
        annotations: entry.annotations.clone(),
        platform: None,
        urls: None,
    }))
}

fn unapply_tag_schema(b: &mut Batch<'_>, repo_id: u64, tag: &str, old: &Digest) -> Result<()> {
    let Some(subject) = names::referrers_tag_subject(tag) else {
        return Ok(());
    };
    if is_index(b, old)? {
        for entry in index_entries(b, old)? {
            remove_referrer_any(b, repo_id, &subject, &entry.digest, SOURCE_TAG_SCHEMA)?;
        }
    }
    Ok(())
}

/// Takes `source` off every entry of `referrer` under (repo, subject),
/// whatever artifact type it is keyed by.
fn remove_referrer_any(
    b: &mut Batch<'_>,
    repo_id: u64,
    subject: &Digest,
    referrer: &Digest,
    source: u8,
) -> Result<()> {
    let (lo, hi) = keys::referrer_range(repo_id, subject, None);
    let mut hits = Vec::new();
    for e in b.t.referrers.range::<&[u8; _]>(&lo..=&hi)? {
        let (k, v) = e?;
        if keys::referrer_parts(k.value())?.1 == *referrer {
            hits.push((*k.value(), keys::decode_referrer(v.value())?));
        }
    }
    for (k, (sources, stored)) in hits {
        drop_source(b, &k, sources, &stored, source)?;
    }
    Ok(())
}

/// Subjects whose fallback-tag index in `repo_id` lists `d`.
fn schema_subjects_listing(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<Vec<Digest>> {
    let (lo, hi) = keys::edge_in_range(d);
    let mut parents = Vec::new();
    for e in b.t.edges_in.range::<&[u8; _]>(&lo..=&hi)? {
        let (k, _) = e?;
        let (_, parent, kind) = keys::split_edge_in(k.value())?;
        if kind == EdgeKind::Manifest {
            parents.push(parent);
        }
    }
    let mut out = Vec::new();
    for p in parents {
        out.extend(
            tags_of(b, repo_id, &p)?
                .iter()
                .filter_map(|t| names::referrers_tag_subject(t)),
        );
    }
    Ok(out)
}

/// The tags of `repo_id` that point at `d`, from the reverse index.
fn tags_of(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<Vec<String>> {
    let prefix = keys::member(repo_id, d);
    let mut out = Vec::new();
    for e in b.t.tagged.range(prefix.as_slice()..)? {
        let (k, _) = e?;
        let k = k.value();
        if !k.starts_with(&prefix) {
            break;
        }
        out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
    }
    Ok(out)
}

/// Removes a manifest's edges and referrer entries (in every repository).
pub(crate) fn unindex_manifest(b: &mut Batch<'_>, d: &Digest) -> Result<()> {
    let Some(value) = b.t.edges_out.get(&d.to_key())?.map(|g| g.value().to_vec()) else {
        return Ok(());
    };
    let repos = repos_holding(b, d)?;
    b.t.edges_out.remove(&d.to_key())?;
    for (kind, child, _) in keys::decode_edges(&value)? {
        b.t.edges_in.remove(&keys::edge_in(&child, d, kind))?;
    }
    if let Some((subject, own)) = keys::decode_subject(&value)? {
        for &r in &repos {
            remove_referrer_source(b, r, &subject, &own, SOURCE_SUBJECT)?;
        }
    }
    Ok(())
}

fn repos_holding(b: &mut Batch<'_>, d: &Digest) -> Result<Vec<u64>> {
    let (lo, hi) = keys::member_of_range(d);
    let mut out = Vec::new();
    for e in b.t.member_of.range::<&[u8; _]>(&lo..=&hi)? {
        let (k, _) = e?;
        out.push(keys::member_of_repo(k.value()));
    }
    Ok(out)
}

/// Removes `d` from one repository: membership, its tags there, and (for a
/// referrer) its referrer entry there.
pub(crate) fn remove_member(b: &mut Batch<'_>, repo_id: u64, d: &Digest) -> Result<()> {
    b.t.members.remove(&keys::member(repo_id, d))?;
    b.t.member_of.remove(&keys::member_of(d, repo_id))?;
    for tag in tags_of(b, repo_id, d)? {
        unapply_tag_schema(b, repo_id, &tag, d)?;
        b.t.tags.remove(keys::tag(repo_id, &tag).as_slice())?;
        b.t.tagged
            .remove(keys::tagged(repo_id, d, &tag).as_slice())?;
    }
    let subject = match b.t.edges_out.get(&d.to_key())? {
        Some(g) => keys::decode_subject(g.value())?,
        None => None,
    };
    if let Some((s, own)) = subject {
        remove_referrer_source(b, repo_id, &s, &own, SOURCE_SUBJECT)?;
    }
    // Entries that fallback-tag indexes of this repository made for d.
    for s in schema_subjects_listing(b, repo_id, d)? {
        remove_referrer_any(b, repo_id, &s, d, SOURCE_TAG_SCHEMA)?;
    }
    Ok(())
}

/// Deletes a blob outright: its index entries, memberships, tags, record and
/// bytes (the file after the commit).
pub(crate) fn remove_blob_in(b: &mut Batch<'_>, d: &Digest, rec: &BlobRecord) -> Result<()> {
    for r in repos_holding(b, d)? {
        remove_member(b, r, d)?;
    }
    if rec.manifest {
        unindex_manifest(b, d)?;
    }
    let key: DKey = d.to_key();
    b.t.blobs.remove(&key)?;
    match rec.placement {
        Placement::Inline => {
            b.t.inline.remove(&key)?;
        }
        Placement::File => b.remove_file(*d),
    }
    Ok(())
}
