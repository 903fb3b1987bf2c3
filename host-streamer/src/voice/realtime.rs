//! The DJ's live voice: OpenAI's Realtime API (the GA protocol) over a WebSocket. Audio
//! comes back while it is being generated, so the DJ starts talking within a fraction of a
//! second instead of after a whole text-then-speech round trip.
//!
//! One session serves many cues: opened lazily on the first cue, rotated before it gets old
//! (the server ends sessions after 60 minutes with `session_expired` and a 1001 close), and
//! replaced after anything that leaves it in doubt (a dropped socket, a stall). A new session
//! is told the last few exchanges in its instructions, so the DJ keeps the thread across
//! sessions. Every failure comes back as a [`VoiceError`] quickly; the voice chain lets the
//! next voice speak meanwhile, and the next cue here starts on a fresh session.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use models::openai::{OpenAiConfig, redact_keys, retry_after};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::config::{ConfigError, Env};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::dj::{self, Cooldown, History};
use super::pcm::Pcm16Decoder;
use super::{Cue, FeedWriter, Voice, VoiceError};
use crate::metrics::Metrics;

/// The Realtime endpoint; the model goes in its `model` query parameter.
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/realtime";
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// Rotate well before the server's 60-minute limit, so expiry never cuts a cue short.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(55 * 60);
/// Longest a response may go without any server event before it counts as stalled.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(8);
/// Limit for connecting and getting a configured session.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Exchanges carried over into a new session.
pub const DEFAULT_CONTEXT_EXCHANGES: usize = 6;
/// The server's own limit on a session's age.
const SERVER_SESSION_LIMIT: Duration = Duration::from_secs(60 * 60);
/// PCM16 mono at this rate is what the session asks for (`audio/pcm` only comes at 24 kHz).
const OUTPUT_RATE: u32 = 24_000;
/// How long a graceful close may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How to reach the Realtime API and how patient to be with it.
#[derive(Clone)]
pub struct RealtimeConfig {
    /// WebSocket URL (`OPENAI_REALTIME_URL`); `model=` is added unless it has one.
    pub url: String,
    /// `OPENAI_REALTIME_MODEL`.
    pub model: String,
    /// `OPENAI_API_KEY`, sent as `Authorization: Bearer`. Never logged.
    pub api_key: String,
    /// `DJ_VOICE_NAME`.
    pub voice: String,
    /// `DJ_PERSONA`: the start of every session's instructions.
    pub persona: String,
    /// A session older than this is replaced before the next cue (`REALTIME_SESSION_MAX_AGE`).
    pub session_max_age: Duration,
    /// No server event for this long during a response is a stall (`REALTIME_STALL_TIMEOUT`).
    pub stall_timeout: Duration,
    /// Connecting and configuring a session (`REALTIME_CONNECT_TIMEOUT`).
    pub connect_timeout: Duration,
    /// Exchanges a new session is told about (`REALTIME_CONTEXT_EXCHANGES`).
    pub context_exchanges: usize,
}

impl fmt::Debug for RealtimeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &"<redacted>")
            .field("voice", &self.voice)
            .field("session_max_age", &self.session_max_age)
            .field("stall_timeout", &self.stall_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("context_exchanges", &self.context_exchanges)
            .finish_non_exhaustive()
    }
}

impl RealtimeConfig {
    /// The defaults with the given key.
    pub fn new(api_key: impl Into<String>) -> Self {
        RealtimeConfig {
            url: DEFAULT_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            api_key: api_key.into(),
            voice: dj::DEFAULT_VOICE.to_owned(),
            persona: dj::DEFAULT_PERSONA.to_owned(),
            session_max_age: DEFAULT_SESSION_MAX_AGE,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            context_exchanges: DEFAULT_CONTEXT_EXCHANGES,
        }
    }

