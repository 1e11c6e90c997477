//! Bodies between async handlers and the blocking engine: a request body
//! read as `std::io::Read` on the blocking pool, and a blob streamed out as
//! a response body, each through a channel of a few chunks.

use std::io::{self, Read};

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::errors::ApiError;

/// Chunks in flight between the network and the engine.
const DEPTH: usize = 4;
/// Size of one chunk read from a blob.
const OUT_CHUNK: usize = 256 * 1024;

/// A request body as the engine reads it.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Runs `f` on the blocking pool with the request body as a reader, feeding
/// it from this task. A body that breaks off mid-stream reaches `f` as a
/// read error. Errors come back as API errors, as from `http::blocking`.
pub(crate) async fn with_body<T: Send + 'static>(
    body: Body,
    idle: std::time::Duration,
    f: impl FnOnce(BodyReader) -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = mpsc::channel(DEPTH);
    let job = tokio::task::spawn_blocking(move || {
        f(BodyReader {
            rx,
            cur: Bytes::new(),
        })
    });
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(_) => {
                let _ = tx
                    .send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the request body sent nothing for {} s", idle.as_secs()),
                    )))
                    .await;
                break;
            }
        };
        let item = chunk.map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e));
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            break;
        }
    }
    drop(tx);
    match job.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(crate::Error::Internal(format!(
            "a request task failed: {e}"
        )))),
    }
}

/// Reads at most `limit` bytes of a body into memory; `None` when it holds
/// more.
pub(crate) async fn read_limited(body: Body, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e))?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// A response body that streams `r`, reading each chunk on the blocking
/// pool only when the client has taken the one before: a client that
/// stops reading holds its connection and one chunk, never a thread (a
/// task that waited to hand over its next chunk took a blocking thread
/// per stalled download, and 512 of them stopped the store). `hold` (a
/// download permit) lives as long as the body.
pub(crate) fn stream<R: Read + Send + 'static, H: Send + 'static>(r: R, hold: H) -> Body {
    struct State<R, H> {
        reader: Option<R>,
        _hold: H,
    }
    let state = State {
        reader: Some(r),
        _hold: hold,
    };
    Body::from_stream(futures_util::stream::unfold(state, |mut st| async move {
        let mut r = st.reader.take()?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; OUT_CHUNK];
            loop {
                match r.read(&mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        return (r, Ok(buf));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (r, Err(e)),
                }
            }
        })
        .await;
        match read {
            Ok((_, Ok(buf))) if buf.is_empty() => None,
            Ok((r, Ok(buf))) => {
                st.reader = Some(r);
                Some((Ok(Bytes::from(buf)), st))
            }
            // An error ends the body: the client sees the connection cut
            // short of Content-Length, as it must.
            Ok((_, Err(e))) => Some((Err(e), st)),
            Err(e) => Some((Err(io::Error::other(e)), st)),
        }
    }))
}
