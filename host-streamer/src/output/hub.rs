//! Fan-out of the live Ogg/Opus stream to HTTP listeners, the way Icecast does it: a new
//! listener gets the stream's header pages, then the live pages from the next one on.
//!
//! Pages go into a broadcast ring of fixed size that every listener reads at its own pace.
//! Publishing never waits for anyone; a listener that falls further behind than the ring
//! holds is disconnected (its player reconnects and starts again at the live edge), so a slow
//! listener costs neither the engine nor the other listeners anything.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// Where listeners connect.
pub const STREAM_PATH: &str = "/stream.ogg";

/// Shares the live stream with every connected listener. Cheap to clone.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

struct Inner {
    headers: Bytes,
    /// `None` once the stream has ended.
    pages: Mutex<Option<broadcast::Sender<Bytes>>>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHub")
            .field("listeners", &self.listeners())
            .finish_non_exhaustive()
    }
}

impl StreamHub {
    /// Pages a listener may fall behind before it is dropped unless configured: 50 pages
    /// of 200 ms are 10 s, enough to ride out a mobile network's stalls.
    pub const DEFAULT_BUFFER_PAGES: usize = 50;

    /// A hub for a stream whose header pages are `headers`; a listener may fall
    /// `buffer_pages` pages behind before it is dropped.
    pub fn new(headers: Bytes, buffer_pages: usize, metrics: Arc<Metrics>) -> Self {
        let (pages, _) = broadcast::channel(buffer_pages.max(1));
        StreamHub {
            inner: Arc::new(Inner {
                headers,
                pages: Mutex::new(Some(pages)),
                metrics,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Sends a page (or several, whole) to every listener. Never waits.
    pub fn publish(&self, page: Bytes) {
        if let Some(pages) = self.sender().as_ref() {
            // An error only means nobody is listening.
            let _ = pages.send(page);
        }
    }

    /// Ends the stream: listeners get what was published, then the end of the response.
    pub fn close(&self) {
        self.sender().take();
    }

    /// Listeners connected now.
    pub fn listeners(&self) -> usize {
        self.sender()
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// A new listener, starting with the header pages; `None` once the stream has ended.
    /// `client` names it in logs.
    pub fn subscribe(&self, client: impl Into<String>) -> Option<Listener> {
        let pages = self.sender().as_ref()?.subscribe();
        let listener = Listener {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            client: client.into(),
            headers: Some(self.inner.headers.clone()),
            pages,
            metrics: Arc::clone(&self.inner.metrics),
            connected: Instant::now(),
            bytes: 0,
            end: End::Disconnected,
        };
        let now = self.inner.metrics.listeners.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            listener = listener.id,
            client = %listener.client,
            listeners = now,
            "listener connected"
        );
        Some(listener)
    }

    /// `GET` and `HEAD` on [`STREAM_PATH`], to merge into the server's router.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(STREAM_PATH, get(serve_stream).head(describe_stream))
            .with_state(self.clone())
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Bytes>>> {
        self.inner
            .pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a listener went away, for the disconnect log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed the connection (or the server dropped the response).
    Disconnected,
    /// It fell more than the buffer behind.
    TooSlow,
    /// The stream ended.
    StreamEnded,
}

/// One listener's view of the stream: header pages, then live pages.
pub struct Listener {
    id: u64,
    client: String,
    headers: Option<Bytes>,
    pages: broadcast::Receiver<Bytes>,
    metrics: Arc<Metrics>,
    connected: Instant,
    bytes: u64,
    end: End,
}

/// The listener fell further behind than the buffer and was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("listener fell {0} pages behind the live stream")]
pub struct TooSlow(pub u64);

impl Listener {
    /// The next chunk of the stream (whole pages); `Ok(None)` when the stream has ended.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, TooSlow> {
        if let Some(headers) = self.headers.take() {
            self.bytes += headers.len() as u64;
            return Ok(Some(headers));
        }
        match self.pages.recv().await {
            Ok(page) => {
                self.bytes += page.len() as u64;
                Ok(Some(page))
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.end = End::StreamEnded;
                Ok(None)
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.end = End::TooSlow;
                Err(TooSlow(missed))
            }
        }
    }

    /// The stream as a response body. Falling behind ends it with an error, which makes
    /// the server abort the connection rather than end the response as if complete.
    pub fn into_body_stream(self) -> impl Stream<Item = Result<Bytes, TooSlow>> + Send {
        futures::stream::unfold(Some(self), |listener| async move {
            let mut listener = listener?;
            match listener.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(listener))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let now = self.metrics.listeners.fetch_sub(1, Ordering::Relaxed) - 1;
        let seconds = self.connected.elapsed().as_secs_f64();
        let reason = match self.end {
            End::Disconnected => "disconnected",
            End::TooSlow => "too slow, dropped",
            End::StreamEnded => "stream ended",
        };
        if self.end == End::TooSlow {
            tracing::warn!(listener = self.id, client = %self.client, seconds, bytes = self.bytes,
                listeners = now, "listener {reason}");
        } else {
            tracing::info!(listener = self.id, client = %self.client, seconds, bytes = self.bytes,
                listeners = now, "listener {reason}");
        }
    }
}

fn stream_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    // A live stream: no cache or proxy may store or replay it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn serve_stream(State(hub): State<StreamHub>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string());
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let client = match (peer, agent) {
        (Some(peer), Some(agent)) => format!("{peer} ({agent})"),
        (Some(peer), None) => peer,
        (None, Some(agent)) => agent.to_owned(),
        (None, None) => "unknown".to_owned(),
    };
    let Some(listener) = hub.subscribe(client) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the stream has ended").into_response();
    };
    let mut response = Body::from_stream(listener.into_body_stream()).into_response();
    stream_headers(&mut response);
    response
}

/// `HEAD`: what a `GET` would send, without joining the stream.
async fn describe_stream(State(hub): State<StreamHub>) -> Response {
    if hub.sender().is_none() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut response = StatusCode::OK.into_response();
    stream_headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(buffer: usize) -> (StreamHub, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let hub = StreamHub::new(Bytes::from_static(b"HEAD"), buffer, Arc::clone(&metrics));
        (hub, metrics)
    }

    #[tokio::test]
    async fn a_listener_gets_headers_then_pages_from_the_next_one() {
        let (hub, metrics) = hub(8);
        hub.publish(Bytes::from_static(b"before"));
        let mut listener = hub.subscribe("test").unwrap();
        assert_eq!(metrics.listeners.load(Ordering::Relaxed), 1);
        hub.publish(Bytes::from_static(b"p1"));
        hub.publish(Bytes::from_static(b"p2"));
        hub.close();
        let mut got = Vec::new();
        while let Some(chunk) = listener.next_chunk().await.unwrap() {
            got.push(chunk);
        }
        assert_eq!(got, ["HEAD", "p1", "p2"]);
        drop(listener);
        assert_eq!(metrics.listeners.load(Ordering::Relaxed), 0);
        assert!(hub.subscribe("late").is_none());
    }

    #[tokio::test]
    async fn a_listener_too_far_behind_is_dropped_and_others_are_not() {
        let (hub, metrics) = hub(4);
        let mut slow = hub.subscribe("slow").unwrap();
        let mut fast = hub.subscribe("fast").unwrap();
        assert_eq!(fast.next_chunk().await.unwrap().unwrap(), "HEAD");
        for i in 0..10u8 {
            hub.publish(Bytes::from(vec![i]));
            assert_eq!(fast.next_chunk().await.unwrap().unwrap()[..], [i]);
        }
        assert_eq!(slow.next_chunk().await.unwrap().unwrap(), "HEAD");
        assert_eq!(slow.next_chunk().await, Err(TooSlow(6)));
        drop(slow);
        assert_eq!(metrics.listeners.load(Ordering::Relaxed), 1);
        assert_eq!(hub.listeners(), 1);
    }
}
