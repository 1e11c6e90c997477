//! Model-based concurrency stress test of online GC.
//!
//! Writer threads drive one `Arc<Store>` with every kind of write (each put
//! variant with and without digest, repository and lease; image manifests,
//! indexes, referrers; tags, retags, untags, deletes; leases taken, filled
//! and released; re-puts of garbage) while a GC thread loops
//! `gc(grace 0, delete_untagged)` at both paces with varied sweep batches.
//! Each writer keeps an exact model of what it was acknowledged. At every
//! checkpoint all threads stop, and the checker asserts that:
//! - every tag resolves to the digest the model says, and every digest a
//!   root (tag or live lease) reaches through children and referrers is
//!   stored and verifies;
//! - after one more GC with no writer running, the store holds exactly
//!   that reachable set (no leak, no loss), and fsck is clean.
//!
//! Every commit also ships to an index log (in memory), and the GC thread
//! takes index snapshots while the writers write; at the end a store
//! restored from the log holds exactly the tables the store holds.
//!
//! `OCIDB_STRESS_SECS` sets the run time (default 60); `tools/gc_stress.sh`
//! runs it for hours. The counts are printed at the end.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::Rng;

use ocidb::log::{IndexLog, MemoryLog};
use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidb::{
    Algorithm, Digest, ErrorKind, GcPolicy, Hasher, LocalFiles, ManifestOptions, PutOptions,
    Reference, Store, StoreOptions, SweepPace,
};
use serde_json::{json, Value};

const WRITERS: usize = 3;
/// Small, so that many blobs become files and exercise the file paths.
const INLINE: usize = 512;
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Blobs each writer remembers for re-puts: enough that many were put
/// before the running GC marked (the re-puts that must be rescued).
const LOOSE_KEPT: usize = 2048;

#[derive(Default)]
struct Counts {
    writes: AtomicU64,
    failed_as_allowed: AtomicU64,
    gc_runs: AtomicU64,
    deletions: AtomicU64,
    rescues: AtomicU64,
    checks: AtomicU64,
    snapshots: AtomicU64,
}

/// What one writer was acknowledged.
#[derive(Default)]
struct Model {
    /// tag -> manifest.
    tags: HashMap<String, Digest>,
    /// Manifests of this writer's repository: the children they name
    /// (stored or not) and subject.
    manifests: HashMap<Digest, (Vec<Digest>, Option<Digest>)>,
    /// The writer's live lease and the digests added to it (stored or not:
    /// a lease holds a digest that is stored later, too).
    lease: Option<(u64, HashSet<Digest>)>,
    /// Blobs put recently (garbage unless something reaches them), with
    /// how many GC runs had finished marking when the put began.
    loose: Vec<Loose>,
}

impl Model {
    fn roots(&self) -> Vec<Digest> {
        let mut r: Vec<Digest> = self.tags.values().copied().collect();
        if let Some((_, items)) = &self.lease {
            r.extend(items.iter().copied());
        }
        r
    }
}

#[derive(Clone)]
struct Loose {
    digest: Digest,
    data: Vec<u8>,
    marked_before: u64,
}

/// A GC run that had finished marking before a put began rescues that
/// put: only a run that marks later may delete the blob. `marked_now` and
/// `marked_before` count finished marks (the `after_mark` hook).
fn assert_swept_fairly(d: &Digest, marked_before: u64, marked_now: u64, what: &str) {
    assert!(
        marked_now > marked_before,
        "{what}: {d} was acknowledged while a GC run was sweeping ({marked_before} marks done) and that run deleted it"
    );
}

/// Everything the roots of all models reach: children, and referrers of
/// reached subjects.
fn reachable(models: &[&Model]) -> HashSet<Digest> {
    let mut manifests: HashMap<Digest, &(Vec<Digest>, Option<Digest>)> = HashMap::new();
    let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
    let mut queue = Vec::new();
    for m in models {
        for (d, v) in &m.manifests {
            manifests.insert(*d, v);
            if let Some(s) = v.1 {
                referrers.entry(s).or_default().push(*d);
            }
        }
        queue.extend(m.roots());
    }
    let mut seen = HashSet::new();
    while let Some(d) = queue.pop() {
        if !seen.insert(d) {
            continue;
        }
        if let Some((children, _)) = manifests.get(&d) {
            queue.extend(children.iter().copied());
        }
        if let Some(rs) = referrers.get(&d) {
            queue.extend(rs.iter().copied());
        }
    }
    seen
}

