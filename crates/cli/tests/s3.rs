//! Blob bytes on S3-compatible object storage, against real Garage 2.5
//! processes started on 127.0.0.1 (never a mock): the backend suite, a
//! store on it through the public API and the CLI, a bucket that is down,
//! a 1 GiB blob in bounded memory, kill -9 cycles, a Garage node lost from
//! a 3-node cluster, and `ocidb serve` under the conformance suite.
//!
//! Without a `garage` binary these skip with a line (and fail under
//! `CI=true`, where `.ci/run` installs it).

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::rich;
use ocidb::blob::{BlobLocation, S3Blobs, S3Location, S3Options};
use ocidb::{
    Algorithm, BlobBackend, Digest, ErrorKind, ExportOptions, FsckOptions, Hasher, PutOptions,
    Reference, Store, StoreOptions,
};
use ocidb_bench::garage::{Garage, ACCESS_KEY, SECRET_KEY};

fn options() -> S3Options {
    S3Options {
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        ..S3Options::default()
    }
}

fn store_options(loc: &S3Location) -> StoreOptions {
    StoreOptions::default()
        .blobs(BlobLocation::S3(loc.clone()))
        .s3(options())
}

fn backend(loc: &S3Location) -> S3Blobs {
    S3Blobs::with_options(loc, &options()).expect("backend")
}

fn objects(loc: &S3Location) -> usize {
    let mut n = 0;
    backend(loc)
        .list(&mut |_| {
            n += 1;
            Ok(())
        })
        .expect("list");
    n
}

/// Bytes that do not compress (Garage compresses by default): word `i` of
/// a stream is a hash of (seed, i), so that any range can be regenerated.
fn random_fill(seed: u64, offset: u64, out: &mut [u8]) {
    for (j, b) in out.iter_mut().enumerate() {
        let pos = offset + j as u64;
        let mut z = (pos / 8)
            .wrapping_add(seed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *b = (z >> ((pos % 8) * 8)) as u8;
    }
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    random_fill(seed, 0, &mut v);
    v
}

fn sha256(b: &[u8]) -> Digest {
    Hasher::digest_of(Algorithm::Sha256, b)
}

#[test]
fn garage_passes_the_backend_suite() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, dir.path()).expect("garage");
    let n = std::sync::atomic::AtomicUsize::new(0);
    common::assert_suite("S3Blobs on Garage", &|| {
        // Each check gets a prefix of its own: a fresh, empty backend.
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = backend(&garage.location(0, &format!("suite/{i}")).expect("location"));
        b.check().expect("reachable");
        Arc::new(b) as Arc<dyn BlobBackend>
    });
}

