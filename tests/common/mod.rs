//! Helpers shared by the integration tests: build content, put it, and
//! name it.
#![allow(dead_code)]

use std::time::Duration;

use ocidb::manifest::{OCI_INDEX, OCI_MANIFEST};
use ocidb::{Digest, GcPolicy, ManifestOptions, ManifestPut, PutOptions, Store};
use serde_json::{json, Value};

/// A seeded xorshift generator: deterministic runs for the tests that
/// choose at random.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True one time in `one_in`.
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// A fresh store in a temp dir (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::create(dir.path()).expect("create");
    (dir, s)
}

/// A descriptor JSON value for a digest.
pub fn desc(mt: &str, d: &Digest, size: u64) -> Value {
    json!({"mediaType": mt, "digest": d.to_string(), "size": size})
}

/// Puts a plain blob and returns its descriptor with media type `mt`.
pub fn blob(s: &Store, data: &[u8], mt: &str) -> Value {
    let p = s.put_bytes(data, &PutOptions::default()).expect("blob");
    desc(mt, &p.digest, p.size)
}

/// Puts a plain blob, under a lease when given, and returns its descriptor.
pub fn leased_blob(s: &Store, data: &[u8], mt: &str, lease: Option<u64>) -> Value {
    let p = s
        .put_bytes(data, &PutOptions::default().lease(lease))
        .expect("blob");
    desc(mt, &p.digest, p.size)
}

/// The body of an image manifest with these layers (and an empty config).
pub fn image_body(s: &Store, layers: &[Value], subject: Option<&Value>) -> Value {
    let cfg = blob(s, b"{}", "application/vnd.oci.empty.v1+json");
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg,
        "layers": layers,
    });
    if let Some(sub) = subject {
        m["subject"] = sub.clone();
    }
    m
}

/// The body of an image index over these manifests.
pub fn index_body(children: &[Value]) -> Value {
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
}

/// Pushes the bytes of every stored blob that `body` names (config,
/// layers, artifact blobs) to `repo`, as a client pushes an image's blobs
/// before its manifest: a repository holds only what it received, and a
/// manifest whose blobs it lacks is refused. Blobs that are not stored are
/// left out (a test of sparse graphs asks for `Children::AllowMissing`).
pub fn push_children(s: &Store, repo: &str, body: &Value) {
    let mut descs: Vec<&Value> = Vec::new();
    if body.get("config").is_some_and(Value::is_object) {
        descs.push(&body["config"]);
    }
    for key in ["layers", "blobs"] {
        if let Some(list) = body.get(key).and_then(Value::as_array) {
            descs.extend(list);
        }
    }
    for desc in descs {
        let Some(d) = desc
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok())
        else {
            continue;
        };
        if !s.exists(&d).expect("exists") || s.is_member(repo, &d).expect("is_member") {
            continue;
        }
        let bytes = s.read(&d).expect("read a stored child");
        s.put_bytes(&bytes, &PutOptions::expect(d).repository(repo))
            .expect("push a child to the repository");
    }
}

/// Puts a manifest body in `repo` with `tags`, after pushing its stored
/// blobs there ([`push_children`]).
pub fn put_manifest(s: &Store, repo: &str, body: &Value, tags: &[&str]) -> ManifestPut {
    push_children(s, repo, body);
    s.put_manifest(
        repo,
        body.to_string().as_bytes(),
        &ManifestOptions::default().tags(tags.iter().map(std::string::ToString::to_string)),
    )
    .expect("put manifest")
}

/// A GC policy with no grace period.
pub fn grace0(delete_untagged: bool) -> GcPolicy {
    GcPolicy::default()
        .grace(Duration::ZERO)
        .delete_untagged(delete_untagged)
}

/// The digest in a descriptor value.
pub fn digest_of(v: &Value) -> Digest {
    Digest::parse(v["digest"].as_str().expect("digest")).expect("parse")
}

/// Runs the blob backend suite on fresh backends from `make` and asserts
/// that it ran and that every check passed.
pub fn assert_suite(name: &str, make: &dyn Fn() -> std::sync::Arc<dyn ocidb::BlobBackend>) {
    let outcomes = ocidb::blob::suite::run(make);
    assert!(
        outcomes.len() >= 12,
        "the suite ran {} checks",
        outcomes.len()
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(check, r)| r.as_ref().err().map(|e| format!("{check}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{name} failed: {failed:#?}");
}

/// A count from the environment (cycles, seconds, a seed), else `default`:
/// the long runs of the crash, power-loss and stress tests.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether the CI environment variable says this is a CI run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The repository's top directory (the workspace root), whichever crate's
/// tests include this module.
pub fn repo_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("ARCHITECTURE.md").is_file())
        .unwrap_or(here)
        .to_path_buf()
}

