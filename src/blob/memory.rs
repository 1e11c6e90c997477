//! Blob bytes in memory: for tests, and proof that the engine assumes no
//! filesystem beneath its blobs.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{BlobBackend, BlobRead, BlobWrite, Listed, Staged};
use crate::error::{Error, Result};
use crate::oci::digest::Digest;

type Bytes = Arc<Vec<u8>>;

#[derive(Default, Debug)]
struct State {
    staged: HashMap<String, Bytes>,
    committed: HashMap<Digest, Bytes>,
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

    fn list_staged(&self) -> Result<Vec<Staged>> {
        Ok(self.lock()?.staged.keys().map(Staged::new).collect())
    }
}
