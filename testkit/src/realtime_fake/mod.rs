//! A local fake of OpenAI's Realtime API over WebSocket, speaking the GA protocol the
//! host-streamer's Realtime voice speaks, so its tests never reach the real API.
//!
//! The handshake wants `GET /v1/realtime?model=gpt-realtime...` with `Authorization: Bearer
//! KEY` (401 with the API's error body otherwise); a client still sending `OpenAI-Beta` is
//! closed with code 4000, as the GA endpoint closes the beta shape. Then:
//!
//! - `session.created` (with `expires_at`) first;
//! - `session.update` is validated (`session.type` `realtime`, `audio/pcm` at 24000, known
//!   voice, no beta-shape fields) and answered with `session.updated` or an `error` event;
//! - `conversation.item.create` is answered with `conversation.item.added` and `.done`;
//! - `response.create` with `response.created`, the output item and content part events,
//!   [`fake_speech`] of [`fake_reply`] (to the last user message) as
//!   `response.output_audio.delta`s of 100 ms sent about 50 times faster than real time, its
//!   transcript as `response.output_audio_transcript.delta`s, the `.done` events,
//!   `response.done` and `rate_limits.updated`;
//! - `response.cancel` ends the running response with status `cancelled`.
//!
//! Sessions end like the real ones: `error` `session_expired` then a 1001 close, after the
//! configured lifetime or when a test calls [`RealtimeFake::expire_sessions`]. Faults for the
//! next responses are queued with [`RealtimeFake::fail_next_response`], and their words with
//! [`RealtimeFake::say_next`]. Everything received is
//! recorded per session ([`RealtimeFake::sessions`]) so tests can check what a client said.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::openai_fake::{
    FAKE_API_KEY, FAKE_SPEECH_RATE, authorized, error_body, fake_reply, fake_speech,
    unauthorized_body,
};

mod connection;

use connection::Connection;

/// The endpoint's path.
pub const REALTIME_PATH: &str = "/v1/realtime";

/// How long a session lives unless configured otherwise: the real API's 60 minutes.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The close code the GA endpoint ends a beta-shaped (`OpenAI-Beta` header) connection with.
pub const BETA_CLOSE_CODE: u16 = 4000;

/// Audio per `response.output_audio.delta`.
const CHUNK: Duration = Duration::from_millis(100);
/// Pause between audio deltas: 100 ms of audio every 2 ms.
const CHUNK_INTERVAL: Duration = Duration::from_millis(2);

const MODEL_PREFIXES: [&str; 3] = [
    "gpt-realtime",
    "gpt-4o-realtime-preview",
    "gpt-4o-mini-realtime-preview",
];
const VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];
/// Session fields of the beta shape, refused by the GA endpoint.
const BETA_SESSION_FIELDS: [&str; 6] = [
    "modalities",
    "voice",
    "output_audio_format",
    "input_audio_format",
    "input_audio_transcription",
    "turn_detection",
];

/// A failure for the next response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealtimeFault {
    /// `response.created`, an `error` event (`server_error`), then `response.done` with
    /// status `failed`.
    Failed,
    /// `rate_limits.updated` with no requests left, then an `error` event with code
    /// `rate_limit_exceeded` saying when to try again; no response is created.
    RateLimited { retry_after: Duration },
    /// A third of the audio, then `response.done` with status `incomplete`.
    Incomplete,
    /// A third of the audio, then the TCP connection is closed without a close frame.
    DropMidResponse,
    /// A third of the audio, then nothing for `pause` (`None`: until the client goes away),
    /// then the rest.
    Stall { pause: Option<Duration> },
}

/// How to run the fake.
#[derive(Debug, Clone)]
pub struct RealtimeFakeOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// The only key accepted.
    pub api_key: String,
    /// Sessions expire (`session_expired`, close 1001) this long after they start.
    pub session_lifetime: Duration,
}

impl Default for RealtimeFakeOptions {
    fn default() -> Self {
        RealtimeFakeOptions {
            port: 0,
            api_key: FAKE_API_KEY.to_owned(),
            session_lifetime: DEFAULT_SESSION_LIFETIME,
        }
    }
}

/// What one session received and said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    /// The `model` query parameter.
    pub model: String,
    /// The `session` object of every `session.update` accepted, in order.
    pub updates: Vec<Value>,
    /// The instructions in force (after the last update).
    pub instructions: String,
    /// The output voice in force.
    pub voice: String,
    /// Items the client created, as stored (with their ids).
    pub items: Vec<Value>,
    /// Transcripts of the responses completed.
    pub transcripts: Vec<String>,
    /// Ended by expiry (lifetime or [`RealtimeFake::expire_sessions`]).
    pub expired: bool,
    /// Still connected.
    pub open: bool,
}