#[test]
fn a_store_on_garage_does_what_a_local_one_does() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "stores/a").expect("location");
    let root = dir.path().join("store");
    let s = Store::open_with(&root, store_options(&loc), true).expect("create on garage");
    assert_eq!(s.blob_location(), Some(&BlobLocation::S3(loc.clone())));

    // Everything the index records, then read back after a reopen that
    // does not name the location: the store recorded it.
    let upload = rich::populate(&s);
    assert!(objects(&loc) > 0, "large blobs went to the bucket");
    assert!(
        !root.join("blobs/sha256").exists()
            || std::fs::read_dir(root.join("blobs/sha256"))
                .expect("dir")
                .next()
                .is_none(),
        "no local blob files"
    );

    // A blob of several multipart parts, ranges, dedup across repositories.
    let big = random_bytes(7, 21 << 20);
    let d = sha256(&big);
    let p = s
        .put(&big[..], &PutOptions::default().repository("big/one"))
        .expect("put 21 MiB");
    assert!(p.created);
    assert_eq!(p.digest, d);
    let again = s
        .put_bytes(&big, &PutOptions::default().repository("big/two"))
        .expect("put again");
    assert!(!again.created, "dedup across repositories");
    assert_eq!(s.stat(&d).expect("stat").size, big.len() as u64);
    let mut back = Vec::new();
    s.get(&d)
        .expect("get")
        .read_to_end(&mut back)
        .expect("read");
    assert!(back.len() == big.len() && sha256(&back) == d, "whole blob");
    for (a, b) in [
        (0u64, 1u64),
        (8 << 20, (8 << 20) + 4096),
        ((21 << 20) - 10, 21 << 20),
    ] {
        let mut r = Vec::new();
        s.get_range(&d, a, b - 1)
            .expect("range")
            .read_to_end(&mut r)
            .expect("read range");
        assert!(
            r.as_slice() == &big[a as usize..b as usize],
            "range {a}..{b} is exact"
        );
    }
    drop(back);

    // An upload session across a chunk object boundary.
    let st = s
        .begin_upload("big/three", &ocidb::UploadOptions::default())
        .expect("begin");
    let up = random_bytes(9, 9 << 20);
    s.append_upload(&st.id, 0, &up[..5 << 20]).expect("append");
    s.append_upload(&st.id, 5 << 20, &up[5 << 20..9 << 20])
        .expect("append 2");
    let fin = s
        .finish_upload(&st.id, &sha256(&up), &[][..])
        .expect("finish");
    assert_eq!(fin.size, up.len() as u64);
    s.verify(&fin.digest).expect("verify the finished upload");

    let before = rich::snapshot(&s, &upload);
    drop(s);
    let s = Store::open_with(&root, StoreOptions::default().s3(options()), false).expect("reopen");
    assert_eq!(s.blob_location(), Some(&BlobLocation::S3(loc.clone())));
    common::assert_same_text(
        &rich::snapshot(&s, &upload),
        &before,
        "everything reads back",
    );
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);

    // Export copies the bytes out (no hard links into a bucket).
    let out = dir.path().join("layout");
    s.tag("big/one", "v1", &p.digest).ok();
    let repos = s.repositories().expect("repos");
    let refs: Vec<(String, Reference)> = repos
        .iter()
        .flat_map(|r| {
            s.tags(r, None, None)
                .expect("tags")
                .into_iter()
                .map(move |t| (r.clone(), Reference::Tag(t)))
        })
        .collect();
    let ex = s
        .export_layout(&refs, &out, &ExportOptions::default())
        .expect("export");
    assert!(ex.blobs > 0, "{ex:?}");

    // Deleting and collecting removes the object.
    let count = objects(&loc);
    s.unlink_blob("big/one", &d).expect("unlink");
    s.unlink_blob("big/two", &d).expect("unlink");
    let gc = s.gc(&common::grace0(false)).expect("gc");
    assert!(gc.deleted_blobs >= 1, "{gc:?}");
    assert!(
        backend(&loc).len(&d).expect("head").is_none(),
        "the object went"
    );
    assert!(objects(&loc) < count);
    drop(s);

    // Another store may not use the same prefix.
    let e = Store::open_with(dir.path().join("second"), store_options(&loc), true)
        .expect_err("a second store on the prefix");
    assert!(e.to_string().contains("belongs to store"), "{e}");

    // Another location is refused, naming the way to move.
    let other = garage.location(0, "stores/b").expect("location");
    let e = Store::open_with(&root, store_options(&other), false).expect_err("other location");
    let msg = e.to_string();
    assert!(
        msg.contains("migrate-blobs") && msg.contains("stores/b"),
        "{msg}"
    );
}

#[test]
fn a_bucket_down_at_open_leaves_metadata_readable_and_says_what_is_not() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "down").expect("location");
    let root = dir.path().join("store");
    let s = Store::open_with(&root, store_options(&loc), true).expect("create");
    let big = random_bytes(1, 300_000);
    let small = b"small and inline".to_vec();
    let bd = s
        .put_bytes(&big, &PutOptions::default().repository("r/a"))
        .expect("put")
        .digest;
    let sd = s
        .put_bytes(&small, &PutOptions::default().repository("r/a"))
        .expect("put")
        .digest;
    drop(s);
    garage.kill(0).expect("kill garage");

    let s = Store::open_with(&root, StoreOptions::default().s3(options()), false)
        .expect("opens without its bucket");
    let why = s.unavailable().expect("says it is degraded").to_string();
    assert!(
        why.contains(&loc.to_string()) && why.contains("writes") && why.contains("reads of blobs"),
        "{why}"
    );
    assert_eq!(s.repositories().expect("repos"), vec!["r/a".to_string()]);
    assert_eq!(s.stat(&bd).expect("stat").size, big.len() as u64);
    assert_eq!(s.read(&sd).expect("inline read"), small);
    let e = s.read(&bd).expect_err("a large blob is unavailable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let e = s
        .put_bytes(b"new", &PutOptions::default())
        .expect_err("writes are refused");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains(&loc.to_string()), "{e}");

    // A new store cannot begin on a bucket it cannot reach, and leaves
    // nothing when it fails: no database that a later open would take for
    // a local store (issue 26, item 14).
    let fresh = dir.path().join("fresh");
    let e =
        Store::open_with(&fresh, store_options(&loc), true).expect_err("unreachable at creation");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        !fresh.exists(),
        "a failed creation left {}",
        fresh.display()
    );
    let e = Store::open(&fresh).expect_err("no store was made");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");

    // The bucket comes back: the store connects at its next check,
    // without a reopen, and takes writes and serves large blobs again.
    assert!(s.check_backend().is_err(), "still down");
    garage.start_again(0).expect("start garage again");
    s.check_backend().expect("answers again");
    assert!(s.unavailable().is_none());
    assert_eq!(s.read(&bd).expect("large read"), big);
    let again = random_bytes(9, 300_000);
    let d = s
        .put_bytes(&again, &PutOptions::default().repository("r/a"))
        .expect("put after the reconnection")
        .digest;
    assert_eq!(s.read(&d).expect("read back"), again);
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

