//! Retention policies through the library: what a policy keeps follows
//! the graph (child manifests of kept indexes, referrers of kept
//! subjects), it never takes what a tag elsewhere, a lease or the undelete
//! window needs, and its dry run says exactly what GC then frees.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ocidb::{Digest, ManualClock, RetentionOptions, RetentionPolicy, RetentionRule, Store};
use serde_json::{json, Value};

const T0: u64 = 1_750_000_000_000;
const MIN: Duration = Duration::from_secs(60);
const REPO: &str = "app/web";

struct Reg {
    _dir: tempfile::TempDir,
    s: Store,
    clock: Arc<ManualClock>,
}

fn registry() -> Reg {
    let (dir, s, clock) = common::clocked_store(T0);
    Reg {
        _dir: dir,
        s,
        clock,
    }
}

/// An image in `repo` with its own layer and the shared base layer.
fn image(r: &Reg, repo: &str, name: &str) -> (Digest, Value) {
    let base = common::blob(
        &r.s,
        b"base layer shared by all",
        "application/vnd.oci.image.layer.v1.tar",
    );
    let own = common::blob(
        &r.s,
        format!("layer of {name}").as_bytes(),
        "application/vnd.oci.image.layer.v1.tar",
    );
    let body = common::image_body(&r.s, &[base, own], None);
    let p = common::put_manifest(&r.s, repo, &body, &[]);
    (
        p.digest,
        common::desc(
            "application/vnd.oci.image.manifest.v1+json",
            &p.digest,
            p.size,
        ),
    )
}

/// A referrer of `subject` with `artifact_type` and a layer of its own.
fn referrer(r: &Reg, repo: &str, subject: &Value, artifact_type: &str, name: &str) -> Digest {
    let own = common::blob(
        &r.s,
        format!("payload of {name}").as_bytes(),
        "application/octet-stream",
    );
    let mut body = common::image_body(&r.s, &[own], Some(subject));
    body["artifactType"] = json!(artifact_type);
    common::put_manifest(&r.s, repo, &body, &[]).digest
}

fn tag(r: &Reg, t: &str, d: &Digest) {
    r.s.tag(REPO, t, d).expect("tag");
    r.clock.advance(MIN);
}

/// The sizes of the layers only `names` use.
fn own_layer_bytes(names: &[&str], prefix: &str) -> u64 {
    names
        .iter()
        .map(|n| format!("{prefix}{n}").len() as u64)
        .sum()
}

fn policy(rule: RetentionRule) -> RetentionPolicy {
    RetentionPolicy { rules: vec![rule] }
}

/// The registry of the tests: five images tagged v1..v5 a minute apart, a
/// multi-arch index, `latest` on i5, a signature on i5 and an SBOM on i4.
struct Fixture {
    r: Reg,
    images: Vec<Digest>,
    index: Digest,
    children: Vec<Digest>,
    sig: Digest,
    sbom: Digest,
}

fn fixture() -> Fixture {
    let r = registry();
    let mut images = Vec::new();
    let mut descs = Vec::new();
    for i in 1..=5 {
        let (d, desc) = image(&r, REPO, &format!("i{i}"));
        images.push(d);
        descs.push(desc);
    }
    let (amd, amd_desc) = image(&r, REPO, "amd64");
    let (arm, arm_desc) = image(&r, REPO, "arm64");
    let body = common::index_body(&[amd_desc, arm_desc]);
    let index = common::put_manifest(&r.s, REPO, &body, &[]).digest;
    let sig = referrer(
        &r,
        REPO,
        &descs[4],
        "application/vnd.cncf.notary.signature",
        "sig",
    );
    let sbom = referrer(&r, REPO, &descs[3], "application/spdx+json", "sbom");
    for (i, d) in images.iter().enumerate() {
        tag(&r, &format!("v{}", i + 1), d);
    }
    tag(&r, "multi", &index);
    tag(&r, "latest", &images[4]);
    // Nothing is garbage before the policy runs.
    let clean = r.s.gc(&common::grace0(false)).expect("gc");
    assert_eq!(clean.reclaimed_bytes, 0, "{clean:?}");
    Fixture {
        r,
        images,
        index,
        children: vec![amd, arm],
        sig,
        sbom,
    }
}

fn manifests_of(s: &Store) -> BTreeSet<Digest> {
    s.members(REPO)
        .expect("members")
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(d, _)| d)
        .collect()
}

