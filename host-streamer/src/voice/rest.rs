//! The DJ's fallback voice over plain HTTP: a chat completion writes the line, then the
//! speech endpoint speaks it as raw PCM that is streamed into the engine's feed as it
//! arrives. Slower to start than the Realtime voice (two round trips), but it needs no
//! session and shares nothing with it, so it still works when Realtime is down.

use std::sync::Arc;
use std::time::Duration;

use models::ProviderError;
use models::openai::OpenAiClient;
use serde::{Deserialize, Serialize};
use shared::config::{ConfigError, Env};

use super::dj::{self, Cooldown, History};
use super::pcm::Pcm16Decoder;
use super::screen::Screen;
use super::{Cue, FeedWriter, Voice, VoiceError};

pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_TTS_MODEL: &str = "gpt-4o-mini-tts";
/// Longest pause in the speech stream before it counts as stalled.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(8);
/// `response_format: "pcm"` is 16-bit mono little-endian at this rate.
const SPEECH_RATE: u32 = 24_000;
/// The speech endpoint's input limit, in characters.
const MAX_SPEECH_INPUT: usize = 4096;
/// A spoken link is well under this; it also bounds what a runaway completion costs.
const MAX_COMPLETION_TOKENS: u32 = 400;
/// How a model that takes speaking instructions should sound.
const SPEAKING_STYLE: &str =
    "Warm, upbeat radio host speaking live on air: lively pace, natural and friendly.";

/// Which models and voice to use.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// `OPENAI_CHAT_MODEL`: writes the line.
    pub chat_model: String,
    /// `OPENAI_TTS_MODEL`: speaks it.
    pub tts_model: String,
    /// `DJ_VOICE_NAME`.
    pub voice: String,
    /// `DJ_PERSONA`: the system message.
    pub persona: String,
    /// No audio for this long while speaking is a stall (`OPENAI_SPEECH_STALL_TIMEOUT`).
    pub stall_timeout: Duration,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            chat_model: DEFAULT_CHAT_MODEL.to_owned(),
            tts_model: DEFAULT_TTS_MODEL.to_owned(),
            voice: dj::DEFAULT_VOICE.to_owned(),
            persona: dj::DEFAULT_PERSONA.to_owned(),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

impl RestConfig {
    /// Reads the variables above (the key and base URL are the [`OpenAiClient`]'s).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = RestConfig::default();
        Ok(RestConfig {
            chat_model: env.or("OPENAI_CHAT_MODEL", d.chat_model)?,
            tts_model: env.or("OPENAI_TTS_MODEL", d.tts_model)?,
            voice: dj::voice_from_env(env)?,
            persona: dj::persona_from_env(env)?,
            stall_timeout: dj::positive_duration(
                env,
                "OPENAI_SPEECH_STALL_TIMEOUT",
                d.stall_timeout,
            )?,
        })
    }
}

/// The [`Voice`] over the chat and speech endpoints.
#[derive(Debug)]
pub struct RestVoice {
    client: OpenAiClient,
    config: RestConfig,
    cooldown: Cooldown,
    screen: Arc<Screen>,
}

impl RestVoice {
    /// `screen` moderates each line the model writes before it is synthesised.
    pub fn new(client: OpenAiClient, config: RestConfig, screen: Arc<Screen>) -> Self {
        RestVoice {
            client,
            config,
            cooldown: Cooldown::default(),
            screen,
        }
    }

