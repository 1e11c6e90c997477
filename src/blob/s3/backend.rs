//! `BlobBackend` for `S3Blobs`: what the engine calls.

use super::client::*;
use super::read::*;
use super::uploads::*;
use super::write::*;

impl BlobBackend for S3Blobs {
    fn check(&self) -> Result<()> {
        S3Blobs::check(self)
    }

    fn stage(&self) -> Result<Box<dyn BlobWrite>> {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("s3-{}-{}-{n}", std::process::id(), self.inner.boot);
        let key = self.inner.key(&format!("staging/{name}"))?;
        Ok(Box::new(S3Write::new(&self.inner, name, key)))
    }

    fn sync_staging(&self, _unsynced: &[Staged]) -> Result<()> {
        // Every staged object was durable when its write finished.
        Ok(())
    }

    fn commit(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        self.commit_all(&[(staged.clone(), *digest)])
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no commit result".into())))
    }

    fn commit_all(&self, items: &[(Staged, Digest)]) -> Vec<Result<()>> {
        // Keys first: a staged name this backend never gave fails alone.
        let keys: Vec<Result<(Key, Key)>> = items
            .iter()
            .map(|(s, d)| Ok((self.inner.staged_key(s)?, self.inner.blob_key(d)?)))
            .collect();
        let jobs: Vec<(Key, Key)> = keys
            .iter()
            .filter_map(|k| k.as_ref().ok().cloned())
            .collect();
        let store = Arc::clone(&self.inner.store);
        let done = self.inner.run(async move {
            futures_util::stream::iter(jobs)
                .map(|(from, to)| {
                    let store = Arc::clone(&store);
                    async move { copy_staged(&*store, &from, &to).await }
                })
                .buffered(COMMITS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        });
        let mut done = match done {
            Ok(d) => d.into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return items
                    .iter()
                    .map(|_| Err(Error::Internal(msg.clone())))
                    .collect();
            }
        };
        let mut copied = Vec::new();
        let results = keys
            .into_iter()
            .map(|k| {
                let (from, to) = k?;
                match done.next() {
                    Some(Ok(())) => {
                        copied.push(from);
                        Ok(())
                    }
                    Some(Err((op, e))) => Err(self.inner.err(op, &to, &e)),
                    None => Err(Error::Internal("a commit result went missing".into())),
                }
            })
            .collect();
        // The blobs are committed: staging objects left behind are orphans
        // that the next open removes (they are no intent's any more).
        if let Err(e) = self.inner.delete_all(copied) {
            tracing::warn!("could not delete staging objects after their commits: {e}");
        }
        results
    }

    fn sync(&self, _names: &[Digest]) -> Result<()> {
        // Copies and deletes are durable when acknowledged.
        Ok(())
    }