struct Writer {
    id: usize,
    repo: String,
    s: Arc<Store>,
    rng: Rng,
    model: Arc<Mutex<Model>>,
    counts: Arc<Counts>,
    seq: u64,
    /// GC runs that have finished marking.
    marked: Arc<AtomicU64>,
    stored: Arc<Mutex<HashSet<Digest>>>,
}

impl Writer {
    /// An acknowledged put: the digest is stored from now on, until a GC
    /// may take it (only if nothing reaches it).
    fn acked(&self, d: Digest) {
        self.stored.lock().expect("stored").insert(d);
    }

    /// Seen not stored: whatever was acknowledged before is gone (a GC
    /// rightly took it while nothing reached it).
    fn gone(&self, d: &Digest) {
        self.stored.lock().expect("stored").remove(d);
    }
}

/// An error a write may meet because a concurrent GC swept what it needed
/// (the caller did not protect it with a lease): anything else fails.
fn allowed(e: &ocidb::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Retry | ErrorKind::ChildUnknown | ErrorKind::ManifestUnknown
    )
}

impl Writer {
    fn bytes(&mut self, big: bool) -> Vec<u8> {
        self.seq += 1;
        // Some content is shared across writers (dedup, cross-writer
        // rescue), the rest is unique.
        let seed = if self.rng.chance(4) {
            format!("shared-{}", self.rng.below(16))
        } else {
            format!("w{}-{}", self.id, self.seq)
        };
        let len = if big {
            INLINE + 1 + self.rng.below(4000)
        } else {
            1 + self.rng.below(INLINE)
        };
        ocidb_testkit::deterministic_bytes(seed.as_bytes(), len)
    }

    fn lease(&self) -> Option<u64> {
        self.model
            .lock()
            .expect("model")
            .lease
            .as_ref()
            .map(|l| l.0)
    }

    /// Puts a blob with a random variant. Returns it as modelled.
    /// A new blob; into the writer's repository when `to_repo` (an
    /// image's parts must be there), else into it or nowhere at random.
    fn put_blob(&mut self, leased: bool, to_repo: bool) -> Loose {
        let big = self.rng.chance(3);
        let data = self.bytes(big);
        let d = Hasher::digest_of(Algorithm::Sha256, &data);
        let marked_before = self.marked.load(Ordering::SeqCst);
        let lease = if leased { self.lease() } else { None };
        let opts = PutOptions::default()
            .digest(self.rng.chance(2).then_some(d))
            .repository((to_repo || self.rng.chance(2)).then(|| self.repo.clone()))
            .lease(lease)
            .no_sync(self.rng.chance(4));
        let got = match self.rng.below(3) {
            // A stored blob's bytes are verified, not written: if a GC
            // sweeps it meanwhile the put asks for a retry, as a client's
            // would get, and the retry stores it afresh.
            0 => match self.s.put(data.as_slice(), &opts) {
                Err(e) if e.kind() == ErrorKind::Retry => self.s.put(data.as_slice(), &opts),
                r => r,
            },
            1 => self.s.put_bytes(&data, &opts),
            _ => {
                let extra = self.bytes(false);
                self.s
                    .put_blobs(&[(&data, opts.clone()), (&extra, PutOptions::default())])
                    .map(|mut v| v.remove(0))
            }
        }
        .unwrap_or_else(|e| panic!("blob put {opts:?}: {e}"));
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        assert_eq!(got.digest, d);
        self.acked(d);
        let mut m = self.model.lock().expect("model");
        if let (Some(_), Some((_, items))) = (lease, m.lease.as_mut()) {
            items.insert(d);
        }
        let l = Loose {
            digest: d,
            data,
            marked_before,
        };
        m.loose.push(l.clone());
        if m.loose.len() > LOOSE_KEPT {
            m.loose.remove(0);
        }
        l
    }

