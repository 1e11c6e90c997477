//! Simulated power loss. `ocidb::faults` records every write to the redb
//! file since its last good sync; the power goes during a chosen sync (that
//! commit fails, later writes vanish). With the store closed, the file is
//! rewound to a state a disk without write barriers could hold: all, none
//! or a random subset of the unsynced writes are lost. Then the store must
//! open, hold everything that was acknowledged before the cut, and pass fsck.
//!
//! Unlike SIGKILL (tests/crash.rs), this loses what the page cache held.
//! Blobs here are inline (they live in the database file); file blobs are
//! fsynced, renamed and their directory fsynced before the commit that
//! records them, which tests/crash.rs and tests/faults.rs cover.

mod common;

use std::sync::Arc;

use ocidb::faults::FaultInjector;
use ocidb::manifest::OCI_MANIFEST;
use ocidb::{
    FsckOptions, ManifestOptions, PutOptions, Reference, ReferrersQuery, Store, StoreOptions,
};

const REPO: &str = "power/cut";
const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

#[derive(Default)]
struct Acked {
    blobs: Vec<ocidb::Digest>,
    images: Vec<(String, ocidb::Digest)>,
    referrers: Vec<(ocidb::Digest, ocidb::Digest)>,
}

fn image(layer: &ocidb::Digest, n: u64) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{layer}","size":1}}],"annotations":{{"n":"{n}"}}}}"#
    )
    .into_bytes()
}

fn referrer(subject: &ocidb::Digest, n: u64) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}},"annotations":{{"n":"{n}"}}}}"#
    )
    .into_bytes()
}

/// Runs acknowledged operations until the power goes; returns what was
/// acknowledged.
fn until_the_power_goes(s: &Store, faults: &FaultInjector, seed: u64) -> Acked {
    let mut a = Acked::default();
    for i in 0..2_000u64 {
        let r = match i % 4 {
            // Blobs go to the repository, as a client pushes them; the
            // first is the referrers' empty config.
            0 | 1 => {
                let bytes = if i == 0 {
                    b"{}".to_vec()
                } else {
                    format!("power blob {seed} {i}").into_bytes()
                };
                s.put_bytes(&bytes, &PutOptions::default().repository(REPO))
                    .map(|p| a.blobs.push(p.digest))
            }
            2 => {
                let Some(layer) = a.blobs.last().copied() else {
                    continue;
                };
                let tag = format!("t{i}");
                s.put_manifest(
                    REPO,
                    &image(&layer, i),
                    &ManifestOptions::default().tags(vec![tag.clone()]),
                )
                .map(|p| a.images.push((tag, p.digest)))
            }
            _ => {
                let Some((_, subject)) = a.images.last().cloned() else {
                    continue;
                };
                s.put_manifest(REPO, &referrer(&subject, i), &ManifestOptions::default())
                    .map(|p| a.referrers.push((subject, p.digest)))
            }
        };
        if let Err(e) = r {
            assert!(
                faults.power_is_cut(),
                "seed {seed}: op {i} failed before the cut: {e}"
            );
            return a;
        }
    }
    panic!("seed {seed}: the power never went");
}

fn cycle(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let s = Store::open_with(
        dir.path(),
        StoreOptions::default().faults(Arc::clone(&faults)),
        true,
    )
    .expect("create");
    faults.cut_power_after_syncs(1 + (seed * 7 % 40) as u32);
    let acked = until_the_power_goes(&s, &faults, seed);
    drop(s);
    // Lose every unsynced write, none of them, or a random half.
    let keep_one_in = [0, 1, 2][(seed % 3) as usize];
    faults
        .power_cut(&dir.path().join(ocidb::store::DB_FILE), seed, keep_one_in)
        .expect("rewind");

    let s = Store::open(dir.path())
        .unwrap_or_else(|e| panic!("seed {seed}: the store must open after a power cut: {e}"));
    for d in &acked.blobs {
        s.verify(d)
            .unwrap_or_else(|e| panic!("seed {seed}: acknowledged blob {d}: {e}"));
    }
    for (tag, d) in &acked.images {
        let got = s
            .resolve(REPO, &Reference::Tag(tag.clone()))
            .unwrap_or_else(|e| panic!("seed {seed}: acknowledged tag {tag}: {e}"));
        assert_eq!(&got, d, "seed {seed}: tag {tag}");
        s.verify(d).expect("image bytes");
    }
    for (subject, r) in &acked.referrers {
        let page = s
            .referrers(REPO, subject, &ReferrersQuery::default())
            .expect("referrers");
        assert!(
            page.index.manifests.iter().any(|m| m.digest == *r),
            "seed {seed}: acknowledged referrer {r} of {subject}"
        );
    }
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
    s.put_bytes(b"after the power came back", &PutOptions::default())
        .expect("writes work again");
}

#[test]
fn acknowledged_writes_survive_a_simulated_power_cut() {
    let cycles = common::env_u64("OCIDB_POWER_CYCLES", 60);
    for seed in 0..cycles {
        cycle(seed);
    }
}
