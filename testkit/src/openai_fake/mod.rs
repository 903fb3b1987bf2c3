//! A local fake of the OpenAI REST endpoints the pipeline calls, speaking the documented
//! protocol: request validation and error bodies (`{"error": {"message", "type", "param",
//! "code"}}`), the response shapes, and the headers (`x-request-id`, `openai-processing-ms`,
//! `x-ratelimit-*`, `retry-after` on 429). Tests never reach the real API.
//!
//! - `POST /v1/embeddings`: deterministic unit vectors by feature hashing of the words, so
//!   equal texts get equal vectors and texts sharing most words get close ones, which is
//!   what near-duplicate detection needs to be tested against.
//! - `POST /v1/moderations`: scores from keyword rules ([`DEFAULT_MODERATION_RULES`], plus
//!   whatever a test adds).
//! - `POST /v1/audio/transcriptions`: the transcript a test registered for that audio's
//!   SHA-256, else a fixed text.
//! - `POST /v1/chat/completions` (not streamed): the reply a test set, else [`fake_reply`] of
//!   the last user message.
//! - `POST /v1/audio/speech`: [`fake_speech`] of the input, 24 kHz 16-bit mono (`pcm`, raw
//!   little-endian; or `wav`), sent in 100 ms chunks as the real endpoint streams it.
//!
//! Faults are injected per endpoint or for any endpoint with [`OpenAiFake::fail_next`], and
//! every request is counted, so tests can assert how often a client retried.

use models::moderation::CATEGORIES;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use models::openai::OpenAiConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod content;
mod embeddings;
mod moderations;
mod speech;
mod transcriptions;

pub use content::{fake_embedding, fake_reply, fake_speech, fake_speech_len};
use embeddings::embeddings;
use moderations::moderations;
use speech::{chat_completions, speech};
use transcriptions::transcriptions;

/// The key the fake accepts unless started with [`OpenAiFake::start_with_key`].
pub const FAKE_API_KEY: &str = "sk-radio24-fake-key";

/// Endpoint paths, as [`OpenAiFake::requests`] and [`OpenAiFake::fail_next_on`] name them.
pub const EMBEDDINGS: &str = "/v1/embeddings";
pub const MODERATIONS: &str = "/v1/moderations";
pub const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
pub const SPEECH: &str = "/v1/audio/speech";

/// What the fake speech is made of: 24 kHz mono, [`FAKE_SPEECH_PER_CHAR`] per character of
/// text, at most [`FAKE_SPEECH_MAX`].
pub const FAKE_SPEECH_RATE: u32 = 24_000;
pub const FAKE_SPEECH_PER_CHAR: Duration = Duration::from_millis(60);
pub const FAKE_SPEECH_MAX: Duration = Duration::from_secs(30);

/// The transcript of audio no test registered.
pub const DEFAULT_TRANSCRIPT: &str = "Hello Radio24, this is a fake transcript.";

/// `(keyword, category, score)`: a text containing the keyword (case-insensitive) scores at
/// least `score` in `category`.
pub const DEFAULT_MODERATION_RULES: &[(&str, &str, f64)] = &[
    ("kill you", "harassment/threatening", 0.93),
    ("kill you", "violence", 0.9),
    ("kill myself", "self-harm", 0.9),
    ("kill myself", "self-harm/intent", 0.88),
    ("kill", "violence", 0.6),
    ("murder", "violence", 0.7),
    ("gore", "violence/graphic", 0.8),
    ("idiot", "harassment", 0.62),
    ("hate you", "harassment", 0.7),
    ("nazi", "hate", 0.75),
    ("porn", "sexual", 0.95),
    ("naked", "sexual", 0.55),
    ("suicide", "self-harm", 0.6),
    ("cocaine", "illicit", 0.7),
    ("bomb", "illicit/violent", 0.8),
];

