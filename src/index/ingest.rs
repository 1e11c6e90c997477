//! The writer half of a manifest put: validate, then record the blob, its
//! edges, membership, referrer entry and tags in one job.

use redb::ReadableTable as _;
use serde::Serialize;

use super::blobs::record_in;
use super::events;
use super::history::TagChange;
use super::leases::{add_to_lease, check_lease};
use super::referrers::{put_referrer, referrer_key};
use super::repos::{add_member, ensure_repo, lookup_repo_w, member_kind_in};
use super::tags::set_tag;
use crate::digest::Digest;
use crate::engine::Batch;
use crate::error::{Error, Result};
use crate::oci::manifest::{Descriptor, EdgeKind, ParsedManifest};
use crate::schema::keys::{self, MEMBER_MANIFEST, SOURCE_SUBJECT};
use crate::schema::record::{BlobRecord, EventKind, Placement, TagCause};
use crate::schema::reverse::Set;

/// A manifest ready for the writer: hashed, classified and parsed.
pub(crate) struct PreparedManifest {
    pub repo: String,
    pub digest: Digest,
    /// The body's length.
    pub size: u64,
    /// The body as the `bodies` table stores it (`schema::body`), packed
    /// by the caller's thread, not the writer's.
    pub packed: Vec<u8>,
    pub media_type: Option<String>,
    pub parsed: Option<ParsedManifest>,
    pub tags: Vec<String>,
    pub children: Children,
    pub lease: Option<u64>,
    /// Who pushes, for the tag history.
    pub user: Option<String>,
}

/// What a manifest's children must be for a put to be accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Children {
    /// Every blob child (config, layer, artifact blob) that is not
    /// external (a descriptor with `urls`, or a non-distributable layer) is
    /// a member of the repository the manifest is put in: its bytes were
    /// pushed there, or it was mounted from a repository that holds it.
    /// An index's entries may be absent (a sparse index, which the
    /// distribution spec allows), unless a GC just swept one. Otherwise
    /// the put fails with [`Error::ChildUnknown`] (a registry's
    /// `MANIFEST_BLOB_UNKNOWN`), or [`Error::Swept`] when a concurrent GC
    /// just removed the child. The default: naming a digest in a manifest
    /// never reaches content the repository did not receive.
    #[default]
    InRepository,
    /// Children may be absent, or stored outside the repository (a sparse
    /// OCI layout import, a test building a partial graph). Such children
    /// stay outside the repository: nothing becomes a member by name. For
    /// trusted input only; a registry keeps the default.
    AllowMissing,
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
    /// Tags this put moved away from another manifest, each with the
    /// digest it pointed at before (recorded in the tag's history, so the
    /// move can be undone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<(String, Digest)>,
}

/// Checks the lease and, under [`Children::InRepository`], that every
/// non-external child is a member of the manifest's repository.
pub(crate) fn check_children(b: &mut Batch<'_>, p: &PreparedManifest) -> Result<()> {
    if let Some(l) = p.lease {
        check_lease(b, l)?;
    }
    if p.children != Children::InRepository {
        return Ok(());
    }
    let Some(parsed) = &p.parsed else {
        return Ok(());
    };
    let repo_id = lookup_repo_w(b, &p.repo)?;
    for (kind, child) in &parsed.children {
        if child.is_external() {
            continue;
        }
        let d = &child.digest;
        if let Some(id) = repo_id
            && member_kind_in(b, id, d)?.is_some()
        {
            continue;
        }
        // Not in the repository. A GC sweep removes a blob's memberships
        // with its record: a child it swept since the client pushed it is
        // a race, answered with a retry, not "unknown".
        let stored = b.t.blobs.get(d.to_key().as_slice())?.is_some() || b.pending_install(d);
        if !stored && b.shared.recently_swept(d)? {
            return Err(Error::Swept {
                digest: Box::new(*d),
            });
        }
        // A sparse index (entries the repository lacks) is legal: the
        // distribution spec allows it, and its conformance suite pushes
        // one. Nothing is linked by it.
        if *kind == EdgeKind::Manifest {
            continue;
        }
        return Err(Error::ChildUnknown {
            manifest: Box::new(p.digest),
            child: Box::new(*d),
            media_type: child.media_type.clone(),
            repository: p.repo.clone(),
        });
    }
    Ok(())
}