    /// Reads the variables above; `None` when `OPENAI_API_KEY` is unset (no OpenAI voices).
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(openai) = OpenAiConfig::from_env(env)? else {
            return Ok(None);
        };
        let d = RealtimeConfig::new(openai.api_key);
        let session_max_age =
            dj::positive_duration(env, "REALTIME_SESSION_MAX_AGE", d.session_max_age)?;
        if session_max_age >= SERVER_SESSION_LIMIT {
            return Err(ConfigError::invalid(
                "REALTIME_SESSION_MAX_AGE",
                env.raw("REALTIME_SESSION_MAX_AGE").unwrap_or_default(),
                "must be under 60m: the server ends sessions at 60 minutes",
            ));
        }
        Ok(Some(RealtimeConfig {
            url: env
                .optional_with("OPENAI_REALTIME_URL", parse_ws_url)?
                .unwrap_or(d.url),
            model: env.or("OPENAI_REALTIME_MODEL", d.model)?,
            voice: dj::voice_from_env(env)?,
            persona: dj::persona_from_env(env)?,
            session_max_age,
            stall_timeout: dj::positive_duration(env, "REALTIME_STALL_TIMEOUT", d.stall_timeout)?,
            connect_timeout: dj::positive_duration(
                env,
                "REALTIME_CONNECT_TIMEOUT",
                d.connect_timeout,
            )?,
            context_exchanges: env.or("REALTIME_CONTEXT_EXCHANGES", d.context_exchanges)?,
            api_key: d.api_key,
        }))
    }

    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    pub fn with_voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = voice.into();
        self
    }

    pub fn with_persona(mut self, persona: impl Into<String>) -> Self {
        self.persona = persona.into();
        self
    }

    pub fn with_session_max_age(mut self, age: Duration) -> Self {
        self.session_max_age = age;
        self
    }

    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_context_exchanges(mut self, n: usize) -> Self {
        self.context_exchanges = n;
        self
    }

    /// The URL connected to: `url` with `model=` added unless it names a model itself.
    pub fn session_url(&self) -> String {
        let has_model = self
            .url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("model=")));
        if has_model {
            self.url.clone()
        } else {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}model={}", self.url, self.model)
        }
    }
}

fn parse_ws_url(s: &str) -> Result<String, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{e}"))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) || uri.host().is_none() {
        return Err("must be a ws:// or wss:// URL".to_owned());
    }
    Ok(s.to_owned())
}

/// The [`Voice`] over the Realtime API. One cue at a time: a second caller waits.
pub struct RealtimeVoice {
    config: RealtimeConfig,
    metrics: Arc<Metrics>,
    cooldown: Cooldown,
    state: Mutex<State>,
}

impl fmt::Debug for RealtimeVoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeVoice")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct State {
    session: Option<Session>,
    history: History,
    sessions_opened: u64,
    /// The latest `rate_limits.updated`, to size a rate-limit wait that gives no time.
    rate_limits: Vec<RateLimit>,
}

impl RealtimeVoice {
    /// Connects nothing yet: the first cue opens the session.
    pub fn new(config: RealtimeConfig, metrics: Arc<Metrics>) -> Self {
        let history = History::new(config.context_exchanges);
        RealtimeVoice {
            config,
            metrics,
            cooldown: Cooldown::default(),
            state: Mutex::new(State {
                session: None,
                history,
                sessions_opened: 0,
                rate_limits: Vec::new(),
            }),
        }
    }

