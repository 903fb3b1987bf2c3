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

use shared::moderation::CATEGORIES;
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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::openai::OpenAiConfig;

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

/// The vector the fake returns for `text`: word and word-pair features hashed into `dims`
/// signed buckets, L2-normalised.
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut v = vec![0f32; dims];
    let mut add = |feature: &[u8], weight: f32| {
        let h = Sha256::digest(feature);
        for k in 0..4 {
            let idx = u32::from_le_bytes([h[4 * k], h[4 * k + 1], h[4 * k + 2], h[4 * k + 3]]);
            let sign = if h[16 + k] & 1 == 0 { 1.0 } else { -1.0 };
            v[idx as usize % dims] += sign * weight;
        }
    };
    for w in &words {
        add(w.as_bytes(), 1.0);
    }
    for pair in words.windows(2) {
        add(format!("{} {}", pair[0], pair[1]).as_bytes(), 0.5);
    }
    if words.is_empty() {
        add(text.as_bytes(), 1.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// What the fake models answer to `input`: its first non-empty line (at most 120
/// characters) after a fixed opening, so tests can tell replies to different cues apart.
pub fn fake_reply(input: &str) -> String {
    let line = input
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line: String = line.chars().take(120).collect();
    format!("Radio24 here. {line}")
}

/// Samples of [`fake_speech`] for `text`.
pub fn fake_speech_len(text: &str) -> usize {
    let per_char = FAKE_SPEECH_PER_CHAR.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000;
    let max = FAKE_SPEECH_MAX.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000;
    (text.chars().count() * per_char).min(max)
}

/// Deterministic speech-like audio for `text`, 24 kHz mono: every word a voiced burst (five
/// harmonics of a pitch between 100 and 190 Hz that moves with the letters, under a
/// half-sine envelope over the word), every space or punctuation mark a pause.
pub fn fake_speech(text: &str) -> Vec<i16> {
    let chars: Vec<char> = text.chars().collect();
    let total = fake_speech_len(text);
    let per_char = fake_speech_len("x").max(1);
    // The word each character belongs to, as a (first, end) character range.
    let mut words = vec![(0, 0); chars.len()];
    let mut start = 0;
    for i in 0..=chars.len() {
        if i == chars.len() || !chars[i].is_alphanumeric() {
            for w in &mut words[start..i] {
                *w = (start, i);
            }
            start = i + 1;
        }
    }
    let mut phase = 0f64;
    (0..total)
        .map(|n| {
            let i = n / per_char;
            let c = chars[i];
            if !c.is_alphanumeric() {
                return 0;
            }
            let (first, end) = words[i];
            let position = (n - first * per_char) as f64 / ((end - first) * per_char) as f64;
            let envelope = (std::f64::consts::PI * position).sin();
            let pitch = 100.0 + f64::from(u32::from(c) % 23) * 4.0;
            phase += std::f64::consts::TAU * pitch / f64::from(FAKE_SPEECH_RATE);
            let voiced: f64 = (1..=5)
                .map(|k| (phase * f64::from(k)).sin() / f64::from(k))
                .sum();
            (voiced * envelope * 0.25 * 32767.0) as i16
        })
        .collect()
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

async fn embeddings(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let v = match json_body(&state, EMBEDDINGS, &body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let Some(model) = v.get("model").and_then(Value::as_str) else {
        return invalid("you must provide a model parameter", None, None);
    };
    let full_dims = match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-3-large" => 3072,
        other => return model_not_found(other),
    };
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            // An array of strings, of token ids (one input), or of token-id arrays.
            let as_tokens = |item: &Value| {
                item.as_array().and_then(|ids| {
                    (!ids.is_empty() && ids.iter().all(Value::is_u64)).then(|| {
                        ids.iter()
                            .map(|id| format!("t{id}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                })
            };
            if items.iter().all(Value::is_u64) {
                vec![as_tokens(&Value::Array(items.clone())).unwrap_or_default()]
            } else if let Some(texts) = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).or_else(|| as_tokens(i)))
                .collect::<Option<Vec<_>>>()
            {
                texts
            } else {
                return invalid_input();
            }
        }
        _ => return invalid_input(),
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return invalid(
            &format!(
                "'$.input' is too long. Maximum length is {MAX_EMBEDDING_INPUTS}, but was \
                 given {}.",
                inputs.len()
            ),
            Some("input"),
            None,
        );
    }
    if inputs.iter().any(String::is_empty) {
        return invalid_input();
    }
    let tokens: Vec<usize> = inputs.iter().map(|t| approx_tokens(t)).collect();
    if let Some(&too_long) = tokens.iter().find(|&&t| t > MAX_EMBEDDING_INPUT_TOKENS) {
        return invalid(
            &format!(
                "This model's maximum context length is {MAX_EMBEDDING_INPUT_TOKENS} tokens, \
                 however you requested {too_long} tokens ({too_long} in your prompt; 0 for the \
                 completion). Please reduce your prompt; or completion length."
            ),
            None,
            None,
        );
    }
    let total: usize = tokens.iter().sum();
    if total > MAX_EMBEDDING_REQUEST_TOKENS {
        return invalid(
            &format!(
                "Requested {total} tokens, max {MAX_EMBEDDING_REQUEST_TOKENS} tokens per request"
            ),
            None,
            Some("max_tokens_per_request"),
        );
    }
    let dims = match v.get("dimensions") {
        None | Some(Value::Null) => full_dims,
        Some(d) => match d.as_u64() {
            Some(d) if model != "text-embedding-ada-002" && (1..=full_dims as u64).contains(&d) => {
                d as usize
            }
            _ => {
                return invalid(
                    &format!(
                        "Invalid value for 'dimensions' = {d}. Must be between 1 and {full_dims}."
                    ),
                    Some("dimensions"),
                    Some("invalid_value"),
                );
            }
        },
    };
    let base64 = match v.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid(
                &format!(
                    "Invalid value for 'encoding_format' = {other}. Supported values are: 'float' and 'base64'."
                ),
                Some("encoding_format"),
                Some("invalid_value"),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = fake_embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": total, "total_tokens": total },
    }))
    .into_response()
}

async fn moderations(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let v = match json_body(&state, MODERATIONS, &body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let model = match v.get("model") {
        None | Some(Value::Null) => "omni-moderation-latest",
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return invalid("'$.model' is invalid.", Some("model"), None),
    };
    if !matches!(
        model,
        "omni-moderation-latest"
            | "omni-moderation-2024-09-26"
            | "text-moderation-latest"
            | "text-moderation-stable"
    ) {
        return model_not_found(model);
    }
    // A string, an array of strings (one result each), or an array of multimodal parts
    // (one result for all of them).
    let texts: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) && !items.is_empty() => {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        }
        Some(Value::Array(parts)) if parts.iter().all(Value::is_object) && !parts.is_empty() => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text").and_then(Value::as_str) {
                        Some(t) => {
                            text.push_str(t);
                            text.push('\n');
                        }
                        None => return invalid_input(),
                    },
                    Some("image_url") => {}
                    _ => return invalid_input(),
                }
            }
            vec![text]
        }
        _ => return invalid_input(),
    };
    let rules = state.lock().moderation_rules.clone();
    let results: Vec<Value> = texts
        .iter()
        .map(|text| {
            let lower = text.to_lowercase();
            let mut scores: HashMap<&str, f64> = CATEGORIES.iter().map(|&c| (c, 1e-6)).collect();
            for (keyword, category, score) in &rules {
                if lower.contains(keyword.as_str())
                    && let Some(s) = scores.get_mut(category.as_str())
                {
                    *s = s.max(*score);
                }
            }
            let categories: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(scores[c] >= 0.5)))
                .collect();
            let category_scores: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(scores[c])))
                .collect();
            let applied: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(["text"])))
                .collect();
            json!({
                "flagged": categories.values().any(|f| f == &json!(true)),
                "categories": categories,
                "category_scores": category_scores,
                "category_applied_input_types": applied,
            })
        })
        .collect();
    let id: String = Sha256::digest(&body)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = format!("modr-{id}");
    axum::Json(json!({ "id": id, "model": model, "results": results })).into_response()
}

