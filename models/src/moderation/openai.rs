//! OpenAI's moderation endpoint as a [`Moderator`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shared::submission::SubmissionId;

use super::{ModerationResult, Moderator};
use crate::error::ProviderError;
use crate::openai::{OpenAiClient, PROVIDER};

/// OpenAI's moderation endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiModerator {
    client: OpenAiClient,
    model: String,
    name: String,
}

/// The moderation model [`OpenAiModerator::new`] uses.
pub const OMNI_MODERATION_LATEST: &str = "omni-moderation-latest";

impl OpenAiModerator {
    pub fn new(client: OpenAiClient) -> Self {
        Self::with_model(client, OMNI_MODERATION_LATEST)
    }

    pub fn with_model(client: OpenAiClient, model: impl Into<String>) -> Self {
        let model = model.into();
        OpenAiModerator {
            client,
            name: format!("{PROVIDER}:{model}"),
            model,
        }
    }
}

#[derive(Serialize)]
struct ModerationRequest<'a> {
    model: &'a str,
    input: &'a str,
}

#[derive(Deserialize)]
struct ModerationResponse {
    results: Vec<WireResult>,
}

/// Older models answer `null` for categories they do not score.
#[derive(Deserialize)]
struct WireResult {
    flagged: bool,
    #[serde(default)]
    categories: BTreeMap<String, Option<bool>>,
    #[serde(default)]
    category_scores: BTreeMap<String, Option<f64>>,
}

#[async_trait]
impl Moderator for OpenAiModerator {
    fn name(&self) -> &str {
        &self.name
    }

    /// OpenAI reads the words alone: `_submission` is not needed.
    async fn moderate(
        &self,
        text: &str,
        _submission: Option<SubmissionId>,
    ) -> Result<ModerationResult, ProviderError> {
        let req = ModerationRequest {
            model: &self.model,
            input: text,
        };
        let res: ModerationResponse = self.client.post_json("moderations", &req).await?;
        let r = res
            .results
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Transient {
                provider: PROVIDER,
                reason: "moderation response has no result".to_owned(),
            })?;
        Ok(ModerationResult {
            flagged: r.flagged,
            categories: r
                .categories
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            category_scores: r
                .category_scores
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        })
    }
}
