//! embed's configuration, validated at start-up.

use std::time::Duration;

use models::openai::OpenAiConfig;
use models::provider::Provider;
use models::transcription::OpenAiTranscriber;
use shared::config::{ConfigError, Env};
use shared::message::Event;
use shared::pipeline::StageConfig;

use crate::duplicates::DuplicatePolicy;

#[derive(Debug)]
pub struct Config {
    pub stage: StageConfig,
    /// all-MiniLM-L6-v2 (384 dims) locally, text-embedding-3-small (1536 dims) at OpenAI.
    pub embedding: Provider,
    /// Whisper tiny.en locally, `OPENAI_TRANSCRIBE_MODEL` at OpenAI.
    pub transcription: Provider,
    /// `OPENAI_TRANSCRIBE_MODEL`.
    pub transcribe_model: String,
    pub openai: Option<OpenAiConfig>,
    pub duplicates: DuplicatePolicy,
    /// Where ingest stored the recordings (`gs://bucket[/prefix]` or `file:` URL).
    pub uploads_url: String,
    pub gcs_endpoint: Option<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let openai = OpenAiConfig::from_env(env)?;
        let min_similarity: f32 = env.or("DUPLICATE_SIMILARITY", 0.92)?;
        if !(0.0..=1.0).contains(&min_similarity) {
            return Err(ConfigError::invalid(
                "DUPLICATE_SIMILARITY",
                env.raw("DUPLICATE_SIMILARITY").unwrap_or_default(),
                "must be between 0 and 1",
            ));
        }
        Ok(Config {
            stage: StageConfig::from_env(env, Event::Embedded)?,
            embedding: Provider::from_env(env, "EMBEDDING_PROVIDER", openai.as_ref())?,
            transcription: Provider::from_env(env, "TRANSCRIPTION_PROVIDER", openai.as_ref())?,
            transcribe_model: OpenAiTranscriber::model_from_env(env)?,
            openai,
            duplicates: DuplicatePolicy {
                window: env.duration_or("DUPLICATE_WINDOW", Duration::from_secs(24 * 3600))?,
                min_similarity,
            },
            uploads_url: env.required("UPLOADS_URL")?,
            gcs_endpoint: env.optional("STORAGE_EMULATOR_HOST")?,
        })
    }
}