    /// Puts a blob we put before again, as a registry does for a layer it
    /// already holds (`PUT ?digest=` into the same repository). The put
    /// counts as a write: a running GC must rescue it.
    fn reput(&mut self, leased: bool, to_repo: bool) -> Option<Loose> {
        let item = {
            let m = self.model.lock().expect("model");
            if m.loose.is_empty() {
                return None;
            }
            m.loose[self.rng.below(m.loose.len())].clone()
        };
        let lease = if leased { self.lease() } else { None };
        // Mostly into our repository, which already holds it: the path
        // that once skipped the rescue.
        let opts = PutOptions::default()
            .digest(item.digest)
            .size(self.rng.chance(2).then_some(item.data.len() as u64))
            .repository((to_repo || !self.rng.chance(4)).then(|| self.repo.clone()))
            .lease(lease);
        let marked_before = self.marked.load(Ordering::SeqCst);
        let r = self.s.put_bytes(&item.data, &opts).expect("re-put");
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        assert_eq!(r.digest, item.digest);
        self.acked(r.digest);
        let l = Loose {
            marked_before,
            ..item
        };
        let mut m = self.model.lock().expect("model");
        if let (Some(_), Some((_, items))) = (lease, m.lease.as_mut()) {
            items.insert(l.digest);
        }
        if let Some(e) = m.loose.iter_mut().find(|e| e.digest == l.digest) {
            e.marked_before = marked_before;
        }
        Some(l)
    }

    fn desc(d: &Digest, size: usize, mt: &str) -> Value {
        json!({"mediaType": mt, "digest": d.to_string(), "size": size})
    }

    /// Pushes an image manifest (optionally a referrer of `subject`), the
    /// registry way: layers first, then the manifest, under the writer's
    /// lease when `leased`. Without a lease a GC may sweep the layers in
    /// between; the push then fails with a retry error and is retried.
    fn push_image(&mut self, leased: bool, subject: Option<Digest>, tag: Option<String>) {
        let leased = leased && self.lease().is_some();
        let layers = 1 + self.rng.below(3);
        for _attempt in 0..5 {
            let mut parts: Vec<Loose> = Vec::new();
            for _ in 0..layers + 1 {
                let reuse = if self.rng.chance(2) {
                    self.reput(leased, true)
                } else {
                    None
                };
                let l = match reuse {
                    Some(l) => l,
                    None => self.put_blob(leased, true),
                };
                parts.push(l);
            }
            let descs: Vec<(Digest, usize)> = parts[1..]
                .iter()
                .map(|l| (l.digest, l.data.len()))
                .collect();
            let (cfg, cfg_size) = (parts[0].digest, parts[0].data.len());
            self.seq += 1;
            let mut body = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": Self::desc(&cfg, cfg_size, "application/vnd.oci.image.config.v1+json"),
                "layers": descs.iter().map(|(d, n)| Self::desc(d, *n, LAYER)).collect::<Vec<_>>(),
                "annotations": {"writer": self.id.to_string(), "seq": self.seq.to_string()},
            });
            if let Some(s) = subject {
                body["subject"] =
                    json!({"mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1});
                body["artifactType"] = json!("application/vnd.example.sbom");
            }
            let lease = if leased { self.lease() } else { None };
            let require_children = !self.rng.chance(5);
            let opts = ManifestOptions::default()
                .tags(tag.iter().cloned())
                .children(if require_children {
                    ocidb::Children::InRepository
                } else {
                    ocidb::Children::AllowMissing
                })
                .lease(lease);
            let r = self
                .s
                .put_manifest(&self.repo, body.to_string().as_bytes(), &opts);
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(p) => {
                    let mut children: Vec<Digest> = descs.iter().map(|x| x.0).collect();
                    children.push(cfg);
                    self.acked(p.digest);
                    // Under AllowMissing a child swept before the
                    // commit is missing; one that is there right after the
                    // acknowledgement is reached from now on.
                    if !require_children {
                        for c in &children {
                            if !self.s.exists(c).expect("exists") {
                                self.gone(c);
                            }
                        }
                    }
                    let mut m = self.model.lock().expect("model");
                    m.manifests.insert(p.digest, (children, subject));
                    if let Some(t) = &tag {
                        m.tags.insert(t.clone(), p.digest);
                    }
                    if let (Some(_), Some((_, items))) = (lease, m.lease.as_mut()) {
                        items.insert(p.digest);
                    }
                    return;
                }
                Err(e) if !leased && allowed(&e) => {
                    let marked_now = self.marked.load(Ordering::SeqCst);
                    for p in &parts {
                        if !self.s.exists(&p.digest).expect("exists") {
                            assert_swept_fairly(
                                &p.digest,
                                p.marked_before,
                                marked_now,
                                "a layer of a push",
                            );
                        }
                    }
                    self.counts
                        .failed_as_allowed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("manifest push (leased: {leased}): {e}"),
            }
        }
    }

