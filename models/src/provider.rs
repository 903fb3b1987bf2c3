//! Which implementation serves each provider role (embeddings, moderation, transcription,
//! voice): chosen per role from the environment, OpenAI when a key is configured.

use shared::config::{ConfigError, Env};

use crate::openai::OpenAiConfig;

/// Which implementation serves a provider role: OpenAI in production, an in-process model as
/// the offline default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Local,
    OpenAi,
}

impl Provider {
    /// Reads `var` (`local` | `openai`); unset means OpenAI when a key is configured.
    pub fn from_env(
        env: &Env,
        var: &str,
        openai: Option<&OpenAiConfig>,
    ) -> Result<Self, ConfigError> {
        match env.raw(var) {
            None if openai.is_some() => Ok(Provider::OpenAi),
            None | Some("local") => Ok(Provider::Local),
            Some("openai") if openai.is_some() => Ok(Provider::OpenAi),
            Some("openai") => Err(ConfigError::Missing("OPENAI_API_KEY".into())),
            Some(other) => Err(ConfigError::invalid(var, other, "expected local or openai")),
        }
    }
}
