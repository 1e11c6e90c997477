//! The kill -9 checker shared by the crash tests on local files
//! (tests/crash.rs) and on an object store (tests/s3.rs): a child process
//! (`ocidb debug crash-child`) logs each acknowledged operation; after each
//! kill the store is reopened and what was acknowledged is verified.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ocidb::{Digest, FsckOptions, Reference, Store};

#[derive(Default)]
pub struct Expected {
    blobs: BTreeSet<Digest>,
    /// digest -> (repo, tag)
    manifests: BTreeMap<Digest, (String, String)>,
    /// Deletes that were started but maybe not finished.
    uncertain: BTreeSet<Digest>,
}

/// Cycles between full checks.
pub const FULL_EVERY: u64 = 100;
/// Older items re-verified in each cycle between full checks.
const SAMPLE: usize = 32;

/// What the parent knows: the log replayed so far, and what it verified.
#[derive(Default)]
pub struct Checker {
    expected: Expected,
    /// Bytes of the log replayed.
    offset: usize,
    verified: HashSet<Digest>,
}

/// Replays the log lines written since the last call (whole lines only:
/// a line the kill cut short is not acknowledged).
fn replay(log: &Path, c: &mut Checker) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(end) = text.rfind('\n').map(|i| i + 1) else {
        return;
    };
    if end <= c.offset {
        return;
    }
    let new = &text[c.offset..end];
    c.offset = end;
    let e = &mut c.expected;
    for line in new.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let digest = |i: usize| Digest::parse(parts[i]).expect("logged digest");
        match parts.first().copied() {
            Some("blob") => {
                e.blobs.insert(digest(1));
            }
            Some("manifest") => {
                e.manifests
                    .insert(digest(2), (parts[1].to_string(), parts[3].to_string()));
            }
            Some("deleting") => {
                e.uncertain.insert(digest(2));
            }
            Some("deleted") => {
                let d = digest(2);
                e.uncertain.remove(&d);
                e.manifests.remove(&d);
            }
            _ => {}
        }
    }
}

/// Reopens the store, checks that nothing staged is left (`staged_left`
/// counts it) and verifies what the log acknowledged since the last check
/// (with `full`, everything, and fsck, which re-hashes every blob). Returns how many
/// items are acknowledged in all.
pub fn check(
    store_dir: &Path,
    log: &Path,
    cycle: u64,
    full: bool,
    c: &mut Checker,
    rng: &mut u64,
    target: &Target<'_>,
) -> usize {
    let s =
        (target.open)(store_dir).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
    assert_eq!(
        (target.staged_left)(&s),
        0,
        "cycle {cycle}: staged blobs are gone after open"
    );
    replay(log, c);
    // New items, a sample of old ones, or (full) everything.
    let mut pick = |d: &Digest, verified: &HashSet<Digest>| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let old_total = verified.len().max(1) as u64;
        full || !verified.contains(d) || *rng % old_total < SAMPLE as u64
    };
    let e = &c.expected;
    let mut now_verified = Vec::new();
    for d in &e.blobs {
        if !pick(d, &c.verified) {
            continue;
        }
        s.verify(d)
            .unwrap_or_else(|err| panic!("cycle {cycle}: acknowledged blob {d}: {err}"));
        now_verified.push(*d);
    }
    for (d, (repo, tag)) in &e.manifests {
        if e.uncertain.contains(d) || !pick(d, &c.verified) {
            continue;
        }
        now_verified.push(*d);
        s.verify(d)
            .unwrap_or_else(|err| panic!("cycle {cycle}: acknowledged manifest {d}: {err}"));
        assert!(
            s.is_member(repo, d).expect("member"),
            "cycle {cycle}: {d} in {repo}"
        );
        let got = s
            .resolve(repo, &Reference::Tag(tag.clone()))
            .unwrap_or_else(|err| panic!("cycle {cycle}: tag {repo}:{tag}: {err}"));
        assert_eq!(got, *d, "cycle {cycle}: tag {repo}:{tag}");
        // The graph matches the stored manifest.
        let body = s.read(d).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let want = 1
            + v["layers"].as_array().map_or(0, std::vec::Vec::len)
            + usize::from(v.get("subject").is_some());
        assert_eq!(
            s.successors(d).expect("successors").len(),
            want,
            "cycle {cycle}: edges of {d}"
        );
    }
    let total = e.blobs.len() + e.manifests.len();
    c.verified.extend(now_verified);
    if full {
        let report = s.fsck(&FsckOptions::default()).expect("fsck");
        assert!(
            report.is_clean(),
            "cycle {cycle}: fsck: {:?}",
            report.problems
        );
    }
    total
}

/// How the checker opens the store, and counts what is left staged.
pub struct Target<'a> {
    pub open: &'a dyn Fn(&Path) -> ocidb::Result<Store>,
    pub staged_left: &'a dyn Fn(&Store) -> usize,
}

/// The child's extra arguments and environment, and how long it may run
/// before the kill (20 ms plus up to `max_wait_ms`).
pub struct Child<'a> {
    pub extra: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub max_wait_ms: u64,
}

/// Runs `cycles` kill -9 cycles of `ocidb debug crash-child` on `store`,
/// checking after each. Returns the number of acknowledged items.
pub fn cycles(
    store: &Path,
    log: &Path,
    cycles: u64,
    child: &Child<'_>,
    target: &Target<'_>,
) -> usize {
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut sample_rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut checker = Checker::default();
    let mut checked = 0;
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let spec = child;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
            .arg("--store")
            .arg(store)
            .envs(spec.env.iter().copied())
            .args(["debug", "crash-child", "--seed", &cycle.to_string()])
            .args(spec.extra)
            .arg("--log")
            .arg(log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(Duration::from_millis(20 + rng % spec.max_wait_ms));
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("cycle {cycle}: the child stopped by itself ({status}): {err}");
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
            }
        }
        let full = (cycle + 1) % FULL_EVERY == 0 || cycle + 1 == cycles;
        checked = check(
            store,
            log,
            cycle,
            full,
            &mut checker,
            &mut sample_rng,
            target,
        );
    }
    checked
}
