//! Deletes, leases, online GC and fsck through the public API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocidb::manifest::OCI_MANIFEST;
use ocidb::{
    Digest, Error, FsckOptions, GcPolicy, ManifestOptions, PutOptions, Reference, ReferrersQuery,
    Store, SweepPace, WalkNode,
};
use serde_json::{json, Value};

mod common;

use common::leased_blob as blob;

fn manifest(
    s: &Store,
    repo: &str,
    body: &Value,
    tags: &[&str],
    lease: Option<u64>,
) -> (Digest, Value) {
    common::push_children(s, repo, body);
    let bytes = body.to_string();
    let p = s
        .put_manifest(
            repo,
            bytes.as_bytes(),
            &ManifestOptions::default()
                .tags(tags.iter().map(std::string::ToString::to_string))
                .lease(lease),
        )
        .expect("manifest");
    (
        p.digest,
        json!({"mediaType": OCI_MANIFEST, "digest": p.digest, "size": p.size}),
    )
}

fn digest_of(v: &Value) -> Digest {
    Digest::parse(v["digest"].as_str().expect("digest")).expect("parse")
}

fn grace0(delete_untagged: bool) -> GcPolicy {
    GcPolicy::default()
        .grace(Duration::ZERO)
        .delete_untagged(delete_untagged)
}

struct Scenario {
    m: Digest,
    c: Digest,
    l: Digest,
    o: Digest,
    r: Digest,
    r_parts: Vec<Digest>,
    u: Digest,
    u_config: Digest,
    l2: Digest,
    d: Digest,
    d_payload: Digest,
    shared: Digest,
    other: Digest,
}

fn scenario(s: &Store) -> Scenario {
    let repo = "gc/app";
    let shared = blob(
        s,
        b"shared base layer",
        "application/vnd.oci.image.layer.v1.tar",
        None,
    );
    let c = blob(
        s,
        b"{\"config\":\"M\"}",
        "application/vnd.oci.image.config.v1+json",
        None,
    );
    let l = blob(
        s,
        b"layer of M",
        "application/vnd.oci.image.layer.v1.tar",
        None,
    );
    let (m, m_desc) = manifest(
        s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": [l, shared]}),
        &["v1"],
        None,
    );
    // Another live image shares the base layer.
    let c2 = blob(
        s,
        b"{\"config\":\"other\"}",
        "application/vnd.oci.image.config.v1+json",
        None,
    );
    let (other, _) = manifest(
        s,
        "gc/other",
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c2, "layers": [shared]}),
        &["stable"],
        None,
    );
    let o = blob(s, b"orphan", "application/octet-stream", None);
    let empty = blob(s, b"{}", "application/vnd.oci.empty.v1+json", None);
    let sig = blob(s, b"signature of M", "application/jose+json", None);
    let (r, _) = manifest(
        s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature", "config": empty, "layers": [sig], "subject": m_desc}),
        &[],
        None,
    );
    let c3 = blob(
        s,
        b"{\"config\":\"U\"}",
        "application/vnd.oci.image.config.v1+json",
        None,
    );
    let l2 = blob(
        s,
        b"layer of U",
        "application/vnd.oci.image.layer.v1.tar",
        None,
    );
    let (u, _) = manifest(
        s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c3, "layers": [l2]}),
        &[],
        None,
    );
    let absent = json!({"mediaType": OCI_MANIFEST, "digest": ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"absent subject"), "size": 3});
    let dp = blob(s, b"payload of D", "application/octet-stream", None);
    let (d, _) = manifest(
        s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-dangling", "config": empty, "layers": [dp], "subject": absent}),
        &[],
        None,
    );
    Scenario {
        m,
        c: digest_of(&c),
        l: digest_of(&l),
        o: digest_of(&o),
        r,
        r_parts: vec![digest_of(&empty), digest_of(&sig)],
        u,
        u_config: digest_of(&c3),
        l2: digest_of(&l2),
        d,
        d_payload: digest_of(&dp),
        shared: digest_of(&shared),
        other,
    }
}

