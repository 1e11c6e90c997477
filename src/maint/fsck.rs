//! fsck: verify every invariant of a store, and optionally repair what is
//! safe to repair (orphan files). Corrupt records are reported, never
//! silently dropped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable as _};
use serde::{Deserialize, Serialize};

use crate::blob::{hash_all, Listed};
use crate::digest::Digest;
use crate::error::Result;
use crate::index::repair;
use crate::index::repos::repo_names;
use crate::oci::hasher::Hasher;
use crate::oci::manifest::EdgeKind;
use crate::schema::body;
use crate::schema::keys;
use crate::schema::keys::MEMBER_MANIFEST;
use crate::schema::record::{BlobRecord, Placement};
use crate::schema::reverse;
use crate::schema::tables::{
    self, BLOBS, BODIES, EDGES_IN, EDGES_IN_STAGED, EDGES_OUT, INTENTS, MEMBERS, MEMBER_OF,
    MEMBER_OF_STAGED, REFERRERS, TAGS,
};
use crate::store::Store;

/// What fsck does with a blob whose bytes are damaged, and what to do.
const KEPT: &str = "kept for inspection, restore it from a copy or delete it";

/// Options for [`Store::fsck`].
#[derive(Default)]
#[non_exhaustive]
pub struct FsckOptions<'a> {
    /// Remove orphan files (bytes no record points to).
    pub repair: bool,
    /// Hashing threads (0: one per core).
    pub threads: usize,
    /// Called with (blobs verified, total) as hashing progresses.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    /// Accept tagged images with children that are not stored (a store
    /// filled by sparse layout imports). Off: each is a `missing-child`
    /// problem.
    pub allow_sparse: bool,
}

impl<'a> FsckOptions<'a> {
    /// Sets [`FsckOptions::repair`].
    #[must_use]
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Sets [`FsckOptions::allow_sparse`].
    #[must_use]
    pub fn allow_sparse(mut self, allow: bool) -> Self {
        self.allow_sparse = allow;
        self
    }

    /// Sets [`FsckOptions::threads`].
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets [`FsckOptions::progress`].
    #[must_use]
    pub fn progress(mut self, progress: &'a (dyn Fn(u64, u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A short machine-readable kind, e.g. `corrupt-blob`.
    pub kind: String,
    /// The digest concerned, when there is one.
    pub digest: Option<Digest>,
    /// What is wrong, for people.
    pub detail: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// The outcome of an fsck.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FsckReport {
    /// Records checked.
    pub records: u64,
    /// Bytes re-hashed.
    pub bytes_verified: u64,
    /// Blob files found on disk.
    pub files: u64,
    /// Everything wrong, repaired or not.
    pub problems: Vec<Problem>,
}

impl FsckReport {
    /// Problems that remain (not repaired).
    pub fn remaining(&self) -> usize {
        self.problems.iter().filter(|p| !p.repaired).count()
    }

