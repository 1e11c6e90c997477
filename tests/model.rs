//! Model-based test: random sequences of put (to a repository or none),
//! mount, manifest put, tag, untag, delete, gc and reopen run against the
//! store and against a plain in-memory model; after every step, stat,
//! membership, tags, referrers, successors and predecessors must agree. A
//! manifest put succeeds exactly when its blobs are members of its
//! repository: a repository gains a blob only from its bytes or a mount.

use std::collections::{BTreeMap, BTreeSet};

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{
    Algorithm, Digest, GcPolicy, Hasher, ManifestOptions, PutOptions, Reference, ReferrersQuery,
    Store, StoreOptions,
};
use proptest::prelude::*;
use serde_json::json;

const REPOS: [&str; 2] = ["m/a", "m/b"];
const TAGS: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Clone, Debug)]
enum Op {
    /// blob, repository (none: a put that joins no repository)
    PutBlob(u8, Option<usize>),
    /// blob, from repository (into the other one)
    Mount(u8, usize),
    /// repo, config blob, layer blob, subject (index into manifests so far), tag
    PutManifest(usize, u8, u8, Option<usize>, Option<usize>),
    Tag(usize, usize, usize),
    Untag(usize, usize),
    DeleteManifest(usize, usize),
    DeleteBlob(u8),
    Gc(bool),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), proptest::option::weighted(0.75, 0..2usize)).prop_map(|(b, r)| Op::PutBlob(b % 8, r)),
        1 => (any::<u8>(), 0..2usize).prop_map(|(b, r)| Op::Mount(b % 8, r)),
        4 => (0..2usize, any::<u8>(), any::<u8>(), proptest::option::of(0..12usize), proptest::option::of(0..3usize))
            .prop_map(|(r, c, l, s, t)| Op::PutManifest(r, c % 8, l % 8, s, t)),
        2 => (0..2usize, 0..3usize, 0..12usize).prop_map(|(r, t, m)| Op::Tag(r, t, m)),
        1 => (0..2usize, 0..3usize).prop_map(|(r, t)| Op::Untag(r, t)),
        1 => (0..2usize, 0..12usize).prop_map(|(r, m)| Op::DeleteManifest(r, m)),
        1 => any::<u8>().prop_map(|b| Op::DeleteBlob(b % 8)),
        1 => any::<bool>().prop_map(Op::Gc),
        1 => Just(Op::Reopen),
    ]
}

fn blob_bytes(b: u8) -> Vec<u8> {
    format!("model blob {b}").into_bytes()
}

#[derive(Clone)]
struct M {
    children: Vec<Digest>,
    subject: Option<Digest>,
}

#[derive(Default)]
struct Model {
    blobs: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, M>,
    members: BTreeMap<&'static str, BTreeSet<Digest>>,
    tags: BTreeMap<&'static str, BTreeMap<&'static str, Digest>>,
    /// Every manifest digest ever made, so ops can refer to them by index.
    made: Vec<(Digest, serde_json::Value)>,
}

impl Model {
    fn exists(&self, d: &Digest) -> bool {
        self.blobs.contains(d) || self.manifests.contains_key(d)
    }

    fn remove_record(&mut self, d: &Digest) {
        self.blobs.remove(d);
        self.manifests.remove(d);
        for m in self.members.values_mut() {
            m.remove(d);
        }
        for t in self.tags.values_mut() {
            t.retain(|_, v| v != d);
        }
    }

    fn gc(&mut self, delete_untagged: bool) -> BTreeSet<Digest> {
        let mut live: BTreeSet<Digest> = self
            .tags
            .values()
            .flat_map(|t| t.values().copied())
            .collect();
        if !delete_untagged {
            live.extend(self.manifests.keys().copied());
        }
        let mut queue: Vec<Digest> = live.iter().copied().collect();
        while let Some(d) = queue.pop() {
            let mut next = Vec::new();
            if let Some(m) = self.manifests.get(&d) {
                next.extend(m.children.iter().copied());
            }
            for (r, m) in &self.manifests {
                if m.subject == Some(d) {
                    next.push(*r);
                }
            }
            for n in next {
                if live.insert(n) {
                    queue.push(n);
                }
            }
        }
        let dead: BTreeSet<Digest> = self
            .blobs
            .iter()
            .chain(self.manifests.keys())
            .filter(|d| !live.contains(d))
            .copied()
            .collect();
        for d in &dead {
            self.remove_record(d);
        }
        dead
    }
}

