//! The fair SQLite peer: SQLite holding the same index that ocidb holds,
//! built the way a competent engineer would build it. WITHOUT ROWID tables
//! keyed by the digest's bytes (an algorithm byte and the hash, no
//! padding), a secondary index wherever ocidb keeps a reverse table,
//! interned repositories and artifact types, prepared statements, WAL with
//! `synchronous=FULL`, one transaction per batch. Manifests are parsed by
//! ocidb's own parser, so both pay the same parse; referrers return the
//! same descriptor JSON that ocidb stores.
//!
//! | ocidb table | here |
//! |---|---|
//! | `blobs` + `inline` | `blobs` (record columns and the body in one row) |
//! | `edges_out`, `edges_in` | `edges` keyed (parent, kind, child), index `edges_in` (child, parent, kind) |
//! | `referrers` | `referrers` keyed (repo, subject, artifact type, referrer) |
//! | `members`, `member_of` | `members` keyed (repo, digest), index `member_of` (digest, repo) |
//! | `tags`, `tagged` | `tags` keyed (repo, tag), index `tagged` (repo, digest, tag) |
//! | `repos`, `artifact_types` | the same, as rowid tables with a unique name |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension as _;

use super::{begin, lock, peer_err, sqlite_disk_bytes};
use crate::synth::GenManifest;
use ocidb::oci::manifest::{classify, Descriptor, EdgeKind, ParserRegistry};
use ocidb::{Digest, Result};

/// The digest as SQLite keys it: the algorithm byte, then the hash.
fn key(d: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + d.hash_bytes().len());
    k.push(d.to_key()[0]);
    k.extend_from_slice(d.hash_bytes());
    k
}

fn kind_code(k: EdgeKind) -> i64 {
    match k {
        EdgeKind::Manifest => 0,
        EdgeKind::Config => 1,
        EdgeKind::Layer => 2,
        EdgeKind::Blob => 3,
        EdgeKind::Subject => 4,
    }
}