#[test]
fn a_bucket_that_fails_mid_run_gets_a_clear_error_naming_endpoint_and_operation() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "fails").expect("location");
    let fast = S3Options {
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(5),
        ..options()
    };
    let s = Store::open_with(dir.path().join("store"), store_options(&loc).s3(fast), true)
        .expect("create");
    let ok = s
        .put_bytes(&random_bytes(2, 200_000), &PutOptions::default())
        .expect("put while up");
    garage.kill(0).expect("kill garage");
    let e = s
        .put_bytes(&random_bytes(3, 200_000), &PutOptions::default())
        .expect_err("put while down");
    let msg = e.to_string();
    let endpoint = loc.endpoint.clone().expect("endpoint");
    assert!(msg.contains(&endpoint) && msg.contains("PUT"), "{msg}");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{msg}");
    let e = s.read(&ok.digest).expect_err("read while down");
    assert!(e.to_string().contains(&endpoint), "{e}");
    // An inline put needs the bucket too: its commit's index log object
    // goes there before it is acknowledged.
    let e = s
        .put_bytes(b"inline too", &PutOptions::default())
        .expect_err("inline put while down");
    assert!(e.to_string().contains("index/log/"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // Nothing was recorded for the failed puts, and the store is not
    // poisoned by a network failure: once the bucket is back, it writes.
    garage.start_again(0).expect("garage back");
    let mut last = None;
    for _ in 0..100 {
        match s.put_bytes(b"inline after", &PutOptions::default()) {
            Ok(p) => {
                last = Some(p);
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    let p = last.expect("writes resume once the bucket answers");
    assert_eq!(s.read(&p.digest).expect("read"), b"inline after");
    assert!(s.fsck(&FsckOptions::default()).expect("fsck").is_clean());
}

/// Garage 2.5 ignores `If-None-Match: *` on PUT: a create-if-absent
/// overwrites. The backend never relies on it: committing the same digest
/// twice (as a crash and a rerun do) overwrites the object with the same
/// verified bytes, and reads them back.
#[test]
fn nothing_relies_on_create_if_absent() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, dir.path()).expect("garage");
    let b = backend(&garage.location(0, "cond").expect("location"));
    let data = random_bytes(4, 100_000);
    let d = sha256(&data);
    for _ in 0..2 {
        let mut w = b.stage().expect("stage");
        w.write_all(&data).expect("write");
        let staged = w.finish(true).expect("finish");
        b.commit(&staged, &d)
            .expect("commit over an existing object");
    }
    let r = b.open(&d).expect("open").expect("present");
    let mut back = vec![0u8; data.len()];
    let mut at = 0;
    while at < back.len() {
        let n = r.read_at(&mut back[at..], at as u64).expect("read");
        assert!(n > 0, "short object");
        at += n;
    }
    assert!(sha256(&back) == d, "the bytes verify");
    assert!(b.list_staged().expect("staged").is_empty());
}

fn ocidb_on(store: &Path, loc: &S3Location) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ocidb"));
    c.arg("--store")
        .arg(store)
        .arg("--blobs")
        .arg(loc.to_string())
        .envs(Garage::env());
    c
}

/// Runs `cmd`, feeding stdin from `feed` and handing stdout to `sink`;
/// returns whether it succeeded, its stderr and its own peak RSS in KiB
/// (VmHWM, which it prints at exit with `OCIDB_REPORT_PEAK_RSS`: a
/// parent's `wait4` would count the parent's own peak, which the kernel
/// carries over exec).
fn run_measured(
    cmd: &mut Command,
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
    sink: Option<Box<dyn FnOnce(std::process::ChildStdout) + Send>>,
) -> (bool, String, u64) {
    cmd.env("OCIDB_REPORT_PEAK_RSS", "1")
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if sink.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ocidb");
    let feeder = feed
        .zip(child.stdin.take())
        .map(|(f, i)| std::thread::spawn(move || f(i)));
    let sinker = sink
        .zip(child.stdout.take())
        .map(|(f, o)| std::thread::spawn(move || f(o)));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if let Some(t) = feeder {
        t.join().expect("feeder");
    }
    if let Some(t) = sinker {
        t.join().expect("sink");
    }
    let ok = child.wait().expect("wait").success();
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("ocidb: peak RSS "))
        .and_then(|v| v.trim_end_matches(" KiB").parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS line in: {err}"));
    (ok, err, rss)
}

#[test]
fn a_1_gib_blob_goes_up_and_comes_back_in_bounded_memory() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let mib = common::env_u64("OCIDB_S3_BIG_MIB", 1024);
    let len = mib << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "big").expect("location");
    let store = dir.path().join("store");
    const SEED: u64 = 0x1618;

    let (tx, rx) = std::sync::mpsc::channel();
    let feed = Box::new(move |mut stdin: std::process::ChildStdin| {
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            random_fill(SEED, at, &mut buf[..n]);
            h.update(&buf[..n]);
            stdin.write_all(&buf[..n]).expect("feed ocidb");
            at += n as u64;
        }
        let _ = tx.send(h.finish());
    });
    let (ok, err, put_rss) = run_measured(
        ocidb_on(&store, &loc).args(["blob", "put", "-", "--repo", "big/blob"]),
        Some(feed),
        None,
    );
    assert!(ok, "blob put: {err}");
    let d = rx.recv().expect("digest");
    eprintln!("1 GiB put: peak RSS {put_rss} KiB");
    assert!(
        put_rss < 64 << 10,
        "put peak RSS {put_rss} KiB (limit 64 MiB); its stderr: {err}"
    );
    assert_eq!(
        backend(&loc).len(&d).expect("head"),
        Some(len),
        "the object is in the bucket"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Box::new(move |mut out: std::process::ChildStdout| {
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        let mut n_all = 0u64;
        loop {
            let n = out.read(&mut buf).expect("read stdout");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            n_all += n as u64;
        }
        let _ = tx.send((h.finish(), n_all));
    });
    let (ok, err, get_rss) = run_measured(
        ocidb_on(&store, &loc).args(["blob", "get", &d.to_string()]),
        None,
        Some(sink),
    );
    assert!(ok, "blob get: {err}");
    let (got, n) = rx.recv().expect("hash");
    eprintln!("1 GiB get: peak RSS {get_rss} KiB");
    assert!(got == d && n == len, "the bytes come back ({n} of {len})");
    assert!(
        get_rss < 64 << 10,
        "get peak RSS {get_rss} KiB (limit 64 MiB); its stderr: {err}"
    );

    // Ranges, across part and window boundaries and at the end.
    for (a, b) in [
        (0u64, 0u64),
        ((8 << 20) - 3, (8 << 20) + 5),
        ((16 << 20) - 1, (16 << 20) + 100_000),
        (len - 7, len - 1),
    ] {
        let out = ocidb_on(&store, &loc)
            .args([
                "blob",
                "get",
                &d.to_string(),
                "--range",
                &format!("{a}-{b}"),
            ])
            .output()
            .expect("range get");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut want = vec![0u8; (b - a + 1) as usize];
        random_fill(SEED, a, &mut want);
        assert!(out.stdout == want, "range {a}-{b} is exact");
    }
}

