//! Request bodies read within a limit, and drained when the answer comes before the end.
//!
//! A server that answers 413 (or 415, or 422) before a body is read, then closes, makes many
//! clients lose the answer: Python's `http.client` and most SDKs write the whole body before
//! reading, and a close with unread data in the socket turns into a reset that discards the
//! response they were about to read. nginx's lingering close reads on for a while; here the
//! handler does:
//!
//! ```text
//!  client ──body──> pump ──(up to the limit)──> handler's body ──> 413 / 2xx
//!                    └──(past the limit, or after the handler stopped reading)──> discarded
//!                         until the end, DRAIN_BYTES more or DRAIN_TIME, whichever first
//! ```
//!
//! - [`bounded`] splits a body into the part the handler reads and a [`Drain`] it finishes
//!   before answering, so the response goes out on a connection whose request was read.
//! - Past the limit the handler's body ends with [`TooLarge`]; [`Drain::exceeded`] says so
//!   whatever error the parser made of it.
//! - The drain is bounded in bytes and time: a client that keeps sending is cut off, as it
//!   would be without it.
//! - [`drain_unread`] does the same for whatever answers before a handler reads at all (an
//!   extractor's 401, a limiter's 429): the body it dropped comes back and is drained before
//!   the answer goes out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// At most this much more is read and discarded after the handler stopped reading.
pub const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// And for at most this long.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The body went past the limit.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// The rest of a body, read on after the handler stopped, until the end or a bound.
#[derive(Debug)]
pub struct Drain {
    pump: JoinHandle<()>,
    exceeded: Arc<AtomicBool>,
}

impl Drain {
    /// Whether the body went past the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Waits until the body has been read to its end (or the drain gave up): then the
    /// response can be written to a client that is reading.
    pub async fn finish(self) {
        let _ = self.pump.await;
    }
}

/// Splits `body` into the part a handler reads (at most `limit` bytes, then [`TooLarge`])
/// and the [`Drain`] that reads the rest.
pub fn bounded(body: Body, limit: u64) -> (Body, Drain) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, TooLarge>>(4);
    let exceeded = Arc::new(AtomicBool::new(false));
    let pump = tokio::spawn(pump(body, limit, tx, exceeded.clone()));
    let stream = tokio_stream_from(rx);
    (Body::from_stream(stream), Drain { pump, exceeded })
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, TooLarge>>,
) -> impl futures::Stream<Item = Result<Bytes, TooLarge>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn pump(
    body: Body,
    limit: u64,
    tx: mpsc::Sender<Result<Bytes, TooLarge>>,
    exceeded: Arc<AtomicBool>,
) {
    let mut frames = body.into_data_stream();
    let mut read: u64 = 0;
    while let Some(Ok(chunk)) = frames.next().await {
        read += chunk.len() as u64;
        if read > limit {
            exceeded.store(true, Ordering::Relaxed);
            let _ = tx.send(Err(TooLarge(limit))).await;
            break;
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The handler let go of the body before its end.
            break;
        }
    }
    // At the end, or after a failed connection, there is nothing more to read.
    discard(frames).await;
}

/// Reads `frames` to their end and throws them away, for at most [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`].
async fn discard(mut frames: axum::body::BodyDataStream) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut drained: u64 = 0;
    loop {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Ok(Some(Ok(chunk))) => {
                drained += chunk.len() as u64;
                if drained > DRAIN_BYTES {
                    tracing::debug!(drained, "request body drain gave up: too much");
                    return;
                }
            }
            Ok(_) => return,
            Err(_) => {
                tracing::debug!(drained, "request body drain timed out");
                return;
            }
        }
    }
}

/// Middleware: a request answered without its body being read at all (an extractor's 401,
/// a limiter's 429, a handler's early 400) is answered after the body is drained, within
/// [`DRAIN_BYTES`] and [`DRAIN_TIME`]. A body a handler began to read is its reader's to
/// finish ([`bounded`] does).
pub async fn drain_unread(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let (back, mut returned) = oneshot::channel();
    let body = Body::new(ReturnedOnDrop {
        inner: Some(body),
        back: Some(back),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    // Not waited for: a body still held somewhere is not this request's to drain.
    if let Ok(unread) = returned.try_recv() {
        discard(unread.into_data_stream()).await;
    }
    response
}

/// A body that, dropped before anyone read from it, sends itself back.
struct ReturnedOnDrop {
    inner: Option<Body>,
    /// Taken at the first read.
    back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for ReturnedOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.back = None;
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for ReturnedOnDrop {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !inner.is_end_stream()
        {
            let _ = back.send(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn chunks(n: usize, size: usize) -> Body {
        let stream = futures::stream::iter(
            (0..n).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; size]))),
        );
        Body::from_stream(stream)
    }

    /// `n` chunks of 1000 bytes, and how many bytes of them were read so far.
    fn counted(n: usize) -> (Body, Arc<std::sync::atomic::AtomicUsize>) {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let stream = futures::stream::iter((0..n).map(move |_| {
            counter.fetch_add(1000, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1000]))
        }));
        (Body::from_stream(stream), read)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_passed_whole() {
        let (body, drain) = bounded(chunks(4, 100), 400);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 400);
        drain.finish().await;
    }

    #[tokio::test]
    async fn a_body_past_the_limit_ends_in_too_large_and_is_read_to_its_end() {
        let (body, read) = counted(100);
        let (body, drain) = bounded(body, 2500);
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("larger than 2500"), "{err}");
        assert!(drain.exceeded());
        drain.finish().await;
        assert_eq!(read.load(Ordering::Relaxed), 100_000, "drained to the end");
    }

    #[tokio::test]
    async fn a_body_the_handler_lets_go_of_is_drained() {
        let (body, read) = counted(50);
        let (body, drain) = bounded(body, 1 << 20);
        drop(body);
        assert!(!drain.exceeded());
        drain.finish().await;
        assert_eq!(read.load(Ordering::Relaxed), 50_000, "drained to the end");
    }
}