const SCHEMA: &str = "
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=FULL;
    CREATE TABLE repos(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE artifact_types(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE blobs(digest BLOB PRIMARY KEY, size INTEGER NOT NULL,
                       created_ms INTEGER NOT NULL, media_type TEXT,
                       artifact_type TEXT, body BLOB) WITHOUT ROWID;
    CREATE TABLE edges(parent BLOB NOT NULL, kind INTEGER NOT NULL, child BLOB NOT NULL,
                       PRIMARY KEY(parent, kind, child)) WITHOUT ROWID;
    CREATE INDEX edges_in ON edges(child, parent, kind);
    CREATE TABLE referrers(repo INTEGER NOT NULL, subject BLOB NOT NULL,
                           artifact_type INTEGER NOT NULL, referrer BLOB NOT NULL,
                           descriptor BLOB NOT NULL,
                           PRIMARY KEY(repo, subject, artifact_type, referrer)) WITHOUT ROWID;
    CREATE TABLE members(repo INTEGER NOT NULL, digest BLOB NOT NULL, kind INTEGER NOT NULL,
                         PRIMARY KEY(repo, digest)) WITHOUT ROWID;
    CREATE INDEX member_of ON members(digest, repo);
    CREATE TABLE tags(repo INTEGER NOT NULL, tag TEXT NOT NULL, digest BLOB NOT NULL,
                      PRIMARY KEY(repo, tag)) WITHOUT ROWID;
    CREATE INDEX tagged ON tags(repo, digest, tag);
";

/// SQLite with ocidb's index.
pub struct SqliteIndex {
    // rusqlite connections are Send but not Sync; the harness times from
    // scoped threads.
    conn: std::sync::Mutex<rusqlite::Connection>,
    path: PathBuf,
    parsers: ParserRegistry,
    repos: HashMap<String, i64>,
    artifact_types: HashMap<String, i64>,
}

impl SqliteIndex {
    /// A fresh database file at `path`, with a page cache of `cache_bytes`
    /// (that of the ocidb store it is measured against).
    pub fn create(path: &Path, cache_bytes: usize) -> Result<SqliteIndex> {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        let conn = rusqlite::Connection::open(path).map_err(|e| peer_err("sqlite open", e))?;
        super::set_cache(&conn, cache_bytes)?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| peer_err("sqlite schema", e))?;
        Ok(SqliteIndex {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
            parsers: ParserRegistry::default(),
            repos: HashMap::new(),
            artifact_types: HashMap::new(),
        })
    }

    /// Generates `spec` into a fresh peer at `path` in batches of `batch`,
    /// one durable transaction each, as `bench gen` commits ocidb's:
    /// the manifests, and the seconds spent in the peer's inserts alone
    /// (the generator's time is left out, which favours the peer).
    /// `cache_bytes` is its page cache: the ocidb store's it is compared
    /// with.
    pub fn generate_into(
        path: &Path,
        spec: &crate::synth::GenSpec,
        batch: usize,
        cache_bytes: usize,
        mut progress: impl FnMut(u64),
    ) -> Result<(u64, f64)> {
        let mut peer = SqliteIndex::create(path, cache_bytes)?;
        let now_ms = super::now_ms();
        let mut g = crate::synth::Generator::new(spec.clone());
        let (mut made, mut spent) = (0u64, std::time::Duration::ZERO);
        while let Some(items) = g.next_batch(batch) {
            let t0 = std::time::Instant::now();
            peer.insert(&items, now_ms)?;
            spent += t0.elapsed();
            made += items.len() as u64;
            progress(made);
        }
        Ok((made, spent.as_secs_f64()))
    }

    /// Parses and indexes a batch in one transaction (durable at commit).
    pub fn insert(&mut self, batch: &[GenManifest], now_ms: i64) -> Result<()> {
        let tx = begin(&mut self.conn)?;
        {
            let e = |what: &'static str| move |err: rusqlite::Error| peer_err(what, err);
            let mut repo_ins = tx
                .prepare_cached("INSERT INTO repos(name) VALUES (?1)")
                .map_err(e("sqlite prepare"))?;
            let mut at_ins = tx
                .prepare_cached("INSERT INTO artifact_types(name) VALUES (?1)")
                .map_err(e("sqlite prepare"))?;
            let mut blob = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs(digest, size, created_ms, media_type, artifact_type, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(e("sqlite prepare"))?;
            let mut edge = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO edges(parent, kind, child) VALUES (?1, ?2, ?3)",
                )
                .map_err(e("sqlite prepare"))?;
            let mut member = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO members(repo, digest, kind) VALUES (?1, ?2, 0)",
                )
                .map_err(e("sqlite prepare"))?;
            let mut referrer = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO referrers(repo, subject, artifact_type, referrer, descriptor)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(e("sqlite prepare"))?;
            let mut tag = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO tags(repo, tag, digest) VALUES (?1, ?2, ?3)",
                )
                .map_err(e("sqlite prepare"))?;
            for m in batch {
                let (mt, parsed) = classify(&self.parsers, Some(m.media_type), &m.body)?;
                let own = key(&m.digest);
                let at = parsed.as_ref().and_then(|p| p.artifact_type.clone());
                blob.execute((
                    &own,
                    m.body.len() as i64,
                    now_ms,
                    mt.as_deref(),
                    at.as_deref(),
                    m.body.as_slice(),
                ))
                .map_err(e("sqlite insert blob"))?;
                let repo = match self.repos.get(&m.repo) {
                    Some(id) => *id,
                    None => {
                        repo_ins
                            .execute([&m.repo])
                            .map_err(e("sqlite insert repo"))?;
                        let id = tx.last_insert_rowid();
                        self.repos.insert(m.repo.clone(), id);
                        id
                    }
                };
                member
                    .execute((repo, &own))
                    .map_err(e("sqlite insert member"))?;
                let Some(parsed) = parsed else { continue };
                for (kind, child) in &parsed.children {
                    edge.execute((&own, kind_code(*kind), key(&child.digest)))
                        .map_err(e("sqlite insert edge"))?;
                }
                if let Some(subject) = &parsed.subject {
                    let sk = key(&subject.digest);
                    edge.execute((&own, kind_code(EdgeKind::Subject), &sk))
                        .map_err(e("sqlite insert edge"))?;
                    let at_id = match at.as_deref().filter(|s| !s.is_empty()) {
                        None => 0,
                        Some(name) => match self.artifact_types.get(name) {
                            Some(id) => *id,
                            None => {
                                at_ins.execute([name]).map_err(e("sqlite insert type"))?;
                                let id = tx.last_insert_rowid();
                                self.artifact_types.insert(name.to_string(), id);
                                id
                            }
                        },
                    };
                    let desc = Descriptor {
                        media_type: mt.clone().unwrap_or_default(),
                        digest: m.digest,
                        size: m.body.len() as u64,
                        artifact_type: at.clone(),
                        annotations: parsed.annotations.clone(),
                        platform: None,
                        urls: None,
                    };
                    let json =
                        serde_json::to_vec(&desc).map_err(|err| peer_err("descriptor", err))?;
                    referrer
                        .execute((repo, &sk, at_id, &own, json))
                        .map_err(e("sqlite insert referrer"))?;
                }
                for t in &m.tags {
                    tag.execute((repo, t, &own))
                        .map_err(e("sqlite insert tag"))?;
                }
            }
        }
        tx.commit().map_err(|e| peer_err("sqlite commit", e))
    }

    /// Referrers of `subject` in `repo`, optionally of one artifact type:
    /// the descriptors, decoded (as ocidb decodes its own).
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        at: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let conn = lock(&self.conn)?;
        let e = |err: rusqlite::Error| peer_err("sqlite referrers", err);
        let mut st = match at {
            None => conn.prepare_cached(
                "SELECT descriptor FROM referrers
                 WHERE repo = (SELECT id FROM repos WHERE name = ?1) AND subject = ?2",
            ),
            Some(_) => conn.prepare_cached(
                "SELECT descriptor FROM referrers
                 WHERE repo = (SELECT id FROM repos WHERE name = ?1) AND subject = ?2
                   AND artifact_type = (SELECT id FROM artifact_types WHERE name = ?3)",
            ),
        }
        .map_err(e)?;
        let sk = key(subject);
        let mut rows = match at {
            None => st.query((repo, &sk)),
            Some(t) => st.query((repo, &sk, t)),
        }
        .map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            let json: Vec<u8> = r.get(0).map_err(e)?;
            out.push(serde_json::from_slice(&json).map_err(|err| peer_err("descriptor", err))?);
        }
        Ok(out)
    }

    /// Size and media type of a digest (the primary key).
    pub fn stat(&self, d: &Digest) -> Result<(u64, Option<String>)> {
        let conn = lock(&self.conn)?;
        let mut st = conn
            .prepare_cached("SELECT size, media_type FROM blobs WHERE digest = ?1")
            .map_err(|e| peer_err("sqlite prepare", e))?;
        st.query_row([key(d)], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .map_err(|e| peer_err("sqlite stat", e))
    }

    /// The bytes of a digest.
    pub fn get(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        let conn = lock(&self.conn)?;
        let mut st = conn
            .prepare_cached("SELECT body FROM blobs WHERE digest = ?1")
            .map_err(|e| peer_err("sqlite prepare", e))?;
        st.query_row([key(d)], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(|e| peer_err("sqlite get", e))
    }

    /// The manifests that point at `d` (through the `edges_in` index).
    pub fn predecessors(&self, d: &Digest) -> Result<usize> {
        let conn = lock(&self.conn)?;
        let mut st = conn
            .prepare_cached("SELECT DISTINCT parent FROM edges WHERE child = ?1")
            .map_err(|e| peer_err("sqlite prepare", e))?;
        let mut rows = st
            .query([key(d)])
            .map_err(|e| peer_err("sqlite predecessors", e))?;
        let mut n = 0;
        while rows
            .next()
            .map_err(|e| peer_err("sqlite predecessors", e))?
            .is_some()
        {
            n += 1;
        }
        Ok(n)
    }

    /// Bytes on disk after a WAL checkpoint.
    pub fn disk_bytes(&self) -> Result<u64> {
        sqlite_disk_bytes(&self.conn, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MT: &str = "application/vnd.oci.image.manifest.v1+json";
    const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn manifest(repo: &str, body: String, tags: &[&str]) -> GenManifest {
        GenManifest {
            repo: repo.into(),
            digest: ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, body.as_bytes()),
            body: body.into_bytes(),
            media_type: MT,
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
        }
    }

    #[test]
    fn holds_the_same_index_as_ocidb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = SqliteIndex::create(
            &dir.path().join("peer.sqlite"),
            ocidb::StoreOptions::default().cache_size,
        )
        .expect("create");
        let layer = ocidb::Hasher::digest_of(ocidb::Algorithm::Sha256, b"layer");
        let image = manifest(
            "app",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{MT}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]}}"#
            ),
            &["v1"],
        );
        let referrer = |at: &str, n: u32| {
            manifest(
                "app",
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{MT}","artifactType":"{at}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":2}},"layers":[],"subject":{{"mediaType":"{MT}","digest":"{}","size":{}}},"annotations":{{"n":"{n}"}}}}"#,
                    image.digest,
                    image.body.len()
                ),
                &[],
            )
        };
        let batch = vec![
            image.clone(),
            referrer("application/spdx+json", 1),
            referrer("application/spdx+json", 2),
            referrer("application/vnd.dev.sig", 3),
        ];
        db.insert(&batch, 1).expect("insert");
        let all = db.referrers("app", &image.digest, None).expect("referrers");
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|d| d.media_type == MT && d.size > 0));
        let sboms = db
            .referrers("app", &image.digest, Some("application/spdx+json"))
            .expect("filtered");
        assert_eq!(sboms.len(), 2);
        assert_eq!(
            sboms[0]
                .annotations
                .as_ref()
                .and_then(|a| a.get("n"))
                .map(String::as_str),
            Some("1"),
            "the descriptor carries the referrer's annotations, as ocidb's does"
        );
        assert!(db
            .referrers("other", &image.digest, None)
            .expect("other repo")
            .is_empty());
        assert!(db
            .referrers("app", &image.digest, Some("application/unknown"))
            .expect("unknown type")
            .is_empty());
        assert_eq!(
            db.stat(&image.digest).expect("stat"),
            (image.body.len() as u64, Some(MT.to_string()))
        );
        assert_eq!(
            db.get(&image.digest).expect("get"),
            Some(image.body.clone())
        );
        assert_eq!(db.get(&layer).expect("absent"), None);
        assert_eq!(db.predecessors(&layer).expect("predecessors"), 1);
        // A re-insert of the same batch changes nothing.
        db.insert(&batch, 2).expect("again");
        assert_eq!(
            db.referrers("app", &image.digest, None)
                .expect("again")
                .len(),
            3
        );
        assert!(db.disk_bytes().expect("size") > 0);
    }
}
