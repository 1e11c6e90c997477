//! Blob bytes in memory: for tests, and proof that the engine assumes no
//! filesystem beneath its blobs.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{BlobBackend, BlobRead, BlobWrite, Listed, Staged, UploadWrite};
use crate::digest::Digest;
use crate::error::{Error, Result};

type Bytes = Arc<Vec<u8>>;

#[derive(Default, Debug)]
struct State {
    staged: HashMap<String, Bytes>,
    committed: HashMap<Digest, Bytes>,
    uploads: HashMap<String, Vec<u8>>,
}

/// Blob bytes held in memory. Everything is lost with the process, so a
/// store over it must not outlive it: open one with a fresh directory (the
/// records in redb would otherwise name bytes that are gone).
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobs {
    state: Arc<Mutex<State>>,
    seq: Arc<AtomicU64>,
}

impl MemoryBlobs {
    /// An empty backend.
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::lock("memory blob backend lock"))
    }
}

struct MemoryWrite {
    owner: MemoryBlobs,
    buf: Vec<u8>,
}

impl io::Write for MemoryWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for MemoryWrite {
    fn finish(self: Box<Self>, _durable: bool) -> Result<Staged> {
        let n = self.owner.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("mem-{n}");
        self.owner
            .lock()?
            .staged
            .insert(name.clone(), Arc::new(self.buf));
        Ok(Staged::new(name))
    }
}

struct MemoryUpload {
    owner: MemoryBlobs,
    id: String,
    offset: usize,
    buf: Vec<u8>,
}

impl io::Write for MemoryUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UploadWrite for MemoryUpload {
    fn commit(self: Box<Self>) -> Result<()> {
        let mut st = self.owner.lock()?;
        let bytes = st
            .uploads
            .get_mut(&self.id)
            .ok_or_else(|| Error::InvalidArgument {
                value: self.id.clone(),
                expected: "an open upload".into(),
            })?;
        bytes.truncate(self.offset);
        bytes.extend_from_slice(&self.buf);
        Ok(())
    }
}

struct MemoryRead(Bytes);

impl BlobRead for MemoryRead {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(src) = self.0.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

impl BlobBackend for MemoryBlobs {
    fn stage(&self) -> Result<Box<dyn BlobWrite>> {
        Ok(Box::new(MemoryWrite {
            owner: self.clone(),
            buf: Vec::new(),
        }))
    }

    fn sync_staging(&self, _unsynced: &[Staged]) -> Result<()> {
        Ok(())
    }

    fn commit(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        let mut st = self.lock()?;
        match st.staged.remove(staged.name()) {
            Some(bytes) => {
                st.committed.insert(*digest, bytes);
                Ok(())
            }
            None if st.committed.contains_key(digest) => Ok(()),
            None => Err(Error::io(
                format!("committing staged blob {} as {digest}", staged.name()),
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    fn sync(&self, _names: &[Digest]) -> Result<()> {
        Ok(())
    }

    fn discard(&self, staged: &Staged) -> Result<()> {
        self.lock()?.staged.remove(staged.name());
        Ok(())
    }

    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn BlobRead>>> {
        Ok(self
            .lock()?
            .committed
            .get(digest)
            .map(|b| Box::new(MemoryRead(Arc::clone(b))) as Box<dyn BlobRead>))
    }

    fn open_staged(&self, staged: &Staged) -> Result<Option<Box<dyn BlobRead>>> {
        Ok(self
            .lock()?
            .staged
            .get(staged.name())
            .map(|b| Box::new(MemoryRead(Arc::clone(b))) as Box<dyn BlobRead>))
    }

    fn remove(&self, digest: &Digest) -> Result<bool> {
        Ok(self.lock()?.committed.remove(digest).is_some())
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
        let all: Vec<Digest> = self.lock()?.committed.keys().copied().collect();
        for d in all {
            each(Listed::Blob(d))?;
        }
        Ok(())
    }

    fn upload_create(&self, id: &str) -> Result<()> {
        self.lock()?.uploads.insert(id.to_string(), Vec::new());
        Ok(())
    }

    fn upload_append(&self, id: &str, offset: u64) -> Result<Box<dyn UploadWrite>> {
        let len =
            self.lock()?
                .uploads
                .get(id)
                .map(Vec::len)
                .ok_or_else(|| Error::InvalidArgument {
                    value: id.to_string(),
                    expected: "an open upload".into(),
                })?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        if len < offset {
            return Err(Error::Corrupt(format!(
                "upload {id} holds {len} bytes, fewer than the {offset} acknowledged"
            )));
        }
        Ok(Box::new(MemoryUpload {
            owner: self.clone(),
            id: id.to_string(),
            offset,
            buf: Vec::new(),
        }))
    }

    fn upload_open(&self, id: &str) -> Result<Option<Box<dyn BlobRead>>> {
        Ok(self
            .lock()?
            .uploads
            .get(id)
            .map(|b| Box::new(MemoryRead(Arc::new(b.clone()))) as Box<dyn BlobRead>))
    }

    fn upload_finish(&self, id: &str) -> Result<Staged> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("mem-{n}");
        let mut st = self.lock()?;
        let bytes = st
            .uploads
            .remove(id)
            .ok_or_else(|| Error::InvalidArgument {
                value: id.to_string(),
                expected: "an open upload".into(),
            })?;
        st.staged.insert(name.clone(), Arc::new(bytes));
        Ok(Staged::new(name))
    }

    fn upload_remove(&self, id: &str) -> Result<()> {
        self.lock()?.uploads.remove(id);
        Ok(())
    }

    fn upload_list(&self) -> Result<Vec<String>> {
        Ok(self.lock()?.uploads.keys().cloned().collect())
    }

    fn list_staged(&self) -> Result<Vec<Staged>> {
        Ok(self.lock()?.staged.keys().map(Staged::new).collect())
    }
}
