//! moderate's configuration, validated at start-up.

use models::moderation::Policy;
use models::openai::OpenAiConfig;
use models::provider::Provider;
use shared::config::{ConfigError, Env};
use shared::message::Event;
use shared::operator::OperatorAuth;
use shared::pipeline::StageConfig;

#[derive(Debug)]
pub struct Config {
    pub stage: StageConfig,
    /// `MODERATION_PROVIDER`: rustrict + rule lists locally, `omni-moderation-latest` at
    /// OpenAI.
    pub provider: Provider,
    pub openai: Option<OpenAiConfig>,
    /// `MODERATION_THRESHOLDS` over the defaults.
    pub policy: Policy,
    pub operators: OperatorAuth,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let openai = OpenAiConfig::from_env(env)?;
        Ok(Config {
            stage: StageConfig::from_env(env, Event::Ready)?,
            provider: Provider::from_env(env, "MODERATION_PROVIDER", openai.as_ref())?,
            openai,
            policy: Policy::from_env(env)?,
            operators: OperatorAuth::from_env(env)?,
        })
    }
}