/// Usage of each repository and of their namespace, against the model's
/// membership (sizes from `stat`): logical bytes from the counters,
/// exclusive and shared from who else holds each member.
fn check_usage(s: &Store, m: &Model) -> Result<(), TestCaseError> {
    let size = |d: &Digest| s.stat(d).map_or(0, |i| i.size);
    let held = |r: &str| m.members.get(r).cloned().unwrap_or_default();
    let mut namespace_logical = 0;
    for repo in REPOS {
        let mine = held(repo);
        let others: BTreeSet<Digest> = REPOS
            .iter()
            .filter(|o| **o != repo)
            .flat_map(|o| held(o))
            .collect();
        let logical: u64 = mine.iter().map(size).sum();
        let shared: u64 = mine.iter().filter(|d| others.contains(d)).map(size).sum();
        let u = s.usage(repo).expect("usage");
        prop_assert_eq!(u.logical_bytes, logical, "logical bytes of {}", repo);
        prop_assert_eq!(u.members, mine.len() as u64, "members of {}", repo);
        prop_assert_eq!(u.shared_bytes, shared, "shared bytes of {}", repo);
        prop_assert_eq!(
            u.exclusive_bytes,
            logical - shared,
            "exclusive bytes of {}",
            repo
        );
        namespace_logical += logical;
    }
    let all: BTreeSet<Digest> = REPOS.iter().flat_map(|r| held(r)).collect();
    let ns = s.usage("m/").expect("namespace usage");
    prop_assert_eq!(ns.logical_bytes, namespace_logical, "logical bytes of m/");
    prop_assert_eq!(
        ns.unique_bytes,
        all.iter().map(size).sum::<u64>(),
        "unique bytes of m/"
    );
    prop_assert_eq!(ns.shared_bytes, 0, "nothing outside m/ holds anything");
    Ok(())
}

fn check(s: &Store, m: &Model) -> Result<(), TestCaseError> {
    check_usage(s, m)?;
    let all: BTreeSet<Digest> = m
        .made
        .iter()
        .map(|(d, _)| *d)
        .chain((0..8).map(|b| Hasher::digest_of(Algorithm::Sha256, &blob_bytes(b))))
        .collect();
    for d in &all {
        prop_assert_eq!(s.exists(d).expect("exists"), m.exists(d), "exists {}", d);
        if m.exists(d) {
            prop_assert!(s.stat(d).is_ok());
        }
    }
    for repo in REPOS {
        for d in &all {
            let want = m.members.get(repo).is_some_and(|x| x.contains(d));
            prop_assert_eq!(
                s.is_member(repo, d).expect("is_member"),
                want,
                "membership of {} in {}",
                d,
                repo
            );
        }
        let want: Vec<String> = m
            .tags
            .get(repo)
            .map(|t| t.keys().map(std::string::ToString::to_string).collect())
            .unwrap_or_default();
        let got = s.tags(repo, None, None).unwrap_or_default();
        prop_assert_eq!(got, want, "tags of {}", repo);
        for (t, d) in m.tags.get(repo).into_iter().flatten() {
            prop_assert_eq!(
                s.resolve(repo, &Reference::Tag(t.to_string()))
                    .expect("resolve"),
                *d
            );
        }
        for subject in &all {
            let want: BTreeSet<Digest> = m
                .manifests
                .iter()
                .filter(|(d, x)| {
                    x.subject == Some(*subject)
                        && m.members.get(repo).is_some_and(|mm| mm.contains(d))
                })
                .map(|(d, _)| *d)
                .collect();
            let got: BTreeSet<Digest> = s
                .referrers(repo, subject, &ReferrersQuery::default())
                .expect("referrers")
                .index
                .manifests
                .iter()
                .map(|x| x.digest)
                .collect();
            prop_assert_eq!(got, want, "referrers of {} in {}", subject, repo);
        }
    }
    for d in &all {
        let want: BTreeSet<Digest> = m
            .manifests
            .get(d)
            .map(|x| x.children.iter().copied().chain(x.subject).collect())
            .unwrap_or_default();
        let got: BTreeSet<Digest> = s
            .successors(d)
            .expect("succ")
            .into_iter()
            .map(|e| e.descriptor.digest)
            .collect();
        prop_assert_eq!(got, want, "successors of {}", d);
        let want: BTreeSet<Digest> = m
            .manifests
            .iter()
            .filter(|(_, x)| x.children.contains(d) || x.subject == Some(*d))
            .map(|(p, _)| *p)
            .collect();
        let got: BTreeSet<Digest> = s
            .predecessors(d)
            .expect("preds")
            .into_iter()
            .map(|p| p.digest)
            .collect();
        prop_assert_eq!(got, want, "predecessors of {}", d);
    }
    Ok(())
}