fn present(s: &Store, d: &Digest) -> bool {
    s.exists(d).expect("exists")
}

#[test]
fn gc_scenario_from_the_issue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let sc = scenario(&s);

    // Default grace (1 h) protects everything just written.
    let r = s.gc(&GcPolicy::default()).expect("gc");
    assert_eq!(r.deleted_blobs + r.deleted_manifests, 0);

    let r = s.gc(&grace0(false)).expect("gc");
    assert_eq!(r.digests, vec![sc.o], "only the orphan goes");
    assert!(!present(&s, &sc.o));

    let dry = s.gc(&grace0(true).dry_run(true)).expect("dry run");
    assert!(dry.dry_run);
    let r = s.gc(&grace0(true)).expect("gc");
    let mut want = vec![sc.u, sc.u_config, sc.l2, sc.d, sc.d_payload];
    let mut got = r.digests.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "U, L2, D (and their own config and payload) go");
    let mut dry_digests = dry.digests.clone();
    dry_digests.sort();
    assert_eq!(dry_digests, want, "the dry run predicted exactly this");
    for d in [sc.m, sc.c, sc.l, sc.r, sc.shared, sc.other] {
        assert!(present(&s, &d), "{d} kept");
    }
    for d in &sc.r_parts {
        assert!(present(&s, d));
    }
    assert_eq!(r.deleted_manifests, 2);
    assert_eq!(r.deleted_blobs, 3);

    s.untag("gc/app", "v1").expect("untag");
    let r = s.gc(&grace0(true)).expect("gc");
    for d in [sc.m, sc.c, sc.l, sc.r] {
        assert!(!present(&s, &d), "{d} collected");
        assert!(r.digests.contains(&d));
    }
    // The base layer is shared with a live image in another repository.
    assert!(present(&s, &sc.shared));
    assert!(present(&s, &sc.other));
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

/// A write that lands between mark and sweep makes dead candidates live
/// again: the sweep must rescue them, and their children.
#[test]
fn writes_during_gc_rescue_candidates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(Store::create(dir.path()).expect("store"));
    let sc = scenario(&s);
    let s2 = Arc::clone(&s);
    let (u, o) = (sc.u, sc.o);
    let policy = grace0(true).after_mark(Arc::new(move || {
        // U (and its config and layer) were marked dead; tag it now.
        s2.tag("gc/app", "late", &u).expect("tag during gc");
        // O was dead too; a re-put of the same bytes commits it again.
        s2.put_bytes(b"orphan", &PutOptions::default())
            .expect("re-put");
    }));
    let r = s.gc(&policy).expect("gc");
    assert!(r.rescued >= 4, "rescued {}", r.rescued);
    for d in [sc.u, sc.u_config, sc.l2, o] {
        assert!(present(&s, &d), "{d} rescued");
    }
    assert!(!present(&s, &sc.d), "D was not rescued");
    let walk = s
        .walk("gc/app", &Reference::Tag("late".into()))
        .expect("walk");
    assert!(complete(&walk));
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

#[test]
fn dry_run_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let sc = scenario(&s);
    let r = s.gc(&grace0(true).dry_run(true)).expect("dry");
    assert!(r.digests.contains(&sc.u) && r.reclaimed_bytes > 0);
    for d in [sc.o, sc.u, sc.l2, sc.d] {
        assert!(present(&s, &d));
    }
}

