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
//!
//! The pieces: `events` reads the protocol (server events, error objects), `session` holds
//! one connection, `turn` streams one response's audio into the feed; this module is the
//! configuration and the [`Voice`] that opens, rotates and retires sessions.

mod delay;
mod events;
mod session;
mod turn;

pub use delay::{DEFAULT_DELAY, Dump};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use models::openai::OpenAiConfig;
use serde_json::json;
use shared::config::{ConfigError, Env};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::http::Uri;

use super::dj::{self, Cooldown, History};
use super::screen::Screen;
use super::{Cue, FeedWriter, Voice, VoiceError};
use crate::metrics::Metrics;
use events::RateLimit;
use session::Session;
use turn::After;

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
    /// How long its audio is held before it airs, while its words are moderated
    /// (`BROADCAST_DELAY`).
    pub delay: Duration,
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
            .field("delay", &self.delay)
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
            delay: DEFAULT_DELAY,
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
            delay: env.duration_or("BROADCAST_DELAY", d.delay)?,
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

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
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
    /// Moderates the words of each response inside the broadcast delay.
    screen: Arc<Screen>,
    dump: Arc<Dump>,
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
    /// Connects nothing yet: the first cue opens the session. Its audio airs through the
    /// broadcast delay, its words judged by `screen`; `dump` cuts what the delay holds.
    pub fn new(
        config: RealtimeConfig,
        metrics: Arc<Metrics>,
        screen: Arc<Screen>,
        dump: Arc<Dump>,
    ) -> Self {
        let history = History::new(config.context_exchanges);
        RealtimeVoice {
            config,
            metrics,
            screen,
            dump,
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
            let mut gate = delay::Gate {
                delay: self.config.delay,
                screen: &self.screen,
                cue,
                dump: self.dump.watch(),
            };
            let result = session
                .respond(
                    message,
                    out,
                    self.config.stall_timeout,
                    &mut state.rate_limits,
                    &mut gate,
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
}
