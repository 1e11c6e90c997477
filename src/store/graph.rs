//! Graph queries: successors, predecessors, whole-image walks, inspection.
//! Every query is a range scan over fixed-width keys; none re-reads a
//! manifest body.

use std::collections::{BTreeMap, HashSet};

use redb::ReadTransaction;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::Digest;
use crate::error::Result;
use crate::index::edges::edges_of;
use crate::index::tags::tag_entries;
use crate::oci::manifest::{Descriptor, EdgeKind, EdgeKinds};
use crate::oci::names::Reference;
use crate::schema::keys::{self};
use crate::schema::record;
use crate::schema::reverse;
use crate::schema::tables::{self, BLOBS, EDGES_IN, EDGES_IN_STAGED, EDGES_OUT, REFERRERS};
use crate::store::ReferrersQuery;

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
    pub kinds: EdgeKinds,
}

/// The most manifests [`Store::tags_reaching`] visits.
pub const MAX_TAG_SEARCH: usize = 100_000;

/// How a node of an image walk hangs off its parent. Serialized as
/// `root`, the edge kind (`config`, `layer`, `manifest`, `blob`) or
/// `referrer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The node the walk started from.
    Root,
    /// A child through a forward edge of this kind.
    Child(EdgeKind),
    /// A referrer of the parent (the parent is its subject).
    Referrer,
}

impl Relation {
    /// `root`, the edge kind's name, or `referrer`.
    pub fn name(self) -> &'static str {
        match self {
            Relation::Root => "root",
            Relation::Child(kind) => kind.name(),
            Relation::Referrer => "referrer",
        }
    }
}

impl Serialize for Relation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Relation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "root" => Relation::Root,
            "referrer" => Relation::Referrer,
            other => Relation::Child(EdgeKind::deserialize(serde::de::value::StrDeserializer::<
                D::Error,
            >::new(other))?),
        })
    }
}

/// A node in an image walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkNode {
    /// How this node hangs off its parent.
    pub relation: Relation,
    /// The descriptor (from the parent's manifest, or the referrers index).
    pub descriptor: Descriptor,
    /// Whether the bytes are stored (false: a sparse child or a dangling subject).
    pub present: bool,
    /// Tags in the walked repository that point at this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// True when this node was already shown earlier in the walk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// True when the node lies [`MAX_WALK_DEPTH`] levels down: its
    /// children are not expanded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Children and referrers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// Tags (`repository:tag`) whose images reach it: on it, or on a
    /// manifest above it (at most [`INSPECT_TAGS`]).
    pub tags: Vec<String>,
}

/// The most tags [`Store::inspect`] lists.
pub const INSPECT_TAGS: usize = 100;

pub(crate) fn successors_in(txn: &ReadTransaction, d: &Digest) -> Result<Vec<Edge>> {
    let t = txn.open_table(EDGES_OUT)?;
    Ok(edges_of(&t, d)?
        .into_iter()
        .map(|(kind, _, descriptor)| Edge { kind, descriptor })
        .collect())
}