async fn transcriptions(State(state): State<Arc<FakeState>>, req: Request) -> Response {
    let mut form = match Multipart::from_request(req, &()).await {
        Ok(form) => form,
        Err(e) => {
            return invalid(
                &format!("Could not parse multipart form: {}", e.body_text()),
                None,
                None,
            );
        }
    };
    let mut fields = serde_json::Map::new();
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    return too_large(MAX_AUDIO_BYTES + 1);
                }
                return invalid(
                    &format!("Could not parse multipart form: {}", e.body_text()),
                    None,
                    None,
                );
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let content_type = field.content_type().unwrap_or_default().to_owned();
            let Ok(bytes) = field.bytes().await else {
                return too_large(MAX_AUDIO_BYTES + 1);
            };
            fields.insert(
                "file".to_owned(),
                json!({ "file_name": file_name, "content_type": content_type, "bytes": bytes.len() }),
            );
            file = Some((file_name, bytes));
        } else {
            match field.text().await {
                Ok(text) => {
                    fields.insert(name, json!(text));
                }
                Err(_) => return invalid("Could not parse multipart form.", None, None),
            }
        }
    }
    let field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let Some(model) = field("model") else {
        return invalid("you must provide a model parameter", None, None);
    };
    let whisper = model == "whisper-1";
    if !whisper
        && !matches!(
            model.as_str(),
            "gpt-4o-transcribe" | "gpt-4o-mini-transcribe"
        )
    {
        return model_not_found(&model);
    }
    let Some((file_name, audio)) = file else {
        return invalid("you must provide a file", Some("file"), None);
    };
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    if !AUDIO_EXTENSIONS.contains(&extension.as_str()) {
        return invalid(
            &format!(
                "Invalid file format. Supported formats: {:?}",
                AUDIO_EXTENSIONS
            ),
            Some("file"),
            Some("invalid_value"),
        );
    }
    if audio.len() > MAX_AUDIO_BYTES {
        return too_large(audio.len());
    }
    if audio.len() < 100 {
        return invalid(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
            Some("audio_too_short"),
        );
    }
    let format = field("response_format").unwrap_or_else(|| "json".to_owned());
    let allowed: &[&str] = if whisper {
        &["json", "text", "verbose_json", "srt", "vtt"]
    } else {
        &["json", "text"]
    };
    if !allowed.contains(&format.as_str()) {
        return invalid(
            &format!(
                "response_format '{format}' is not compatible with model '{model}'. Use {} instead.",
                allowed
                    .iter()
                    .map(|f| format!("'{f}'"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Some("response_format"),
            Some("unsupported_value"),
        );
    }
    let text = {
        let mut inner = state.lock();
        inner
            .last_bodies
            .insert(TRANSCRIPTIONS.to_owned(), Value::Object(fields.clone()));
        let key: [u8; 32] = Sha256::digest(&audio).into();
        inner
            .transcripts
            .get(&key)
            .cloned()
            .unwrap_or_else(|| inner.default_transcript.clone())
    };
    let duration = wav_duration(&audio).unwrap_or(audio.len() as f64 / 16_000.0);
    match format.as_str() {
        "text" => text.into_response(),
        "verbose_json" => axum::Json(json!({
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": [{
                "id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text,
                "tokens": [], "temperature": 0.0, "avg_logprob": -0.2,
                "compression_ratio": 1.0, "no_speech_prob": 0.01
            }],
        }))
        .into_response(),
        "srt" => {
            let end = timestamp(duration).replace('.', ",");
            format!("1\n00:00:00,000 --> {end}\n{text}\n\n").into_response()
        }
        "vtt" => {
            let end = timestamp(duration);
            format!("WEBVTT\n\n00:00:00.000 --> {end}\n{text}\n\n").into_response()
        }
        _ if whisper => axum::Json(json!({
            "text": text,
            "usage": { "type": "duration", "seconds": duration.ceil() as u64 },
        }))
        .into_response(),
        _ => {
            let output = approx_tokens(&text);
            let input = (duration * 10.0).ceil() as u64;
            axum::Json(json!({
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": input,
                    "input_token_details": { "text_tokens": 0, "audio_tokens": input },
                    "output_tokens": output,
                    "total_tokens": input + output as u64,
                },
            }))
            .into_response()
        }
    }
}

