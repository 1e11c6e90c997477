//! Upload sessions: a chunk object per part, the rest at commit.

use super::client::*;

/// Bytes appended to a session: a chunk object per [`PART`] bytes, the
/// rest at commit.
pub(super) struct S3UploadWrite {
    pub(super) inner: Arc<Inner>,
    pub(super) dir: Key,
    pub(super) at: u64,
    pub(super) buf: Vec<u8>,
}

impl S3UploadWrite {
    pub(super) fn flush_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let key = self.inner.key(&format!(
            "{}/{:020}",
            strip(&self.inner, &self.dir),
            self.at
        ))?;
        let data = bytes::Bytes::from(std::mem::take(&mut self.buf));
        let n = data.len() as u64;
        self.inner.put(&key, data)?;
        self.at += n;
        Ok(())
    }
}

/// A key below the prefix, without the prefix.
pub(super) fn strip<'a>(inner: &Inner, key: &'a Key) -> &'a str {
    let s = key.as_ref();
    if inner.prefix.is_empty() {
        s
    } else {
        s.strip_prefix(&inner.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(s)
    }
}

impl io::Write for S3UploadWrite {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART {
            self.flush_chunk().map_err(to_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UploadWrite for S3UploadWrite {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_chunk()
    }
}