    /// True when nothing is left to fix.
    pub fn is_clean(&self) -> bool {
        self.remaining() == 0
    }
}

pub(crate) fn problem(kind: &'static str, digest: Option<Digest>, detail: String) -> Problem {
    Problem {
        kind: kind.to_string(),
        digest,
        detail,
        repaired: false,
    }
}

impl Store {
    /// Checks every invariant: bytes hash to their digests, every file is
    /// recorded, every edge and referrer entry is consistent, every tag and
    /// membership points to a record.
    pub fn fsck(&self, opts: &FsckOptions<'_>) -> Result<FsckReport> {
        let txn = tables::begin_read(&self.db)?;
        let mut report = FsckReport::default();
        let (records, stray_bodies) = self.check_records(&txn, opts, &mut report)?;
        self.forget_deleted_since(&mut report.problems)?;
        let dangling = check_graph(&txn, &records, opts.allow_sparse, &mut report)?;
        drop(txn);
        let orphans = self.check_files(&records, &mut report)?;
        let corrupt: Vec<Digest> = report
            .problems
            .iter()
            .filter(|p| p.kind == "corrupt-record")
            .filter_map(|p| p.digest)
            .collect();
        if opts.repair && !corrupt.is_empty() {
            let removed = self.remove_corrupt_records(corrupt)?;
            for p in &mut report.problems {
                // What hung off an undecodable record went with it.
                if p.digest.is_some_and(|d| removed.contains(&d)) {
                    p.repaired = true;
                }
            }
        }
        if opts.repair && !dangling.is_empty() {
            self.remove_referrer_entries(dangling)?;
            for p in &mut report.problems {
                if p.kind == "dangling-referrer" || p.kind == "duplicate-referrer" {
                    p.repaired = true;
                }
            }
        }
        // Counters after the repairs above (a corrupt record removed left
        // no size to subtract), recomputed in the writer.
        let recount = report
            .problems
            .iter()
            .any(|p| p.kind == "usage-mismatch" || (p.kind == "corrupt-record" && p.repaired));
        if opts.repair && recount {
            self.submit(true, crate::index::usage::rebuild)?;
            for p in &mut report.problems {
                if p.kind == "usage-mismatch" {
                    p.repaired = true;
                }
            }
        }
        if opts.repair && !stray_bodies.is_empty() {
            // A body id is handed out once, with its record in the same
            // commit: one that no record named in this snapshot never
            // will be, so it can go without a second look.
            self.submit(true, move |b| repair::remove_bodies(b, &stray_bodies))?;
            for p in &mut report.problems {
                if p.kind == "stray-body" {
                    p.repaired = true;
                }
            }
        }
        if opts.repair && !orphans.is_empty() {
            let removed = self.remove_orphans(orphans)?;
            for p in &mut report.problems {
                if p.kind == "orphan-file" && p.digest.is_some_and(|d| removed.contains(&d)) {
                    p.repaired = true;
                }
            }
        }
        Ok(report)
    }