/// Liveness passes through digests that are referenced but not stored: a
/// sparse index's missing child keeps that child's referrers, and so does a
/// lease on a subject that has not been pushed yet.
#[test]
fn referrers_of_a_missing_but_live_digest_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let repo = "gc/sparse";
    let empty = blob(&s, b"{}", "application/vnd.oci.empty.v1+json", None);
    let missing_child = json!({"mediaType": OCI_MANIFEST, "digest": ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"platform manifest never pushed"), "size": 30});
    let bytes = json!({"schemaVersion": 2, "mediaType": ocidb::manifest::OCI_INDEX, "manifests": [missing_child]}).to_string();
    s.put_manifest(
        repo,
        bytes.as_bytes(),
        &ManifestOptions::default().tags(vec!["v1".to_string()]),
    )
    .expect("sparse index");
    let sig = blob(
        &s,
        b"signature of the missing child",
        "application/jose+json",
        None,
    );
    let (r, _) = manifest(
        &s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature", "config": empty, "layers": [sig], "subject": missing_child}),
        &[],
        None,
    );
    let pending = json!({"mediaType": OCI_MANIFEST, "digest": ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"subject still uploading"), "size": 23});
    let lease = s.create_lease(Duration::from_secs(600)).expect("lease");
    s.lease_add(lease.id, &[digest_of(&pending)])
        .expect("lease the pending subject");
    let sbom = blob(
        &s,
        b"sbom of the pending subject",
        "application/spdx+json",
        None,
    );
    let (r2, _) = manifest(
        &s,
        repo,
        &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json", "config": empty, "layers": [sbom], "subject": pending}),
        &[],
        None,
    );

    let report = s.gc(&grace0(true)).expect("gc");
    assert_eq!(
        report.deleted_manifests + report.deleted_blobs,
        0,
        "{report:?}"
    );
    for d in [r, digest_of(&sig), r2, digest_of(&sbom), digest_of(&empty)] {
        assert!(present(&s, &d), "{d} is reachable and was deleted");
    }

    s.release_lease(lease.id).expect("release");
    s.gc(&grace0(true)).expect("gc");
    assert!(present(&s, &r), "still reached through the tagged index");
    assert!(!present(&s, &r2), "the lease was its only root");
    assert!(!present(&s, &digest_of(&sbom)));

    s.untag(repo, "v1").expect("untag");
    s.gc(&grace0(true)).expect("gc");
    for d in [r, digest_of(&sig), digest_of(&empty)] {
        assert!(
            !present(&s, &d),
            "{d} is garbage once the index is untagged"
        );
    }
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

#[test]
fn leases_protect_in_flight_work_until_released_or_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let lease = s.create_lease(Duration::from_secs(60)).expect("lease");
    let b = blob(
        &s,
        b"uploaded, not yet referenced",
        "application/octet-stream",
        Some(lease.id),
    );
    s.gc(&grace0(true)).expect("gc");
    assert!(present(&s, &digest_of(&b)), "leased");
    s.release_lease(lease.id).expect("release");
    s.gc(&grace0(true)).expect("gc");
    assert!(!present(&s, &digest_of(&b)), "released");

    let short = s.create_lease(Duration::from_millis(1)).expect("lease");
    std::thread::sleep(Duration::from_millis(20));
    let err = s
        .put_bytes(b"late", &PutOptions::default().lease(short.id))
        .expect_err("expired");
    assert!(err.to_string().contains("not expired"), "{err}");
    assert!(s
        .put_bytes(b"x", &PutOptions::default().lease(999_999))
        .is_err());
}

#[test]
fn delete_manifest_and_unlink_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let sc = scenario(&s);
    s.delete_manifest("gc/app", &sc.r).expect("rm referrer");
    assert!(!present(&s, &sc.r));
    assert!(s
        .referrers("gc/app", &sc.m, &ReferrersQuery::default())
        .expect("refs")
        .index
        .manifests
        .is_empty());
    let err = s.delete_manifest("gc/app", &sc.r).expect_err("gone");
    assert!(matches!(err, Error::ManifestUnknown { .. }));
    // A manifest held by two repositories survives deletion from one.
    let body = s.read(&sc.m).expect("read");
    common::push_children(&s, "gc/copy", &serde_json::from_slice(&body).expect("json"));
    s.put_manifest("gc/copy", &body, &ManifestOptions::default())
        .expect("copy");
    s.delete_manifest("gc/app", &sc.m).expect("rm");
    assert!(present(&s, &sc.m));
    assert!(!s.is_member("gc/app", &sc.m).expect("member"));
    assert!(
        s.tags("gc/app", None, None).expect("tags").is_empty(),
        "its tag went with it"
    );
    assert_eq!(
        s.successors(&sc.m).expect("succ").len(),
        3,
        "edges stay while another repository holds it"
    );
    s.delete_manifest("gc/copy", &sc.m).expect("rm last");
    assert!(!present(&s, &sc.m));
    assert!(s.successors(&sc.m).expect("succ").is_empty());
    s.put_bytes(
        &s.read(&sc.c).expect("read"),
        &PutOptions::default().repository("gc/app"),
    )
    .expect("push");
    s.unlink_blob("gc/app", &sc.c).expect("unlink");
    assert!(!s.is_member("gc/app", &sc.c).expect("member"));
    assert!(present(&s, &sc.c), "bytes stay until gc");
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