    /// Closes the session (if any) with a normal close, for shutdown.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        if let Some(session) = state.session.take() {
            session.close("shutting down").await;
            self.metrics
                .realtime_session_started
                .store(0, Ordering::Relaxed);
        }
    }

    async fn speak_locked(
        &self,
        state: &mut State,
        cue: &Cue,
        message: &str,
        out: &mut FeedWriter,
    ) -> Result<String, VoiceError> {
        let mut retried = false;
        loop {
            self.prepare_session(state, &cue.block).await?;
            let session = state
                .session
                .as_mut()
                .expect("prepare_session leaves a session");
            // Cleared only when the turn comes back: if the caller drops this future
            // mid-response, the next cue finds the flag set and does not reuse a session
            // that is still streaming someone else's answer.
            session.in_turn = true;
            let result = session
                .respond(
                    message,
                    out,
                    self.config.stall_timeout,
                    &mut state.rate_limits,
                )
                .await;
            session.in_turn = false;
            match result {
                Ok(said) => {
                    let prompt = if cue.prompt.trim().is_empty() {
                        message
                    } else {
                        &cue.prompt
                    };
                    state.history.push(prompt, &said);
                    return Ok(said);
                }
                Err(turn) => {
                    if turn.after != After::Keep {
                        self.retire(state, &turn.error.to_string());
                    }
                    // The session was gone before anything was said: say it on a new one.
                    if turn.after == After::Retry && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(turn.error);
                }
            }
        }
    }

    /// Leaves a live session, young enough and instructed for `block`, in `state`.
    async fn prepare_session(&self, state: &mut State, block: &str) -> Result<(), VoiceError> {
        if let Some(session) = state.session.as_mut() {
            if session.in_turn {
                self.retire(state, "a cue was abandoned mid-response");
            } else if let Some(reason) = session.ended_between_cues(&mut state.rate_limits) {
                self.retire(state, &reason);
            } else if session.opened.elapsed() >= self.config.session_max_age {
                self.retire(state, "rotated by age");
            } else if session.block != block {
                let instructions = dj::instructions(&self.config.persona, block, &state.history);
                let update = json!({
                    "type": "session.update",
                    "session": { "type": "realtime", "instructions": instructions },
                });
                match session.send(update, self.config.stall_timeout).await {
                    Ok(()) => session.block = block.to_owned(),
                    Err(e) => self.retire(state, &e),
                }
            }
        }
        if state.session.is_none() {
            let instructions = dj::instructions(&self.config.persona, block, &state.history);
            let session = Session::open(&self.config, instructions, block).await?;
            state.sessions_opened += 1;
            if state.sessions_opened > 1 {
                Metrics::add(&self.metrics.realtime_reconnects, 1);
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            self.metrics
                .realtime_session_started
                .store(now, Ordering::Relaxed);
            state.session = Some(session);
        }
        Ok(())
    }

    /// Gives up the current session. The close frame goes out in the background: a socket
    /// that is gone or stuck must not hold up the cue that replaces it.
    fn retire(&self, state: &mut State, reason: &str) {
        if let Some(session) = state.session.take() {
            tracing::info!(session = %session.id, reason, "Realtime session retired");
            self.metrics
                .realtime_session_started
                .store(0, Ordering::Relaxed);
            tokio::spawn(session.close("retired"));
        }
    }
}

#[async_trait::async_trait]
impl Voice for RealtimeVoice {
    fn name(&self) -> &'static str {
        "realtime"
    }

    async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<String, VoiceError> {
        self.cooldown.check()?;
        let message = dj::cue_message(cue)?;
        let mut state = self.state.lock().await;
        // Checked again: the wait for the lock may have been another cue's rate limit.
        self.cooldown.check()?;
        let result = self.speak_locked(&mut state, cue, &message, out).await;
        self.cooldown.note(&result);
        result
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the reader task hands over: an event, or the end of the connection (last).
enum Incoming {
    Event(ServerEvent),
    Closed(String),
}

/// The server events this client acts on; the rest are read and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum ServerEvent {
    #[serde(rename = "session.created")]
    SessionCreated { session: SessionInfo },
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "error")]
    Error { error: ApiError },
    #[serde(rename = "response.created")]
    ResponseCreated { response: ResponseInfo },
    #[serde(rename = "response.output_audio.delta")]
    AudioDelta {
        #[serde(default)]
        response_id: String,
        delta: String,
    },
    #[serde(rename = "response.output_audio_transcript.delta")]
    TranscriptDelta {
        #[serde(default)]
        response_id: String,
        delta: String,
    },
    #[serde(rename = "response.output_audio_transcript.done")]
    TranscriptDone {
        #[serde(default)]
        response_id: String,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseInfo },
    #[serde(rename = "rate_limits.updated")]
    RateLimitsUpdated { rate_limits: Vec<RateLimit> },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct SessionInfo {
    #[serde(default)]
    id: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// The `error` object of an `error` event or of a failed response's `status_details`.
#[derive(Debug, Default, Clone, Deserialize)]
struct ApiError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ApiError {
    fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    fn describe(&self) -> String {
        let mut out = self.kind.clone();
        if !self.code().is_empty() && self.code() != self.kind {
            out.push_str(&format!(" ({})", self.code()));
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(": ");
            out.push_str(&redact_keys(m));
        }
        out
    }
}

#[derive(Debug, Default, Deserialize)]
struct ResponseInfo {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    status_details: Option<StatusDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct StatusDetails {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Clone, Deserialize)]
struct RateLimit {
    #[serde(default)]
    remaining: Option<f64>,
    #[serde(default)]
    reset_seconds: Option<f64>,
}

/// What becomes of the session after a failed cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Idle and sound: the server finished the response.
    Keep,
    /// In doubt (a response may still be running, the socket may be gone): replace it.
    Drop,
    /// It was gone before the response started: replace it and try the cue once more.
    Retry,
}