    fn check_records(
        &self,
        txn: &ReadTransaction,
        opts: &FsckOptions<'_>,
        report: &mut FsckReport,
    ) -> Result<(HashMap<Digest, BlobRecord>, Vec<u64>)> {
        let blobs = txn.open_table(BLOBS)?;
        let bodies = txn.open_table(BODIES)?;
        let mut records = HashMap::new();
        for e in blobs.iter()? {
            let (k, v) = e?;
            let d = match Digest::from_key(k.value()) {
                Ok(d) => d,
                Err(e) => {
                    report
                        .problems
                        .push(problem("bad-key", None, e.to_string()));
                    continue;
                }
            };
            match BlobRecord::decode(v.value()) {
                Ok(r) => {
                    records.insert(d, r);
                }
                Err(e) => report
                    .problems
                    .push(problem("corrupt-record", Some(d), e.to_string())),
            }
        }
        // Every body is named by exactly one inline record. A body no
        // record names (its record was corrupt, or a bug) is stray; two
        // records naming one body would lose bytes when either is deleted.
        let mut named: HashMap<u64, Digest> = HashMap::new();
        let mut stray_bodies = Vec::new();
        for (d, r) in &records {
            if r.placement != Placement::Inline {
                continue;
            }
            if let Some(other) = named.insert(r.body, *d) {
                report.problems.push(problem(
                    "shared-body",
                    Some(*d),
                    format!("{d} and {other} both name body {}", r.body),
                ));
            }
        }
        for e in bodies.iter()? {
            let (k, _) = e?;
            let id = k.value();
            if !named.contains_key(&id) {
                report.problems.push(problem(
                    "stray-body",
                    None,
                    format!("body {id} is named by no inline record"),
                ));
                stray_bodies.push(id);
            }
        }
        report.records = records.len() as u64;

        // Re-hash in parallel; inline bytes are read through the same snapshot.
        let work: Vec<(&Digest, &BlobRecord)> = records.iter().collect();
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            opts.threads
        };
        let next = AtomicUsize::new(0);
        let done = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let total = work.len() as u64;
        let found = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let bodies = match txn.open_table(BODIES) {
                        Ok(t) => t,
                        Err(e) => {
                            if let Ok(mut f) = found.lock() {
                                f.push(problem("io", None, e.to_string()));
                            }
                            return;
                        }
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((d, rec)) = work.get(i) else { break };
                        if let Some(p) = self.verify_record(&bodies, d, rec) {
                            if let Ok(mut f) = found.lock() {
                                f.push(p);
                            }
                        } else {
                            bytes.fetch_add(rec.size, Ordering::Relaxed);
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(cb) = opts.progress
                            && (n.is_multiple_of(256) || n == total)
                        {
                            cb(n, total);
                        }
                    }
                });
            }
        });
        let mut found = found.into_inner().unwrap_or_default();
        found.sort_by_key(|p| p.digest);
        report.problems.extend(found);
        report.bytes_verified = bytes.load(Ordering::Relaxed);
        Ok((records, stray_bodies))
    }

    /// Drops the missing-bytes problems of records deleted since the
    /// snapshot that found them: a GC that ran meanwhile removed the bytes
    /// with the record, which is no damage.
    pub(crate) fn forget_deleted_since(&self, problems: &mut Vec<Problem>) -> Result<()> {
        if !problems
            .iter()
            .any(|p| p.kind == "missing-file" || p.kind == "missing-bytes")
        {
            return Ok(());
        }
        let txn = tables::begin_read(&self.db)?;
        let blobs = txn.open_table(BLOBS)?;
        let mut kept = Vec::with_capacity(problems.len());
        for p in problems.drain(..) {
            let gone = match (&p.digest, p.kind.as_str()) {
                (Some(d), "missing-file" | "missing-bytes") => {
                    blobs.get(d.to_key().as_slice())?.is_none()
                }
                _ => false,
            };
            if !gone {
                kept.push(p);
            }
        }
        *problems = kept;
        Ok(())
    }

    pub(crate) fn verify_record(
        &self,
        bodies: &tables::BodiesTable,
        d: &Digest,
        rec: &BlobRecord,
    ) -> Option<Problem> {
        let actual = match rec.placement {
            Placement::Inline => match bodies.get(rec.body) {
                Ok(Some(g)) => {
                    let b = match body::unpack(g.value()) {
                        Ok(b) => b,
                        Err(e) => {
                            return Some(problem("corrupt-blob", Some(*d), format!("{e}; {KEPT}")))
                        }
                    };
                    if b.len() as u64 != rec.size {
                        return Some(problem(
                            "size-mismatch",
                            Some(*d),
                            format!("recorded as {} bytes, {} stored inline", rec.size, b.len()),
                        ));
                    }
                    Hasher::digest_of(d.algorithm(), &b)
                }
                Ok(None) => {
                    return Some(problem(
                        "missing-bytes",
                        Some(*d),
                        format!(
                            "recorded inline as body {} but that body is missing",
                            rec.body
                        ),
                    ))
                }
                Err(e) => return Some(problem("io", Some(*d), e.to_string())),
            },
            Placement::File => {
                let r = match self.backend.open(d) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return Some(problem(
                            "missing-file",
                            Some(*d),
                            "recorded as a backend blob, but the backend has no bytes for it"
                                .into(),
                        ))
                    }
                    Err(e) => return Some(problem("io", Some(*d), e.to_string())),
                };
                let len = r.len().unwrap_or(u64::MAX);
                if len != rec.size {
                    return Some(problem(
                        "size-mismatch",
                        Some(*d),
                        format!("recorded as {} bytes, the backend has {len}", rec.size),
                    ));
                }
                match hash_all(&*r, d.algorithm(), len) {
                    Ok(a) => a,
                    Err(e) => return Some(problem("io", Some(*d), e.to_string())),
                }
            }
        };
        (actual != *d).then(|| {
            problem(
                "corrupt-blob",
                Some(*d),
                format!("bytes hash to {actual}; {KEPT}"),
            )
        })
    }

    fn check_files(
        &self,
        records: &HashMap<Digest, BlobRecord>,
        report: &mut FsckReport,
    ) -> Result<Vec<Digest>> {
        let mut unrecorded = Vec::new();
        self.backend.list(&mut |l| {
            report.files += 1;
            match l {
                Listed::Blob(d) => {
                    if records.get(&d).map(|r| r.placement) != Some(Placement::File) {
                        unrecorded.push(d);
                    }
                }
                Listed::Stray(name) => report.problems.push(problem(
                    "stray-file",
                    None,
                    format!(
                        "{name} is not named by a digest; remove it by hand if it is not yours"
                    ),
                )),
            }
            Ok(())
        })?;
        // Bytes put since the snapshot, or in flight, are not orphans.
        let txn = tables::begin_read(&self.db)?;
        let blobs = txn.open_table(BLOBS)?;
        let intents = txn.open_table(INTENTS)?;
        let mut orphans = Vec::new();
        for d in unrecorded {
            let key = d.to_key();
            if blobs.get(key.as_slice())?.is_some() || intents.get(key.as_slice())?.is_some() {
                continue;
            }
            report.problems.push(problem(
                "orphan-file",
                Some(d),
                format!("the backend holds bytes of {d}, which has no record"),
            ));
            orphans.push(d);
        }
        Ok(orphans)
    }

    /// Removes records that do not decode, with everything indexed under
    /// them (inline bytes, file, edges, memberships, tags, referrer
    /// entries): the content is unusable, and one bad record must not stop
    /// the rest of the store. Returns the digests removed.
    fn remove_corrupt_records(&self, digests: Vec<Digest>) -> Result<HashSet<Digest>> {
        let backend = Arc::clone(&self.backend);
        self.submit(true, move |b| {
            repair::remove_corrupt_records(b, &*backend, &digests)
        })
    }

    /// Removes referrer entries that list what their repository does not
    /// hold, or list a referrer a second time.
    /// Each is re-checked inside the writer, where no put can be in flight:
    /// a duplicate goes only if another entry of that referrer stays, and
    /// the one keyed by the manifest's own artifactType is kept.
    fn remove_referrer_entries(&self, entries: Vec<Vec<u8>>) -> Result<()> {
        self.submit(true, move |b| repair::remove_referrer_entries(b, &entries))
    }

    /// Deletes orphan bytes from inside the writer, where no commit of a
    /// staged blob can be in flight, after re-checking that each has no
    /// record and no intent.
    fn remove_orphans(&self, orphans: Vec<Digest>) -> Result<HashSet<Digest>> {
        let backend = Arc::clone(&self.backend);
        self.submit(true, move |b| {
            repair::remove_orphans(b, &*backend, &orphans)
        })
    }
}