/// Says that the running test skipped and why, on the terminal, with how
/// many tests of this `cargo test` run have skipped so far: the harness
/// captures `eprintln!`, so that a skip would otherwise pass as a silent
/// `ok`. Writes to the stderr file descriptor directly; the count is kept
/// in a file named after the `cargo` process, which every test binary of
/// one run shares as its parent.
pub fn skip(reason: &str) {
    use std::io::Write as _;
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let tally = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "skipped-in-run-{}",
        std::os::unix::process::parent_id()
    ));
    // One line per skipped test, however often it finds something missing.
    let before = std::fs::read_to_string(&tally).unwrap_or_default();
    if before
        .lines()
        .any(|l| l.split(": ").next() == Some(name.as_str()))
    {
        return;
    }
    let count = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&tally)
        .and_then(|mut f| f.write_all(format!("{name}: {reason}\n").as_bytes()))
        .and_then(|()| std::fs::read_to_string(&tally))
        .map(|t| t.lines().count())
        .unwrap_or(1);
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED ({count} in this run so far) {name}: {reason}"
    );
}

/// `../shared/<rel>` beside the repository, if present. Absent: `None`,
/// with a one-line reason printed, except under `CI=true`, where its
/// absence fails the test.
pub fn shared_path(rel: &str) -> Option<std::path::PathBuf> {
    let p = repo_root().join("..").join("shared").join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "CI=true but {} is missing: the shared test material must be beside the checkout in CI",
        p.display()
    );
    skip(&format!(
        "{} is absent (a fresh clone has no ../shared)",
        p.display()
    ));
    None
}
pub mod fixtures;
pub mod http;
pub mod rich;

/// Fails unless `actual` equals `expected`, printing at most the first few
/// differing lines and the line counts: a dump of two 2,000-line
/// snapshots hides the one line that matters.
#[track_caller]
pub fn assert_same_text(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    const SHOWN: usize = 8;
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    let mut diffs = Vec::new();
    let mut count = 0usize;
    for i in 0..a.len().max(e.len()) {
        let (got, want) = (a.get(i).copied(), e.get(i).copied());
        if got != want {
            count += 1;
            if diffs.len() < SHOWN {
                diffs.push(format!(
                    "  line {}:\n    expected: {}\n    actual:   {}",
                    i + 1,
                    want.unwrap_or("<none>"),
                    got.unwrap_or("<none>")
                ));
            }
        }
    }
    panic!(
        "{what}: {count} of {} lines differ (actual has {} lines, expected {}); the first {}:\n{}",
        a.len().max(e.len()),
        a.len(),
        e.len(),
        diffs.len(),
        diffs.join("\n")
    );
}

/// Manifest puts as a registry client makes them: the blobs a body names
/// that the store holds are pushed to the repository first
/// ([`push_children`]), then the manifest goes in with the default
/// children rule.
pub trait ClientPush {
    /// [`Store::put_manifest`] after pushing the body's stored blobs.
    fn push_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> ocidb::Result<ManifestPut>;

    /// [`Store::put_manifests`] after pushing each body's stored blobs.
    fn push_manifests(
        &self,
        repo: &str,
        items: &[(&[u8], ManifestOptions)],
    ) -> ocidb::Result<Vec<ManifestPut>>;
}

impl ClientPush for Store {
    fn push_manifest(
        &self,
        repo: &str,
        body: &[u8],
        opts: &ManifestOptions,
    ) -> ocidb::Result<ManifestPut> {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            push_children(self, repo, &v);
        }
        self.put_manifest(repo, body, opts)
    }

    fn push_manifests(
        &self,
        repo: &str,
        items: &[(&[u8], ManifestOptions)],
    ) -> ocidb::Result<Vec<ManifestPut>> {
        for (body, _) in items {
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                push_children(self, repo, &v);
            }
        }
        self.put_manifests(repo, items)
    }
}

/// A fresh store on a [`ocidb::ManualClock`] started at `start_ms`, so that
/// nothing a test checks depends on the date; the clock to move it.
pub fn clocked_store(
    start_ms: u64,
) -> (tempfile::TempDir, Store, std::sync::Arc<ocidb::ManualClock>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = std::sync::Arc::new(ocidb::ManualClock::new(start_ms));
    let s = Store::open_with(
        dir.path().join("s"),
        ocidb::StoreOptions::default()
            .clock(std::sync::Arc::clone(&clock) as std::sync::Arc<dyn ocidb::Clock>),
        true,
    )
    .expect("open");
    (dir, s, clock)
}
