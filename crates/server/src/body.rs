//! Bodies between async handlers and the blocking engine: a request body
//! read as `std::io::Read` on the blocking pool, and a blob streamed out as
//! a response body, each through a channel of a few chunks.

use std::io::{self, Read};

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use ocidb::blob::BlobReader;
use tokio::sync::mpsc;

use super::errors::{client_error, ApiError};

/// Chunks in flight between the network and the engine.
const DEPTH: usize = 4;
/// Size of one chunk read from a blob into a buffer: large reads, few
/// hand-overs to the network task.
const OUT_CHUNK: usize = 1 << 20;

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

/// A body that sent nothing for `idle`: the client's doing.
fn idle_error(idle: std::time::Duration) -> io::Error {
    client_error(
        io::ErrorKind::TimedOut,
        format!("the request body sent nothing for {} s", idle.as_secs()),
    )
}

/// A body the client broke off.
fn broken_error(e: impl std::fmt::Display) -> io::Error {
    client_error(
        io::ErrorKind::UnexpectedEof,
        format!("the request body broke off: {e}"),
    )
}

/// Runs `f` on the blocking pool with the request body as a reader, feeding
/// it from this task. A body that breaks off mid-stream reaches `f` as a
/// read error. Errors come back as API errors, as from `http::blocking`.
/// How fast a streamed request body must come: a chunk at least every
/// `idle`, and at least `min_rate` bytes a second over each `idle` window
/// (an idle timeout alone let a client hold an upload slot for ever with
/// one byte every few seconds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyPace {
    pub idle: std::time::Duration,
    /// Bytes per second; 0: no minimum.
    pub min_rate: u64,
}

pub(crate) async fn with_body<T: Send + 'static>(
    body: Body,
    pace: BodyPace,
    f: impl FnOnce(BodyReader) -> ocidb::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let idle = pace.idle;
    let (tx, rx) = mpsc::channel(DEPTH);
    let job = tokio::task::spawn_blocking(move || {
        f(BodyReader {
            rx,
            cur: Bytes::new(),
        })
    });
    let mut stream = body.into_data_stream();
    let mut window = (tokio::time::Instant::now(), 0u64);
    loop {
        let elapsed = window.0.elapsed();
        if pace.min_rate > 0 && !idle.is_zero() && elapsed >= idle {
            let want = pace.min_rate.saturating_mul(elapsed.as_secs().max(1));
            if window.1 < want {
                let _ = tx
                    .send(Err(client_error(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the request body sent {} bytes in {} s, under the minimum of {} bytes a second",
                            window.1,
                            elapsed.as_secs(),
                            pace.min_rate
                        ),
                    )))
                    .await;
                break;
            }
            window = (tokio::time::Instant::now(), 0);
        }
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(_) => {
                let _ = tx.send(Err(idle_error(idle))).await;
                break;
            }
        };
        let item = chunk.map_err(broken_error);
        if let Ok(b) = &item {
            window.1 = window.1.saturating_add(b.len() as u64);
        }
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            break;
        }
    }
    drop(tx);
    match job.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::from(ocidb::Error::Internal(format!(
            "a request task failed: {e}"
        )))),
    }
}

/// What a buffered body may take: at most `limit` bytes, a chunk at
/// least every `idle`, all of it within `deadline`, and a share of the
/// server-wide `budget` (permits are KiB) for as long as it is held.
pub(crate) struct BufferLimits<'a> {
    pub limit: usize,
    pub idle: std::time::Duration,
    pub deadline: std::time::Duration,
    pub budget: &'a std::sync::Arc<tokio::sync::Semaphore>,
}

/// Why a buffered body was refused.
pub(crate) enum BufferRefusal {
    /// More than the limit.
    TooLarge,
    /// The server holds its budget of buffered bytes.
    Busy,
    /// The client stalled, was too slow, or broke off.
    Client(io::Error),
}