/// Every tag's image whole: each manifest a tag reaches (through index
/// entries) has its non-external blobs stored (config, layers, artifact
/// blobs; an index entry may be absent, as in a sparse index). A GC that swept a layer
/// under a tagged image, or a `blob rm --force`, shows up here.
fn check_tagged_images(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    needs: &HashMap<Digest, Vec<(EdgeKind, Digest)>>,
    repo_name: &dyn Fn(u64) -> String,
    report: &mut FsckReport,
) -> Result<()> {
    let mut reported: HashSet<(Digest, Digest)> = HashSet::new();
    let mut checked: HashSet<Digest> = HashSet::new();
    for e in txn.open_table(TAGS)?.iter()? {
        let (k, v) = e?;
        let root = Digest::from_key(v.value())?;
        let repo = keys::repo_prefix(k.value());
        let tag = String::from_utf8_lossy(&k.value()[8..]).into_owned();
        // Iterative and bounded by the manifests stored: depth comes from
        // data. A manifest checked under one tag is not walked again.
        let mut stack = vec![root];
        while let Some(m) = stack.pop() {
            if !checked.insert(m) {
                continue;
            }
            for (kind, child) in needs.get(&m).map(Vec::as_slice).unwrap_or(&[]) {
                let stored = records.contains_key(child);
                if *kind == EdgeKind::Manifest {
                    // An index's entries may be absent (a sparse index,
                    // as the spec allows and the put rule accepts).
                    if stored {
                        stack.push(*child);
                    }
                    continue;
                }
                if !stored && reported.insert((m, *child)) {
                    let detail = format!(
                        "tag `{}:{tag}` reaches {m}, whose {} {child} is not stored: the image cannot be pulled",
                        repo_name(repo),
                        kind.name()
                    );
                    report
                        .problems
                        .push(problem("missing-child", Some(*child), detail));
                }
            }
        }
    }
    Ok(())
}
/// The graph's invariants: forward and reverse edges agree, members and
/// tags name stored content and have their reverse entries, tagged images
/// are whole (unless sparse graphs are allowed), and referrers are stored
/// members of their repository. Returns the referrer keys to drop on
/// repair.
fn check_graph(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    opts_allow_sparse: bool,
    report: &mut FsckReport,
) -> Result<Vec<Vec<u8>>> {
    let needs = check_edges(txn, records, report)?;
    let names = repo_names(txn)?;
    let repo_name = |id: u64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
    check_members(txn, records, &repo_name, report)?;
    check_tags(txn, records, &repo_name, report)?;
    check_tag_history(txn, &repo_name, report)?;
    check_usage(txn, records, &names, report)?;
    if !opts_allow_sparse {
        check_tagged_images(txn, records, &needs, &repo_name, report)?;
    }
    check_referrers(txn, records, &repo_name, report)
}

