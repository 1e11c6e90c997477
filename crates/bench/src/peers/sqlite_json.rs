//! SQLite as trow uses it: manifests as JSON rows, queried in place.

use std::path::Path;

use super::{begin, lock, peer_err, sqlite_disk_bytes};
use crate::synth::GenManifest;
use ocidb::{Digest, Result};

/// The SQLite peer of trow's design: one row per manifest, JSON queried in
/// place with `json_extract`. No index serves a referrers query.
pub struct SqliteJson {
    // rusqlite connections are Send but not Sync; the harness times from
    // scoped threads.
    conn: std::sync::Mutex<rusqlite::Connection>,
    path: std::path::PathBuf,
}

impl SqliteJson {
    /// A fresh database file at `path`.
    pub fn create(path: &Path, cache_bytes: usize) -> Result<SqliteJson> {
        let _ = std::fs::remove_file(path);
        let conn = rusqlite::Connection::open(path).map_err(|e| peer_err("sqlite open", e))?;
        super::set_cache(&conn, cache_bytes)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE manifests(digest TEXT PRIMARY KEY, repo TEXT NOT NULL,
                                    media_type TEXT, body TEXT NOT NULL);",
        )
        .map_err(|e| peer_err("sqlite schema", e))?;
        Ok(SqliteJson {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Inserts a batch in one transaction (durable at commit).
    pub fn insert(&mut self, batch: &[GenManifest]) -> Result<()> {
        let tx = begin(&mut self.conn)?;
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
        let conn = lock(&self.conn)?;
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
        let conn = lock(&self.conn)?;
        let mut st = conn
            .prepare_cached("SELECT length(body) FROM manifests WHERE digest = ?1")
            .map_err(|e| peer_err("sqlite prepare", e))?;
        st.query_row([d.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| peer_err("sqlite stat", e))
    }

    /// Bytes on disk after a WAL checkpoint.
    pub fn disk_bytes(&self) -> Result<u64> {
        sqlite_disk_bytes(&self.conn, &self.path)
    }
}
