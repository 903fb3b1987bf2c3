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
    /// Related past submissions and recent on-air talk the DJ may refer to.
    pub context: Vec<String>,
    /// Words a template voice speaks as they are, when no model is available.
    pub script: String,
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