struct TurnError {
    error: VoiceError,
    after: After,
}

/// One open session: the write half here, the read half in a task that forwards events, so
/// the socket is read (and pings answered, and an expiry noticed) between cues too.
struct Session {
    id: String,
    opened: Instant,
    /// The program block its instructions were written for.
    block: String,
    sink: SplitSink<Socket, Message>,
    events: mpsc::UnboundedReceiver<Incoming>,
    reader: tokio::task::JoinHandle<()>,
    next_event: u64,
    /// A cue's turn is running (or was abandoned half-way).
    in_turn: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// Connects, waits for `session.created`, configures the session and waits for
    /// `session.updated`, all within the connect timeout.
    async fn open(
        config: &RealtimeConfig,
        instructions: String,
        block: &str,
    ) -> Result<Session, VoiceError> {
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, Session::connect(config, instructions, block))
            .await
            .unwrap_or_else(|_| {
                Err(VoiceError::Unavailable(format!(
                    "no Realtime session within {limit:?}"
                )))
            })
    }

    async fn connect(
        config: &RealtimeConfig,
        instructions: String,
        block: &str,
    ) -> Result<Session, VoiceError> {
        let mut request = config
            .session_url()
            .into_client_request()
            .map_err(|e| VoiceError::Unavailable(format!("bad Realtime URL: {e}")))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.api_key))
            .map_err(|_| VoiceError::Unavailable("the API key is not a valid header".into()))?;
        auth.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, auth);
        // Small events matter more than throughput: no Nagle delay.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(handshake_error)?;
        let (sink, stream) = socket.split();
        let (tx, events) = mpsc::unbounded_channel();
        let mut session = Session {
            id: String::new(),
            opened: Instant::now(),
            block: block.to_owned(),
            sink,
            events,
            reader: tokio::spawn(read_events(stream, tx)),
            next_event: 0,
            in_turn: false,
        };
        match session.events.recv().await {
            Some(Incoming::Event(ServerEvent::SessionCreated { session: info })) => {
                tracing::info!(session = %info.id, expires_at = ?info.expires_at, "Realtime session created");
                session.id = info.id;
            }
            Some(Incoming::Event(ServerEvent::Error { error })) => return Err(setup_error(&error)),
            Some(Incoming::Closed(reason)) => {
                return Err(VoiceError::Unavailable(format!(
                    "Realtime session ended before it started: {reason}"
                )));
            }
            _ => {
                return Err(VoiceError::Unavailable(
                    "the Realtime server did not start with session.created".into(),
                ));
            }
        }
        let update = json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": instructions,
                "output_modalities": ["audio"],
                "audio": {
                    "output": {
                        "format": { "type": "audio/pcm", "rate": OUTPUT_RATE },
                        "voice": config.voice,
                    },
                },
            },
        });
        session
            .send(update, config.connect_timeout)
            .await
            .map_err(VoiceError::Unavailable)?;
        loop {
            match session.events.recv().await {
                Some(Incoming::Event(ServerEvent::SessionUpdated)) => return Ok(session),
                Some(Incoming::Event(ServerEvent::Error { error })) => {
                    return Err(setup_error(&error));
                }
                Some(Incoming::Event(_)) => {}
                Some(Incoming::Closed(reason)) => {
                    return Err(VoiceError::Unavailable(format!(
                        "Realtime session ended while being configured: {reason}"
                    )));
                }
                None => {
                    return Err(VoiceError::Unavailable(
                        "Realtime session ended while being configured".into(),
                    ));
                }
            }
        }
    }

    async fn send(&mut self, mut event: Value, limit: Duration) -> Result<(), String> {
        self.next_event += 1;
        event["event_id"] = json!(format!("radio24_{}", self.next_event));
        match tokio::time::timeout(limit, self.sink.send(Message::text(event.to_string()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot send: {e}")),
            Err(_) => Err(format!("cannot send within {limit:?}")),
        }
    }

    /// Reads what arrived since the last cue. `Some(reason)` when the session is over
    /// (expired, closed, connection lost).
    fn ended_between_cues(&mut self, rate_limits: &mut Vec<RateLimit>) -> Option<String> {
        loop {
            match self.events.try_recv() {
                Ok(Incoming::Event(ServerEvent::RateLimitsUpdated { rate_limits: r })) => {
                    *rate_limits = r;
                }
                Ok(Incoming::Event(ServerEvent::Error { error })) => {
                    if error.code() == "session_expired" {
                        return Some(error.describe());
                    }
                    tracing::warn!(error = %error.describe(), "Realtime error between cues");
                }
                Ok(Incoming::Event(_)) => {}
                Ok(Incoming::Closed(reason)) => return Some(reason),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Some("event reader stopped".into());
                }
            }
        }
    }

    /// Says `message`: adds it as a user item, asks for a response and streams its audio into
    /// `out` until `response.done`.
    async fn respond(
        &mut self,
        message: &str,
        out: &mut FeedWriter,
        stall: Duration,
        rate_limits: &mut Vec<RateLimit>,
    ) -> Result<String, TurnError> {
        let lost = |reason: String| TurnError {
            error: VoiceError::Unavailable(format!("Realtime session lost: {reason}")),
            after: After::Retry,
        };
        let item = json!({
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{ "type": "input_text", "text": message }],
            },
        });
        self.send(item, stall).await.map_err(lost)?;
        self.send(json!({ "type": "response.create" }), stall)
            .await
            .map_err(lost)?;
        let mut turn = Turn::default();
        loop {
            let incoming = match tokio::time::timeout(stall, self.events.recv()).await {
                Ok(Some(incoming)) => incoming,
                Ok(None) => Incoming::Closed("event reader stopped".into()),
                Err(_) => {
                    tracing::warn!(session = %self.id, ?stall, "Realtime response stalled");
                    return Err(TurnError {
                        error: VoiceError::Stalled(stall),
                        after: After::Drop,
                    });
                }
            };
            let event = match incoming {
                Incoming::Event(event) => event,
                Incoming::Closed(reason) => return Err(turn.cut_off(reason)),
            };
            match event {
                ServerEvent::Error { error } if error.code() == "session_expired" => {
                    return Err(turn.cut_off(error.describe()));
                }
                ServerEvent::Error { error } => {
                    let e = classify(&error, rate_limits);
                    tracing::warn!(session = %self.id, error = %error.describe(), "Realtime error");
                    if turn.response_id.is_none() {
                        // No response to wait for: whatever the server does next with the
                        // cue's events is in doubt, so the session goes.
                        return Err(TurnError {
                            error: e,
                            after: After::Drop,
                        });
                    }
                    turn.error.get_or_insert(e);
                }
                ServerEvent::ResponseCreated { response } => {
                    turn.response_id.get_or_insert(response.id);
                }
                ServerEvent::AudioDelta { response_id, delta } if turn.ours(&response_id) => {
                    turn.audio(&delta, out)?;
                }
                ServerEvent::TranscriptDelta { response_id, delta } if turn.ours(&response_id) => {
                    turn.transcript.push_str(&delta);
                }
                ServerEvent::TranscriptDone {
                    response_id,
                    transcript,
                } if turn.ours(&response_id) => turn.final_transcript = Some(transcript),
                ServerEvent::ResponseDone { response } if turn.ours(&response.id) => {
                    return turn.finish(&response, out, rate_limits);
                }
                ServerEvent::RateLimitsUpdated { rate_limits: r } => *rate_limits = r,
                _ => {}
            }
        }
    }

    async fn close(mut self, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason.to_owned().into(),
        };
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
    }
}

