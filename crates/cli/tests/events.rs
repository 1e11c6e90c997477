//! The outbox end to end: no event lost or invented across kill -9 cycles
//! of a writing process, and webhooks that get every event, in commit
//! order, after being down for a minute and across a kill -9 of the
//! server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::Server;
use ocidb::store::{Event, EventKind};
use ocidb::{Digest, Store};

/// Every event of the store, in order.
fn all_events(s: &Store) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = s.events_after(after, 1000).expect("events");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Memberships and tags, as replaying the events builds them.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    members: BTreeSet<(String, Digest)>,
    tags: BTreeMap<(String, String), Digest>,
}

fn replay(events: &[Event]) -> State {
    let mut st = State::default();
    for e in events {
        let (repo, d) = (e.repository.clone(), e.digest);
        match (e.kind, repo, d) {
            (EventKind::BlobPushed | EventKind::ManifestPushed, Some(r), Some(d)) => {
                st.members.insert((r, d));
            }
            (EventKind::BlobDeleted | EventKind::ManifestDeleted, Some(r), Some(d)) => {
                st.members.remove(&(r, d));
            }
            // A deletion from the store (GC): out of every repository.
            (EventKind::BlobDeleted | EventKind::ManifestDeleted, None, Some(d)) => {
                st.members.retain(|(_, m)| *m != d);
            }
            (EventKind::TagChanged, Some(r), Some(d)) => {
                st.tags.insert((r, e.tag.clone().expect("tag")), d);
            }
            (EventKind::TagDeleted, Some(r), Some(_)) => {
                st.tags.remove(&(r, e.tag.clone().expect("tag")));
            }
            other => panic!("an event of an unexpected shape: {other:?} in {e:?}"),
        }
    }
    st
}

/// What the store holds.
fn state_of(s: &Store) -> State {
    let mut st = State::default();
    for r in s.repositories().expect("repos") {
        for (d, _) in s.members(&r).expect("members") {
            st.members.insert((r.clone(), d));
        }
        for (t, d) in s.tag_map(&r).expect("tags") {
            st.tags.insert((r.clone(), t), d);
        }
    }
    st
}

#[test]
fn no_event_is_lost_or_invented_across_50_kill_9_cycles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, log) = (dir.path().join("store"), dir.path().join("acked.log"));
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut acked_events = 0;
    for cycle in 0..50u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocidb"))
            .arg("--store")
            .arg(&store)
            .args([
                "debug",
                "crash-child",
                "--events",
                "--seed",
                &cycle.to_string(),
            ])
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(30 + rng % 200));
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "cycle {cycle}: the child stopped"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let s = Store::open(&store).expect("reopen");
        let events = all_events(&s);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert!(
            seqs.iter().enumerate().all(|(i, &q)| q == i as u64 + 1),
            "cycle {cycle}: events are numbered 1, 2, 3… with no gap"
        );
        // Replaying the events gives exactly what the store holds: none
        // lost (the store would hold more), none invented (less).
        assert_eq!(replay(&events), state_of(&s), "cycle {cycle}");
        // Every acknowledged write has its event.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let pushed: BTreeSet<Digest> = events
            .iter()
            .filter(|e| e.kind == EventKind::ManifestPushed)
            .filter_map(|e| e.digest)
            .collect();
        let tagged: BTreeSet<(String, Digest)> = events
            .iter()
            .filter(|e| e.kind == EventKind::TagChanged)
            .filter_map(|e| Some((e.tag.clone()?, e.digest?)))
            .collect();
        let blobs: BTreeSet<Digest> = events
            .iter()
            .filter(|e| e.kind == EventKind::BlobPushed)
            .filter_map(|e| e.digest)
            .collect();
        for line in text
            .lines()
            .filter(|l| l.ends_with(|c: char| c.is_ascii_alphanumeric()))
        {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["blob", d] => {
                    let d = Digest::parse(d).expect("digest");
                    assert!(
                        blobs.contains(&d),
                        "cycle {cycle}: no event for acknowledged blob {d}"
                    );
                }
                ["manifest", _, d, tag] => {
                    let d = Digest::parse(d).expect("digest");
                    assert!(pushed.contains(&d), "cycle {cycle}: no push event for {d}");
                    assert!(
                        tagged.contains(&(tag.to_string(), d)),
                        "cycle {cycle}: no tag event for {tag} -> {d}"
                    );
                }
                _ => {}
            }
        }
        acked_events = events.len();
    }
    assert!(
        acked_events > 100,
        "the workload wrote {acked_events} events"
    );
}

/// One CloudEvent as a receiver got it.
#[derive(Clone, Debug)]
struct Received {
    id: u64,
    kind: String,
    subject: String,
    body: serde_json::Value,
}

/// An HTTP receiver on `listener` that records every request and answers
/// 200, until the process ends.
fn receive(listener: TcpListener, got: Arc<Mutex<Vec<Received>>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let got = Arc::clone(&got);
            std::thread::spawn(move || serve_one(conn, &got));
        }
    });
}