/// The real API's limits.
const MAX_EMBEDDING_INPUTS: usize = 2048;
const MAX_EMBEDDING_INPUT_TOKENS: usize = 8192;
const MAX_EMBEDDING_REQUEST_TOKENS: usize = 300_000;
const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;
const AUDIO_EXTENSIONS: [&str; 10] = [
    "flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm",
];

/// How long a [`Fault::Timeout`] request hangs: longer than any client timeout in a test.
const HANG: Duration = Duration::from_secs(300);

const CHAT_MODELS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
];
const TTS_MODELS: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];
/// The speech endpoint's voices; the Realtime API has these but fable, nova and onyx.
pub const VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
    "marin", "cedar",
];
const SPEECH_FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];
const MAX_SPEECH_INPUT: usize = 4096;
/// 100 ms of 24 kHz 16-bit audio.
const SPEECH_CHUNK_BYTES: usize = 4800;

/// A failure to answer the next request(s) with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
    RateLimited { retry_after: Duration },
    /// A 5xx status (500, 502, 503) with OpenAI's server-error body.
    ServerError(u16),
    /// No answer until the client gives up.
    Timeout,
    /// 400 `invalid_request_error`.
    BadRequest,
}

/// A running fake; stops when dropped.
pub struct OpenAiFake {
    addr: SocketAddr,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OpenAiFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for OpenAiFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiFake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct FakeState {
    api_key: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `None`: any endpoint.
    faults: HashMap<Option<String>, VecDeque<Fault>>,
    requests: HashMap<String, usize>,
    last_bodies: HashMap<String, Value>,
    transcripts: HashMap<[u8; 32], String>,
    default_transcript: String,
    moderation_rules: Vec<(String, String, f64)>,
    chat_reply: Option<String>,
    next_id: u64,
}

impl FakeState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OpenAiFake {
    /// Starts on 127.0.0.1 and a free port, accepting [`FAKE_API_KEY`].
    ///
    /// # Panics
    /// If no loopback port can be bound, which means the machine cannot run tests at all.
    pub async fn start() -> Self {
        Self::start_with_key(FAKE_API_KEY).await
    }

    /// Starts accepting only `api_key`.
    pub async fn start_with_key(api_key: &str) -> Self {
        let state = Arc::new(FakeState {
            api_key: api_key.to_owned(),
            inner: Mutex::new(Inner {
                default_transcript: DEFAULT_TRANSCRIPT.to_owned(),
                moderation_rules: DEFAULT_MODERATION_RULES
                    .iter()
                    .map(|&(k, c, s)| (k.to_owned(), c.to_owned(), s))
                    .collect(),
                ..Inner::default()
            }),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/moderations", post(moderations))
            .route(
                "/v1/audio/transcriptions",
                // The API's own limit is checked in the handler, to answer it the API's way.
                post(transcriptions).layer(DefaultBodyLimit::max(MAX_AUDIO_BYTES + (1 << 20))),
            )
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/audio/speech", post(speech))
            .fallback(unknown_url)
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        // Bound to port 0 and kept: no window for another process to take the port.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenAiFake {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, what `OPENAI_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A client configuration for this fake with test-friendly limits: 2 s per attempt,
    /// 3 retries, 10 s per call.
    pub fn config(&self) -> OpenAiConfig {
        OpenAiConfig {
            base_url: self.base_url(),
            api_key: self.state.api_key.clone(),
            timeout: Duration::from_secs(2),
            max_retries: 3,
            budget: Duration::from_secs(10),
        }
    }

    /// The variables that point a service at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("OPENAI_BASE_URL".to_owned(), self.base_url()),
            ("OPENAI_API_KEY".to_owned(), self.state.api_key.clone()),
        ]
    }

    /// Answers the next `n` requests to any endpoint with `fault` (after the faults queued
    /// for that endpoint itself).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.queue(None, n, fault);
    }

    /// Answers the next `n` requests to `endpoint` (e.g. [`EMBEDDINGS`]) with `fault`.
    pub fn fail_next_on(&self, endpoint: &str, n: usize, fault: Fault) {
        self.queue(Some(endpoint.to_owned()), n, fault);
    }