/// Each manifest's children that must be stored for it to be pulled (not
/// its subject, not external blobs).
type Needs = HashMap<Digest, Vec<(EdgeKind, Digest)>>;

/// Forward edges come from stored manifests and decode; every forward
/// edge has its reverse entry and every reverse entry its forward edge.
fn check_edges(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    report: &mut FsckReport,
) -> Result<Needs> {
    let mut out_edges: HashSet<(Digest, Digest, EdgeKind)> = HashSet::new();
    let mut needs: Needs = HashMap::new();
    for e in txn.open_table(EDGES_OUT)?.iter()? {
        let (k, v) = e?;
        let parent = Digest::from_key(k.value())?;
        if !records.get(&parent).is_some_and(|r| r.manifest) {
            report.problems.push(problem(
                "dangling-edge",
                Some(parent),
                "edges from a parent that is not a stored manifest".into(),
            ));
        }
        match keys::decode_edges(&parent, v.value()) {
            // A missing child (sparse layout) or subject (dangling
            // referrer) is legal.
            Ok(edges) => {
                let need: Vec<(EdgeKind, Digest)> = edges
                    .iter()
                    .filter(|(k, _, d)| *k != EdgeKind::Subject && !d.is_external())
                    .map(|(k, c, _)| (*k, *c))
                    .collect();
                if !need.is_empty() {
                    needs.insert(parent, need);
                }
                out_edges.extend(edges.into_iter().map(|(k, c, _)| (c, parent, k)));
            }
            Err(e) => report
                .problems
                .push(problem("corrupt-edge", Some(parent), e.to_string())),
        }
    }
    let mut seen_in = HashSet::new();
    let staged = txn.open_table(EDGES_IN_STAGED)?;
    // Both trees of the set (schema::reverse); a key in both is one edge.
    for e in txn.open_table(EDGES_IN)?.iter()?.chain(staged.iter()?) {
        let (k, _) = e?;
        let edge = keys::split_edge_in(k.value())?;
        if !out_edges.contains(&edge) {
            report.problems.push(problem(
                "edge-mismatch",
                Some(edge.0),
                format!(
                    "reverse {} edge from {} has no forward edge",
                    edge.2.name(),
                    edge.1
                ),
            ));
        }
        seen_in.insert(edge);
    }
    for (child, parent, kind) in &out_edges {
        if !seen_in.contains(&(*child, *parent, *kind)) {
            report.problems.push(problem(
                "edge-mismatch",
                Some(*child),
                format!(
                    "forward {} edge from {parent} has no reverse edge",
                    kind.name()
                ),
            ));
        }
    }
    Ok(needs)
}

/// Every member is stored and has its reverse entry.
fn check_members(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    repo_name: &dyn Fn(u64) -> String,
    report: &mut FsckReport,
) -> Result<()> {
    let members = txn.open_table(MEMBERS)?;
    let member_of = txn.open_table(MEMBER_OF)?;
    let member_of_staged = txn.open_table(MEMBER_OF_STAGED)?;
    for e in members.iter()? {
        let (k, _) = e?;
        let d = keys::member_digest(k.value())?;
        let repo = keys::repo_prefix(k.value());
        if !records.contains_key(&d) {
            report.problems.push(problem(
                "dangling-member",
                Some(d),
                format!("member of `{}` but not stored", repo_name(repo)),
            ));
        }
        if !reverse::contains(&member_of, &member_of_staged, &keys::member_of(&d, repo))? {
            report.problems.push(problem(
                "member-mismatch",
                Some(d),
                format!("member of `{}` without the reverse entry", repo_name(repo)),
            ));
        }
    }
    Ok(())
}

