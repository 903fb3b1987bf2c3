//! Speech to text for push-to-talk submissions.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use crate::error::ProviderError;
use crate::openai::{OpenAiClient, PROVIDER};
use shared::config::{ConfigError, Env};

/// What a transcriber heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub text: String,
    /// As the provider names it (`whisper-1` says `english`); `None` when it does not say.
    pub language: Option<String>,
    pub duration: Option<Duration>,
}

/// A speech-to-text provider.
#[async_trait]
pub trait Transcriber: Send + Sync {
    /// Provider and model, recorded with the transcript: `openai:gpt-4o-mini-transcribe`.
    fn name(&self) -> &str;
    /// `mime` is the audio's content type (`audio/ogg`); `file_name` carries the extension
    /// that providers use to recognise the container.
    async fn transcribe(
        &self,
        audio: Bytes,
        mime: &str,
        file_name: &str,
    ) -> Result<Transcript, ProviderError>;
}

/// The model used unless `OPENAI_TRANSCRIBE_MODEL` says otherwise: cheaper and more accurate
/// than `whisper-1`, but it reports neither language nor duration.
pub const DEFAULT_TRANSCRIBE_MODEL: &str = "gpt-4o-mini-transcribe";

/// The API refuses larger uploads (25 MB); checking first saves the upload.
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;

/// OpenAI's `/audio/transcriptions`.
#[derive(Debug, Clone)]
pub struct OpenAiTranscriber {
    client: OpenAiClient,
    model: String,
    name: String,
}

impl OpenAiTranscriber {
    pub fn new(client: OpenAiClient, model: impl Into<String>) -> Self {
        let model = model.into();
        OpenAiTranscriber {
            client,
            name: format!("{PROVIDER}:{model}"),
            model,
        }
    }

    /// With the model from `OPENAI_TRANSCRIBE_MODEL` (default [`DEFAULT_TRANSCRIBE_MODEL`]).
    pub fn from_env(client: OpenAiClient, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::new(client, Self::model_from_env(env)?))
    }

    /// `OPENAI_TRANSCRIBE_MODEL`, default [`DEFAULT_TRANSCRIBE_MODEL`].
    pub fn model_from_env(env: &Env) -> Result<String, ConfigError> {
        env.or(
            "OPENAI_TRANSCRIBE_MODEL",
            DEFAULT_TRANSCRIBE_MODEL.to_owned(),
        )
    }

    /// `whisper-1` can say the language and duration (`verbose_json`); the `gpt-4o*`
    /// models only know `json`.
    fn response_format(&self) -> &'static str {
        if self.model.starts_with("whisper") {
            "verbose_json"
        } else {
            "json"
        }
    }
}

#[derive(Deserialize)]
struct TranscriptionResponse {
    text: String,
    #[serde(default)]
    language: Option<String>,
    /// Seconds.
    #[serde(default)]
    duration: Option<f64>,
}

#[async_trait]
impl Transcriber for OpenAiTranscriber {
    fn name(&self) -> &str {
        &self.name
    }

    async fn transcribe(
        &self,
        audio: Bytes,
        mime: &str,
        file_name: &str,
    ) -> Result<Transcript, ProviderError> {
        let permanent = |reason: String| ProviderError::Permanent {
            provider: PROVIDER,
            reason,
        };
        if audio.is_empty() {
            return Err(permanent("the audio is empty".to_owned()));
        }
        if audio.len() > MAX_AUDIO_BYTES {
            return Err(permanent(format!(
                "the audio has {} bytes, more than the {MAX_AUDIO_BYTES} the API accepts",
                audio.len()
            )));
        }
        // Checked once here so that building the form per attempt cannot fail.
        reqwest::multipart::Part::bytes(Vec::new())
            .mime_str(mime)
            .map_err(|e| permanent(format!("invalid content type {mime:?}: {e}")))?;
        let form = || {
            let file = reqwest::multipart::Part::stream(audio.clone())
                .file_name(file_name.to_owned())
                .mime_str(mime)
                .expect("content type checked above");
            reqwest::multipart::Form::new()
                .part("file", file)
                .text("model", self.model.clone())
                .text("response_format", self.response_format())
        };
        let res: TranscriptionResponse = self
            .client
            .post_multipart("audio/transcriptions", form)
            .await?;
        Ok(Transcript {
            text: res.text.trim().to_owned(),
            language: res.language.filter(|l| !l.is_empty()),
            duration: res
                .duration
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
        })
    }
}