#[test]
fn kept_tags_keep_their_graph_and_the_dry_run_frees_what_gc_then_frees() {
    let f = fixture();
    let s = &f.r.s;
    let p = policy(RetentionRule {
        repositories: "app/".into(),
        keep_tags: Some("^latest$".into()),
        keep_last_pushed: Some(2),
        ..RetentionRule::default()
    });
    let opts = RetentionOptions::default().grace(Duration::ZERO);
    let dry = s
        .retention(&p, &opts.clone().dry_run(true))
        .expect("dry run");
    assert!(dry.dry_run);
    let plan = &dry.repositories[0];
    let dropped: BTreeSet<&str> = plan.deleted_tags.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(dropped, BTreeSet::from(["v1", "v2", "v3", "v4", "v5"]));
    assert_eq!(
        plan.kept_tags, 2,
        "latest (pattern, newest) and multi (second newest)"
    );
    // i5 stays with latest, and so does its signature; i4's SBOM goes
    // with i4; the index keeps its children.
    let going: BTreeSet<Digest> = plan.deleted_manifests.iter().copied().collect();
    let want: BTreeSet<Digest> = f.images[..4].iter().copied().chain([f.sbom]).collect();
    assert_eq!(going, want);
    assert_eq!(manifests_of(s).len(), 10, "a dry run changes nothing");
    // Freed: the four images' own layers and the SBOM's payload; the base
    // layer and config stay (i5 and the index's children use them).
    let expected_blobs =
        own_layer_bytes(&["i1", "i2", "i3", "i4"], "layer of ") + "payload of sbom".len() as u64;
    assert_eq!(dry.blob_bytes, expected_blobs);
    assert!(
        dry.manifest_bytes > 0 && dry.kept_elsewhere_bytes > 0,
        "{dry:?}"
    );

    let done = s.retention(&p, &opts).expect("run");
    assert_eq!(
        (done.tags_deleted, done.manifests_deleted, done.skipped),
        (5, 5, 0)
    );
    assert_eq!(done.freed_bytes, dry.freed_bytes);
    let left = manifests_of(s);
    let kept: BTreeSet<Digest> = [f.images[4], f.sig, f.index]
        .into_iter()
        .chain(f.children.iter().copied())
        .collect();
    assert_eq!(left, kept);
    let tags: Vec<String> = s.tags(REPO, None, None).expect("tags");
    assert_eq!(tags, ["latest", "multi"]);
    for d in &want {
        assert!(!s.exists(d).expect("exists"), "{d} left the store at once");
    }
    let gc = s.gc(&common::grace0(false)).expect("gc");
    assert_eq!(
        gc.reclaimed_bytes, dry.blob_bytes,
        "the dry run's bytes are GC's"
    );
    let f2 = s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
    assert!(f2.problems.is_empty(), "{:?}", f2.problems);
    // The tag history says who dropped the tags.
    let h = s
        .tag_history(REPO, "v1", &ocidb::store::HistoryQuery::default())
        .expect("history");
    assert_eq!(h.events[0].user.as_deref(), Some("retention"));
}

#[test]
fn a_policy_cannot_take_what_a_tag_elsewhere_a_lease_or_the_undelete_window_needs() {
    let f = fixture();
    let s = &f.r.s;
    // i1 is also in another repository; i2 is held by a lease; i3 was
    // named by a tag within the undelete window (v3 moves off it).
    let body = s.read(&f.images[0]).expect("i1 bytes");
    let i1: Value = serde_json::from_slice(&body).expect("json");
    let mirrored = common::put_manifest(s, "lib/mirror", &i1, &["kept"]);
    assert_eq!(mirrored.digest, f.images[0]);
    let lease = s.create_lease(Duration::from_secs(3600)).expect("lease");
    s.lease_add(lease.id, &[f.images[1]]).expect("lease i2");
    s.tag(REPO, "v3", &f.images[4]).expect("move v3 off i3");
    let p = policy(RetentionRule {
        repositories: "*".into(),
        keep_tags: Some("^(latest|multi|kept)$".into()),
        ..RetentionRule::default()
    });
    let opts = RetentionOptions::default()
        .grace(Duration::ZERO)
        .undelete_window(Duration::from_secs(3600));
    let dry = s.retention(&p, &opts.clone().dry_run(true)).expect("dry");
    let plan = dry
        .repositories
        .iter()
        .find(|r| r.repository == REPO)
        .expect("app/web's plan");
    let going: BTreeSet<Digest> = plan.deleted_manifests.iter().copied().collect();
    assert!(!going.contains(&f.images[1]), "the lease holds i2");
    assert!(
        !going.contains(&f.images[2]),
        "the undelete window holds i3"
    );
    assert!(going.contains(&f.images[0]), "i1 leaves app/web…");
    assert!(
        dry.repositories
            .iter()
            .all(|r| r.repository != "lib/mirror"),
        "…but lib/mirror keeps it tagged"
    );
    s.retention(&p, &opts).expect("run");
    assert!(
        s.exists(&f.images[0]).expect("exists"),
        "i1 stays in the store"
    );
    assert!(s.is_member("lib/mirror", &f.images[0]).expect("member"));
    assert!(s.is_member(REPO, &f.images[1]).expect("member"));
    assert!(s.is_member(REPO, &f.images[2]).expect("member"));
    let gc = s.gc(&common::grace0(false)).expect("gc");
    assert_eq!(gc.reclaimed_bytes, dry.blob_bytes);
}