/// `HH:MM:SS.mmm`.
fn timestamp(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn too_large(bytes: usize) -> Response {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({bytes} bytes read)"),
        "server_error",
        None,
        None,
    )
}

/// Seconds of audio in a PCM WAV file, from its header.
fn wav_duration(audio: &[u8]) -> Option<f64> {
    if audio.len() < 44 || &audio[..4] != b"RIFF" || &audio[8..12] != b"WAVE" {
        return None;
    }
    let byte_rate = u32::from_le_bytes(audio[28..32].try_into().ok()?);
    (byte_rate > 0).then(|| (audio.len() - 44) as f64 / f64::from(byte_rate))
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

async fn chat_completions(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let (v, model) = match json_body_for(&state, CHAT_COMPLETIONS, &body, &CHAT_MODELS) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let model = model.as_str();
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return invalid(
            "The fake does not stream chat completions.",
            Some("stream"),
            Some("unsupported_value"),
        );
    }
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return invalid(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    };
    if messages.is_empty() {
        return invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got \
             an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        );
    }
    let mut texts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return invalid(
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', \
                     'user', 'tool', 'function' and 'developer'."
                ),
                Some(&format!("messages[{i}].role")),
                Some("invalid_value"),
            );
        }
        let Some(text) = m.get("content").and_then(message_text) else {
            return invalid(
                &format!("Invalid type for 'messages[{i}].content'."),
                Some(&format!("messages[{i}].content")),
                Some("invalid_type"),
            );
        };
        texts.push((role, text));
    }
    let limit = match (
        positive_int(&v, "max_tokens"),
        positive_int(&v, "max_completion_tokens"),
    ) {
        (Err(res), _) | (_, Err(res)) => return *res,
        (Ok(a), Ok(b)) => b.or(a),
    };
    let reply = state.lock().chat_reply.clone().unwrap_or_else(|| {
        let last_user = texts.iter().rev().find(|(role, _)| *role == "user");
        fake_reply(last_user.map_or("", |(_, t)| t.as_str()))
    });
    // Cut to the token limit the fake's tokenizer counts, the way a real completion stops.
    let (reply, finish_reason) = match limit {
        Some(max) if approx_tokens(&reply) as u64 > max => {
            (reply.chars().take(max as usize * 4).collect(), "length")
        }
        _ => (reply, "stop"),
    };
    let prompt_tokens: usize = texts.iter().map(|(_, t)| approx_tokens(t)).sum();
    let completion_tokens = approx_tokens(&reply);
    let id: String = Sha256::digest(&body)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    axum::Json(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply, "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_radio24_fake",
    }))
    .into_response()
}

