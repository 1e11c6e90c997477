//! The readers the store hands out, over inline bytes or a backend's blob.

use std::io::{self, Read};

use super::{BlobRead, MappedBytes};
use crate::digest::{Algorithm, Digest};
use crate::oci::hasher::Hasher;

/// Size of one read when hashing a stored blob.
const CHUNK: usize = 1 << 20;

/// Where a reader's bytes come from.
pub(crate) enum Source {
    /// Inline bytes, copied out of the read transaction.
    Memory(Vec<u8>),
    /// A backend's blob, read positionally.
    Backend(Box<dyn BlobRead>),
}

/// A streaming reader over a blob or a range of it. Backend blobs are read
/// positionally, so memory stays bounded whatever the blob size.
pub struct BlobReader {
    src: Source,
    pos: u64,
    end: u64,
}

impl BlobReader {
    /// A reader over `src`, from byte `pos` up to (not including) `end`.
    /// For `Memory`, positions are relative to the bytes held.
    pub(crate) fn new(src: Source, pos: u64, end: u64) -> BlobReader {
        BlobReader { src, pos, end }
    }

    /// Bytes left to read.
    pub fn len(&self) -> u64 {
        self.end - self.pos.min(self.end)
    }

    /// Whether nothing is left to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next `max` bytes (fewer at the end) mapped into memory instead
    /// of copied, where the blob is a local file, and the reader moves past
    /// them. `Ok(None)` where the bytes are not a local file (read them
    /// instead) and when nothing is left.
    ///
    /// Hand the bytes to the kernel (a socket write), not to code that
    /// reads them in user space: see [`MappedBytes`] for why.
    pub fn map_next(&mut self, max: usize) -> io::Result<Option<MappedBytes>> {
        let want = usize::try_from(self.len()).map_or(max, |left| left.min(max));
        if want == 0 {
            return Ok(None);
        }
        let Source::Backend(r) = &self.src else {
            return Ok(None);
        };
        match r.map(self.pos, want) {
            None => Ok(None),
            Some(m) => {
                let m = m?;
                self.pos += want as u64;
                Ok(Some(m))
            }
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.len()).map_or(buf.len(), |left| left.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let n = match &self.src {
            Source::Memory(data) => {
                let start = usize::try_from(self.pos).unwrap_or(usize::MAX);
                let src = data
                    .get(start..)
                    .map(|s| &s[..want.min(s.len())])
                    .unwrap_or_default();
                buf[..src.len()].copy_from_slice(src);
                src.len()
            }
            Source::Backend(r) => r.read_at(&mut buf[..want], self.pos)?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob ended {} bytes early", self.len()),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Wraps a reader and checks, at its end, that the bytes hash to `expected`.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
}

impl<R: Read> VerifiedReader<R> {
    /// Verifies `inner` against `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifiedReader {
            inner,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected,
        }
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let actual = h.finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt blob: {} hashes to {actual}", self.expected),
                ));
            }
        }
        Ok(n)
    }
}

/// Hashes the first `len` bytes of a stored blob with positional reads into
/// one reused buffer. (A file mapping would save the copy, but a file
/// truncated by an outside actor would then kill the process with SIGBUS
/// instead of giving an error; hashing, not copying, bounds the speed.)
pub(crate) fn hash_all(r: &dyn BlobRead, alg: Algorithm, len: u64) -> io::Result<Digest> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; usize::try_from(len).map_or(CHUNK, |l| l.min(CHUNK)).max(1)];
    let mut pos = 0u64;
    while pos < len {
        let want = usize::try_from(len - pos).map_or(buf.len(), |left| left.min(buf.len()));
        let n = r.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the blob ended {} bytes early", len - pos),
            ));
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finish())
}