#[test]
fn acknowledged_blobs_survive_kill_9_during_multipart_uploads_and_gc_sweeps() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let cycles = common::env_u64("OCIDB_S3_CRASH_CYCLES", 16);
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "crash").expect("location");
    let store = dir.path().join("store");
    // The store records the location at creation; later opens find it.
    drop(Store::open_with(&store, store_options(&loc), true).expect("create"));
    let open = |p: &Path| Store::open_with(p, StoreOptions::default().s3(options()), false);
    let staged = |_: &Store| backend(&loc).list_staged().expect("staged").len();
    let env = Garage::env();
    let checked = common::crash::cycles(
        &store,
        &dir.path().join("acked.log"),
        cycles,
        &common::crash::Child {
            extra: &["--large-mib", "9"],
            env: &env,
            max_wait_ms: 1500,
        },
        &common::crash::Target {
            open: &open,
            staged_left: &staged,
        },
    );
    assert!(
        checked > 10,
        "the workload made progress: {checked} acknowledged items"
    );
    // And the CLI's repair leaves nothing to report.
    let out = ocidb_on(&store, &loc)
        .args(["fsck", "--repair"])
        .output()
        .expect("fsck");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn losing_one_of_three_garage_nodes_loses_nothing_acknowledged() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::cluster(&exe, &dir.path().join("garage"), 3).expect("3-node cluster");
    // ocidb talks to node 0 (its endpoint); node 2 is killed while a
    // writer and a reader run, and restarted later.
    let loc = garage.location(0, "ha").expect("location");
    let s = Arc::new(
        Store::open_with(dir.path().join("store"), store_options(&loc), true).expect("create"),
    );
    let acked = Arc::new(std::sync::Mutex::new(Vec::<Digest>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, acked, stop) = (Arc::clone(&s), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let len = if i.is_multiple_of(4) {
                    9 << 20
                } else {
                    70_000 + (i as usize * 977) % 400_000
                };
                let data = random_bytes(1000 + i, len);
                let r = s
                    .put_bytes(&data, &PutOptions::default().repository("ha/r"))
                    .unwrap_or_else(|e| panic!("put {i} failed: {e}"));
                assert!(r.digest == sha256(&data));
                acked.lock().expect("acked").push(r.digest);
                i += 1;
            }
            i
        })
    };
    let reader = {
        let (s, acked, stop) = (Arc::clone(&s), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let pick = {
                    let a = acked.lock().expect("acked");
                    a.get((reads as usize * 7919) % a.len().max(1)).copied()
                };
                if let Some(d) = pick {
                    s.verify(&d)
                        .unwrap_or_else(|e| panic!("read of acknowledged {d}: {e}"));
                    reads += 1;
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            reads
        })
    };
    let count = || acked.lock().expect("acked").len();
    let wait_for = |n: usize| {
        while count() < n && !writer.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for(8);
    garage.kill(2).expect("kill -9 node 2");
    let at_kill = count();
    wait_for(at_kill + 24);
    garage.restart(2, 0).expect("restart node 2");
    let at_restart = count();
    wait_for(at_restart + 8);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let writes = writer.join().expect("the writer never failed");
    let reads = reader.join().expect("the reader never failed");
    assert!(
        at_restart >= at_kill + 24,
        "writes went on with a node down: {at_kill} before, {at_restart} after"
    );
    eprintln!(
        "node loss: {writes} writes, {reads} verified reads; node 2 down for {} writes",
        at_restart - at_kill
    );
    for d in acked.lock().expect("acked").iter() {
        s.verify(d)
            .unwrap_or_else(|e| panic!("acknowledged {d}: {e}"));
    }
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn migrate_blobs_moves_a_local_store_into_the_bucket_resumably() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "moved").expect("location");
    let root = dir.path().join("store");
    let s = Store::create(&root).expect("local store");
    let upload = rich::populate(&s);
    let big = random_bytes(11, 10 << 20);
    s.put_bytes(&big, &PutOptions::default().repository("big/m"))
        .expect("put");
    let before = rich::snapshot(&s, &upload);
    drop(s);

    // An interrupted run: half the blobs are in the bucket, the store is
    // still local and whole.
    let local = ocidb::LocalFiles::new(&root).expect("local");
    let target = backend(&loc);
    let mut n = 0;
    local
        .list(&mut |l| {
            if let ocidb::blob::Listed::Blob(d) = l {
                n += 1;
                if n % 2 == 0 {
                    let r = local.open(&d)?.expect("file");
                    let len = r.len().expect("len");
                    let mut buf = vec![0u8; len as usize];
                    let mut at = 0;
                    while at < buf.len() {
                        at += r.read_at(&mut buf[at..], at as u64).expect("read");
                    }
                    let mut w = target.stage()?;
                    w.write_all(&buf).expect("write");
                    let staged = w.finish(true)?;
                    target.commit(&staged, &d)?;
                }
            }
            Ok(())
        })
        .expect("list");
    assert!(n >= 4, "the store has blob files ({n})");
    assert_eq!(
        Store::open(&root).expect("still local").blob_location(),
        Some(&BlobLocation::Local)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&root)
        .envs(Garage::env())
        .args(["migrate-blobs", "--to", &loc.to_string(), "--json"])
        .output()
        .expect("migrate-blobs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(
        report["verified_present"].as_u64() >= Some(n / 2),
        "{report}"
    );
    assert!(report["copied"].as_u64() >= Some(1), "{report}");
    assert!(report["removed_local"].as_u64() >= Some(n), "{report}");

    let s = Store::open_with(&root, StoreOptions::default().s3(options()), false).expect("reopen");
    assert_eq!(s.blob_location(), Some(&BlobLocation::S3(loc.clone())));
    common::assert_same_text(
        &rich::snapshot(&s, &upload),
        &before,
        "everything reads back",
    );
    let report = s.fsck(&FsckOptions::default()).expect("fsck");
    assert!(report.is_clean(), "{:?}", report.problems);
    drop(s);

    // A rerun after the switch has nothing to move.
    let out = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&root)
        .envs(Garage::env())
        .args(["migrate-blobs", "--to", &loc.to_string()])
        .output()
        .expect("rerun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Garage below `dir`, and `ocidb serve` on a new store in `dir` with its
/// blobs below `prefix` of the bucket, with `env` added.
fn serve_on_garage(
    exe: &Path,
    dir: &Path,
    prefix: &str,
    env: &[(&str, &str)],
) -> (Garage, S3Location, common::server::Server) {
    let garage = Garage::single(exe, &dir.join("garage")).expect("garage");
    let loc = garage.location(0, prefix).expect("location");
    let mut all: Vec<(&str, &str)> = Garage::env().to_vec();
    all.extend_from_slice(env);
    let server =
        common::server::Server::start_env(&dir.join("store"), &["--blobs", &loc.to_string()], &all);
    (garage, loc, server)
}

#[test]
fn the_conformance_suite_passes_with_blobs_on_garage() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Every blob goes to the bucket, however small.
    let (_garage, loc, server) =
        serve_on_garage(&exe, dir.path(), "serve", &[("OCIDB_INLINE_BYTES", "0")]);
    common::server::assert_conformance_passes(&tools, &server, &dir.path().join("results"), &[]);
    assert!(
        objects(&loc) > 0,
        "the blobs the suite pushed are in the bucket"
    );
}

