//! Reads: windowed ranged GETs read ahead into a bounded channel, and reads
//! across an upload session's chunk objects.

use super::client::*;

/// Positional reads of one object. Sequential reads stream: one GET per
/// window, its body read ahead into a bounded channel; a seek starts anew.
pub(super) struct S3Read {
    pub(super) inner: Arc<Inner>,
    pub(super) key: Key,
    pub(super) len: u64,
    pub(super) cursor: Mutex<Option<Cursor>>,
}

pub(super) struct Cursor {
    /// The offset of the next byte `pending` or the channel yields.
    pub(super) pos: u64,
    /// Where the current request ends.
    pub(super) end: u64,
    pub(super) pending: bytes::Bytes,
    pub(super) rx: tokio::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    pub(super) _task: AbortOnDrop,
}

impl S3Read {
    pub(super) fn new(inner: &Arc<Inner>, key: Key, len: u64) -> S3Read {
        S3Read {
            inner: Arc::clone(inner),
            key,
            len,
            cursor: Mutex::new(None),
        }
    }

    /// A reader of the object at `key`, sized by a HEAD; `None` when there
    /// is none.
    pub(super) fn open(inner: &Arc<Inner>, key: Key) -> Result<Option<Box<dyn BlobRead>>> {
        Ok(inner
            .head(&key)?
            .map(|m| Box::new(S3Read::new(inner, key, m.size)) as Box<dyn BlobRead>))
    }

    pub(super) fn open_cursor(&self, pos: u64) -> Cursor {
        let end = pos.saturating_add(WINDOW).min(self.len);
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let (store, k) = (Arc::clone(&self.inner.store), self.key.clone());
        let task = self.inner.rt.spawn(async move {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(pos..end)),
                ..GetOptions::default()
            };
            match store.get_opts(&k, opts).await {
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
                Ok(res) => {
                    let mut s = res.into_stream();
                    while let Some(item) = s.next().await {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Cursor {
            pos,
            end,
            pending: bytes::Bytes::new(),
            rx,
            _task: AbortOnDrop(task.abort_handle()),
        }
    }
}

impl BlobRead for S3Read {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let mut guard = self
            .cursor
            .lock()
            .map_err(|_| io::Error::other("a reader panicked"))?;
        let mut failures = 0;
        loop {
            let cur = match guard.as_mut() {
                Some(c) if c.pos == offset && c.pos < c.end => c,
                _ => guard.insert(self.open_cursor(offset)),
            };
            if !cur.pending.is_empty() {
                let n = buf.len().min(cur.pending.len());
                buf[..n].copy_from_slice(&cur.pending[..n]);
                let _ = cur.pending.split_to(n);
                cur.pos += n as u64;
                return Ok(n);
            }
            match cur.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    failures = 0;
                    cur.pending = chunk;
                }
                Some(Err(e)) if failures < RESUMES => {
                    failures += 1;
                    tracing::warn!(key = %self.key, error = %e, "object read failed mid-body; resuming");
                    *guard = None;
                }
                Some(Err(e)) => {
                    return Err(to_io(self.inner.err("GET", &self.key, &e)));
                }
                None if cur.pos < cur.end && failures < RESUMES => {
                    // The body ended early: ask again for the rest.
                    failures += 1;
                    *guard = None;
                }
                None if cur.pos < cur.end => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "GET s3://{}/{} at {}: the body ended at byte {} of {}",
                            self.inner.location.bucket,
                            self.key,
                            self.inner.endpoint,
                            cur.pos,
                            self.len
                        ),
                    ));
                }
                None => {
                    // The window is done; the next one starts at `pos`.
                    *guard = None;
                }
            }
        }
    }
}

/// Reads across an upload session's chunk objects.
pub(super) struct PartsRead {
    pub(super) inner: Arc<Inner>,
    pub(super) parts: Vec<(u64, u64, Key)>,
    pub(super) len: u64,
}

impl BlobRead for PartsRead {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let i = self.parts.partition_point(|p| p.0 + p.1 <= offset);
        let Some((at, len, key)) = self.parts.get(i) else {
            return Ok(0);
        };
        let start = offset - at;
        let end = (start + buf.len() as u64).min(*len);
        let (store, k) = (Arc::clone(&self.inner.store), key.clone());
        let got = self
            .inner
            .run(async move {
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    ..GetOptions::default()
                };
                store.get_opts(&k, opts).await?.bytes().await
            })
            .map_err(to_io)?
            .map_err(|e| to_io(self.inner.err("GET", key, &e)))?;
        let n = got.len().min(buf.len());
        buf[..n].copy_from_slice(&got[..n]);
        Ok(n)
    }
}
