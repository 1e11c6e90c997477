//! Peer approaches, run on the same generated data as ocidb (feature
//! `peers`):
//!
//! - `ocidir`: the ocidir crate reading the generated OCI layout; a
//!   referrer search is a linear scan of index.json and every manifest it
//!   lists (what a layout-only tool, or zot's and ocidir's scan, does);
//! - `sqlite`: manifests as JSON rows in SQLite, queried with
//!   `json_extract` (the design trow uses);
//! - `oras-style`: every manifest parsed at open into an in-memory
//!   predecessor graph, as oras-go's OCI store does.

use std::collections::HashMap;
use std::path::Path;

use crate::bench::gen::GenManifest;
use crate::{Digest, Error, Result};

fn peer_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        value: format!("{what}: {e}"),
        expected: "the peer to run (see the bench harness's peers)".into(),
    }
}

/// The SQLite peer: one row per manifest, JSON queried in place.
pub struct Sqlite {
    // rusqlite connections are Send but not Sync; the harness times from
    // scoped threads.
    conn: std::sync::Mutex<rusqlite::Connection>,
}

impl Sqlite {
    /// A fresh database file at `path`.
    pub fn create(path: &Path) -> Result<Sqlite> {
        let _ = std::fs::remove_file(path);
        let conn = rusqlite::Connection::open(path).map_err(|e| peer_err("sqlite open", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE manifests(digest TEXT PRIMARY KEY, repo TEXT NOT NULL,
                                    media_type TEXT, body TEXT NOT NULL);",
        )
        .map_err(|e| peer_err("sqlite schema", e))?;
        Ok(Sqlite {
            conn: std::sync::Mutex::new(conn),
        })
    }

    /// Inserts a batch in one transaction (durable at commit).
    pub fn insert(&mut self, batch: &[GenManifest]) -> Result<()> {
        let conn = self
            .conn
            .get_mut()
            .map_err(|_| peer_err("sqlite", "lock poisoned"))?;
        let tx = conn
            .transaction()
            .map_err(|e| peer_err("sqlite begin", e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO manifests(digest, repo, media_type, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| peer_err("sqlite prepare", e))?;
            for m in batch {
                let body = std::str::from_utf8(&m.body).map_err(|e| peer_err("utf-8", e))?;
                st.execute((m.digest.to_string(), &m.repo, m.media_type, body))
                    .map_err(|e| peer_err("sqlite insert", e))?;
            }
        }
        tx.commit().map_err(|e| peer_err("sqlite commit", e))
    }

    /// Referrers of `subject` in `repo`: a scan with `json_extract`.
    pub fn referrers(&self, repo: &str, subject: &Digest, at: Option<&str>) -> Result<usize> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| peer_err("sqlite", "lock poisoned"))?;
        let mut st = conn
            .prepare_cached(
                "SELECT digest, json_extract(body, '$.artifactType') FROM manifests
                 WHERE repo = ?1 AND json_extract(body, '$.subject.digest') = ?2
                   AND (?3 IS NULL OR json_extract(body, '$.artifactType') = ?3)",
            )
            .map_err(|e| peer_err("sqlite prepare", e))?;
        let rows = st
            .query_map((repo, subject.to_string(), at), |r| r.get::<_, String>(0))
            .map_err(|e| peer_err("sqlite query", e))?;
        let mut n = 0;
        for r in rows {
            r.map_err(|e| peer_err("sqlite row", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// A lookup by digest (the primary key).
    pub fn stat(&self, d: &Digest) -> Result<u64> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| peer_err("sqlite", "lock poisoned"))?;
        let mut st = conn
            .prepare_cached("SELECT length(body) FROM manifests WHERE digest = ?1")
            .map_err(|e| peer_err("sqlite prepare", e))?;
        st.query_row([d.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| peer_err("sqlite stat", e))
    }
}

/// The ocidir peer: the crate's own reader over the generated layout.
pub struct Ocidir {
    dir: ocidir::OciDir,
}

impl Ocidir {
    /// Opens the layout at `path`.
    pub fn open(path: &Path) -> Result<Ocidir> {
        use ocidir::cap_std;
        let d = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| peer_err("ocidir open", e))?;
        let dir = ocidir::OciDir::open(d).map_err(|e| peer_err("ocidir open", e))?;
        Ok(Ocidir { dir })
    }

    /// Referrers of `subject`: read index.json, then every manifest it
    /// lists, keeping those whose subject matches.
    pub fn referrers(&self, subject: &Digest, at: Option<&str>) -> Result<usize> {
        use ocidir::oci_spec::image::{ImageIndex, ImageManifest, MediaType};
        let index = self
            .dir
            .read_index()
            .map_err(|e| peer_err("ocidir index.json", e))?;
        let want = subject.to_string();
        let mut n = 0;
        for desc in index.manifests() {
            let (subj, artifact_type) = match desc.media_type() {
                MediaType::ImageIndex => {
                    let m: ImageIndex = self
                        .dir
                        .read_json_blob(desc)
                        .map_err(|e| peer_err("ocidir read", e))?;
                    (m.subject().clone(), m.artifact_type().clone())
                }
                _ => {
                    let m: ImageManifest = self
                        .dir
                        .read_json_blob(desc)
                        .map_err(|e| peer_err("ocidir read", e))?;
                    (m.subject().clone(), m.artifact_type().clone())
                }
            };
            let Some(s) = subj else { continue };
            if s.digest().to_string() != want {
                continue;
            }
            if let Some(at) = at {
                if artifact_type.map(|t| t.to_string()).as_deref() != Some(at) {
                    continue;
                }
            }
            n += 1;
        }
        Ok(n)
    }
}

/// One referrer as the oras-style graph keeps it.
#[derive(Clone, Debug)]
struct Node {
    digest: Digest,
    artifact_type: Option<String>,
}

/// The oras-go-style peer: the whole graph rebuilt in memory at open by
/// reading and parsing every manifest of the layout.
pub struct OrasGraph {
    referrers: HashMap<Digest, Vec<Node>>,
    predecessors: HashMap<Digest, Vec<Digest>>,
    /// Manifests read at open.
    pub manifests: usize,
}

#[derive(serde::Deserialize)]
struct Desc {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: String,
}

#[derive(serde::Deserialize)]
struct AnyManifest {
    #[serde(default)]
    manifests: Vec<Desc>,
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
    subject: Option<Desc>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

impl OrasGraph {
    /// Reads index.json and every manifest reachable from it.
    pub fn open(layout: &Path) -> Result<OrasGraph> {
        let read = |d: &str| -> Result<Vec<u8>> {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            let p = layout.join("blobs").join("sha256").join(hex);
            std::fs::read(&p).map_err(|e| peer_err(&format!("reading {}", p.display()), e))
        };
        let index: AnyManifest = serde_json::from_slice(
            &std::fs::read(layout.join("index.json")).map_err(|e| peer_err("index.json", e))?,
        )
        .map_err(|e| peer_err("index.json", e))?;
        let mut g = OrasGraph {
            referrers: HashMap::new(),
            predecessors: HashMap::new(),
            manifests: 0,
        };
        let mut queue: Vec<String> = index.manifests.into_iter().map(|d| d.digest).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = queue.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let body = read(&d)?;
            let m: AnyManifest =
                serde_json::from_slice(&body).map_err(|e| peer_err(&format!("manifest {d}"), e))?;
            g.manifests += 1;
            let me = Digest::parse(&d)?;
            for c in m
                .manifests
                .iter()
                .chain(m.config.iter())
                .chain(m.layers.iter())
            {
                let cd = Digest::parse(&c.digest)?;
                g.predecessors.entry(cd).or_default().push(me);
                if c.media_type.contains("manifest") || c.media_type.contains("index") {
                    queue.push(c.digest.clone());
                }
            }
            if let Some(s) = m.subject {
                g.referrers
                    .entry(Digest::parse(&s.digest)?)
                    .or_default()
                    .push(Node {
                        digest: me,
                        artifact_type: m.artifact_type,
                    });
            }
        }
        Ok(g)
    }

    /// Referrers of `subject` from memory.
    pub fn referrers(&self, subject: &Digest, at: Option<&str>) -> usize {
        self.referrers.get(subject).map_or(0, |v| {
            v.iter()
                .filter(|n| at.is_none() || n.artifact_type.as_deref() == at)
                .map(|n| n.digest)
                .collect::<Vec<_>>()
                .len()
        })
    }

    /// Parents of `d` from memory.
    pub fn predecessors(&self, d: &Digest) -> usize {
        self.predecessors.get(d).map_or(0, |v| v.clone().len())
    }
}