/// Every tag points at a manifest stored in its repository and has its
/// reverse entry, and every reverse entry its tag.
fn check_tags(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    repo_name: &dyn Fn(u64) -> String,
    report: &mut FsckReport,
) -> Result<()> {
    let members = txn.open_table(MEMBERS)?;
    for e in txn.open_table(TAGS)?.iter()? {
        let (k, v) = e?;
        let d = Digest::from_key(v.value())?;
        let repo = keys::repo_prefix(k.value());
        let tag = String::from_utf8_lossy(&k.value()[8..]).into_owned();
        let is_manifest_member = members
            .get(keys::member(repo, &d).as_slice())?
            .is_some_and(|g| g.value() == MEMBER_MANIFEST);
        if txn
            .open_table(tables::TAGGED)?
            .get(keys::tagged(repo, &d, &tag).as_slice())?
            .is_none()
        {
            report.problems.push(problem(
                "tag-mismatch",
                Some(d),
                format!("tag `{}:{tag}` has no reverse entry", repo_name(repo)),
            ));
        }
        if !records.contains_key(&d) || !is_manifest_member {
            report.problems.push(problem(
                "dangling-tag",
                Some(d),
                format!(
                    "tag `{}:{tag}` points to a manifest that is not stored there",
                    repo_name(repo)
                ),
            ));
        }
    }
    let tags_t = txn.open_table(TAGS)?;
    for e in txn.open_table(tables::TAGGED)?.iter()? {
        let (k, _) = e?;
        let k = k.value();
        let Ok((repo, d, tag)) = keys::split_tagged(k) else {
            report
                .problems
                .push(problem("bad-key", None, "a tagged key is malformed".into()));
            continue;
        };
        let tag = String::from_utf8_lossy(tag).into_owned();
        let points_here = tags_t
            .get(keys::tag(repo, &tag).as_slice())?
            .is_some_and(|g| g.value() == d.to_key().as_slice());
        if !points_here {
            report.problems.push(problem(
                "tag-mismatch",
                Some(d),
                format!(
                    "reverse entry for `{}:{tag}` without that tag",
                    repo_name(repo)
                ),
            ));
        }
    }
    Ok(())
}

/// `repo_names` mirrors `repos`, and each repository's and namespace's
/// usage counters equal what its members add up to.
fn check_usage(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    names: &std::collections::BTreeMap<u64, String>,
    report: &mut FsckReport,
) -> Result<()> {
    let reverse = txn.open_table(tables::REPO_NAMES)?;
    for (id, name) in names {
        if reverse.get(*id)?.is_none_or(|g| g.value() != name) {
            report.problems.push(problem(
                "usage-mismatch",
                None,
                format!("repository `{name}` (id {id}) has no matching repo_names entry"),
            ));
        }
    }
    for e in reverse.iter()? {
        let (id, _) = e?;
        if !names.contains_key(&id.value()) {
            report.problems.push(problem(
                "usage-mismatch",
                None,
                format!("repo_names holds id {} that no repository has", id.value()),
            ));
        }
    }
    let mut want: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for e in txn.open_table(MEMBERS)?.iter()? {
        let (k, _) = e?;
        let d = keys::member_digest(k.value())?;
        let Some(name) = names.get(&keys::repo_prefix(k.value())) else {
            continue;
        };
        let size = records.get(&d).map_or(0, |r| r.size);
        for scope in crate::index::usage::scopes(name) {
            let t = want.entry(scope.to_string()).or_default();
            t.0 += size;
            t.1 += 1;
        }
    }
    let mut have: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for e in txn.open_table(tables::USAGE)?.iter()? {
        let (k, v) = e?;
        have.insert(
            k.value().to_string(),
            crate::index::usage::decode(v.value()),
        );
    }
    for scope in want
        .keys()
        .chain(have.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (w, h) = (want.get(scope), have.get(scope));
        if w != h {
            let show = |x: Option<&(u64, u64)>| {
                x.map_or("nothing".to_string(), |(b, n)| {
                    format!("{b} bytes in {n} members")
                })
            };
            report.problems.push(problem(
                "usage-mismatch",
                None,
                format!(
                    "usage of `{scope}` counts {}, its members add up to {}",
                    show(h),
                    show(w)
                ),
            ));
        }
    }
    Ok(())
}

