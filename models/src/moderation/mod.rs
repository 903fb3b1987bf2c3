//! Content moderation: a provider scores a text per category (OpenAI's moderation shape, so
//! both providers are interchangeable), and a [`Policy`] of per-category thresholds turns the
//! scores into approve, hold for a human, or reject.
//!
//! Why thresholds instead of the provider's `flagged`: a radio station is stricter than
//! OpenAI's general-purpose defaults in some categories (sexual content on air) and must be
//! more careful in others (a listener in crisis should reach a human, not be auto-rejected).
//!
//! One module per part: [`policy`] (thresholds to a decision), [`openai`] (OpenAI's
//! endpoint), [`local`] (the offline moderator) with its phrase rules kept as data in
//! `rules.txt` and read by [`rules`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ProviderError;

mod local;
mod openai;
mod policy;
mod rules;

pub use local::LocalModerator;
pub use openai::{OMNI_MODERATION_LATEST, OpenAiModerator};
pub use policy::{Decision, Policy, Thresholds};

/// The categories of OpenAI's `omni-moderation` models, which [`LocalModerator`] scores too.
pub const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// OpenAI moderation's shape:
/// <https://platform.openai.com/docs/api-reference/moderations/object>
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModerationResult {
    pub flagged: bool,
    pub categories: BTreeMap<String, bool>,
    /// Each in 0..=1.
    pub category_scores: BTreeMap<String, f64>,
}

impl ModerationResult {
    /// The score of `category`, 0 when absent.
    pub fn score(&self, category: &str) -> f64 {
        self.category_scores.get(category).copied().unwrap_or(0.0)
    }
}

/// A moderation provider.
#[async_trait]
pub trait Moderator: Send + Sync {
    /// Provider and model, recorded with each decision: `openai:omni-moderation-latest`,
    /// `local:rules`.
    fn name(&self) -> &str;
    async fn moderate(&self, text: &str) -> Result<ModerationResult, ProviderError>;
}
