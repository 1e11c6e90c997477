//! A 4 GiB blob goes in and out of the real binary with peak RSS under
//! 64 MiB. Ignored by default (it writes 4 GiB and takes a minute);
//! `tools/rss_4gib.sh` runs it: `cargo test --release --test large_blob -- --ignored`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const SIZE: u64 = 4 << 30;
const LIMIT_KIB: i64 = 64 * 1024;

#[allow(unsafe_code)]
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    ru.ru_maxrss
}

#[test]
#[ignore = "writes 4 GiB; run with tools/rss_4gib.sh"]
fn four_gib_blob_round_trip_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mut put = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&store)
        .args(["blob", "put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn put");
    let mut stdin = put.stdin.take().expect("stdin");
    let mut hasher = ocidb::Hasher::new(ocidb::Algorithm::Sha256);
    let mut chunk = ocidb_testkit::deterministic_bytes(b"4gib", 1 << 20);
    let mut sent = 0u64;
    while sent < SIZE {
        // Vary every chunk so the content is not one repeated MiB.
        chunk[..8].copy_from_slice(&sent.to_le_bytes());
        hasher.update(&chunk);
        stdin.write_all(&chunk).expect("write");
        sent += chunk.len() as u64;
    }
    drop(stdin);
    let out = put.wait_with_output().expect("put");
    assert!(out.status.success(), "put failed");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let want = hasher.finish().to_string();
    assert_eq!(digest, want);
    let put_rss = children_max_rss_kib();
    eprintln!("put: peak RSS {put_rss} KiB");
    assert!(put_rss < LIMIT_KIB, "put peak RSS {put_rss} KiB >= 64 MiB");

    let mut get = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&store)
        .args(["blob", "get", &digest, "--verify"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn get");
    let mut stdout = get.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 20];
    let mut h = ocidb::Hasher::new(ocidb::Algorithm::Sha256);
    let mut got = 0u64;
    loop {
        let n = stdout.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    assert!(get.wait().expect("get").success());
    assert_eq!(got, SIZE);
    assert_eq!(h.finish().to_string(), want);
    let both = children_max_rss_kib();
    eprintln!("get: peak RSS (max of put and get) {both} KiB");
    assert!(both < LIMIT_KIB, "get peak RSS {both} KiB >= 64 MiB");
}