#[test]
fn pulls_signatures_and_untagged_age_decide_too() {
    let f = fixture();
    let s = &f.r.s;
    // Pulls: v2 was pulled last, v1 long ago.
    s.record_pulls(vec![
        (REPO.into(), f.images[0], T0),
        (REPO.into(), f.images[1], T0 + 60_000 * 9),
    ])
    .expect("pulls");
    let p = policy(RetentionRule {
        repositories: REPO.into(),
        keep_last_pulled: Some(1),
        ..RetentionRule::default()
    });
    let dry = s
        .retention(&p, &RetentionOptions::default().dry_run(true))
        .expect("dry");
    let kept: Vec<&str> = {
        let dropped: BTreeSet<&str> = dry.repositories[0]
            .deleted_tags
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        ["v1", "v2", "v3", "v4", "v5", "multi", "latest"]
            .into_iter()
            .filter(|t| !dropped.contains(t))
            .collect()
    };
    assert_eq!(kept, ["v2"]);
    // Signed only: of everything, only i5 (v5 and latest) is signed.
    let p = policy(RetentionRule {
        repositories: REPO.into(),
        keep_tags: Some(".*".into()),
        signed_only: true,
        ..RetentionRule::default()
    });
    let dry = s
        .retention(&p, &RetentionOptions::default().dry_run(true))
        .expect("dry");
    assert_eq!(dry.repositories[0].kept_tags, 2, "{dry:?}");
    let going: BTreeSet<Digest> = dry.repositories[0]
        .deleted_manifests
        .iter()
        .copied()
        .collect();
    assert!(going.contains(&f.index) && f.children.iter().all(|c| going.contains(c)));
    assert!(!going.contains(&f.images[4]) && !going.contains(&f.sig));
    // Untagged manifests: only those old enough go.
    s.untag(REPO, "v1").expect("untag");
    let young = image(&f.r, REPO, "fresh").0;
    let p = policy(RetentionRule {
        repositories: REPO.into(),
        delete_untagged_after: Some("5m".into()),
        ..RetentionRule::default()
    });
    let dry = s
        .retention(&p, &RetentionOptions::default().dry_run(true))
        .expect("dry");
    assert_eq!(
        dry.repositories[0].deleted_manifests,
        vec![f.images[0]],
        "{dry:?}"
    );
    assert!(dry.repositories[0].deleted_tags.is_empty());
    assert!(!dry.repositories[0].deleted_manifests.contains(&young));
    // Bad policies are refused, naming the value.
    for (bad, needle) in [
        (
            RetentionRule {
                repositories: "Bad Repo".into(),
                ..RetentionRule::default()
            },
            "Bad Repo",
        ),
        (
            RetentionRule {
                repositories: "*".into(),
                keep_tags: Some("(".into()),
                ..RetentionRule::default()
            },
            "keep_tags = (",
        ),
        (
            RetentionRule {
                repositories: "*".into(),
                keep_pushed_within: Some("soon".into()),
                ..RetentionRule::default()
            },
            "keep_pushed_within = soon",
        ),
    ] {
        let e = s
            .retention(&policy(bad), &RetentionOptions::default())
            .expect_err("bad");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

/// A small xorshift generator: the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the brute force decides for one repository: the tags kept, and
/// the manifests that leave it.
fn brute_force(
    s: &Store,
    repo: &str,
    rule: &RetentionRule,
    pulls: &std::collections::HashMap<Digest, u64>,
    now: u64,
) -> (BTreeSet<String>, BTreeSet<Digest>) {
    let tags = s.tag_map(repo).expect("tags");
    let pushed = |t: &str| {
        s.tag_history(repo, t, &ocidb::store::HistoryQuery::default().limit(1))
            .expect("history")
            .events[0]
            .time_ms
    };
    let re = rule
        .keep_tags
        .as_deref()
        .map(|p| regex::Regex::new(p).expect("regex"));
    let members: BTreeSet<Digest> = s
        .members(repo)
        .expect("members")
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(d, _)| d)
        .collect();
    let referrers = |d: &Digest| -> Vec<(Digest, Option<String>)> {
        s.referrers(repo, d, &ocidb::store::ReferrersQuery::default())
            .expect("referrers")
            .index
            .manifests
            .iter()
            .map(|m| (m.digest, m.artifact_type.clone()))
            .collect()
    };
    // Everything `roots` needs in the repository: child manifests and
    // referrers, by the public graph calls.
    let closure = |roots: Vec<Digest>| -> BTreeSet<Digest> {
        let mut seen = BTreeSet::new();
        let mut stack = roots;
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            for e in s.successors(&d).expect("successors") {
                if e.kind != ocidb::EdgeKind::Subject && members.contains(&e.descriptor.digest) {
                    stack.push(e.descriptor.digest);
                }
            }
            stack.extend(referrers(&d).into_iter().map(|(r, _)| r));
        }
        seen
    };
    let any_criterion = rule.keep_tags.is_some()
        || rule.keep_last_pushed.is_some()
        || rule.keep_last_pulled.is_some();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    if any_criterion {
        for (t, _) in &tags {
            if re.as_ref().is_some_and(|r| r.is_match(t)) {
                keep.insert(t.clone());
            }
        }
        if let Some(n) = rule.keep_last_pushed {
            let mut by: Vec<(u64, String)> =
                tags.iter().map(|(t, _)| (pushed(t), t.clone())).collect();
            by.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            keep.extend(by.into_iter().take(n).map(|(_, t)| t));
        }
        if let Some(n) = rule.keep_last_pulled {
            let mut by: Vec<(u64, String)> = tags
                .iter()
                .filter_map(|(t, d)| pulls.get(d).map(|p| (*p, t.clone())))
                .collect();
            by.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            keep.extend(by.into_iter().take(n).map(|(_, t)| t));
        }
    } else {
        keep.extend(tags.iter().map(|(t, _)| t.clone()));
    }
    if rule.signed_only {
        keep.retain(|t| {
            let d = tags
                .iter()
                .find(|(x, _)| x == t)
                .map(|(_, d)| *d)
                .expect("tag");
            referrers(&d)
                .iter()
                .any(|(_, at)| at.as_deref() == Some("application/vnd.cncf.notary.signature"))
        });
    }
    let needed = closure(
        tags.iter()
            .filter(|(t, _)| keep.contains(t))
            .map(|(_, d)| *d)
            .collect(),
    );
    let mut candidates: Vec<Digest> = tags
        .iter()
        .filter(|(t, _)| !keep.contains(t))
        .map(|(_, d)| *d)
        .collect();
    if let Some(after) = &rule.delete_untagged_after {
        let after = ocidb::gc::parse_duration(after)
            .expect("duration")
            .as_millis() as u64;
        let tagged: BTreeSet<Digest> = tags.iter().map(|(_, d)| *d).collect();
        for d in &members {
            let old = now.saturating_sub(s.stat(d).expect("stat").created_ms) >= after;
            if !tagged.contains(d) && !needed.contains(d) && old {
                candidates.push(*d);
            }
        }
    }
    let going = closure(candidates)
        .into_iter()
        .filter(|d| !needed.contains(d))
        .collect();
    (keep, going)
}

