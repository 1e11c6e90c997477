//! kill -9 recovery: a child process ingests continuously and logs each
//! acknowledged operation; the parent SIGKILLs it at random moments, then
//! reopens the store and checks that nothing acknowledged was lost.
//!
//! 50 cycles by default; `OCIDB_CRASH_CYCLES=5000 cargo test --release
//! --test crash` (or tools/crash_cycles.sh) runs more.
//!
//! Each cycle verifies what was acknowledged since the last check, plus a
//! random sample of older items; every [`FULL_EVERY`] cycles (and at the
//! last) it verifies everything and runs fsck. So a run's cost grows with
//! its length, not with its square.

mod common;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles = common::env_u64("OCIDB_CRASH_CYCLES", 50);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let checked = common::crash::cycles(
        &store,
        &dir.path().join("acked.log"),
        cycles,
        &common::crash::Child {
            extra: &[],
            env: &[],
            max_wait_ms: 280,
        },
        &common::crash::Target {
            open: &|p| ocidb::Store::open(p),
            staged_left: &|s| {
                std::fs::read_dir(s.root().join("tmp"))
                    .expect("tmp")
                    .count()
            },
        },
    );
    assert!(
        checked > 20,
        "the workload made progress: {checked} acknowledged items"
    );
}