#[test]
fn oras_and_crane_push_pull_and_copy_with_blobs_on_garage() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let Some(tools) = common::shared_path("oci-tools") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_garage, loc, server) = serve_on_garage(&exe, dir.path(), "clients", &[]);
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("pulled")).expect("work");
    let tool = |name: &str| {
        let mut c = Command::new(tools.join("bin").join(name));
        c.env("HOME", std::env::temp_dir());
        c
    };
    let run = |c: &mut Command| {
        let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{c:?} failed:\n{text}");
        text
    };
    // 3 MiB of random bytes: above the inline threshold, so in the bucket.
    let payload = random_bytes(21, 3 << 20);
    std::fs::write(work.join("payload.bin"), &payload).expect("file");
    std::fs::write(work.join("sbom.json"), b"{\"sbom\":true}").expect("file");
    let image = format!("{}/garage/app:v1", server.addr);
    run(tool("oras")
        .current_dir(&work)
        .args(["push", "--plain-http", &image, "payload.bin"]));
    run(tool("oras").current_dir(&work).args([
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/spdx+json",
        &image,
        "sbom.json",
    ]));
    let found = run(tool("oras").args(["discover", "--plain-http", "--format", "json", &image]));
    assert!(found.contains("application/spdx+json"), "{found}");
    run(tool("oras")
        .current_dir(work.join("pulled"))
        .args(["pull", "--plain-http", &image]));
    let back = std::fs::read(work.join("pulled/payload.bin")).expect("pulled file");
    assert!(back == payload, "oras pulled the bytes it pushed");
    let copy = format!("{}/garage/copy:v1", server.addr);
    run(tool("crane").args(["copy", "--insecure", &image, &copy]));
    let digest = run(tool("crane").args(["digest", "--insecure", &copy]));
    assert!(digest.trim().starts_with("sha256:"), "{digest}");
    assert!(
        backend(&loc)
            .len(&sha256(&payload))
            .expect("head")
            .is_some(),
        "the payload is an object in the bucket"
    );
}