    fn queue(&self, endpoint: Option<String>, n: usize, fault: Fault) {
        self.state
            .lock()
            .faults
            .entry(endpoint)
            .or_default()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Requests received on `endpoint` so far, failed ones included.
    pub fn requests(&self, endpoint: &str) -> usize {
        self.state
            .lock()
            .requests
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Requests received on all endpoints.
    pub fn total_requests(&self) -> usize {
        self.state.lock().requests.values().sum()
    }

    /// The last request body `endpoint` accepted: the JSON for JSON endpoints; for
    /// transcriptions the form fields, with the file as `{"file_name", "content_type",
    /// "bytes"}`.
    pub fn last_body(&self, endpoint: &str) -> Option<Value> {
        self.state.lock().last_bodies.get(endpoint).cloned()
    }

    /// Makes transcriptions of exactly `audio` return `text`.
    pub fn set_transcript(&self, audio: &[u8], text: &str) {
        self.state
            .lock()
            .transcripts
            .insert(Sha256::digest(audio).into(), text.to_owned());
    }

    /// The transcript of audio with no registered transcript.
    pub fn set_default_transcript(&self, text: &str) {
        self.state.lock().default_transcript = text.to_owned();
    }

    /// Makes chat completions answer `reply` (`None`: [`fake_reply`] of the last user message).
    pub fn set_chat_reply(&self, reply: Option<&str>) {
        self.state.lock().chat_reply = reply.map(str::to_owned);
    }

    /// Texts containing `keyword` (case-insensitive) score at least `score` in `category`.
    pub fn add_moderation_rule(&self, keyword: &str, category: &str, score: f64) {
        self.state.lock().moderation_rules.push((
            keyword.to_lowercase(),
            category.to_owned(),
            score,
        ));
    }
}

/// Counts the request, checks the key, injects a queued fault, and adds the API's headers.
async fn gate(State(state): State<Arc<FakeState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let (id, fault) = {
        let mut inner = state.lock();
        *inner.requests.entry(path.clone()).or_default() += 1;
        inner.next_id += 1;
        let id = inner.next_id;
        let fault = if authorized(&state.api_key, req.headers()) {
            let own = inner
                .faults
                .get_mut(&Some(path.clone()))
                .and_then(VecDeque::pop_front);
            Ok(own.or_else(|| inner.faults.get_mut(&None).and_then(VecDeque::pop_front)))
        } else {
            Err(())
        };
        (id, fault)
    };
    let mut res = match fault {
        Err(()) => unauthorized(req.headers()),
        Ok(Some(fault)) => fault_response(fault).await,
        Ok(None) => next.run(req).await,
    };
    let headers = res.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.entry(name).or_insert(v);
        }
    };
    set("x-request-id", format!("req_{id:032x}"));
    set(
        "openai-processing-ms",
        started.elapsed().as_millis().to_string(),
    );
    set("openai-version", "2020-10-01".to_owned());
    set("x-ratelimit-limit-requests", "5000".to_owned());
    set("x-ratelimit-remaining-requests", "4999".to_owned());
    set("x-ratelimit-reset-requests", "12ms".to_owned());
    set("x-ratelimit-limit-tokens", "5000000".to_owned());
    set("x-ratelimit-remaining-tokens", "4999000".to_owned());
    set("x-ratelimit-reset-tokens", "0s".to_owned());
    res
}

pub(crate) fn authorized(key: &str, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token == key)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(headers: &HeaderMap) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(unauthorized_body(headers)),
    )
        .into_response()
}

/// The API's 401 body for a request with these headers (no key, or a wrong one).
pub(crate) fn unauthorized_body(headers: &HeaderMap) -> Value {
    let (message, code) = match bearer(headers) {
        None => (
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), \
             or as the password field (with blank username) if you're accessing the API from \
             your browser and are prompted for a username. You can obtain an API key from \
             https://platform.openai.com/account/api-keys."
                .to_owned(),
            None,
        ),
        Some(token) => {
            let shown: String = token.chars().take(6).collect();
            (
                format!(
                    "Incorrect API key provided: {shown}***. You can find your API key at \
                     https://platform.openai.com/account/api-keys."
                ),
                Some("invalid_api_key"),
            )
        }
    };
    error_body(&message, "invalid_request_error", None, code)
}

async fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited { retry_after } => {
            let mut res = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Rate limit reached for requests per min (RPM): Limit 3, Used 3, \
                     Requested 1. Please try again in {}ms.",
                    retry_after.as_millis()
                ),
                "requests",
                None,
                Some("rate_limit_exceeded"),
            );
            let secs = retry_after.as_millis().div_ceil(1000).to_string();
            let h = res.headers_mut();
            let value = |s: String| HeaderValue::from_str(&s).expect("digits");
            h.insert(header::RETRY_AFTER, value(secs));
            h.insert("retry-after-ms", value(retry_after.as_millis().to_string()));
            h.insert("x-ratelimit-remaining-requests", value("0".to_owned()));
            h.insert(
                "x-ratelimit-reset-requests",
                value(format!("{}ms", retry_after.as_millis())),
            );
            res
        }
        Fault::ServerError(status) => api_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        Fault::Timeout => {
            tokio::time::sleep(HANG).await;
            api_error(
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway timeout.",
                "server_error",
                None,
                None,
            )
        }
        Fault::BadRequest => invalid(
            "Invalid request (injected by the test).",
            None,
            Some("invalid_value"),
        ),
    }
}

/// OpenAI's error body.
fn api_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    (status, axum::Json(error_body(message, kind, param, code))).into_response()
}

/// `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    })
}

fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        code,
    )
}

fn invalid_input() -> Response {
    invalid(
        "'$.input' is invalid. Please check the API reference: \
         https://platform.openai.com/docs/api-reference.",
        None,
        None,
    )
}

fn model_not_found(model: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )
}

/// The JSON object in `body`, recorded as the endpoint's last body; else the API's 400.
fn json_body(state: &FakeState, endpoint: &str, body: &[u8]) -> Result<Value, Box<Response>> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        Box::new(invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means \
             you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
             payload, but what was sent was not valid JSON.)",
            None,
            None,
        ))
    })?;
    if !value.is_object() {
        return Err(Box::new(invalid_input()));
    }
    state
        .lock()
        .last_bodies
        .insert(endpoint.to_owned(), value.clone());
    Ok(value)
}

/// The fake's tokenizer: about 4 bytes per token, as OpenAI's are for English.
fn approx_tokens(text: &str) -> usize {
    text.len().div_ceil(4).max(1)
}

async fn unknown_url(req: Request) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", req.method(), req.uri().path()),
        "invalid_request_error",
        None,
        None,
    )
}

/// The JSON body of a request to `endpoint` and its `model`, one of `models`; else the
/// API's 400 or 404.
fn json_body_for(
    state: &FakeState,
    endpoint: &str,
    body: &[u8],
    models: &[&str],
) -> Result<(Value, String), Box<Response>> {
    let v = json_body(state, endpoint, body)?;
    let Some(model) = v.get("model").and_then(Value::as_str) else {
        return Err(Box::new(invalid(
            "you must provide a model parameter",
            None,
            None,
        )));
    };
    if !models.contains(&model) {
        return Err(Box::new(model_not_found(model)));
    }
    let model = model.to_owned();
    Ok((v, model))
}

/// The text of a chat message's `content`: a string, or an array of `text` parts.
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p.get("text").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|t| t.join("\n")),
        _ => None,
    }
}

fn positive_int(v: &Value, name: &str) -> Result<Option<u64>, Box<Response>> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => match n.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(Box::new(invalid(
                &format!("Invalid '{name}': integer below minimum value. Expected a value >= 1."),
                Some(name),
                Some("integer_below_min_value"),
            ))),
        },
    }
}