/// Rows of the trees keyed by another blob's digest (`edges_in` by the
/// child, `referrers` by the subject), held back while manifests are
/// applied and then inserted in their own key order. A batch applied in
/// manifest-digest order writes the trees keyed by that digest from left to
/// right, but would jump to a random leaf of these two for every row;
/// sorted, it walks each of them once.
#[derive(Default)]
struct KeyOrdered {
    edges_in: Vec<Vec<u8>>,
    /// Subject-sourced entries: (key, the referrer's descriptor).
    referrers: Vec<(Vec<u8>, Descriptor)>,
}

impl KeyOrdered {
    /// Inserts the rows. The order of the entries of one key is kept: the
    /// same referrer put twice merges as it would have in arrival order.
    /// Holding subject entries back is safe beside a fallback tag's entries
    /// applied at once: an entry's sources are separate bits, so adding the
    /// subject's and adding or dropping the tag's commute.
    fn apply(mut self, b: &mut Batch<'_>) -> Result<()> {
        self.edges_in.sort_unstable();
        for k in &self.edges_in {
            b.t.add_key(Set::EdgesIn, k)?;
        }
        self.referrers.sort_by(|x, y| x.0.cmp(&y.0));
        for (k, desc) in &self.referrers {
            put_referrer(b, k, desc, SOURCE_SUBJECT)?;
        }
        Ok(())
    }
}

/// The writer half of a single manifest put. Validates first, then
/// mutates.
pub(crate) fn ingest_manifest(b: &mut Batch<'_>, p: &PreparedManifest) -> Result<ManifestPut> {
    let mut later = KeyOrdered::default();
    let put = apply_manifest(b, p, false, &mut later)?;
    later.apply(b)?;
    Ok(put)
}

/// The writer half of a batch put: every manifest is validated before any
/// table is touched, so that a rejected batch leaves nothing behind. The
/// answers are in `prepared`'s order.
pub(crate) fn ingest_manifests(
    b: &mut Batch<'_>,
    prepared: &[PreparedManifest],
) -> Result<Vec<ManifestPut>> {
    for p in prepared {
        check_children(b, p)?;
    }
    // Applied in digest order: every table keyed by the manifest's digest
    // is then written from left to right, and `later` does the same for
    // the others.
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    order.sort_by_key(|&i| prepared[i].digest);
    let mut out: Vec<Option<ManifestPut>> = vec![None; prepared.len()];
    let mut later = KeyOrdered::default();
    for i in order {
        out[i] = Some(apply_manifest(b, &prepared[i], true, &mut later)?);
    }
    later.apply(b)?;
    Ok(out.into_iter().flatten().collect())
}