#[test]
fn fsck_catches_corruption_missing_files_and_strays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let big = |seed: &[u8]| {
        s.put_bytes(
            &ocidb_testkit::deterministic_bytes(seed, 100_000),
            &PutOptions::default(),
        )
        .expect("put")
        .digest
    };
    let (flipped, deleted, fine) = (big(b"a"), big(b"b"), big(b"c"));
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());

    let p = flipped.blob_path(dir.path());
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[500] ^= 1;
    std::fs::write(&p, bytes).expect("flip");
    std::fs::remove_file(deleted.blob_path(dir.path())).expect("delete");
    let stray = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"stray");
    std::fs::write(stray.blob_path(dir.path()), b"stray").expect("stray");

    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    let kinds: Vec<(&str, Option<Digest>)> = report
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.digest))
        .collect();
    assert!(
        kinds.contains(&("corrupt-blob", Some(flipped))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("missing-file", Some(deleted))),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("orphan-file", Some(stray))), "{kinds:?}");
    assert_eq!(report.remaining(), 3);
    assert!(!kinds.iter().any(|(_, d)| *d == Some(fine)));

    let repaired = s
        .fsck(&FsckOptions::default().repair(true))
        .expect("repair");
    assert!(!stray.blob_path(dir.path()).exists(), "orphan removed");
    assert_eq!(
        repaired.remaining(),
        2,
        "corrupt and missing are reported, not dropped"
    );
    assert!(present(&s, &flipped), "corrupt record kept");
}

#[test]
fn compact_keeps_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::create(dir.path()).expect("store");
    let mut keep = Vec::new();
    for i in 0..2000u32 {
        let d = s
            .put_bytes(
                format!("blob {i} {}", "x".repeat(2000)).as_bytes(),
                &PutOptions::default(),
            )
            .expect("put")
            .digest;
        if i % 10 == 0 {
            keep.push(d);
        } else {
            s.delete(&d).expect("delete");
        }
    }
    let (before, after) = s.compact().expect("compact");
    assert!(after <= before, "{after} <= {before}");
    for d in &keep {
        s.verify(d).expect("intact");
    }
    s.put_bytes(b"after compaction", &PutOptions::default())
        .expect("writes work again");
}

fn complete(n: &WalkNode) -> bool {
    n.present && n.children.iter().all(complete)
}

