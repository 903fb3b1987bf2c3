//! Nothing unmoderated goes on air, the DJ's own words included: the REST and template voices
//! put every line through [`Screen::line`] between writing it and synthesising it.
//!
//! - The line is moderated as a listener's message would be (the station's provider and
//!   policy); anything but an approval is replaced by [`SAFE_LINE`], and the swap is logged
//!   with the categories that caused it.
//! - Words an operator approved as they are (a held message they let through) are taken out
//!   before moderating: the DJ may read what a person decided is fine to air.
//! - The provider failing (OpenAI down) must not let words through unread: the station's
//!   words-only moderator judges instead.

use std::sync::Arc;

use models::moderation::{Decision, LocalModerator, Moderator, Policy};

use super::Cue;
use crate::metrics::Metrics;

/// What the DJ says instead of a line that failed moderation.
pub const SAFE_LINE: &str = "Let's keep the music going. Stay with us.";

/// The DJ's words, moderated before they are spoken.
pub struct Screen {
    moderator: Arc<dyn Moderator>,
    policy: Policy,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("moderator", &self.moderator.name())
            .finish_non_exhaustive()
    }
}

impl Screen {
    pub fn new(moderator: Arc<dyn Moderator>, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Screen {
            moderator,
            policy,
            metrics,
        }
    }

    /// The station's words-only moderator under the default policy (tests, tools).
    pub fn words_only(metrics: Arc<Metrics>) -> Self {
        Screen::new(Arc::new(LocalModerator::new()), Policy::default(), metrics)
    }

    /// `line` if it may go on air, else [`SAFE_LINE`].
    pub async fn line(&self, cue: &Cue, line: &str) -> String {
        match self.verdict(cue, line).await {
            Ok(()) => line.to_owned(),
            Err(why) => {
                Metrics::add(&self.metrics.dj_lines_replaced, 1);
                tracing::warn!(
                    block = %cue.block,
                    %why,
                    line,
                    "the DJ's line failed moderation: a safe line airs instead"
                );
                SAFE_LINE.to_owned()
            }
        }
    }

    /// Whether `words` may go on air for `cue`: `Err` says why not (the decision and the
    /// categories that made it).
    pub async fn verdict(&self, cue: &Cue, words: &str) -> Result<(), String> {
        let mut judged = words.to_owned();
        for quote in cue.quotes.iter().filter(|q| q.operator_approved) {
            judged = judged.replace(quote.words.trim(), " ");
        }
        let result = match self.moderator.moderate(&judged, None).await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    provider = self.moderator.name(),
                    "cannot moderate the DJ's words; judging them by their words alone"
                );
                LocalModerator::new().score(&judged)
            }
        };
        match self.policy.decide(&result) {
            (Decision::Approved, _) => Ok(()),
            (decision, triggered) => Err(format!("{decision}: {}", triggered.join(", "))),
        }
    }
}