/// A manifest's own artifactType (with the image-manifest fallback to
/// `config.mediaType`). None for plain blobs.
fn own_artifact_type(txn: &ReadTransaction, d: &Digest) -> Result<Option<String>> {
    Ok(record::lookup(&txn.open_table(BLOBS)?, d)?.and_then(|r| r.artifact_type))
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
    fn node(&mut self, relation: Relation, descriptor: Descriptor) -> Result<WalkNode> {
        let d = descriptor.digest;
        let blobs = self.txn.open_table(BLOBS)?;
        let present = blobs.get(d.to_key().as_slice())?.is_some();
        drop(blobs);
        let tags = self.tags.get(&d).cloned().unwrap_or_default();
        let repeated = self.seen.contains(&d);
        if repeated || self.depth >= MAX_WALK_DEPTH {
            return Ok(WalkNode {
                relation,
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
            relation,
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
            children.push(self.node(Relation::Child(e.kind), e.descriptor)?);
        }
        let rt = self.txn.open_table(REFERRERS)?;
        let (lo, hi) = keys::referrer_range(self.repo_id, d, None);
        let mut refs = Vec::new();
        for e in rt.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = e?;
            refs.push(keys::decode_referrer(k.value(), v.value())?.1);
        }
        drop(rt);
        for r in refs {
            children.push(self.node(Relation::Referrer, r)?);
        }
        Ok(children)
    }
}

impl Store {
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
        let staged = txn.open_table(EDGES_IN_STAGED)?;
        let (lo, hi) = keys::edge_in_range(d);
        let mut out: Vec<Parent> = Vec::new();
        // The last parent's key bytes: a popular layer has thousands of
        // parents, so each key is split without decoding the child (the
        // range's own prefix) and a parent is decoded once.
        let mut last: Option<crate::digest::DigestKey> = None;
        reverse::for_each_in(&t, &staged, &lo, &hi, |k| {
            let (_, parent, kind) = keys::split_edge_in_raw(k)?;
            // Keys sort by parent then kind, so one parent's kinds are adjacent.
            match out.last_mut() {
                Some(p) if last.is_some_and(|l| l.as_slice() == parent) => p.kinds.insert(kind),
                _ => {
                    let digest = Digest::from_key(parent)?;
                    last = Some(digest.to_key());
                    out.push(Parent {
                        digest,
                        kinds: EdgeKinds::of(kind),
                    });
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Tags (`(repository, tag)`, at most `limit`) whose images reach
    /// `d`: tags on `d` itself, and on any manifest above it through
    /// config, layer, blob and index edges (not referrers: a subject is not
    /// part of its referrer's image). The walk up is iterative and stops
    /// after [`MAX_TAG_SEARCH`] manifests. What `blob rm` and `rm` check
    /// before they break a tagged image.
    pub fn tags_reaching(&self, d: &Digest, limit: usize) -> Result<Vec<(String, String)>> {
        let txn = tables::begin_read(&self.db)?;
        let names = crate::index::repos::repo_names(&txn)?;
        let tagged = txn.open_table(tables::TAGGED)?;
        let member_of = txn.open_table(tables::MEMBER_OF)?;
        let member_of_staged = txn.open_table(tables::MEMBER_OF_STAGED)?;
        let edges_in = txn.open_table(EDGES_IN)?;
        let edges_in_staged = txn.open_table(EDGES_IN_STAGED)?;
        let mut found = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut stack = vec![*d];
        while let Some(node) = stack.pop() {
            if found.len() >= limit || seen.len() >= MAX_TAG_SEARCH || !seen.insert(node) {
                continue;
            }
            // A tag points at a member of its repository: only the
            // repositories that hold the node can tag it.
            let (lo, hi) = keys::member_of_range(&node);
            reverse::for_each_in(&member_of, &member_of_staged, &lo, &hi, |k| {
                let id = keys::member_of_repo(k)?;
                let lo = keys::member(id, &node);
                let mut hi = lo.clone();
                hi.push(0xff);
                for e in tagged.range::<&[u8]>(lo.as_slice()..hi.as_slice())? {
                    let (k, _) = e?;
                    let (_, _, tag) = keys::split_tagged(k.value())?;
                    if found.len() < limit {
                        let name = names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
                        found.push((name, String::from_utf8_lossy(tag).into_owned()));
                    }
                }
                Ok(())
            })?;
            let (lo, hi) = keys::edge_in_range(&node);
            reverse::for_each_in(&edges_in, &edges_in_staged, &lo, &hi, |k| {
                let (_, parent, kind) = keys::split_edge_in_raw(k)?;
                if kind != EdgeKind::Subject {
                    stack.push(Digest::from_key(parent)?);
                }
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// Walks an image from a tag or digest: children (index → manifests →
    /// config and layers) and, transitively, referrers in the same
    /// repository. Each node is expanded once; later sightings are marked
    /// `repeated`. Missing nodes are reported, not errors.
    pub fn walk(&self, repo: &str, reference: &Reference) -> Result<WalkNode> {
        let root = self.resolve(repo, reference)?;
        let txn = self.snapshot()?;
        let repo_id = self.require_repo(&txn, repo)?;
        let tags = tag_entries(&txn, repo_id)?;
        let mut tags_by_digest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (t, d) in tags {
            tags_by_digest.entry(d).or_default().push(t);
        }
        let blobs = txn.open_table(BLOBS)?;
        let rec = record::lookup(&blobs, &root)?.ok_or_else(|| crate::store::not_found(&root))?;
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
        w.node(Relation::Root, root_desc)
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
        let tags = self
            .tags_reaching(d, INSPECT_TAGS)?
            .into_iter()
            .map(|(repo, tag)| format!("{repo}:{tag}"))
            .collect();
        Ok(Inspection {
            digest: *d,
            media_type,
            size,
            artifact_type,
            children,
            parents,
            referrers,
            repositories,
            tags,
        })
    }
}
