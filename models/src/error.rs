//! What every external or local model provider (embeddings, moderation, transcription,
//! voice) can fail with, classified the way the pipeline must react: a transient failure
//! is retried (Pub/Sub redelivers after a non-2xx), a permanent one is recorded as failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 429: slow down; `retry_after` from the provider's `Retry-After` when it sent one.
    #[error("rate limited by {provider}")]
    RateLimited {
        provider: &'static str,
        retry_after: Option<Duration>,
    },
    /// Timeouts, connection failures, 5xx: the same call may succeed later.
    #[error("{provider} unavailable: {reason}")]
    Transient {
        provider: &'static str,
        reason: String,
    },
    /// The input can never be processed (4xx other than 429, content the model refuses,
    /// undecodable audio): retrying cannot help.
    #[error("{provider} refused the input: {reason}")]
    Permanent {
        provider: &'static str,
        reason: String,
    },
}

impl ProviderError {
    pub fn permanent(provider: &'static str, reason: impl Into<String>) -> Self {
        ProviderError::Permanent {
            provider,
            reason: reason.into(),
        }
    }

    pub fn transient(provider: &'static str, reason: impl Into<String>) -> Self {
        ProviderError::Transient {
            provider,
            reason: reason.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        !matches!(self, ProviderError::Permanent { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
