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
//! next responses are queued with [`RealtimeFake::fail_next_response`]. Everything received is
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

/// An event to send, `after` the previous one (`None`: never, the fake stalls).
struct Step {
    after: Option<Duration>,
    action: Action,
}

enum Action {
    Send(Value),
    /// Close the TCP connection without a close frame.
    Drop,
}

/// One session's state.
struct Connection {
    shared: Arc<Shared>,
    index: usize,
    /// The session object as `session.updated` reports it.
    session: Value,
    /// Items in the conversation, for `previous_item_id` and the reply's input.
    conversation: Vec<Value>,
    queue: VecDeque<Step>,
    /// When the head of `queue` became the head.
    head_since: Instant,
    /// The response being sent.
    active: Option<String>,
    /// Audio was produced: the voice can no longer change.
    spoke: bool,
    expires: Instant,
}

impl Connection {
    fn new(shared: Arc<Shared>, model: String) -> Self {
        let id = shared.id("sess");
        let record = SessionRecord {
            id: id.clone(),
            model: model.clone(),
            voice: "alloy".to_owned(),
            open: true,
            ..SessionRecord::default()
        };
        let index = {
            let mut inner = shared.lock();
            inner.sessions.push(record);
            inner.sessions.len() - 1
        };
        let expires_at = SystemTime::now()
            .checked_add(shared.lifetime)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let pcm = json!({ "type": "audio/pcm", "rate": FAKE_SPEECH_RATE });
        let session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": null,
            "truncation": "auto",
            "prompt": null,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": null,
                    "noise_reduction": null,
                    "turn_detection": {
                        "type": "server_vad", "threshold": 0.5,
                        "prefix_padding_ms": 300, "silence_duration_ms": 200,
                        "create_response": true, "interrupt_response": true,
                        "idle_timeout_ms": null,
                    },
                },
                "output": { "format": pcm, "voice": "alloy", "speed": 1.0 },
            },
            "include": null,
        });
        let expires = Instant::now() + shared.lifetime;
        Connection {
            shared,
            index,
            session,
            conversation: Vec::new(),
            queue: VecDeque::new(),
            head_since: Instant::now(),
            active: None,
            spoke: false,
            expires,
        }
    }

    fn record(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn event(&self, kind: &str, fields: Value) -> Value {
        let mut event = json!({ "type": kind, "event_id": self.shared.id("event") });
        if let (Some(e), Value::Object(fields)) = (event.as_object_mut(), fields) {
            e.extend(fields);
        }
        event
    }

    fn error(
        &self,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        event_id: Option<&str>,
    ) -> Value {
        let error = json!({
            "type": kind, "code": code, "message": message, "param": param,
            "event_id": event_id,
        });
        self.event("error", json!({ "error": error }))
    }

    fn invalid(&self, code: &str, message: &str, param: &str, event_id: Option<&str>) -> Value {
        self.error(
            "invalid_request_error",
            code,
            message,
            Some(param),
            event_id,
        )
    }

    async fn run(&mut self, ws: &mut WebSocketStream<TcpStream>) {
        let mut expire = self.shared.expire.subscribe();
        expire.borrow_and_update();
        let created = self.event("session.created", json!({ "session": self.session }));
        if send(ws, &created).await.is_err() {
            return;
        }
        loop {
            let due = self.due();
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        for reply in self.handle(text.as_str()) {
                            if send(ws, &reply).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(due.unwrap_or(far).into()), if due.is_some() => {
                    let Some(step) = self.queue.pop_front() else { continue };
                    self.head_since = Instant::now();
                    match step.action {
                        Action::Send(event) => {
                            self.sent(&event);
                            if send(ws, &event).await.is_err() {
                                return;
                            }
                        }
                        // Dropping the stream closes the socket with no close frame.
                        Action::Drop => return,
                    }
                }
                _ = tokio::time::sleep_until(self.expires.into()) => {
                    self.expire(ws).await;
                    return;
                }
                Ok(()) = expire.changed() => {
                    self.expire(ws).await;
                    return;
                }
            }
        }
    }

    fn due(&self) -> Option<Instant> {
        let step = self.queue.front()?;
        step.after.map(|after| self.head_since + after)
    }

    fn enqueue(&mut self, steps: Vec<Step>) {
        if self.queue.is_empty() {
            self.head_since = Instant::now();
        }
        self.queue.extend(steps);
    }

    /// Bookkeeping for an event as it goes out.
    fn sent(&mut self, event: &Value) {
        if event["type"] != "response.done" {
            return;
        }
        self.active = None;
        let output = &event["response"]["output"];
        if let Some(item) = output.get(0) {
            self.conversation.push(item.clone());
        }
        if event["response"]["status"] == "completed" {
            let transcript = output[0]["content"][0]["transcript"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let index = self.index;
            self.record().sessions[index].transcripts.push(transcript);
        }
    }

    async fn expire(&mut self, ws: &mut WebSocketStream<TcpStream>) {
        let index = self.index;
        self.record().sessions[index].expired = true;
        let error = self.error(
            "invalid_request_error",
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
            None,
            None,
        );
        let _ = send(ws, &error).await;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "session expired".into(),
        };
        let _ = ws.close(Some(frame)).await;
    }

    /// Answers one client event: what to send at once (responses are queued).
    fn handle(&mut self, text: &str) -> Vec<Value> {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return vec![self.error(
                "invalid_request_error",
                "invalid_json",
                "The client event is not valid JSON.",
                None,
                None,
            )];
        };
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let event_id = event_id.as_deref();
        match event["type"].as_str().unwrap_or("") {
            "session.update" => vec![self.session_update(&event, event_id)],
            "conversation.item.create" => self.item_create(&event, event_id),
            "response.create" => self.response_create(event_id),
            "response.cancel" => self.response_cancel(event_id),
            other => vec![self.invalid(
                "invalid_value",
                &format!(
                    "Invalid value: '{other}'. The fake supports session.update, \
                     conversation.item.create, response.create and response.cancel."
                ),
                "type",
                event_id,
            )],
        }
    }

    fn session_update(&mut self, event: &Value, event_id: Option<&str>) -> Value {
        let Some(update) = event.get("session").filter(|s| s.is_object()) else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                "session",
                event_id,
            );
        };
        match update.get("type").and_then(Value::as_str) {
            Some("realtime") => {}
            None => {
                return self.invalid(
                    "missing_required_parameter",
                    "Missing required parameter: 'session.type'.",
                    "session.type",
                    event_id,
                );
            }
            Some(other) => {
                return self.invalid(
                    "invalid_value",
                    &format!("Invalid value: '{other}'. This session is of type 'realtime'."),
                    "session.type",
                    event_id,
                );
            }
        }
        if let Some(field) = BETA_SESSION_FIELDS
            .iter()
            .find(|f| update.get(**f).is_some())
        {
            return self.invalid(
                "unknown_parameter",
                &format!("Unknown parameter: 'session.{field}'."),
                &format!("session.{field}"),
                event_id,
            );
        }
        if let Some(modalities) = update.get("output_modalities")
            && modalities != &json!(["audio"])
            && modalities != &json!(["text"])
        {
            return self.invalid(
                "invalid_value",
                "Invalid 'session.output_modalities': expected ['audio'] or ['text'].",
                "session.output_modalities",
                event_id,
            );
        }
        let output = &update["audio"]["output"];
        if let Some(format) = output.get("format") {
            if format["type"] != "audio/pcm" {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.format.type': {}. The fake speaks \
                         'audio/pcm' only.",
                        format["type"]
                    ),
                    "session.audio.output.format.type",
                    event_id,
                );
            }
            if format.get("rate").is_some_and(|r| r != FAKE_SPEECH_RATE) {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.format.rate': {}. Supported values are: \
                         24000.",
                        format["rate"]
                    ),
                    "session.audio.output.format.rate",
                    event_id,
                );
            }
        }
        if let Some(voice) = output.get("voice") {
            let Some(voice) = voice.as_str().filter(|v| VOICES.contains(v)) else {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.voice': {voice}. Supported values are: {}.",
                        VOICES.join(", ")
                    ),
                    "session.audio.output.voice",
                    event_id,
                );
            };
            if self.spoke && self.session["audio"]["output"]["voice"] != voice {
                return self.invalid(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    "session.audio.output.voice",
                    event_id,
                );
            }
            self.session["audio"]["output"]["voice"] = json!(voice);
        }
        if output.get("format").is_some() {
            self.session["audio"]["output"]["format"] = json!({
                "type": "audio/pcm", "rate": FAKE_SPEECH_RATE,
            });
        }
        if let Some(instructions) = update.get("instructions") {
            let Some(instructions) = instructions.as_str() else {
                return self.invalid(
                    "invalid_type",
                    "Invalid type for 'session.instructions': expected a string.",
                    "session.instructions",
                    event_id,
                );
            };
            self.session["instructions"] = json!(instructions);
        }
        if let Some(modalities) = update.get("output_modalities") {
            self.session["output_modalities"] = modalities.clone();
        }
        {
            let index = self.index;
            let mut inner = self.record();
            let record = &mut inner.sessions[index];
            record.updates.push(update.clone());
            record.instructions = self.session["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            record.voice = self.session["audio"]["output"]["voice"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        self.event("session.updated", json!({ "session": self.session }))
    }

    fn item_create(&mut self, event: &Value, event_id: Option<&str>) -> Vec<Value> {
        let Some(item) = event.get("item").filter(|i| i.is_object()) else {
            return vec![self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                "item",
                event_id,
            )];
        };
        if item["type"] != "message" {
            return vec![self.invalid(
                "invalid_value",
                &format!(
                    "Invalid 'item.type': {}. The fake takes 'message' items only.",
                    item["type"]
                ),
                "item.type",
                event_id,
            )];
        }
        let role = item["role"].as_str().unwrap_or("");
        let allowed: &[&str] = match role {
            "user" => &["input_text", "input_audio"],
            "system" => &["input_text"],
            "assistant" => &["output_text", "output_audio"],
            _ => {
                return vec![self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'item.role': '{role}'. Supported values are: 'user', \
                         'assistant' and 'system'."
                    ),
                    "item.role",
                    event_id,
                )];
            }
        };
        let parts = item["content"].as_array().map_or(&[][..], Vec::as_slice);
        if parts.is_empty() {
            return vec![self.invalid(
                "empty_array",
                "Invalid 'item.content': empty array.",
                "item.content",
                event_id,
            )];
        }
        for (i, part) in parts.iter().enumerate() {
            let kind = part["type"].as_str().unwrap_or("");
            let text_field = if kind.ends_with("_audio") {
                "transcript"
            } else {
                "text"
            };
            if !allowed.contains(&kind) || !part[text_field].is_string() {
                return vec![self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'item.content[{i}]': a {role} message takes {} parts with \
                         a string '{text_field}'.",
                        allowed.join(" or ")
                    ),
                    &format!("item.content[{i}]"),
                    event_id,
                )];
            }
        }
        let mut stored = item.clone();
        if !stored["id"].is_string() {
            stored["id"] = json!(self.shared.id("item"));
        }
        stored["object"] = json!("realtime.item");
        stored["status"] = json!("completed");
        let previous = self.conversation.last().map(|i| i["id"].clone());
        self.conversation.push(stored.clone());
        let index = self.index;
        self.record().sessions[index].items.push(stored.clone());
        let fields = json!({ "previous_item_id": previous, "item": stored });
        vec![
            self.event("conversation.item.added", fields.clone()),
            self.event("conversation.item.done", fields),
        ]
    }

    fn response_create(&mut self, event_id: Option<&str>) -> Vec<Value> {
        if let Some(active) = &self.active {
            return vec![self.invalid(
                "conversation_already_has_active_response",
                &format!("Conversation already has an active response in progress: {active}."),
                "",
                event_id,
            )];
        }
        let fault = {
            let mut inner = self.record();
            inner.responses += 1;
            inner.faults.pop_front()
        };
        if let Some(RealtimeFault::RateLimited { retry_after }) = fault {
            let seconds = retry_after.as_secs_f64();
            return vec![
                self.rate_limits(0, seconds),
                self.error(
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    &format!(
                        "Rate limit reached for requests per min (RPM): Limit 100, Used 100, \
                         Requested 1. Please try again in {seconds:.3}s."
                    ),
                    None,
                    event_id,
                ),
            ];
        }
        let input = self
            .conversation
            .iter()
            .rev()
            .filter(|i| i["role"] == "user")
            .find_map(|i| i["content"][0]["text"].as_str())
            .unwrap_or("")
            .to_owned();
        let steps = self.response_steps(&fake_reply(&input), fault);
        self.enqueue(steps);
        Vec::new()
    }

    fn response_cancel(&mut self, event_id: Option<&str>) -> Vec<Value> {
        let Some(id) = self.active.take() else {
            return vec![self.invalid(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                "",
                event_id,
            )];
        };
        self.queue.clear();
        let response = json!({
            "id": id, "object": "realtime.response", "status": "cancelled",
            "status_details": { "type": "cancelled", "reason": "client_cancelled" },
            "output": [], "usage": null,
        });
        vec![self.event("response.done", json!({ "response": response }))]
    }

    fn rate_limits(&self, remaining: u64, reset_seconds: f64) -> Value {
        self.event(
            "rate_limits.updated",
            json!({ "rate_limits": [
                { "name": "requests", "limit": 100, "remaining": remaining,
                  "reset_seconds": reset_seconds },
                { "name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5 },
            ]}),
        )
    }

    /// The events of one response saying `reply`, shaped by `fault`.
    fn response_steps(&mut self, reply: &str, fault: Option<RealtimeFault>) -> Vec<Step> {
        let response_id = self.shared.id("resp");
        let item_id = self.shared.id("item");
        self.active = Some(response_id.clone());
        self.spoke = true;
        let now = |event: Value| Step {
            after: Some(Duration::ZERO),
            action: Action::Send(event),
        };
        let format = self.session["audio"]["output"]["format"].clone();
        let voice = self.session["audio"]["output"]["voice"].clone();
        let response = |status: &str, details: Value, output: Value| {
            json!({
                "id": response_id, "object": "realtime.response", "status": status,
                "status_details": details, "output": output,
                "conversation_id": "conv_radio24_fake", "output_modalities": ["audio"],
                "max_output_tokens": "inf",
                "audio": { "output": { "format": format, "voice": voice } },
                "usage": null, "metadata": null,
            })
        };
        let item = |status: &str, transcript: Option<&str>| {
            let content = match transcript {
                Some(t) => json!([{ "type": "output_audio", "transcript": t }]),
                None => json!([]),
            };
            json!({
                "id": item_id, "object": "realtime.item", "type": "message",
                "status": status, "role": "assistant", "content": content,
            })
        };
        let at = |fields: Value| {
            let mut base = json!({
                "response_id": response_id, "item_id": item_id,
                "output_index": 0, "content_index": 0,
            });
            if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
                b.extend(f);
            }
            base
        };
        let mut steps = vec![now(self.event(
            "response.created",
            json!({ "response": response("in_progress", Value::Null, json!([])) }),
        ))];
        if fault == Some(RealtimeFault::Failed) {
            let message =
                "The server had an error while processing your request. Sorry about that!";
            steps.push(now(self.error(
                "server_error",
                "server_error",
                message,
                None,
                None,
            )));
            let details = json!({
                "type": "failed",
                "error": { "type": "server_error", "code": "server_error", "message": message },
            });
            steps.push(now(self.event(
                "response.done",
                json!({ "response": response("failed", details, json!([])) }),
            )));
            steps.push(now(self.rate_limits(99, 0.6)));
            return steps;
        }
        let previous = self.conversation.last().map(|i| i["id"].clone());
        steps.push(now(self.event(
            "response.output_item.added",
            json!({ "response_id": response_id, "output_index": 0, "item": item("in_progress", None) }),
        )));
        steps.push(now(self.event(
            "conversation.item.added",
            json!({ "previous_item_id": previous, "item": item("in_progress", None) }),
        )));
        steps.push(now(self.event(
            "response.content_part.added",
            at(json!({ "part": { "type": "audio", "transcript": "" } })),
        )));
        let pcm = fake_speech(reply);
        let chunk_len = (CHUNK.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000).max(1);
        let chunks: Vec<&[i16]> = pcm.chunks(chunk_len).collect();
        let chars: Vec<char> = reply.chars().collect();
        let cut_at = match fault {
            Some(_) => (chunks.len() / 3).max(1),
            None => usize::MAX,
        };
        let mut said = 0;
        for (j, chunk) in chunks.iter().enumerate() {
            if j == cut_at {
                match fault {
                    Some(RealtimeFault::DropMidResponse) => {
                        steps.push(Step {
                            after: Some(CHUNK_INTERVAL),
                            action: Action::Drop,
                        });
                        return steps;
                    }
                    Some(RealtimeFault::Incomplete) => break,
                    _ => {}
                }
            }
            let after = match fault {
                Some(RealtimeFault::Stall { pause }) if j == cut_at => pause,
                _ if j == 0 => Some(Duration::ZERO),
                _ => Some(CHUNK_INTERVAL),
            };
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let delta = base64::engine::general_purpose::STANDARD.encode(bytes);
            steps.push(Step {
                after,
                action: Action::Send(
                    self.event("response.output_audio.delta", at(json!({ "delta": delta }))),
                ),
            });
            // The transcript keeps pace with the audio: the characters it has spoken.
            let spoken = if j + 1 == chunks.len() {
                chars.len()
            } else {
                ((j + 1) * chunk_len * chars.len()).div_ceil(pcm.len().max(1))
            };
            if spoken > said {
                let delta: String = chars[said..spoken].iter().collect();
                said = spoken;
                steps.push(now(self.event(
                    "response.output_audio_transcript.delta",
                    at(json!({ "delta": delta })),
                )));
            }
        }
        let said: String = chars[..said].iter().collect();
        let (status, details) = if fault == Some(RealtimeFault::Incomplete) {
            (
                "incomplete",
                json!({ "type": "incomplete", "reason": "max_output_tokens" }),
            )
        } else {
            ("completed", Value::Null)
        };
        steps.push(now(self.event("response.output_audio.done", at(json!({})))));
        steps.push(now(self.event(
            "response.output_audio_transcript.done",
            at(json!({ "transcript": said })),
        )));
        steps.push(now(self.event(
            "response.content_part.done",
            at(json!({ "part": { "type": "audio", "transcript": said } })),
        )));
        let done_item = item(status, Some(&said));
        steps.push(now(self.event(
            "response.output_item.done",
            json!({ "response_id": response_id, "output_index": 0, "item": done_item }),
        )));
        steps.push(now(self.event(
            "conversation.item.done",
            json!({ "previous_item_id": previous, "item": done_item }),
        )));
        steps.push(now(self.event(
            "response.done",
            json!({ "response": response(status, details, json!([done_item])) }),
        )));
        steps.push(now(self.rate_limits(99, 0.6)));
        steps
    }
}

async fn send(
    ws: &mut WebSocketStream<TcpStream>,
    event: &Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text(event.to_string())).await
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