fn serve_one(conn: TcpStream, got: &Mutex<Vec<Received>>) {
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /hook "), "{line}");
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("a header");
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().expect("length");
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("body");
        assert_eq!(headers["ce-specversion"], "1.0");
        assert_eq!(headers["content-type"], "application/json");
        assert!(ocidb::clock::parse_rfc3339(&headers["ce-time"]).is_some());
        got.lock().expect("lock").push(Received {
            id: headers["ce-id"].parse().expect("id"),
            kind: headers["ce-type"].clone(),
            subject: headers.get("ce-subject").cloned().unwrap_or_default(),
            body: serde_json::from_slice(&body).expect("json body"),
        });
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Waits until `got` holds events with every id up to `last`.
fn wait_for(got: &Mutex<Vec<Received>>, last: u64, within: Duration) -> Vec<Received> {
    let until = Instant::now() + within;
    loop {
        let now = got.lock().expect("lock").clone();
        let ids: BTreeSet<u64> = now.iter().map(|r| r.id).collect();
        if (1..=last).all(|i| ids.contains(&i)) {
            return now;
        }
        assert!(
            Instant::now() < until,
            "events up to {last} did not all arrive; got ids {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(store: &Path, hook: &str) -> Server {
    Server::start_with(store, &["--webhook", hook, "--event-source", "/test"])
}

#[test]
fn a_webhook_down_through_retries_gets_every_event_in_commit_order_across_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    // A port with nothing on it yet: the receiver is down.
    let port = ocidb_bench::ports::free_port().expect("a free port");
    let hook = format!("http://127.0.0.1:{port}/hook");
    let server = start(&store, &hook);
    let (a, _) = server.push_image("ev/one", "v1", b"layer one");
    let (b, _) = server.push_image("ev/two", "v1", b"layer two");
    let (a2, _) = server.push_image("ev/one", "v1", b"layer one, again");
    let r = server.request("DELETE", "/v2/ev/two/manifests/v1", &[], b"");
    assert_eq!(r.status, 202, "{r:?}");
    // The receiver stays down through five failed attempts (the backoff
    // doubles from 100 ms: about three seconds), each one logged. Waiting
    // on the log, not a fixed minute, keeps the suite short.
    let failures = || {
        server
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains("webhook") && l.contains("retrying"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while failures() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let logged = failures();
    assert!(logged >= 5, "failed attempts were logged: {logged}");
    // kill -9 while nothing was delivered, then up again.
    server.kill();
    let got = Arc::new(Mutex::new(Vec::new()));
    receive(
        TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver"),
        Arc::clone(&got),
    );
    let server = start(&store, &hook);
    // 3 pushes of 2 blobs (the shared config once per repository),
    // 3 manifests, 3 tag events, then the tag and manifest deletes.
    let first = wait_for(&got, 12, Duration::from_secs(60));
    let kinds: Vec<(String, String)> = {
        let mut seen = BTreeSet::new();
        first
            .iter()
            .filter(|r| seen.insert(r.id))
            .map(|r| (r.kind.clone(), r.subject.clone()))
            .collect()
    };
    let k = |t: &str, s: &str| (format!("io.ocidb.{t}"), s.to_string());
    let cfg = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"{}").to_string();
    let blob = |l: &[u8]| ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, l).to_string();
    assert_eq!(
        kinds,
        vec![
            k("blob.pushed", &format!("ev/one@{cfg}")),
            k("blob.pushed", &format!("ev/one@{}", blob(b"layer one"))),
            k("manifest.pushed", &format!("ev/one@{a}")),
            k("tag.changed", "ev/one:v1"),
            k("blob.pushed", &format!("ev/two@{cfg}")),
            k("blob.pushed", &format!("ev/two@{}", blob(b"layer two"))),
            k("manifest.pushed", &format!("ev/two@{b}")),
            k("tag.changed", "ev/two:v1"),
            k(
                "blob.pushed",
                &format!("ev/one@{}", blob(b"layer one, again"))
            ),
            k("manifest.pushed", &format!("ev/one@{a2}")),
            k("tag.changed", "ev/one:v1"),
            k("tag.deleted", "ev/two:v1"),
        ]
    );
    // In commit order: each event's first delivery after the one before.
    let mut firsts = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &first {
        if seen.insert(r.id) {
            firsts.push(r.id);
        }
    }
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    let moved = first.iter().find(|r| r.id == 11).expect("event 11");
    assert_eq!(
        moved.body["previous"],
        serde_json::json!(a),
        "{:?}",
        moved.body
    );
    // Further writes arrive while the receiver is up.
    server.push_image("ev/three", "v1", b"layer three");
    let later = wait_for(&got, 16, Duration::from_secs(30));
    let ids: BTreeSet<u64> = later.iter().map(|r| r.id).collect();
    assert_eq!(ids, (1..=16).collect(), "nothing invented, nothing missing");
}
