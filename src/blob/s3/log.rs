//! The store's index log in its bucket, below `<prefix>/index/`
//! (`crate::log`): the same client, keys and retries as the blobs.

use std::io::Write as _;
use std::path::Path;

use super::client::*;
use super::write::S3Write;
use crate::log::IndexLog;

/// The index log's objects in the bucket of an [`S3Blobs`].
pub(crate) struct S3IndexLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for S3IndexLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/index", self.inner.location)
    }
}

impl S3Blobs {
    /// The index log in this bucket, below the prefix's `index/`.
    pub fn index_log(&self) -> Arc<dyn IndexLog> {
        Arc::new(S3IndexLog {
            inner: Arc::clone(&self.inner),
        })
    }
}

impl S3IndexLog {
    fn key(&self, name: &str) -> Result<Key> {
        self.inner.key(&format!("index/{name}"))
    }
}

impl IndexLog for S3IndexLog {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.inner.put(&self.key(name)?, bytes::Bytes::from(bytes))
    }

    fn put_file(&self, name: &str, path: &Path) -> Result<()> {
        let mut w = S3Write::new(&self.inner, name.to_string(), self.key(name)?);
        let mut f = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        io::copy(&mut f, &mut w)
            .map_err(|e| Error::io(format!("uploading {}", path.display()), e))?;
        w.flush()
            .map_err(|e| Error::io(format!("uploading {}", path.display()), e))?;
        w.finish_inner()
    }

    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>> {
        let key = self.key(name)?;
        let (store, k) = (Arc::clone(&self.inner.store), key.clone());
        let got = self.inner.run(async move {
            let r = store.get_opts(&k, GetOptions::default()).await?;
            if r.meta.size > max_len {
                return Ok(Err(r.meta.size));
            }
            r.bytes().await.map(Ok)
        })?;
        match got {
            Ok(Ok(b)) => Ok(Some(b.to_vec())),
            Ok(Err(size)) => Err(Error::Corrupt(format!(
                "index log object s3://{}/{key} holds {size} bytes, over the {max_len} an object of its kind may",
                self.inner.location.bucket
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.inner.err("GET", &key, &e)),
        }
    }

    fn get_to_file(&self, name: &str, path: &Path) -> Result<bool> {
        let key = self.key(name)?;
        let (store, k) = (Arc::clone(&self.inner.store), key.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let task = self.inner.rt.spawn(async move {
            let r = match store.get_opts(&k, GetOptions::default()).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut s = r.into_stream();
            while let Some(chunk) = s.next().await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(task.abort_handle());
        let io = |e| Error::io(format!("writing {}", path.display()), e);
        let mut f = std::fs::File::create(path).map_err(io)?;
        while let Some(chunk) = rx.blocking_recv() {
            match chunk {
                Ok(b) => f.write_all(&b).map_err(io)?,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.inner.err("GET", &key, &e)),
            }
        }
        f.flush().map_err(io)?;
        Ok(true)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let key = self.key(dir)?;
        let mut out = Vec::new();
        self.inner.list(&key, &mut |m| {
            let under = m
                .location
                .as_ref()
                .strip_prefix(key.as_ref())
                .unwrap_or_default();
            if let Some(name) = under.strip_prefix('/').filter(|n| !n.contains('/')) {
                out.push(name.to_string());
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(&self.key(name)?)
    }
}
