//! Content moderation: a provider scores a text per category (OpenAI's moderation shape, so
//! both providers are interchangeable), and a [`Policy`] of per-category thresholds turns the
//! scores into approve, hold for a human, or reject.
//!
//! Why thresholds instead of the provider's `flagged`: a radio station is stricter than
//! OpenAI's general-purpose defaults in some categories (sexual content on air) and must be
//! more careful in others (a listener in crisis should reach a human, not be auto-rejected).
//!
//! One module per part: [`policy`] (thresholds to a decision), [`openai`] (OpenAI's
//! endpoint), [`local`] (the offline moderator), which combines the phrase rules kept as data
//! in `rules.txt` (read by [`rules`], matched on the words [`normalize`] reads), the
//! [`personal_data`] finder, and the nearest labelled [`exemplars`] of the submission's
//! embedding.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use shared::submission::SubmissionId;

use crate::error::ProviderError;

pub mod classifier;
pub mod exemplars;
mod local;
mod normalize;
mod openai;
pub mod personal_data;
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

/// What the local moderator scores beyond OpenAI's categories: a listener's contact details
/// must not go on air unseen, and a message that gives the DJ instructions is for a person.
/// The policy knows their thresholds; the OpenAI provider never reports them.
pub const STATION_CATEGORIES: [&str; 2] = ["personal-data", "prompt-injection"];

/// `name` as one of [`CATEGORIES`] or [`STATION_CATEGORIES`], if it is one.
pub fn known_category(name: &str) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .chain(&STATION_CATEGORIES)
        .copied()
        .find(|c| *c == name)
}

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

    /// Raises `category` to at least `score` (flagged from 0.5, as the local moderator flags).
    pub fn raise(&mut self, category: &str, score: f64) {
        let s = self.category_scores.entry(category.to_owned()).or_default();
        *s = s.max(score);
        let flagged = *s >= 0.5;
        let f = self.categories.entry(category.to_owned()).or_default();
        *f = *f || flagged;
        self.flagged = self.flagged || flagged;
    }
}

/// A moderation provider.
#[async_trait]
pub trait Moderator: Send + Sync {
    /// Provider and model, recorded with each decision: `openai:omni-moderation-latest`,
    /// `local:rules+exemplars`.
    fn name(&self) -> &str;
    /// Scores `text`. `submission` names the submission these words are, when they are one
    /// (its embedding is stored by then, and a provider may use it); `None` for the DJ's own
    /// words.
    async fn moderate(
        &self,
        text: &str,
        submission: Option<SubmissionId>,
    ) -> Result<ModerationResult, ProviderError>;
}