/// Writers push images under leases and retag while GC runs in a loop with
/// grace 0 and delete_untagged. Every tagged image must stay complete.
#[test]
fn stress_gc_while_writers_push_and_retag() {
    let secs = common::env_u64("OCIDB_STRESS_SECS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(Store::create(dir.path()).expect("store"));
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (s, stop, pushed) = (Arc::clone(&s), Arc::clone(&stop), Arc::clone(&pushed));
        writers.push(std::thread::spawn(move || {
            let repo = format!("stress/w{w}");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lease = s.create_lease(Duration::from_secs(30)).expect("lease").id;
                let base = blob(&s, format!("base {}", n % 3).as_bytes(), "application/vnd.oci.image.layer.v1.tar", Some(lease));
                let own = blob(&s, format!("own {w} {n}").as_bytes(), "application/vnd.oci.image.layer.v1.tar", Some(lease));
                let cfg = blob(&s, format!("{{\"w\":{w},\"n\":{n}}}").as_bytes(), "application/vnd.oci.image.config.v1+json", Some(lease));
                let tag = format!("t{}", n % 4);
                let (_, desc) = manifest(&s, &repo, &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [base, own]}), &[&tag], Some(lease));
                if n.is_multiple_of(2) {
                    let sig = blob(&s, format!("sig {w} {n}").as_bytes(), "application/jose+json", Some(lease));
                    manifest(&s, &repo, &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature", "config": cfg, "layers": [sig], "subject": desc}), &[], Some(lease));
                }
                s.release_lease(lease).expect("release");
                n += 1;
                pushed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let mut runs = 0;
    let mut deleted = 0;
    // Steady pace: deletions ride on the writers' own commits throughout,
    // the most interleaving there is.
    let steady = grace0(true).pace(SweepPace::Steady);
    while start.elapsed() < Duration::from_secs(secs) {
        let r = s.gc(&steady).expect("gc");
        deleted += r.deleted_blobs + r.deleted_manifests;
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert!(
        runs > 3 && deleted > 0,
        "gc ran {runs} times and deleted {deleted}"
    );
    assert!(pushed.load(Ordering::Relaxed) > 10);
    for repo in s.repositories().expect("repos") {
        for tag in s.tags(&repo, None, None).expect("tags") {
            let walk = s.walk(&repo, &Reference::Tag(tag.clone())).expect("walk");
            assert!(complete(&walk), "{repo}:{tag} is complete");
        }
    }
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// The default pace yields to writers: with one pushing throughout, the
/// sweep rides on only a few of its commits. Once the writer stops, the
/// sweep finishes at full speed: every piece of garbage goes, nothing
/// tagged is touched, fsck is clean.
#[test]
fn yield_pace_finishes_the_sweep_when_writers_pause() {
    assert_eq!(GcPolicy::default().pace, SweepPace::Yield);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(Store::create(dir.path()).expect("store"));
    let layer = blob(
        &s,
        b"shared layer",
        "application/vnd.oci.image.layer.v1.tar",
        None,
    );
    let garbage: Vec<Digest> = (0..300)
        .map(|n| {
            let cfg = blob(&s, format!("{{\"g\":{n}}}").as_bytes(), "application/vnd.oci.image.config.v1+json", None);
            manifest(&s, "yield/app", &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}), &[], None).0
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, stop, pushed, layer) = (
            Arc::clone(&s),
            Arc::clone(&stop),
            Arc::clone(&pushed),
            layer.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cfg = blob(
                    &s,
                    format!("{{\"live\":{n}}}").as_bytes(),
                    "application/vnd.oci.image.config.v1+json",
                    None,
                );
                let tag = format!("t{n}");
                manifest(
                    &s,
                    "yield/app",
                    &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}),
                    &[&tag],
                    None,
                );
                n += 1;
                pushed.store(n, Ordering::Relaxed);
            }
        })
    };
    let (done, finished) = std::sync::mpsc::channel();
    {
        let s = Arc::clone(&s);
        std::thread::spawn(move || done.send(s.gc(&grace0(true))));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    // Not a timing assertion: a sweep that never resumes would hang here.
    let report = finished
        .recv_timeout(Duration::from_secs(300))
        .expect("the sweep finishes once the writer stops")
        .expect("gc");
    assert!(pushed.load(Ordering::Relaxed) > 0);
    for d in &garbage {
        assert!(!s.exists(d).expect("exists"), "garbage {d} was swept");
        assert!(report.digests.contains(d), "{d} reported");
    }
    for tag in s.tags("yield/app", None, None).expect("tags") {
        let walk = s
            .walk("yield/app", &Reference::Tag(tag.clone()))
            .expect("walk");
        assert!(complete(&walk), "yield/app:{tag} is complete");
    }
    assert!(
        s.exists(&digest_of(&layer)).expect("exists"),
        "the shared layer is live"
    );
    let fsck = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
}