/// Reads a body into memory under `limits`. The returned permit holds the
/// body's share of the budget: keep it until the bytes are dropped.
pub(crate) async fn read_limited(
    body: Body,
    limits: &BufferLimits<'_>,
) -> Result<(Vec<u8>, tokio::sync::OwnedSemaphorePermit), BufferRefusal> {
    let mut held = std::sync::Arc::clone(limits.budget)
        .try_acquire_owned()
        .map_err(|_| BufferRefusal::Busy)?;
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    let ends = tokio::time::Instant::now() + limits.deadline;
    loop {
        let wait = limits
            .idle
            .min(ends.saturating_duration_since(tokio::time::Instant::now()));
        let chunk = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok((out, held)),
            Err(_) => {
                return Err(BufferRefusal::Client(
                    if tokio::time::Instant::now() >= ends {
                        client_error(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the request body did not arrive whole within {} s",
                                limits.deadline.as_secs()
                            ),
                        )
                    } else {
                        idle_error(limits.idle)
                    },
                ));
            }
        };
        let chunk = chunk.map_err(|e| BufferRefusal::Client(broken_error(e)))?;
        if out.len() + chunk.len() > limits.limit {
            return Err(BufferRefusal::TooLarge);
        }
        out.extend_from_slice(&chunk);
        // One permit per KiB held, taken as the bytes arrive.
        let want = u32::try_from(out.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let have = u32::try_from(held.num_permits()).unwrap_or(u32::MAX);
        if want > have {
            let more = std::sync::Arc::clone(limits.budget)
                .try_acquire_many_owned(want - have)
                .map_err(|_| BufferRefusal::Busy)?;
            held.merge(more);
        }
    }
}

/// How a blob's bytes reach the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Windows of a local blob file mapped into memory and handed to the
    /// socket's `writev` as they are: the kernel copies them once. Only on
    /// a plain TCP connection this server accepted (hyper's vectored
    /// writes never touch the bytes in user space, so a file truncated
    /// behind the engine's back fails the write with EFAULT rather than
    /// raising SIGBUS; TLS reads them to encrypt).
    Mapped,
    /// Chunks read into buffers (TLS, a host's own listener, object
    /// storage, inline bytes).
    Copied,
}

/// A mapped window: large, because each costs an `mmap` and a `munmap`
/// (a TLB flush); small enough that a stalled client pins little address
/// space.
const MAP_WINDOW: usize = 8 << 20;

/// A response body that streams a blob: a chunk is produced on the
/// blocking pool while the one before goes out (one ahead, no more), and
/// only while the client reads: a client that stops reading holds its
/// connection and one or two chunks, never a thread (a task that waited to
/// hand over its next chunk took a blocking thread per stalled download,
/// and 512 of them stopped the store). `hold` (a download permit) lives as
/// long as the body.
///
/// A read that fails (a short file, object storage away) is logged with
/// `what` and cuts the body short of its Content-Length, as it must.
pub(crate) fn stream<H: Send + 'static>(
    r: BlobReader,
    hold: H,
    how: Delivery,
    what: String,
) -> Body {
    type Next = tokio::task::JoinHandle<(BlobReader, io::Result<Option<Bytes>>)>;
    struct State<H> {
        next: Option<Next>,
        how: Delivery,
        what: String,
        _hold: H,
    }
    fn produce(mut r: BlobReader, how: Delivery) -> Next {
        tokio::task::spawn_blocking(move || {
            let chunk = next_chunk(&mut r, how);
            (r, chunk)
        })
    }
    let state = State {
        next: Some(produce(r, how)),
        how,
        what,
        _hold: hold,
    };
    Body::from_stream(futures_util::stream::unfold(state, |mut st| async move {
        let next = st.next.take()?;
        match next.await {
            Ok((_, Ok(None))) => None,
            Ok((r, Ok(Some(chunk)))) => {
                if !r.is_empty() {
                    st.next = Some(produce(r, st.how));
                }
                Some((Ok(chunk), st))
            }
            Ok((_, Err(e))) => {
                tracing::warn!("sending {}: {e}", st.what);
                Some((Err(e), st))
            }
            Err(e) => {
                tracing::warn!("sending {}: {e}", st.what);
                Some((Err(io::Error::other(e)), st))
            }
        }
    }))
}

/// The reader's next chunk, `None` at its end.
fn next_chunk(r: &mut BlobReader, how: Delivery) -> io::Result<Option<Bytes>> {
    if r.is_empty() {
        return Ok(None);
    }
    if how == Delivery::Mapped
        && let Some(m) = r.map_next(MAP_WINDOW)?
    {
        return Ok(Some(Bytes::from_owner(m)));
    }
    let want = usize::try_from(r.len()).map_or(OUT_CHUNK, |left| left.min(OUT_CHUNK));
    let mut buf = Vec::with_capacity(want);
    // `take` + `read_to_end` fills the capacity without zeroing it first;
    // a blob shorter than its record is the reader's error, never a
    // short chunk.
    Read::take(&mut *r, want as u64).read_to_end(&mut buf)?;
    Ok(Some(Bytes::from(buf)))
}