async fn speech(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let (v, model) = match json_body_for(&state, SPEECH, &body, &TTS_MODELS) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let model = model.as_str();
    let input = match v.get("input").and_then(Value::as_str) {
        Some(i) if !i.is_empty() => i,
        _ => {
            return invalid(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            );
        }
    };
    if input.chars().count() > MAX_SPEECH_INPUT {
        return invalid(
            &format!("String should have at most {MAX_SPEECH_INPUT} characters"),
            Some("input"),
            Some("string_above_max_length"),
        );
    }
    let voice = v.get("voice").and_then(Value::as_str).unwrap_or("");
    if !VOICES.contains(&voice) {
        return invalid(
            &format!(
                "Invalid value for 'voice' = {voice}. Supported values are: {}.",
                VOICES.map(|v| format!("'{v}'")).join(", ")
            ),
            Some("voice"),
            Some("invalid_value"),
        );
    }
    let format = v
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("mp3");
    if !SPEECH_FORMATS.contains(&format) {
        return invalid(
            &format!("Invalid value for 'response_format' = {format}."),
            Some("response_format"),
            Some("invalid_value"),
        );
    }
    if !matches!(format, "pcm" | "wav") {
        return invalid(
            &format!("The fake produces pcm and wav only, not {format}."),
            Some("response_format"),
            Some("unsupported_value"),
        );
    }
    if v.get("instructions").is_some_and(|i| !i.is_null()) && model.starts_with("tts-1") {
        return invalid(
            &format!("Instructions are not supported for {model}."),
            Some("instructions"),
            Some("unsupported_parameter"),
        );
    }
    if let Some(speed) = v.get("speed").filter(|s| !s.is_null())
        && !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s))
    {
        return invalid(
            "Invalid 'speed': expected a number between 0.25 and 4.0.",
            Some("speed"),
            Some("invalid_value"),
        );
    }
    if v.get("stream_format").and_then(Value::as_str) == Some("sse") {
        return invalid(
            "The fake does not stream speech as server-sent events.",
            Some("stream_format"),
            Some("unsupported_value"),
        );
    }
    let pcm: Vec<u8> = fake_speech(input)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let (audio, content_type) = if format == "wav" {
        (wav_file(&pcm), "audio/wav")
    } else {
        (pcm, "audio/pcm")
    };
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = audio
        .chunks(SPEECH_CHUNK_BYTES)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// A 24 kHz mono 16-bit WAV file around `pcm`.
fn wav_file(pcm: &[u8]) -> Vec<u8> {
    let rate = FAKE_SPEECH_RATE;
    let len = pcm.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}
