//! Radio24's models: every provider the pipeline and the DJ call on, behind one trait per
//! role, each with an OpenAI implementation and an in-process one for offline runs.
//!
//! ```text
//! error (ProviderError) <- openai (REST client) <- provider (which implementation serves a role)
//!                       <- embedding   (Embedder: OpenAI, local all-MiniLM-L6-v2)
//!                       <- transcription (Transcriber: OpenAI) <- whisper (local Whisper tiny.en)
//!                       <- moderation  (Moderator: OpenAI omni-moderation, local rules)
//! ```
//!
//! The in-process models (candle, tokenizers, and `media`'s decoders for Whisper) are behind
//! the `local` feature, so a service that only calls OpenAI does not build them.

pub mod embedding;
pub mod error;
pub mod moderation;
pub mod openai;
pub mod provider;
pub mod transcription;
#[cfg(feature = "local")]
pub mod whisper;

pub use error::ProviderError;