    fn discard(&self, staged: &Staged) -> Result<()> {
        let key = self.inner.staged_key(staged)?;
        self.inner.delete(&key)
    }

    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
        S3Read::open(&self.inner, self.inner.blob_key(digest)?)
    }

    fn open_staged(&self, staged: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
        S3Read::open(&self.inner, self.inner.staged_key(staged)?)
    }

    fn len(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.inner.blob_key(digest)?;
        Ok(self.inner.head(&key)?.map(|m| m.size))
    }

    fn remove(&self, digest: &Digest) -> Result<bool> {
        let key = self.inner.blob_key(digest)?;
        if self.inner.head(&key)?.is_none() {
            return Ok(false);
        }
        self.inner.delete(&key)?;
        Ok(true)
    }

    fn remove_all(&self, digests: &[Digest]) -> Result<()> {
        let keys = digests
            .iter()
            .map(|d| self.inner.blob_key(d))
            .collect::<Result<Vec<Key>>>()?;
        keys.chunks(1000)
            .try_for_each(|chunk| self.inner.delete_all(chunk.to_vec()))
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
        let dir = self.inner.key("blobs")?;
        self.inner.list(&dir, &mut |m| {
            let rel = strip(&self.inner, &m.location);
            let parsed = rel
                .strip_prefix("blobs/")
                .and_then(|r| r.split_once('/'))
                .and_then(|(alg, hex)| {
                    let spelled = format!("{alg}:{hex}");
                    let d: Digest = spelled.parse().ok()?;
                    // Only the canonical spelling is ours.
                    (d.to_string() == spelled).then_some(d)
                });
            each(match parsed {
                Some(d) => Listed::Blob(d),
                None => Listed::Stray(rel.to_string()),
            })
        })
    }

    fn list_staged(&self) -> Result<Vec<Staged>> {
        let dir = self.inner.key("staging")?;
        let mut out = Vec::new();
        self.inner.list(&dir, &mut |m| {
            if let Some(name) = m.location.filename().filter(|n| n.starts_with("s3-")) {
                out.push(Staged::new(name));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn upload_create(&self, id: &str) -> Result<()> {
        let dir = self.inner.upload_dir(id)?;
        let key = self
            .inner
            .key(&format!("{}/{SESSION}", strip(&self.inner, &dir)))?;
        self.inner.put(&key, bytes::Bytes::new())
    }

    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
        let dir = self.inner.upload_dir(id)?;
        let mut have = 0u64;
        for (at, len, key) in self.inner.upload_parts(id)? {
            if at >= offset {
                // Written but never acknowledged: drop it.
                self.inner.delete(&key)?;
            } else if at != have || at + len > offset {
                return Err(Error::Corrupt(format!(
                    "upload {id}: chunk {key} ({len} bytes at {at}) does not continue the {have} bytes before it within the acknowledged {offset}"
                )));
            } else {
                have += len;
            }
        }
        if have != offset {
            return Err(Error::Corrupt(format!(
                "upload {id} holds {have} bytes, fewer than the acknowledged {offset}"
            )));
        }
        Ok(Box::new(S3UploadWrite {
            inner: Arc::clone(&self.inner),
            dir,
            at: offset,
            buf: Vec::new(),
        }))
    }

    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
        let dir = self.inner.upload_dir(id)?;
        let marker = self
            .inner
            .key(&format!("{}/{SESSION}", strip(&self.inner, &dir)))?;
        let parts = self.inner.upload_parts(id)?;
        if parts.is_empty() && self.inner.head(&marker)?.is_none() {
            return Ok(None);
        }
        let len = parts.last().map_or(0, |p| p.0 + p.1);
        Ok(Some(Box::new(PartsRead {
            inner: Arc::clone(&self.inner),
            parts,
            len,
        })))
    }

    fn upload_finish(&self, id: &str) -> Result<Staged> {
        // S3 has no server-side concatenation that takes chunks under
        // 5 MiB, so the session's bytes are copied through, a window at a
        // time, into a staged object.
        let parts = self.inner.upload_parts(id)?;
        let mut w = self.stage()?;
        let mut buf = vec![0u8; 1 << 20];
        for (_, len, key) in &parts {
            let r = S3Read::new(&self.inner, key.clone(), *len);
            let mut off = 0u64;
            while off < *len {
                let n = r
                    .read_at(&mut buf, off)
                    .map_err(|e| Error::io(format!("reading upload {id}"), e))?;
                if n == 0 {
                    return Err(Error::Corrupt(format!(
                        "upload {id}: chunk {key} ended at {off} of {len} bytes"
                    )));
                }
                io::Write::write_all(&mut w, &buf[..n])
                    .map_err(|e| Error::io(format!("staging upload {id}"), e))?;
                off += n as u64;
            }
        }
        let staged = w.finish(true)?;
        self.upload_remove(id)?;
        Ok(staged)
    }

    fn upload_remove(&self, id: &str) -> Result<()> {
        let dir = self.inner.upload_dir(id)?;
        let mut keys = Vec::new();
        self.inner.list(&dir, &mut |m| {
            keys.push(m.location);
            Ok(())
        })?;
        // The marker goes last, so a crash leaves the session listable.
        keys.sort_by_key(|k| k.filename() == Some(SESSION));
        for k in &keys {
            self.inner.delete(k)?;
        }
        Ok(())
    }

    fn upload_list(&self) -> Result<Vec<String>> {
        let dir = self.inner.key("uploads")?;
        self.inner.list_dirs(&dir)
    }
}
