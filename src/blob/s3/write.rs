//! Staged writes: one PUT, or a multipart upload with bounded parts in flight.

use super::client::*;

/// A staged blob being written: one PUT when it fits in a part, else a
/// multipart upload with at most [`IN_FLIGHT`] parts on the wire.
pub(super) struct S3Write {
    pub(super) inner: Arc<Inner>,
    /// Parts sent so far.
    pub(super) parts: usize,
    pub(super) name: String,
    pub(super) key: Key,
    pub(super) buf: Vec<u8>,
    pub(super) upload: Option<Box<dyn MultipartUpload>>,
    pub(super) in_flight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl S3Write {
    /// A write of `key`; `name` is what [`BlobWrite::finish`] hands back.
    pub(super) fn new(inner: &Arc<Inner>, name: String, key: Key) -> S3Write {
        S3Write {
            inner: Arc::clone(inner),
            parts: 0,
            name,
            key,
            buf: Vec::with_capacity(PART),
            upload: None,
            in_flight: VecDeque::new(),
        }
    }

    pub(super) fn part_size(&self) -> usize {
        PART << (self.parts / PARTS_PER_STEP).min(6)
    }

    pub(super) fn start_multipart(&mut self) -> Result<()> {
        let (store, k) = (Arc::clone(&self.inner.store), self.key.clone());
        let up = self
            .inner
            .run(async move { store.put_multipart_opts(&k, Default::default()).await })?
            .map_err(|e| {
                self.inner
                    .err("starting a multipart upload of", &self.key, &e)
            })?;
        self.upload = Some(up);
        Ok(())
    }

    /// Sends the buffered bytes as the next part, after waiting for room.
    pub(super) fn send_part(&mut self) -> Result<()> {
        if self.upload.is_none() {
            self.start_multipart()?;
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.wait_one()?;
        }
        self.parts += 1;
        let next = Vec::with_capacity(self.part_size());
        let data = bytes::Bytes::from(std::mem::replace(&mut self.buf, next));
        let Some(up) = self.upload.as_mut() else {
            return Err(Error::Internal("multipart upload vanished".into()));
        };
        let part = up.put_part(PutPayload::from(data));
        self.in_flight.push_back(self.inner.rt.spawn(part));
        Ok(())
    }

    pub(super) fn wait_one(&mut self) -> Result<()> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.inner.run(h)? {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.inner.err("uploading a part of", &self.key, &e)),
            Err(e) => Err(Error::Internal(format!("a part upload task failed: {e}"))),
        }
    }

    pub(super) fn finish_inner(&mut self) -> Result<()> {
        if self.upload.is_none() {
            let data = bytes::Bytes::from(std::mem::take(&mut self.buf));
            return self.inner.put(&self.key, data);
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_one()?;
        }
        let Some(mut up) = self.upload.take() else {
            return Err(Error::Internal("multipart upload vanished".into()));
        };
        let done = self.inner.run(async move { up.complete().await })?;
        done.map(drop).map_err(|e| {
            self.inner
                .err("completing the multipart upload of", &self.key, &e)
        })
    }
}

impl io::Write for S3Write {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let part = self.part_size();
        let n = data.len().min(part.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= part {
            self.send_part().map_err(to_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for S3Write {
    fn finish(mut self: Box<Self>, _durable: bool) -> Result<Staged> {
        // An object store acknowledges a PUT or a completed multipart
        // upload only once it is stored (Garage: with data_fsync and
        // metadata_fsync set, on disk): every finish is durable.
        self.finish_inner()?;
        Ok(Staged::new(std::mem::take(&mut self.name)))
    }
}

impl Drop for S3Write {
    fn drop(&mut self) {
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        if let Some(mut up) = self.upload.take() {
            // Best effort: a multipart upload left behind holds only
            // unlisted parts, which the bucket's lifecycle rules expire.
            self.inner.rt.spawn(async move {
                let _ = up.abort().await;
            });
        }
    }
}