/// `/readyz` asks the bucket: with Garage stopped under a running server
/// it turns 503 naming the endpoint, and 200 again once Garage is back,
/// without a restart of the server; `/livez` stays 200 throughout (a
/// restart would not bring the bucket back).
#[test]
fn readiness_follows_the_bucket_down_and_back() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut garage, loc, server) = serve_on_garage(&exe, dir.path(), "ready", &[]);
    let probe = |path: &str| server.request("GET", path, &[], b"");
    let wait_for = |status: u16| {
        for _ in 0..100 {
            let r = probe("/readyz");
            if r.status == status {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("/readyz never answered {status}");
    };
    wait_for(200);
    garage.kill(0).expect("stop garage");
    let down = wait_for(503);
    let text = String::from_utf8_lossy(&down.body).to_string();
    let endpoint = loc.endpoint.clone().expect("endpoint");
    assert!(
        text.contains("blob backend") && text.contains(&endpoint),
        "{text}"
    );
    assert_eq!(
        probe("/livez").status,
        200,
        "liveness does not follow the bucket"
    );
    garage.start_again(0).expect("start garage again");
    wait_for(200);
    // And it takes writes again: a blob pushed through the API.
    let up = server.request("POST", "/v2/back/blobs/uploads/?digest=sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", &[], b"hello");
    assert_eq!(up.status, 201, "{up:?}");
}

/// A server started while its bucket is down serves what the index holds,
/// is not ready, and turns ready (and takes pushes) once the bucket
/// answers, with no restart.
#[test]
fn a_server_started_without_its_bucket_turns_ready_when_it_answers() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "late").expect("location");
    let root = dir.path().join("store");
    drop(Store::open_with(&root, store_options(&loc), true).expect("create"));
    garage.kill(0).expect("stop garage");
    let server = common::server::Server::start_env(&root, &[], &Garage::env());
    let probe = || server.request("GET", "/readyz", &[], b"");
    let down = probe();
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(
        server.request("GET", "/v2/", &[], b"").status,
        200,
        "the API answers"
    );
    garage.start_again(0).expect("start garage again");
    let mut ready = false;
    for _ in 0..100 {
        if probe().status == 200 {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(ready, "ready once the bucket answers");
    let data = random_bytes(4, 300_000);
    let d = sha256(&data);
    let up = server.request(
        "POST",
        &format!("/v2/late/blobs/uploads/?digest={d}"),
        &[],
        &data,
    );
    assert_eq!(up.status, 201, "{up:?}");
}

/// The image of the store at `root` once reopened (nothing in flight).
fn settled_image(root: &Path) -> Vec<u8> {
    let s = Store::open_with(root, StoreOptions::default().s3(options()), false).expect("reopen");
    s.index_image().expect("image")
}

/// `ocidb restore` into `root`, which must succeed and end in a clean fsck.
fn restore_with_cli(root: &Path, loc: &S3Location) -> String {
    let out = ocidb_on(root, loc)
        .arg("restore")
        .output()
        .expect("restore");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(", 0 problems"), "{text}");
    text
}