/// One response being received.
#[derive(Default)]
struct Turn {
    response_id: Option<String>,
    transcript: String,
    final_transcript: Option<String>,
    samples: usize,
    /// `out.begin()` was called.
    began: bool,
    pcm: Pcm16Decoder,
    /// An `error` seen while the response ran; reported at `response.done`.
    error: Option<VoiceError>,
}

impl Turn {
    fn ours(&self, id: &str) -> bool {
        id.is_empty() || self.response_id.as_deref().is_none_or(|r| r == id)
    }

    fn audio(&mut self, delta: &str, out: &mut FeedWriter) -> Result<(), TurnError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(delta)
            .map_err(|e| TurnError {
                error: VoiceError::Failed(format!("undecodable audio delta: {e}")),
                after: After::Drop,
            })?;
        if !self.began {
            out.begin();
            self.began = true;
        }
        let samples = self.pcm.decode(&bytes);
        self.samples += samples.len();
        out.push_pcm16(OUTPUT_RATE, samples);
        Ok(())
    }

    /// The connection ended mid-turn.
    fn cut_off(&self, reason: String) -> TurnError {
        if self.response_id.is_none() && self.samples == 0 {
            TurnError {
                error: VoiceError::Unavailable(format!("Realtime session lost: {reason}")),
                after: After::Retry,
            }
        } else {
            TurnError {
                error: VoiceError::Failed(format!("Realtime response cut off: {reason}")),
                after: After::Drop,
            }
        }
    }

    fn finish(
        &mut self,
        response: &ResponseInfo,
        out: &mut FeedWriter,
        rate_limits: &[RateLimit],
    ) -> Result<String, TurnError> {
        let fail = |error| {
            Err(TurnError {
                error,
                after: After::Keep,
            })
        };
        if response.status != "completed" {
            if let Some(e) = self.error.take() {
                return fail(e);
            }
            let details = response.status_details.as_ref();
            if let Some(e) = details.and_then(|d| d.error.as_ref()) {
                return fail(classify(e, rate_limits));
            }
            let reason = details
                .and_then(|d| d.reason.as_deref())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return fail(VoiceError::Failed(format!(
                "Realtime response {}{reason}",
                response.status
            )));
        }
        if self.samples == 0 {
            return fail(VoiceError::Failed(
                "Realtime response completed without audio".into(),
            ));
        }
        out.end();
        let said = self
            .final_transcript
            .take()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| std::mem::take(&mut self.transcript));
        Ok(said.trim().to_owned())
    }
}

