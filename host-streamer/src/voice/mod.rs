//! The AI DJ's voice. A [`Voice`] turns a [`Cue`] (what to talk about) into speech written
//! into the engine's feed as it is produced. Voices fail (sockets drop, sessions
//! expire, rate limits); [`chain::VoiceChain`] tries them in the configured order, and the
//! engine plays the bed meanwhile, so no failure is ever heard as silence.

pub mod chain;
pub mod dj;
pub mod local;
mod pcm;
pub mod realtime;
pub mod rest;
pub mod screen;

pub use crate::audio::feed::FeedWriter;
pub use realtime::{RealtimeConfig, RealtimeVoice};
pub use rest::{RestConfig, RestVoice};

use std::time::Duration;

/// What the DJ is asked to say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cue {
    /// The program block this belongs to (OP, NEWS, QANDA, ...), for logs and prompts.
    pub block: String,
    /// The request to a language-model voice: what to talk about, in the DJ's words.
    pub prompt: String,
    /// Listeners' words the DJ reads or may refer to: put to a model as quoted data, never
    /// as instructions.
    pub quotes: Vec<Quote>,
    /// Words a template voice speaks as they are, when no model is available.
    pub script: String,
}

/// A listener's words in a cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub from: QuoteFrom,
    pub words: String,
    /// An operator approved these words as they are: the DJ's line is screened without them.
    pub operator_approved: bool,
}

/// Whose words a [`Quote`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteFrom {
    /// The listener the DJ is answering now.
    Listener,
    /// An earlier listener, whose message aired, that the DJ may refer to.
    EarlierListener,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VoiceError {
    /// Could not reach or authenticate to the voice service.
    #[error("voice unavailable: {0}")]
    Unavailable(String),
    /// The service answered but the response failed or was cut off.
    #[error("voice failed: {0}")]
    Failed(String),
    /// No audio arrived for too long.
    #[error("voice stalled for {0:?}")]
    Stalled(Duration),
    /// Rate limited; the voice should not be asked again before this.
    #[error("voice rate limited, retry after {0:?}")]
    RateLimited(Duration),
    /// Its words failed moderation in the broadcast delay, or an operator dumped them: what
    /// was held never aired. Not a fault of the voice.
    #[error("cut in the broadcast delay: {0}")]
    Cut(String),
}

/// A way of speaking a cue.
#[async_trait::async_trait]
pub trait Voice: Send + Sync {
    /// For logs and metrics: `realtime`, `rest`, `local`.
    fn name(&self) -> &'static str;

    /// Speaks `cue`, writing audio into `out` as it arrives (between `out.begin()` and
    /// `out.end()`), and returns the transcript of what was said. On error the caller
    /// abandons whatever was written.
    async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<String, VoiceError>;
}