/// Applies one manifest; `later` takes the rows of the trees keyed by other
/// digests. `children_checked`: the caller already ran [`check_children`]
/// on it in this transaction (a batch checks every manifest before it
/// applies any, and applying only adds memberships), so the lookups are not
/// repeated: at a million manifests they are random reads, most of them
/// past the page cache.
fn apply_manifest(
    b: &mut Batch<'_>,
    p: &PreparedManifest,
    children_checked: bool,
    later: &mut KeyOrdered,
) -> Result<ManifestPut> {
    let size = p.size;
    let existing = record_in(b, &p.digest)?;
    // The type conflict first: it is wrong whatever the repository holds.
    if let Some(rec) = &existing
        && rec.manifest
        && rec.media_type != p.media_type
    {
        return Err(Error::ManifestTypeConflict {
            digest: Box::new(p.digest),
            stored: rec.media_type.clone().unwrap_or_default(),
            requested: p.media_type.clone().unwrap_or_default(),
        });
    }
    if !children_checked {
        check_children(b, p)?;
    }
    let created = existing.is_none();
    let newly_indexed = p.parsed.is_some() && !existing.as_ref().is_some_and(|r| r.manifest);
    let stored_size = write_record(b, p, existing, newly_indexed)?;
    let own = p.parsed.as_ref().map(|parsed| Descriptor {
        media_type: p.media_type.clone().unwrap_or_default(),
        digest: p.digest,
        size,
        artifact_type: parsed.artifact_type.clone(),
        annotations: parsed.annotations.clone(),
        platform: None,
        urls: None,
    });
    if newly_indexed && let (Some(parsed), Some(own)) = (&p.parsed, &own) {
        index_edges(b, &p.digest, parsed, own, later)?;
    }
    let repo_id = ensure_repo(b, &p.repo)?;
    add_member(b, repo_id, &p.digest, MEMBER_MANIFEST, stored_size)?;
    let mut ev = events::event(EventKind::ManifestPushed, repo_id, Some(&p.digest));
    ev.size = size;
    ev.media_type = p.media_type.clone().unwrap_or_default();
    ev.user = p.user.clone().unwrap_or_default();
    events::emit(b, ev)?;
    // Children are not linked here: a repository gains a blob only by
    // receiving its bytes or by a mount (check_children made sure that,
    // by default, every child already is a member). A running GC still
    // hears that they are reachable now.
    if let Some(parsed) = &p.parsed {
        for (_, child) in &parsed.children {
            b.note_reachable(&child.digest)?;
        }
    }
    crate::sync_points::ingest_checkpoint(b.shared.faults.as_deref())?;
    let subject = p.parsed.as_ref().and_then(|x| x.subject.as_ref());
    if let (Some(subject), Some(own)) = (subject, own) {
        let k = referrer_key(b, repo_id, &subject.digest, &own)?;
        later.referrers.push((k, own));
    }
    let mut moved = Vec::new();
    let change = TagChange::new(TagCause::Tagged, p.user.as_deref());
    for t in &p.tags {
        if let Some(old) = set_tag(b, repo_id, t, &p.digest, change)? {
            moved.push((t.clone(), old));
        }
    }
    if let Some(l) = p.lease {
        add_to_lease(b, l, &p.digest)?;
    }
    Ok(ManifestPut {
        digest: p.digest,
        size,
        media_type: p.media_type.clone(),
        created,
        subject: subject.map(|s| s.digest),
        moved,
    })
}

/// The manifest's record, and its bytes when it is new: a re-put refreshes
/// the record (its grace period restarts) and fills in what it lacked.
/// Returns the size the record holds.
fn write_record(
    b: &mut Batch<'_>,
    p: &PreparedManifest,
    existing: Option<BlobRecord>,
    newly_indexed: bool,
) -> Result<u64> {
    let key = p.digest.to_key();
    let size = p.size;
    let rec = match existing {
        None => {
            let body = super::blobs::store_body(b, &p.packed)?;
            BlobRecord {
                size,
                created_ms: b.now_ms,
                placement: Placement::Inline,
                body,
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
    b.t.blobs.insert(key.as_slice(), rec.encode()?.as_slice())?;
    Ok(rec.size)
}

/// The manifest's edges: one adjacency value, and a reverse entry per child
/// and for the subject (into `later`). The subject edge carries the
/// referrer's own descriptor: it is what a referrers listing returns.
fn index_edges(
    b: &mut Batch<'_>,
    digest: &Digest,
    parsed: &ParsedManifest,
    own: &Descriptor,
    later: &mut KeyOrdered,
) -> Result<()> {
    let key = digest.to_key();
    let subject = parsed.subject.as_ref().map(|s| (s, own));
    b.t.edges_out.insert(
        key.as_slice(),
        keys::encode_adjacency(&parsed.children, subject)?.as_slice(),
    )?;
    for (kind, child) in &parsed.children {
        later
            .edges_in
            .push(keys::edge_in(&child.digest, digest, *kind));
    }
    if let Some(s) = &parsed.subject {
        later
            .edges_in
            .push(keys::edge_in(&s.digest, digest, EdgeKind::Subject));
    }
    Ok(())
}