/// Forwards the socket's events until it ends, then says why.
async fn read_events(mut stream: SplitStream<Socket>, tx: mpsc::UnboundedSender<Incoming>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(event) => {
                    if tx.send(Incoming::Event(event)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable Realtime event ignored"),
            },
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) => format!(
                        "closed by the server ({} {})",
                        u16::from(f.code),
                        f.reason.as_str()
                    ),
                    None => "closed by the server".to_owned(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("connection lost: {e}"),
            None => break "connection ended".to_owned(),
        }
    };
    let _ = tx.send(Incoming::Closed(reason));
}

/// A failed upgrade: 401/403 is a key problem, 429 a rate limit, anything else unreachable.
fn handshake_error(e: tungstenite::Error) -> VoiceError {
    let tungstenite::Error::Http(res) = e else {
        return VoiceError::Unavailable(format!("cannot connect to the Realtime API: {e}"));
    };
    let status = res.status();
    if status.as_u16() == 429 {
        return VoiceError::RateLimited(
            retry_after(res.headers()).unwrap_or(dj::DEFAULT_RATE_LIMIT_WAIT),
        );
    }
    let body = res.body().as_deref().unwrap_or_default();
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(redact_keys))
        .unwrap_or_else(|| redact_keys(&String::from_utf8_lossy(body)));
    let message: String = message.chars().take(300).collect();
    VoiceError::Unavailable(format!(
        "Realtime API refused the connection: HTTP {status}: {message}"
    ))
}

/// An `error` while a session is being set up: it cannot be used.
fn setup_error(error: &ApiError) -> VoiceError {
    match classify(error, &[]) {
        e @ VoiceError::RateLimited(_) => e,
        e => VoiceError::Unavailable(format!("Realtime session not usable: {e}")),
    }
}

/// An `error` object as a [`VoiceError`].
fn classify(error: &ApiError, rate_limits: &[RateLimit]) -> VoiceError {
    match error.code() {
        "insufficient_quota" => VoiceError::RateLimited(dj::QUOTA_WAIT),
        "rate_limit_exceeded" => VoiceError::RateLimited(rate_limit_wait(error, rate_limits)),
        _ if error.kind == "rate_limit_error" => {
            VoiceError::RateLimited(rate_limit_wait(error, rate_limits))
        }
        "invalid_api_key" => VoiceError::Unavailable(error.describe()),
        _ => VoiceError::Failed(error.describe()),
    }
}

/// How long a rate limit lasts: what the message says ("try again in 1.5s"), else the
/// longest reset among the exhausted limits, else [`dj::DEFAULT_RATE_LIMIT_WAIT`].
fn rate_limit_wait(error: &ApiError, rate_limits: &[RateLimit]) -> Duration {
    if let Some(wait) = error.message.as_deref().and_then(wait_in_message) {
        return wait;
    }
    rate_limits
        .iter()
        .filter(|l| l.remaining.is_some_and(|r| r <= 0.0))
        .filter_map(|l| l.reset_seconds)
        .filter_map(|s| Duration::try_from_secs_f64(s).ok())
        .max()
        .unwrap_or(dj::DEFAULT_RATE_LIMIT_WAIT)
}