/// Expired leases protect nothing, and a GC run deletes them (every upload
/// session takes one, so they would otherwise pile up).
#[test]
fn gc_drops_expired_leases_and_keeps_live_ones() {
    let (_dir, s) = common::store();
    let short = s.create_lease(Duration::from_millis(1)).expect("lease");
    let long = s.create_lease(Duration::from_secs(3600)).expect("lease");
    std::thread::sleep(Duration::from_millis(5));
    s.gc(&GcPolicy::default()).expect("gc");
    let e = s.release_lease(short.id).expect_err("dropped by the gc");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    s.release_lease(long.id).expect("a live lease stays");
}

/// Slices of `scrub` cover every blob once per pass, in digest order,
/// within their byte budget, and find a damaged file in whichever slice
/// holds it; a record GC deleted after the snapshot is no problem.
#[test]
fn scrub_slices_cover_the_store_and_find_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    let mut all: Vec<Digest> = (0..12u8)
        .map(|i| {
            s.put_bytes(
                &ocidb_testkit::deterministic_bytes(&[b's', i], 100_000),
                &PutOptions::default(),
            )
            .expect("put")
            .digest
        })
        .collect();
    all.sort_by_key(|d| d.to_key().as_slice().to_vec());
    let damaged = all[7];
    let p = damaged.blob_path(dir.path());
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[10] ^= 1;
    std::fs::write(&p, bytes).expect("flip");
    let (mut after, mut seen, mut problems, mut slices) = (None, 0u64, Vec::new(), 0);
    loop {
        let slice = s.scrub(after.as_ref(), 250_000).expect("scrub");
        slices += 1;
        // 250 kB: three 100 kB blobs reach it.
        assert!(slice.records <= 3, "{slice:?}");
        seen += slice.records;
        problems.extend(slice.problems);
        match slice.next {
            Some(d) => after = Some(d),
            None => break,
        }
        assert!(slices < 20, "the pass ends");
    }
    assert_eq!(seen, 12, "every blob once");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (problems[0].kind.as_str(), problems[0].digest),
        ("corrupt-blob", Some(damaged))
    );
    // A budget of one byte still moves on, one record at a time.
    let one = s.scrub(None, 1).expect("scrub");
    assert_eq!((one.records, one.next), (1, Some(all[0])));
}

/// `counts` reads table lengths; `lease_details` names an upload
/// session's lease by its session and lists what a lease holds.
#[test]
fn counts_and_lease_details() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("store");
    ocidb_testkit::load(&s, "demo/app").expect("load");
    let c = s.counts().expect("counts");
    let st = s.stats().expect("stats");
    assert_eq!(c.records, st.manifests + st.blobs);
    assert_eq!(
        (c.manifests, c.repositories, c.tags),
        (st.manifests, st.repositories, st.tags)
    );
    assert_eq!((c.leases, c.uploads, c.writer_queue), (0, 0, 0));
    let lease = s
        .create_lease(std::time::Duration::from_secs(60))
        .expect("lease");
    let held = s
        .put_bytes(b"held", &PutOptions::default())
        .expect("put")
        .digest;
    s.lease_add(lease.id, &[held]).expect("add");
    let session = s
        .begin_upload("demo/app", &ocidb::UploadOptions::default())
        .expect("upload");
    let details = s.lease_details().expect("details");
    assert_eq!(details.len(), 2, "{details:?}");
    let mine = details.iter().find(|l| l.id == lease.id).expect("mine");
    assert_eq!(
        (mine.owner.as_deref(), mine.held, mine.digests.as_slice()),
        (None, 1, &[held][..])
    );
    let upload = details
        .iter()
        .find(|l| l.id != lease.id)
        .expect("the session's");
    assert_eq!(
        upload.owner,
        Some(format!("upload {} to demo/app", session.id))
    );
    let c = s.counts().expect("counts");
    assert_eq!((c.leases, c.uploads), (2, 1));
}