#[test]
fn random_registries_and_policies_match_a_brute_force_model() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut dropped_manifests, mut freed, mut kept_elsewhere) = (0, 0, 0);
    for case in 0..24 {
        let r = registry();
        let repos = ["m/a", "m/b"];
        let mut pulls: std::collections::HashMap<Digest, u64> = Default::default();
        let mut pushed: Vec<(String, Digest, Value)> = Vec::new();
        for i in 0..(6 + rng.below(6)) {
            let repo = repos[rng.below(2) as usize];
            let kind = rng.below(10);
            let (d, desc) = if kind < 2 && pushed.iter().filter(|(r2, ..)| r2 == repo).count() >= 2
            {
                // An index over two images of the repository.
                let mine: Vec<&(String, Digest, Value)> =
                    pushed.iter().filter(|(r2, ..)| r2 == repo).collect();
                let a = mine[rng.below(mine.len() as u64) as usize].2.clone();
                let b = mine[rng.below(mine.len() as u64) as usize].2.clone();
                let p = common::put_manifest(&r.s, repo, &common::index_body(&[a, b]), &[]);
                let desc =
                    common::desc("application/vnd.oci.image.index.v1+json", &p.digest, p.size);
                (p.digest, desc)
            } else if kind < 4 && pushed.iter().any(|(r2, ..)| r2 == repo) {
                // A signature or an SBOM of an earlier manifest.
                let mine: Vec<&(String, Digest, Value)> =
                    pushed.iter().filter(|(r2, ..)| r2 == repo).collect();
                let subject = mine[rng.below(mine.len() as u64) as usize].2.clone();
                let at = if rng.below(2) == 0 {
                    "application/vnd.cncf.notary.signature"
                } else {
                    "application/spdx+json"
                };
                let d = referrer(&r, repo, &subject, at, &format!("c{case}-{i}"));
                (
                    d,
                    common::desc("application/vnd.oci.image.manifest.v1+json", &d, 0),
                )
            } else {
                image(&r, repo, &format!("c{case}-{i}"))
            };
            pushed.push((repo.to_string(), d, desc));
            if rng.below(3) > 0 {
                r.s.tag(repo, &format!("t{i}"), &d).expect("tag");
            }
            if rng.below(4) == 0 {
                r.s.record_pulls(vec![(repo.to_string(), d, T0 + i * 1000)])
                    .expect("pull");
                pulls.insert(d, T0 + i * 1000);
            }
            r.clock.advance(MIN);
        }
        let rule = RetentionRule {
            repositories: "m/".into(),
            keep_tags: [None, Some("^t[0-3]$".to_string())][rng.below(2) as usize].clone(),
            keep_last_pushed: [None, Some(1), Some(3)][rng.below(3) as usize],
            keep_last_pulled: [None, Some(1)][rng.below(2) as usize],
            delete_untagged_after: [None, Some("3m".to_string())][rng.below(2) as usize].clone(),
            signed_only: rng.below(4) == 0,
            ..RetentionRule::default()
        };
        let now = T0 + 60_000 * 20;
        r.clock.set_ms(now);
        let clean = r.s.gc(&common::grace0(false)).expect("gc");
        assert_eq!(clean.reclaimed_bytes, 0, "case {case}");
        let opts = RetentionOptions::default().grace(Duration::ZERO);
        let dry =
            r.s.retention(&policy(rule.clone()), &opts.clone().dry_run(true))
                .expect("dry");
        for repo in repos {
            let (keep, going) = brute_force(&r.s, repo, &rule, &pulls, now);
            let plan = dry.repositories.iter().find(|p| p.repository == repo);
            let dropped: BTreeSet<String> = plan
                .map(|p| p.deleted_tags.iter().map(|(t, _)| t.clone()).collect())
                .unwrap_or_default();
            let all: BTreeSet<String> =
                r.s.tag_map(repo)
                    .expect("tags")
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect();
            assert_eq!(
                all.difference(&dropped).cloned().collect::<BTreeSet<_>>(),
                keep,
                "case {case}, {repo}, {rule:?}: kept tags"
            );
            let planned: BTreeSet<Digest> = plan
                .map(|p| p.deleted_manifests.iter().copied().collect())
                .unwrap_or_default();
            assert_eq!(planned, going, "case {case}, {repo}, {rule:?}: manifests");
        }
        dropped_manifests += dry.manifests_deleted;
        freed += dry.blob_bytes;
        kept_elsewhere += dry.kept_elsewhere_bytes;
        let done = r.s.retention(&policy(rule.clone()), &opts).expect("run");
        assert_eq!(done.skipped, 0);
        assert_eq!(done.freed_bytes, dry.freed_bytes, "case {case}");
        let gc = r.s.gc(&common::grace0(false)).expect("gc");
        assert_eq!(
            gc.reclaimed_bytes, dry.blob_bytes,
            "case {case}, {rule:?}: freed bytes"
        );
        let f = r.s.fsck(&ocidb::FsckOptions::default()).expect("fsck");
        assert!(f.problems.is_empty(), "case {case}: {:?}", f.problems);
    }
    // The cases exercised something: manifests went, blobs were freed,
    // and shared content stayed.
    assert!(
        dropped_manifests > 20 && freed > 0 && kept_elsewhere > 0,
        "{dropped_manifests} manifests, {freed} bytes freed, {kept_elsewhere} kept"
    );
}