#[test]
fn a_rich_store_on_garage_restores_from_the_bucket_alone() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "stores/restore").expect("location");
    let root = dir.path().join("store");
    let s = Store::open_with(&root, store_options(&loc), true).expect("create on garage");
    let upload = rich::populate(&s);
    // sha512 content, and a blob above the inline threshold in two
    // repositories.
    let big = random_bytes(9, 300_000);
    s.put_bytes(&big, &PutOptions::default().repository("big/one"))
        .expect("put");
    s.put_bytes(
        &big,
        &PutOptions::expect(Hasher::digest_of(Algorithm::Sha512, &big)).repository("big/two"),
    )
    .expect("put sha512");
    let text = rich::snapshot(&s, &upload);
    drop(s);
    let want = settled_image(&root);
    std::fs::remove_dir_all(&root).expect("lose the machine's disk");

    let said = restore_with_cli(&root, &loc);
    assert!(
        said.contains("from the snapshot at log position 0"),
        "{said}"
    );
    let r = Store::open_with(&root, StoreOptions::default().s3(options()), false).expect("open");
    assert_eq!(
        r.index_image().expect("image"),
        want,
        "every table, byte for byte"
    );
    assert_eq!(rich::snapshot(&r, &upload), text);
    assert!(
        r.read(&sha256(&big)).expect("read") == big,
        "the large blob reads from the bucket"
    );

    // One more write and one GC, then lose the disk again.
    let v = r
        .put_bytes(
            b"after restore",
            &PutOptions::default().repository("app/web"),
        )
        .expect("put");
    r.untag("app/web", "v0").expect("untag");
    let gc = r.gc(&common::grace0(true)).expect("gc");
    drop(r);
    let want = settled_image(&root);
    std::fs::remove_dir_all(&root).expect("lose it again");
    restore_with_cli(&root, &loc);
    let r = Store::open_with(&root, StoreOptions::default().s3(options()), false).expect("open");
    assert_eq!(
        r.index_image().expect("image"),
        want,
        "after a write and a GC ({gc:?})"
    );
    assert!(gc.deleted_manifests > 0 && gc.deleted_blobs > 0, "{gc:?}");
    assert!(
        r.stat(&v.digest).is_err(),
        "the GC's deletion of the loose blob is restored too"
    );
    // A restore never writes over a store.
    let out = ocidb_on(&root, &loc)
        .arg("restore")
        .output()
        .expect("restore");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist or is empty"));
}