    /// Asks the chat model for the words to say.
    async fn write_line(&self, cue: &Cue, message: &str) -> Result<String, VoiceError> {
        let system = format!(
            "{}\n\nWrite only the words you will say: they go straight to a text-to-speech \
             voice.",
            dj::instructions(&self.config.persona, &cue.block, &History::default())
        );
        let request = ChatRequest {
            model: &self.config.chat_model,
            messages: [
                ChatMessage {
                    role: "system",
                    content: &system,
                },
                ChatMessage {
                    role: "user",
                    content: message,
                },
            ],
            max_completion_tokens: MAX_COMPLETION_TOKENS,
        };
        let response: ChatResponse = self
            .client
            .post_json("chat/completions", &request)
            .await
            .map_err(voice_error)?;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(VoiceError::Failed("chat completion without choices".into()));
        };
        if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
            return Err(VoiceError::Failed(format!("the model refused: {refusal}")));
        }
        let line = choice.message.content.unwrap_or_default();
        let line = line.trim();
        if line.is_empty() {
            return Err(VoiceError::Failed("the model wrote nothing to say".into()));
        }
        Ok(fit_speech_input(line).to_owned())
    }

    /// Speaks `line` into `out` as the audio streams in.
    async fn say(&self, line: &str, out: &mut FeedWriter) -> Result<(), VoiceError> {
        // The older tts-1 models refuse `instructions`.
        let instructions = self
            .config
            .tts_model
            .starts_with("gpt-")
            .then_some(SPEAKING_STYLE);
        let request = SpeechRequest {
            model: &self.config.tts_model,
            input: line,
            voice: &self.config.voice,
            response_format: "pcm",
            instructions,
        };
        let mut response = self
            .client
            .post_json_streaming("audio/speech", &request)
            .await
            .map_err(voice_error)?;
        let stall = self.config.stall_timeout;
        let mut pcm = Pcm16Decoder::default();
        let mut samples = 0usize;
        out.begin();
        loop {
            let chunk = match tokio::time::timeout(stall, response.chunk()).await {
                Err(_) => return Err(VoiceError::Stalled(stall)),
                Ok(Err(e)) => {
                    return Err(VoiceError::Failed(format!("speech stream cut off: {e}")));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            let decoded = pcm.decode(&chunk);
            samples += decoded.len();
            out.push_pcm16(SPEECH_RATE, decoded);
        }
        if samples == 0 {
            return Err(VoiceError::Failed(
                "the speech endpoint sent no audio".into(),
            ));
        }
        out.end();
        Ok(())
    }
}

#[async_trait::async_trait]
impl Voice for RestVoice {
    fn name(&self) -> &'static str {
        "rest"
    }

    async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<String, VoiceError> {
        self.cooldown.check()?;
        let message = dj::cue_message(cue)?;
        let result = async {
            let line = self.write_line(cue, &message).await?;
            let line = self.screen.line(cue, &line).await;
            self.say(&line, out).await?;
            Ok(line)
        }
        .await;
        self.cooldown.note(&result);
        result
    }
}

/// Rate limits keep their wait; what is transient (network, 5xx, a bad key) means the
/// service is unavailable; what is permanent means this cue failed.
fn voice_error(e: ProviderError) -> VoiceError {
    match e {
        ProviderError::RateLimited { retry_after, .. } => {
            VoiceError::RateLimited(retry_after.unwrap_or(dj::DEFAULT_RATE_LIMIT_WAIT))
        }
        ProviderError::Transient { reason, .. } => VoiceError::Unavailable(reason),
        ProviderError::Permanent { reason, .. } => VoiceError::Failed(reason),
    }
}

/// `line` cut to the speech endpoint's limit, at the last sentence end that fits.
fn fit_speech_input(line: &str) -> &str {
    let Some((limit, _)) = line.char_indices().nth(MAX_SPEECH_INPUT) else {
        return line;
    };
    let head = &line[..limit];
    match head.rfind(['.', '!', '?']) {
        Some(end) => &head[..=end],
        None => head,
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    max_completion_tokens: u32,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
}

#[derive(Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_env() {
        let cfg = RestConfig::from_env(&Env::from_pairs([("X", "1")])).unwrap();
        assert_eq!(cfg.chat_model, "gpt-4o-mini");
        assert_eq!(cfg.tts_model, "gpt-4o-mini-tts");
        assert_eq!(cfg.voice, "marin");
        let env = Env::from_pairs([
            ("OPENAI_CHAT_MODEL", "gpt-4.1-mini"),
            ("DJ_VOICE_NAME", "coral"),
        ]);
        let cfg = RestConfig::from_env(&env).unwrap();
        assert_eq!(
            (cfg.chat_model.as_str(), cfg.voice.as_str()),
            ("gpt-4.1-mini", "coral")
        );
        let env = Env::from_pairs([("OPENAI_SPEECH_STALL_TIMEOUT", "0")]);
        let err = RestConfig::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("OPENAI_SPEECH_STALL_TIMEOUT"), "{err}");
    }

    #[test]
    fn long_lines_are_cut_at_a_sentence_end() {
        let sentence = "This is one sentence. ";
        let long = sentence.repeat(MAX_SPEECH_INPUT / sentence.len() + 5);
        let cut = fit_speech_input(&long);
        assert!(cut.len() <= MAX_SPEECH_INPUT && cut.ends_with('.'));
        assert_eq!(fit_speech_input("Short."), "Short.");
    }
}