    fn push_index(&mut self) {
        let candidates: Vec<Digest> = {
            let m = self.model.lock().expect("model");
            m.manifests
                .iter()
                .filter(|(_, v)| v.1.is_none())
                .map(|(d, _)| *d)
                .take(8)
                .collect()
        };
        if candidates.is_empty() {
            return;
        }
        let n = 1 + self.rng.below(candidates.len().min(3));
        let children: Vec<Digest> = (0..n)
            .map(|_| candidates[self.rng.below(candidates.len())])
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        self.seq += 1;
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|d| Self::desc(d, 1, OCI_MANIFEST)).collect::<Vec<_>>(),
            "annotations": {"writer": self.id.to_string(), "seq": self.seq.to_string()},
        });
        let tag = format!("idx{}", self.rng.below(4));
        let r = self.s.put_manifest(
            &self.repo,
            body.to_string().as_bytes(),
            &ManifestOptions::default().tags(vec![tag.clone()]),
        );
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        let reached = {
            let m = self.model.lock().expect("model");
            reachable(&[&m])
        };
        match r {
            Ok(p) => {
                self.acked(p.digest);
                let mut m = self.model.lock().expect("model");
                m.manifests.insert(p.digest, (children, None));
                m.tags.insert(tag, p.digest);
            }
            // Only an unreached child may have been swept.
            Err(e) if allowed(&e) && !children.iter().all(|c| reached.contains(c)) => {
                self.counts
                    .failed_as_allowed
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("index push: {e}"),
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=24 => {
                let leased = self.rng.chance(2);
                self.put_blob(leased, false);
            }
            25..=44 => {
                let leased = self.rng.chance(2);
                let tag = self
                    .rng
                    .chance(2)
                    .then(|| format!("t{}", self.rng.below(6)));
                self.push_image(leased, None, tag);
            }
            45..=52 => self.push_index(),
            53..=60 => {
                // A referrer of one of our manifests (or of a digest that
                // is not stored: dangling referrers are legal).
                let subject = {
                    let m = self.model.lock().expect("model");
                    let ds: Vec<Digest> = m.manifests.keys().copied().collect();
                    if ds.is_empty() || self.rng.chance(6) {
                        None
                    } else {
                        Some(ds[self.rng.below(ds.len())])
                    }
                };
                let subject = subject.unwrap_or_else(|| {
                    Hasher::digest_of(Algorithm::Sha256, format!("absent {}", self.seq).as_bytes())
                });
                let leased = self.rng.chance(2);
                self.push_image(leased, Some(subject), None);
            }
            61..=67 => {
                // Retag to another of our manifests.
                let (tag, target, reached) = {
                    let m = self.model.lock().expect("model");
                    let ds: Vec<Digest> = m.manifests.keys().copied().collect();
                    if ds.is_empty() {
                        return;
                    }
                    (
                        format!("t{}", self.rng.below(6)),
                        ds[self.rng.below(ds.len())],
                        reachable(&[&m]),
                    )
                };
                let r = self.s.tag(&self.repo, &tag, &target);
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(()) => {
                        self.model.lock().expect("model").tags.insert(tag, target);
                    }
                    Err(e) if allowed(&e) && !reached.contains(&target) => {
                        self.counts
                            .failed_as_allowed
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("retag {tag} -> {target}: {e}"),
                }
            }
            68..=72 => {
                let tag = {
                    let m = self.model.lock().expect("model");
                    let ts: Vec<String> = m.tags.keys().cloned().collect();
                    if ts.is_empty() {
                        return;
                    }
                    ts[self.rng.below(ts.len())].clone()
                };
                let r = self.s.untag(&self.repo, &tag);
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
                let want = self.model.lock().expect("model").tags.remove(&tag);
                assert_eq!(
                    r.expect("untag").to_string(),
                    want.expect("modelled").to_string()
                );
            }
            73..=76 => {
                // Delete a manifest that nothing else of ours holds.
                let target = {
                    let m = self.model.lock().expect("model");
                    let held: HashSet<Digest> = m
                        .manifests
                        .values()
                        .flat_map(|v| v.0.iter().copied())
                        .chain(m.lease.iter().flat_map(|l| l.1.iter().copied()))
                        .collect();
                    let ds: Vec<Digest> = m
                        .manifests
                        .keys()
                        .filter(|d| !held.contains(d))
                        .copied()
                        .collect();
                    if ds.is_empty() {
                        return;
                    }
                    (ds[self.rng.below(ds.len())], reachable(&[&m]))
                };
                let r = self.s.delete_manifest(&self.repo, &target.0);
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
                let mut m = self.model.lock().expect("model");
                match r {
                    Ok(()) => {}
                    // Already swept: only possible if nothing reached it.
                    Err(e) if allowed(&e) && !target.1.contains(&target.0) => {}
                    Err(e) => panic!("delete {}: {e}", target.0),
                }
                m.manifests.remove(&target.0);
                m.tags.retain(|_, d| *d != target.0);
            }
            77..=84 => {
                // Re-put garbage we wrote earlier: a rescue if a GC runs.
                let leased = self.rng.chance(2);
                self.reput(leased, false);
            }
            85..=92 => {
                // Leases: take one, or release it (what it held becomes
                // garbage unless something else reaches it).
                let current = self.lease();
                match current {
                    None => {
                        let l = self
                            .s
                            .create_lease(Duration::from_secs(30 * 86_400))
                            .expect("lease");
                        self.model.lock().expect("model").lease = Some((l.id, HashSet::new()));
                    }
                    Some(id) if self.rng.chance(3) => {
                        self.s.release_lease(id).expect("release");
                        self.model.lock().expect("model").lease = None;
                    }
                    Some(id) => {
                        // Add recent blobs (stored or not any more).
                        let ds: Vec<Digest> = {
                            let m = self.model.lock().expect("model");
                            m.loose.iter().rev().take(2).map(|x| x.digest).collect()
                        };
                        let absent = self.s.lease_add(id, &ds).expect("lease_add");
                        for d in &absent {
                            self.gone(d);
                        }
                        let mut m = self.model.lock().expect("model");
                        if let Some((_, items)) = m.lease.as_mut() {
                            items.extend(ds.iter().copied());
                        }
                    }
                }
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                // Several manifests in one call, untagged (garbage at once).
                let n = 1 + self.rng.below(3);
                let mut bodies = Vec::new();
                for _ in 0..n {
                    self.seq += 1;
                    bodies.push(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                        "annotations": {"writer": self.id.to_string(), "seq": self.seq.to_string()}}).to_string());
                }
                let items: Vec<(&[u8], ManifestOptions)> = bodies
                    .iter()
                    .map(|b| (b.as_bytes(), ManifestOptions::default()))
                    .collect();
                self.s
                    .put_manifests(&self.repo, &items)
                    .expect("put_manifests");
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn check(
    s: &Store,
    models: &[Arc<Mutex<Model>>],
    repos: &[String],
    counts: &Counts,
    marked: &AtomicU64,
    stored: &Mutex<HashSet<Digest>>,
) {
    let mut stored = stored.lock().expect("stored");
    let guards: Vec<_> = models.iter().map(|m| m.lock().expect("model")).collect();
    let refs: Vec<&Model> = guards.iter().map(|g| &**g).collect();
    // Garbage may go, but only by a GC run that marked after its put.
    let marked_now = marked.load(Ordering::SeqCst);
    for m in &refs {
        for l in &m.loose {
            if !s.exists(&l.digest).expect("exists") {
                assert_swept_fairly(&l.digest, l.marked_before, marked_now, "a put");
            }
        }
    }
    for (m, repo) in refs.iter().zip(repos) {
        for (tag, d) in &m.tags {
            let got = s
                .resolve(repo, &Reference::Tag(tag.clone()))
                .unwrap_or_else(|e| panic!("{repo}:{tag} acknowledged as {d}: {e}"));
            assert_eq!(&got, d, "{repo}:{tag}");
        }
    }
    // What a root reaches and was acknowledged as stored must be there.
    let want = reachable(&refs);
    for d in want.iter().filter(|d| stored.contains(d)) {
        s.verify(d)
            .unwrap_or_else(|e| panic!("{d} is reached by an acknowledged root: {e}"));
    }
    drop(guards);
    // With no writer running, one more GC leaves exactly what is reached.
    let r = s
        .gc(&GcPolicy::default()
            .grace(Duration::ZERO)
            .delete_untagged(true))
        .expect("quiet gc");
    counts.gc_runs.fetch_add(1, Ordering::Relaxed);
    counts
        .deletions
        .fetch_add(r.deleted_blobs + r.deleted_manifests, Ordering::Relaxed);
    let st = s.stats().expect("stats");
    let mut guards: Vec<_> = models.iter().map(|m| m.lock().expect("model")).collect();
    let refs: Vec<&Model> = guards.iter().map(|g| &**g).collect();
    let want = reachable(&refs);
    let mut there = 0u64;
    for d in &want {
        let exists = s.exists(d).expect("exists");
        assert!(exists || !stored.contains(d), "{d} lost by a quiet gc");
        there += u64::from(exists);
    }
    if st.manifests + st.blobs != there {
        // Name what is there beyond the reach of every root.
        let mut extra = Vec::new();
        for m in &refs {
            let named = m
                .loose
                .iter()
                .map(|l| (l.digest, "a put"))
                .chain(m.manifests.keys().map(|d| (*d, "a manifest")))
                .chain(
                    m.lease
                        .iter()
                        .flat_map(|l| l.1.iter().map(|d| (*d, "a lease item"))),
                );
            for (d, what) in named {
                if !want.contains(&d) && s.exists(&d).expect("exists") {
                    extra.push(format!("{d} ({what})"));
                }
            }
        }
        panic!(
            "after a quiet gc the store holds {} records, and acknowledged roots reach {there} of them; beyond reach: {extra:?}",
            st.manifests + st.blobs
        );
    }
    let fsck = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    // Forget what the quiet GC rightly took.
    stored.retain(|d| want.contains(d));
    for g in &mut guards {
        g.manifests.retain(|d, _| want.contains(d));
        g.loose.retain(|l| want.contains(&l.digest));
    }
    counts.checks.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn online_gc_never_loses_an_acknowledged_write() {
    let secs = common::env_u64("OCIDB_STRESS_SECS", 60);
    let seed = common::env_u64("OCIDB_STRESS_SEED", 0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    // Every commit also ships to an index log, and the GC thread takes
    // snapshots while the writers go on: at the end the log must rebuild
    // the very tables the store holds.
    let log = MemoryLog::new();
    let opts = || {
        StoreOptions::default()
            .inline_threshold(INLINE)
            .index_log(Arc::new(log.clone()) as Arc<dyn IndexLog>)
            // Reverse-set rows merge from their staging trees almost every
            // commit, under the GC's reads and sweep.
            .staged_rows(16)
    };
    let s = Arc::new(Store::open_with(&root, opts(), true).expect("create"));
    let counts = Arc::new(Counts::default());
    let marked = Arc::new(AtomicU64::new(0));
    let stored: Arc<Mutex<HashSet<Digest>>> = Arc::default();
    // Writers and the GC hold it shared; the checker takes it whole.
    let phase = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let models: Vec<Arc<Mutex<Model>>> = (0..WRITERS)
        .map(|_| Arc::new(Mutex::new(Model::default())))
        .collect();
    let repos: Vec<String> = (0..WRITERS).map(|i| format!("w{i}/app")).collect();
    let mut threads = Vec::new();
    for i in 0..WRITERS {
        let mut w = Writer {
            id: i,
            repo: repos[i].clone(),
            s: Arc::clone(&s),
            rng: Rng(seed ^ ((i as u64 + 1) * 0x2545_f491_4f6c_dd1d)),
            model: Arc::clone(&models[i]),
            counts: Arc::clone(&counts),
            seq: 0,
            marked: Arc::clone(&marked),
            stored: Arc::clone(&stored),
        };
        let (phase, stop) = (Arc::clone(&phase), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                {
                    let _g = phase.read().expect("phase");
                    for _ in 0..16 {
                        w.step();
                    }
                }
                // Now and then all writers may be idle at once: the GC
                // then takes sweep steps of its own, in groups that
                // writers' jobs can join.
                if w.rng.chance(8) {
                    std::thread::sleep(Duration::from_millis(w.rng.below(30) as u64));
                }
            }
        }));
    }
    {
        let (s, phase, stop, counts, marked) = (
            Arc::clone(&s),
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&counts),
            Arc::clone(&marked),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed.rotate_left(17) | 1);
            while !stop.load(Ordering::Relaxed) {
                let _g = phase.read().expect("phase");
                let policy = GcPolicy::default()
                    .grace(Duration::ZERO)
                    .delete_untagged(true)
                    .pace(if rng.chance(2) {
                        SweepPace::Yield
                    } else {
                        SweepPace::Steady
                    })
                    .sweep_batch([1, 4, 64][rng.below(3)])
                    .after_mark({
                        let marked = Arc::clone(&marked);
                        Arc::new(move || {
                            marked.fetch_add(1, Ordering::SeqCst);
                        })
                    });
                let r = s.gc(&policy).expect("gc");
                counts.gc_runs.fetch_add(1, Ordering::Relaxed);
                if rng.chance(4) {
                    s.snapshot_index().expect("snapshot while writers write");
                    counts.snapshots.fetch_add(1, Ordering::Relaxed);
                }
                counts
                    .deletions
                    .fetch_add(r.deleted_blobs + r.deleted_manifests, Ordering::Relaxed);
                counts.rescues.fetch_add(r.rescued, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(CHECK_EVERY.min(Duration::from_secs(secs)));
        let _all = phase.write().expect("phase");
        check(&s, &models, &repos, &counts, &marked, &stored);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a writer or the gc thread failed");
    }
    check(&s, &models, &repos, &counts, &marked, &stored);
    drop(s);
    let want = Store::open_with(&root, opts(), false)
        .expect("reopen")
        .index_image()
        .expect("image");
    // Blob files stay where the store wrote them: the restored store reads
    // them there.
    let (restored, report) = Store::restore(
        dir.path().join("restored"),
        opts().backend(
            Arc::new(LocalFiles::new(&root).expect("files")) as Arc<dyn ocidb::BlobBackend>
        ),
        &mut |_| {},
    )
    .expect("restore from the log");
    assert!(report.fsck.is_clean(), "{:?}", report.fsck.problems);
    assert!(
        restored.index_image().expect("image") == want,
        "the log rebuilt other tables than the store's ({report:?})"
    );
    let c = &counts;
    println!(
        "gc stress: {} s, {} writes ({} failed as allowed without a lease), {} gc runs, {} deletions, {} rescues, {} checkpoints, {} snapshots; restored from the log at position {}",
        secs,
        c.writes.load(Ordering::Relaxed),
        c.failed_as_allowed.load(Ordering::Relaxed),
        c.gc_runs.load(Ordering::Relaxed),
        c.deletions.load(Ordering::Relaxed),
        c.rescues.load(Ordering::Relaxed),
        c.checks.load(Ordering::Relaxed),
        c.snapshots.load(Ordering::Relaxed),
        report.position,
    );
    assert!(c.gc_runs.load(Ordering::Relaxed) > 0);
    assert!(
        c.deletions.load(Ordering::Relaxed) > 0,
        "the gc never deleted anything: the test tests nothing"
    );
}