#[test]
fn a_disk_lost_after_kill_9_cycles_restores_every_acknowledged_write() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let cycles = common::env_u64("OCIDB_S3_RESTORE_CYCLES", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let garage = Garage::single(&exe, &dir.path().join("garage")).expect("garage");
    let loc = garage.location(0, "lost").expect("location");
    let store = dir.path().join("store");
    drop(Store::open_with(&store, store_options(&loc), true).expect("create"));
    let open = |p: &Path| Store::open_with(p, StoreOptions::default().s3(options()), false);
    let staged = |_: &Store| backend(&loc).list_staged().expect("staged").len();
    let env = Garage::env();
    let target = common::crash::Target {
        open: &open,
        staged_left: &staged,
    };
    let log = dir.path().join("acked.log");
    let checked = common::crash::cycles(
        &store,
        &log,
        cycles,
        &common::crash::Child {
            extra: &["--large-mib", "2"],
            env: &env,
            max_wait_ms: 1500,
        },
        &target,
    );
    assert!(
        checked > 5,
        "the workload made progress: {checked} acknowledged items"
    );
    // The machine is gone: only the bucket is left.
    std::fs::remove_dir_all(&store).expect("lose the disk");
    restore_with_cli(&store, &loc);
    let mut fresh = common::crash::Checker::default();
    let mut rng = 1u64;
    let again = common::crash::check(&store, &log, cycles, true, &mut fresh, &mut rng, &target);
    assert_eq!(
        again, checked,
        "every acknowledged item, checked on the restored store"
    );
}

/// `ocidb serve` writes index snapshots on its schedule (pruning the log
/// before the older one kept), `ocidb snapshot` writes one through the
/// running server, and after a kill -9 and the loss of the store's disk
/// the bucket restores every push the server acknowledged.
#[test]
fn a_server_snapshots_on_schedule_and_its_bucket_restores_its_pushes() {
    let Some(exe) = common::garage::exe() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_garage, loc, server) = serve_on_garage(
        &exe,
        dir.path(),
        "served",
        &[("OCIDB_SNAPSHOT_INTERVAL", "1s")],
    );
    let root = dir.path().join("store");
    let log = backend(&loc).index_log();
    let snapshots = || {
        let mut v: Vec<u64> = log
            .list("snapshots")
            .expect("list")
            .iter()
            .map(|n| n.parse().expect("a position"))
            .collect();
        v.sort_unstable();
        v
    };
    let mut pushed = Vec::new();
    for i in 0..3 {
        let layer = random_bytes(100 + i, 200_000);
        let l = sha256(&layer);
        let up = server.request(
            "POST",
            &format!("/v2/snap/app/blobs/uploads/?digest={l}"),
            &[],
            &layer,
        );
        assert_eq!(up.status, 201, "{up:?}");
        let cfg = b"{}";
        let c = sha256(cfg);
        let up = server.request(
            "POST",
            &format!("/v2/snap/app/blobs/uploads/?digest={c}"),
            &[],
            cfg,
        );
        assert_eq!(up.status, 201, "{up:?}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{c}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":{}}}]}}"#,
            layer.len()
        );
        let put = server.request(
            "PUT",
            &format!("/v2/snap/app/manifests/v{i}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            m.as_bytes(),
        );
        assert_eq!(put.status, 201, "{put:?}");
        pushed.push((format!("v{i}"), sha256(m.as_bytes()), l));
        // A scheduled snapshot lands after each push.
        let before = snapshots().last().copied().unwrap_or(0);
        let mut later = false;
        for _ in 0..100 {
            if snapshots().last().is_some_and(|&p| p > before) {
                later = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            later,
            "a scheduled snapshot after push {i}: {:?}",
            snapshots()
        );
        // Two are kept: a snapshot being written is listed before the
        // prune that follows it, so a third may show for a moment.
        let mut kept = snapshots();
        for _ in 0..100 {
            if kept.len() <= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            kept = snapshots();
        }
        assert!(kept.len() <= 2, "two are kept: {kept:?}");
    }
    // On demand, through the running server's socket.
    let out = Command::new(env!("CARGO_BIN_EXE_ocidb"))
        .arg("--store")
        .arg(&root)
        .args(["snapshot", "--json"])
        .output()
        .expect("snapshot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(info["position"].as_u64().is_some_and(|p| p > 0), "{info}");
    // The oldest log object left follows the older kept snapshot.
    let kept = snapshots();
    let first_log: u64 = log
        .list("log")
        .expect("list")
        .iter()
        .map(|n| n.parse::<u64>().expect("a position"))
        .min()
        .unwrap_or(u64::MAX);
    assert!(
        first_log > kept[0],
        "log pruned up to {}: first left {first_log}",
        kept[0]
    );
    server.kill();
    std::fs::remove_dir_all(&root).expect("lose the disk");
    restore_with_cli(&root, &loc);
    let r = Store::open_with(&root, StoreOptions::default().s3(options()), false).expect("open");
    for (tag, m, l) in &pushed {
        assert_eq!(
            r.resolve("snap/app", &Reference::Tag(tag.clone()))
                .expect("tag"),
            *m
        );
        assert!(r.is_member("snap/app", l).expect("member"));
    }
}