/// Merges of the staged reverse sets start at two rows, so that the
/// model's few operations read both trees of each set, before, during and
/// after merges, instead of only the staging trees.
fn staging() -> StoreOptions {
    StoreOptions::default().staged_rows(2)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::open_with(dir.path(), staging(), true).expect("store");
    let mut m = Model::default();
    let zero = |del| {
        GcPolicy::default()
            .grace(std::time::Duration::ZERO)
            .delete_untagged(del)
    };
    for op in ops {
        match op {
            Op::PutBlob(b, r) => {
                let repo = r.map(|r| REPOS[r]);
                let d = s
                    .put_bytes(&blob_bytes(b), &PutOptions::default().repository(repo))
                    .expect("put")
                    .digest;
                m.blobs.insert(d);
                if let Some(repo) = repo {
                    m.members.entry(repo).or_default().insert(d);
                }
            }
            Op::Mount(b, from) => {
                let d = Hasher::digest_of(Algorithm::Sha256, &blob_bytes(b));
                let (from, to) = (REPOS[from], REPOS[1 - from]);
                let mounted = s.mount_blob(to, &d, Some(from)).expect("mount").is_some();
                let held = m.members.get(from).is_some_and(|x| x.contains(&d));
                prop_assert_eq!(mounted, held, "mount {} from {}", d, from);
                if mounted {
                    m.members.entry(to).or_default().insert(d);
                }
            }
            Op::PutManifest(r, c, l, subject, tag) => {
                let repo = REPOS[r];
                let cd = Hasher::digest_of(Algorithm::Sha256, &blob_bytes(c));
                let ld = Hasher::digest_of(Algorithm::Sha256, &blob_bytes(l));
                let mut body = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 14},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": 14}],
                    "annotations": {"n": m.made.len().to_string()}
                });
                let subj = subject.and_then(|i| m.made.get(i).cloned());
                if let Some((_, desc)) = &subj {
                    body["subject"] = desc.clone();
                    body["artifactType"] = json!("application/vnd.example");
                }
                let tags: Vec<String> = tag.map(|t| TAGS[t].to_string()).into_iter().collect();
                let held = m
                    .members
                    .get(repo)
                    .is_some_and(|x| x.contains(&cd) && x.contains(&ld));
                let put = s.put_manifest(
                    repo,
                    body.to_string().as_bytes(),
                    &ManifestOptions::default().tags(tags),
                );
                let p = match put {
                    Ok(p) => {
                        prop_assert!(held, "accepted with a blob {} lacks", repo);
                        p
                    }
                    Err(e) => {
                        prop_assert!(!held, "refused though {} holds its blobs: {}", repo, e);
                        // Retry: a child a recent GC swept (not stored now).
                        let swept = !m.exists(&cd) || !m.exists(&ld);
                        prop_assert!(
                            e.kind() == ocidb::ErrorKind::ChildUnknown
                                || (swept && e.kind() == ocidb::ErrorKind::Retry),
                            "{}",
                            e
                        );
                        check(&s, &m)?;
                        continue;
                    }
                };
                let mut children = vec![cd];
                if ld != cd {
                    children.push(ld);
                }
                m.manifests.insert(
                    p.digest,
                    M {
                        children,
                        subject: subj.map(|(d, _)| d),
                    },
                );
                m.members.entry(repo).or_default().insert(p.digest);
                if let Some(t) = tag {
                    m.tags.entry(repo).or_default().insert(TAGS[t], p.digest);
                }
                m.made.push((
                    p.digest,
                    json!({"mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.size}),
                ));
            }
            Op::Tag(r, t, i) => {
                let Some((d, _)) = m.made.get(i).cloned() else {
                    continue;
                };
                let repo = REPOS[r];
                let ok = s.tag(repo, TAGS[t], &d).is_ok();
                let member = m.manifests.contains_key(&d)
                    && m.members.get(repo).is_some_and(|x| x.contains(&d));
                prop_assert_eq!(ok, member, "tag {} {}", repo, d);
                if ok {
                    m.tags.entry(repo).or_default().insert(TAGS[t], d);
                }
            }
            Op::Untag(r, t) => {
                let repo = REPOS[r];
                let ok = s.untag(repo, TAGS[t]).is_ok();
                let had = m
                    .tags
                    .get_mut(repo)
                    .and_then(|x| x.remove(TAGS[t]))
                    .is_some();
                prop_assert_eq!(ok, had);
            }
            Op::DeleteManifest(r, i) => {
                let Some((d, _)) = m.made.get(i).cloned() else {
                    continue;
                };
                let repo = REPOS[r];
                let ok = s.delete_manifest(repo, &d).is_ok();
                let member = m.manifests.contains_key(&d)
                    && m.members.get(repo).is_some_and(|x| x.contains(&d));
                prop_assert_eq!(ok, member);
                if ok {
                    if let Some(x) = m.members.get_mut(repo) {
                        x.remove(&d);
                    }
                    if let Some(t) = m.tags.get_mut(repo) {
                        t.retain(|_, v| *v != d);
                    }
                    if !m.members.values().any(|x| x.contains(&d)) {
                        m.remove_record(&d);
                    }
                }
            }
            Op::DeleteBlob(b) => {
                let d = Hasher::digest_of(Algorithm::Sha256, &blob_bytes(b));
                prop_assert_eq!(s.delete(&d).is_ok(), m.exists(&d));
                m.remove_record(&d);
            }
            Op::Gc(del) => {
                let report = s.gc(&zero(del)).expect("gc");
                let want = m.gc(del);
                let got: BTreeSet<Digest> = report.digests.into_iter().collect();
                prop_assert_eq!(got, want, "gc deleted");
            }
            Op::Reopen => {
                drop(s);
                s = Store::open_with(dir.path(), staging(), false).expect("reopen");
            }
        }
        check(&s, &m)?;
    }
    // A blob deleted under a tagged image is what fsck reports, and
    // nothing else.
    let mut missing = BTreeSet::new();
    for d in m.tags.values().flat_map(|t| t.values()) {
        if let Some(x) = m.manifests.get(d) {
            missing.extend(x.children.iter().filter(|c| !m.exists(c)).copied());
        }
    }
    let report = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    let found: BTreeSet<Digest> = report
        .problems
        .iter()
        .filter(|p| p.kind == "missing-child")
        .filter_map(|p| p.digest)
        .collect();
    prop_assert_eq!(found, missing);
    prop_assert!(
        report.problems.iter().all(|p| p.kind == "missing-child"),
        "{:?}",
        report.problems
    );
    prop_assert!(s
        .fsck(&ocidb::FsckOptions::default().allow_sparse(true))
        .expect("fsck")
        .is_clean());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn store_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
