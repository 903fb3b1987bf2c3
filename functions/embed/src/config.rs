//! embed's configuration, validated at start-up.

use std::net::IpAddr;
use std::time::Duration;

use shared::bus::BusConfig;
use shared::config::{ConfigError, Env};
use shared::db::DbConfig;
use shared::openai::OpenAiConfig;
use shared::outbox::RelayConfig;
use shared::push::PushAuth;

use crate::duplicates::DuplicatePolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingProvider {
    /// all-MiniLM-L6-v2 in-process (384 dims): the offline default.
    Local,
    /// OpenAI text-embedding-3-small (1536 dims).
    OpenAi,
}

pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbConfig,
    pub bus: BusConfig,
    pub push_auth: PushAuth,
    pub topic_embedded: String,
    pub provider: EmbeddingProvider,
    pub openai: Option<OpenAiConfig>,
    pub duplicates: DuplicatePolicy,
    /// Bound on one delivery's work; below Cloud Run's request timeout, which is below the
    /// subscription's ack deadline.
    pub deadline: Duration,
    pub outbox: RelayConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let openai = OpenAiConfig::from_env(env)?;
        let provider = match env.raw("EMBEDDING_PROVIDER") {
            None if openai.is_some() => EmbeddingProvider::OpenAi,
            None | Some("local") => EmbeddingProvider::Local,
            Some("openai") if openai.is_some() => EmbeddingProvider::OpenAi,
            Some("openai") => return Err(ConfigError::Missing("OPENAI_API_KEY".into())),
            Some(other) => {
                return Err(ConfigError::invalid(
                    "EMBEDDING_PROVIDER",
                    other,
                    "expected local or openai",
                ));
            }
        };
        let min_similarity: f32 = env.or("DUPLICATE_SIMILARITY", 0.92)?;
        if !(0.0..=1.0).contains(&min_similarity) {
            return Err(ConfigError::invalid(
                "DUPLICATE_SIMILARITY",
                env.raw("DUPLICATE_SIMILARITY").unwrap_or_default(),
                "must be between 0 and 1",
            ));
        }
        let d = RelayConfig::default();
        Ok(Config {
            host: env.or("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env.or("PORT", 8080)?,
            db: DbConfig::from_env(env)?,
            bus: BusConfig::from_env(env)?,
            push_auth: PushAuth::from_env(env)?,
            topic_embedded: env.or(
                "TOPIC_SUBMISSION_EMBEDDED",
                "submission-embedded".to_owned(),
            )?,
            provider,
            openai,
            duplicates: DuplicatePolicy {
                window: env.duration_or("DUPLICATE_WINDOW", Duration::from_secs(24 * 3600))?,
                min_similarity,
            },
            deadline: env.duration_or("HANDLER_DEADLINE", Duration::from_secs(50))?,
            outbox: RelayConfig {
                grace: env.duration_or("OUTBOX_GRACE", d.grace)?,
                ..d
            },
        })
    }
}