/// A running fake; stops (closing every connection) when dropped.
pub struct RealtimeFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RealtimeFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for RealtimeFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeFake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    api_key: String,
    lifetime: Duration,
    /// Bumped by [`RealtimeFake::expire_sessions`]; every connection watches it.
    expire: watch::Sender<u64>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<RealtimeFault>,
    /// What the next responses say instead of [`fake_reply`], in order.
    lines: VecDeque<String>,
    handshakes: usize,
    refused_handshakes: usize,
    beta_closed: usize,
    responses: usize,
    sessions: Vec<SessionRecord>,
    next_id: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self, prefix: &str) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        format!("{prefix}_{:016x}", inner.next_id)
    }
}

impl RealtimeFake {
    /// Starts on 127.0.0.1 and a free port with the default options.
    ///
    /// # Panics
    /// If no loopback port can be bound, which means the machine cannot run tests at all.
    pub async fn start() -> Self {
        Self::start_with(RealtimeFakeOptions::default())
            .await
            .expect("binding 127.0.0.1:0")
    }

    /// Starts with `options`. Binds with `SO_REUSEADDR`, so a fake restarted on the port of
    /// one that was killed gets it back at once.
    pub async fn start_with(options: RealtimeFakeOptions) -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], options.port)))?;
        let listener = socket.listen(64)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: options.api_key,
            lifetime: options.session_lifetime,
            expire: watch::channel(0).0,
            inner: Mutex::new(Inner::default()),
        });
        let server_shared = shared.clone();
        let server = tokio::spawn(async move {
            // Owned here so that aborting the server aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(serve(stream, server_shared.clone()));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(RealtimeFake {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`, what `OPENAI_REALTIME_URL` should be.
    pub fn url(&self) -> String {
        format!("ws://{}{REALTIME_PATH}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The variables that point a service at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("OPENAI_REALTIME_URL".to_owned(), self.url()),
            ("OPENAI_API_KEY".to_owned(), self.shared.api_key.clone()),
        ]
    }

    /// Makes the next response (after those already queued) fail with `fault`.
    pub fn fail_next_response(&self, fault: RealtimeFault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Makes the next response (after those already given a line) say `line` instead of
    /// [`fake_reply`] of its prompt: how a test puts words in the DJ's mouth.
    pub fn say_next(&self, line: &str) {
        self.shared.lock().lines.push_back(line.to_owned());
    }

    /// Ends every open session now the way the server does at 60 minutes.
    pub fn expire_sessions(&self) {
        self.shared.expire.send_modify(|n| *n += 1);
    }

    /// WebSocket handshakes attempted, refused ones included.
    pub fn handshakes(&self) -> usize {
        self.shared.lock().handshakes
    }

    /// Handshakes refused (bad key, path or model).
    pub fn refused_handshakes(&self) -> usize {
        self.shared.lock().refused_handshakes
    }

    /// Connections closed with 4000 for an `OpenAI-Beta` header.
    pub fn beta_closed(&self) -> usize {
        self.shared.lock().beta_closed
    }

    /// Sessions started (`session.created` sent).
    pub fn session_count(&self) -> usize {
        self.shared.lock().sessions.len()
    }

    /// Sessions still connected.
    pub fn open_sessions(&self) -> usize {
        self.shared
            .lock()
            .sessions
            .iter()
            .filter(|s| s.open)
            .count()
    }

    /// Sessions ended by expiry.
    pub fn expired_sessions(&self) -> usize {
        self.shared
            .lock()
            .sessions
            .iter()
            .filter(|s| s.expired)
            .count()
    }

    /// `response.create` events received.
    pub fn responses(&self) -> usize {
        self.shared.lock().responses
    }

    /// Every session so far, oldest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.shared.lock().sessions.clone()
    }
}

/// What the handshake callback learned.
#[derive(Default)]
struct Handshake {
    model: String,
    beta: bool,
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    shared.lock().handshakes += 1;
    let mut handshake = Handshake::default();
    // The callback's type is tungstenite's, large error and all.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, res: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode, body: Value| {
            let mut res = ErrorResponse::new(Some(body.to_string()));
            *res.status_mut() = status;
            res.headers_mut()
                .insert("content-type", "application/json".parse().expect("static"));
            res
        };
        if req.uri().path() != REALTIME_PATH {
            let message = format!("Invalid URL (GET {})", req.uri().path());
            let body = error_body(&message, "invalid_request_error", None, None);
            return Err(refuse(StatusCode::NOT_FOUND, body));
        }
        if !authorized(&shared.api_key, req.headers()) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                unauthorized_body(req.headers()),
            ));
        }
        let model = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|p| p.strip_prefix("model="))
            .unwrap_or("");
        if model.is_empty() {
            let body = error_body(
                "Missing required parameter: 'model'.",
                "invalid_request_error",
                Some("model"),
                Some("missing_required_parameter"),
            );
            return Err(refuse(StatusCode::BAD_REQUEST, body));
        }
        if !MODEL_PREFIXES.iter().any(|p| model.starts_with(p)) {
            let message =
                format!("The model `{model}` does not exist or you do not have access to it.");
            let body = error_body(
                &message,
                "invalid_request_error",
                None,
                Some("model_not_found"),
            );
            return Err(refuse(StatusCode::NOT_FOUND, body));
        }
        handshake.model = model.to_owned();
        handshake.beta = req.headers().contains_key("openai-beta");
        Ok(res)
    };
    let mut ws = match tokio_tungstenite::accept_hdr_async(stream, check).await {
        Ok(ws) => ws,
        Err(_) => {
            shared.lock().refused_handshakes += 1;
            return;
        }
    };
    if handshake.beta {
        shared.lock().beta_closed += 1;
        let frame = CloseFrame {
            code: CloseCode::Library(BETA_CLOSE_CODE),
            reason: "This endpoint speaks the GA Realtime API: remove the OpenAI-Beta header."
                .into(),
        };
        let _ = ws.close(Some(frame)).await;
        return;
    }
    let mut conn = Connection::new(shared.clone(), handshake.model);
    conn.run(&mut ws).await;
    shared.lock().sessions[conn.index].open = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

    async fn connect(
        fake: &RealtimeFake,
        key: &str,
        beta: bool,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("{}?model=gpt-realtime", fake.url())
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
        if beta {
            headers.insert("openai-beta", "realtime=v1".parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(ws, _)| ws)
    }

    async fn next_event(ws: &mut Client) -> Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).unwrap(),
                Ok(Some(Ok(_))) => {}
                other => panic!("no event: {other:?}"),
            }
        }
    }

    async fn send_event(ws: &mut Client, event: Value) {
        ws.send(Message::text(event.to_string())).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_wrong_keys_and_closes_beta_clients() {
        let fake = RealtimeFake::start().await;
        match connect(&fake, "sk-wrong", false).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 401);
                let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], "invalid_api_key");
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
        let mut ws = connect(&fake, FAKE_API_KEY, true).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), BETA_CLOSE_CODE);
            }
            other => panic!("expected a 4000 close, got {other:?}"),
        }
        assert_eq!((fake.beta_closed(), fake.session_count()), (1, 0));
        assert_eq!(fake.refused_handshakes(), 1);
    }

    #[tokio::test]
    async fn speaks_a_response_and_validates_session_updates() {
        let fake = RealtimeFake::start().await;
        let mut ws = connect(&fake, FAKE_API_KEY, false).await.unwrap();
        let created = next_event(&mut ws).await;
        assert_eq!(created["type"], "session.created");
        assert!(created["session"]["expires_at"].as_u64().unwrap() > 0);
        send_event(
            &mut ws,
            json!({ "type": "session.update", "session": { "type": "realtime", "voice": "marin" } }),
        )
        .await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["error"]["code"], "unknown_parameter", "{error}");
        send_event(
            &mut ws,
            json!({ "type": "session.update", "event_id": "e1", "session": {
                "type": "realtime",
                "audio": { "output": { "format": { "type": "audio/pcm", "rate": 16000 } } },
            }}),
        )
        .await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["error"]["param"], "session.audio.output.format.rate");
        assert_eq!(error["error"]["event_id"], "e1");
        send_event(
            &mut ws,
            json!({ "type": "session.update", "session": {
                "type": "realtime", "instructions": "Be a DJ.", "output_modalities": ["audio"],
                "audio": { "output": { "format": { "type": "audio/pcm", "rate": 24000 }, "voice": "marin" } },
            }}),
        )
        .await;
        let updated = next_event(&mut ws).await;
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["audio"]["output"]["voice"], "marin");
        send_event(
            &mut ws,
            json!({ "type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{ "type": "input_text", "text": "Say hello" }],
            }}),
        )
        .await;
        assert_eq!(next_event(&mut ws).await["type"], "conversation.item.added");
        assert_eq!(next_event(&mut ws).await["type"], "conversation.item.done");
        send_event(&mut ws, json!({ "type": "response.create" })).await;
        let mut audio = 0usize;
        let mut transcript = String::new();
        let mut types = Vec::new();
        loop {
            let event = next_event(&mut ws).await;
            match event["type"].as_str().unwrap() {
                "response.output_audio.delta" => {
                    let b64 = event["delta"].as_str().unwrap();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    audio += bytes.len() / 2;
                }
                "response.output_audio_transcript.delta" => {
                    transcript.push_str(event["delta"].as_str().unwrap());
                }
                "rate_limits.updated" => break,
                other => types.push(other.to_owned()),
            }
        }
        let reply = fake_reply("Say hello");
        assert_eq!(transcript, reply);
        assert_eq!(audio, crate::openai_fake::fake_speech_len(&reply));
        assert_eq!(
            types,
            [
                "response.created",
                "response.output_item.added",
                "conversation.item.added",
                "response.content_part.added",
                "response.output_audio.done",
                "response.output_audio_transcript.done",
                "response.content_part.done",
                "response.output_item.done",
                "conversation.item.done",
                "response.done",
            ]
        );
        let sessions = fake.sessions();
        assert_eq!(sessions[0].instructions, "Be a DJ.");
        assert_eq!(sessions[0].transcripts, [reply]);
        assert_eq!(sessions[0].items.len(), 1);
        fake.expire_sessions();
        let error = next_event(&mut ws).await;
        assert_eq!(error["error"]["code"], "session_expired");
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }
}