/// Every tag history event decodes and has its time-index entry, and every
/// time-index entry its event. (History may name manifests long gone:
/// that is what it is for.)
fn check_tag_history(
    txn: &ReadTransaction,
    repo_name: &dyn Fn(u64) -> String,
    report: &mut FsckReport,
) -> Result<()> {
    let by_time = txn.open_table(tables::TAG_HISTORY_TIME)?;
    let events = txn.open_table(tables::TAG_HISTORY)?;
    for e in events.iter()? {
        let (k, v) = e?;
        let k = k.value();
        let repo = keys::repo_prefix(k);
        let where_ = || {
            let tag = k.get(8..k.len().saturating_sub(9)).unwrap_or_default();
            format!("`{}:{}`", repo_name(repo), String::from_utf8_lossy(tag))
        };
        let (Ok(seq), Ok(ev)) = (
            keys::history_seq(k),
            crate::schema::record::TagEventRecord::decode(v.value()),
        ) else {
            report.problems.push(problem(
                "bad-history",
                None,
                format!("a tag history event of {} does not decode", where_()),
            ));
            continue;
        };
        let mirrored = by_time
            .get(keys::history_time(ev.time_ms, seq).as_slice())?
            .is_some_and(|g| k.starts_with(g.value()));
        if !mirrored {
            report.problems.push(problem(
                "history-mismatch",
                Some(ev.digest),
                format!(
                    "tag history event {seq} of {} has no time-index entry",
                    where_()
                ),
            ));
        }
    }
    for e in by_time.iter()? {
        let (k, v) = e?;
        let Ok(seq) = keys::history_seq(k.value()) else {
            report.problems.push(problem(
                "bad-key",
                None,
                "a tag history time key is malformed".into(),
            ));
            continue;
        };
        let key = crate::index::history::primary_key(v.value(), seq);
        if events.get(key.as_slice())?.is_none() {
            report.problems.push(problem(
                "history-mismatch",
                None,
                format!("time-index entry of tag history event {seq} without the event"),
            ));
        }
    }
    Ok(())
}

/// Every referrer entry is listed once and names a stored member of its
/// repository; returns the keys of those that are not.
fn check_referrers(
    txn: &ReadTransaction,
    records: &HashMap<Digest, BlobRecord>,
    repo_name: &dyn Fn(u64) -> String,
    report: &mut FsckReport,
) -> Result<Vec<Vec<u8>>> {
    let members = txn.open_table(MEMBERS)?;
    let mut dangling = Vec::new();
    let mut seen: HashMap<(u64, Digest, Digest), Vec<u8>> = HashMap::new();
    for e in txn.open_table(REFERRERS)?.iter()? {
        let (k, _) = e?;
        let (repo, subject, _, referrer) = keys::split_referrer(k.value())?;
        if let Some(first) = seen.insert((repo, subject, referrer), k.value().to_vec()) {
            dangling.push(first);
            report.problems.push(problem(
                "duplicate-referrer",
                Some(referrer),
                format!(
                    "listed twice as a referrer of {subject} in `{}` (under two artifact types)",
                    repo_name(repo)
                ),
            ));
            dangling.push(k.value().to_vec());
            continue;
        }
        if !records.contains_key(&referrer)
            || members
                .get(keys::member(repo, &referrer).as_slice())?
                .is_none()
        {
            dangling.push(k.value().to_vec());
            report.problems.push(problem(
                "dangling-referrer",
                Some(referrer),
                format!(
                    "listed as a referrer in `{}` but not stored there",
                    repo_name(repo)
                ),
            ));
        }
    }
    Ok(dangling)
}