/// Parses the wait in "... try again in 1m30.5s." (units h, m, s, ms).
fn wait_in_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let (_, rest) = lower.split_once("try again in ")?;
    let mut total = 0.0f64;
    let mut rest = rest;
    // Pairs of a number and a unit, up to whatever follows (". Please ...").
    while rest.starts_with(|c: char| c.is_ascii_digit()) {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    (total > 0.0)
        .then(|| Duration::try_from_secs_f64(total).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_env() {
        assert!(
            RealtimeConfig::from_env(&Env::from_pairs([("X", "1")]))
                .unwrap()
                .is_none()
        );
        let cfg = RealtimeConfig::from_env(&Env::from_pairs([("OPENAI_API_KEY", "sk-secret")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            cfg.session_url(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(cfg.voice, "marin");
        assert_eq!(cfg.session_max_age, Duration::from_secs(55 * 60));
        assert_eq!(cfg.stall_timeout, Duration::from_secs(8));
        assert!(!format!("{cfg:?}").contains("sk-secret"));
        let env = Env::from_pairs([
            ("OPENAI_API_KEY", "k"),
            (
                "OPENAI_REALTIME_URL",
                "ws://127.0.0.1:9/v1/realtime?model=x",
            ),
            ("DJ_VOICE_NAME", "cedar"),
            ("REALTIME_SESSION_MAX_AGE", "30m"),
            ("REALTIME_STALL_TIMEOUT", "500ms"),
        ]);
        let cfg = RealtimeConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(cfg.session_url(), "ws://127.0.0.1:9/v1/realtime?model=x");
        assert_eq!(cfg.voice, "cedar");
        assert_eq!(cfg.stall_timeout, Duration::from_millis(500));
        for (name, value) in [
            ("OPENAI_REALTIME_URL", "https://api.openai.com/v1/realtime"),
            ("REALTIME_SESSION_MAX_AGE", "60m"),
            ("REALTIME_STALL_TIMEOUT", "0"),
        ] {
            let env = Env::from_pairs([("OPENAI_API_KEY", "k"), (name, value)]);
            let err = RealtimeConfig::from_env(&env).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn rate_limit_waits() {
        let error = |m: &str| ApiError {
            kind: "rate_limit_error".into(),
            code: Some("rate_limit_exceeded".into()),
            message: Some(m.into()),
        };
        assert_eq!(
            rate_limit_wait(&error("Please try again in 1.5s."), &[]),
            Duration::from_millis(1500)
        );
        assert_eq!(
            rate_limit_wait(&error("Please try again in 1m30s."), &[]),
            Duration::from_secs(90)
        );
        assert_eq!(
            rate_limit_wait(&error("try again in 250ms"), &[]),
            Duration::from_millis(250)
        );
        let limits = [
            RateLimit {
                remaining: Some(0.0),
                reset_seconds: Some(2.5),
            },
            RateLimit {
                remaining: Some(10.0),
                reset_seconds: Some(60.0),
            },
        ];
        assert_eq!(
            rate_limit_wait(&error("slow down"), &limits),
            Duration::from_millis(2500)
        );
        assert_eq!(
            rate_limit_wait(&error("slow down"), &[]),
            dj::DEFAULT_RATE_LIMIT_WAIT
        );
        assert!(matches!(
            classify(&error("x"), &[]),
            VoiceError::RateLimited(_)
        ));
        let server = ApiError {
            kind: "server_error".into(),
            code: None,
            message: Some("boom".into()),
        };
        assert_eq!(
            classify(&server, &[]),
            VoiceError::Failed("server_error: boom".into())
        );
    }

    #[test]
    fn server_events_parse() {
        let e: ServerEvent = serde_json::from_str(
            r#"{"type":"response.done","event_id":"e","response":{"id":"r","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","code":null}}}}"#,
        )
        .unwrap();
        assert!(matches!(e, ServerEvent::ResponseDone { .. }));
        let e: ServerEvent =
            serde_json::from_str(r#"{"type":"conversation.item.added","item":{}}"#).unwrap();
        assert!(matches!(e, ServerEvent::Other));
        let e: ServerEvent =
            serde_json::from_str(r#"{"type":"session.updated","session":{}}"#).unwrap();
        assert!(matches!(e, ServerEvent::SessionUpdated));
    }
}
