//! Sentence embeddings for near-duplicate detection: the [`Embedder`] trait the `embed`
//! service codes against, with two implementations: [`OpenAiEmbedder`] (production) and,
//! with the `local` feature, [`LocalMiniLm`], all-MiniLM-L6-v2 run in-process on the CPU so
//! local runs and tests need no API key and no network.
//!
//! Vectors from different models live in different spaces: every vector is stored with its
//! [`EmbeddingModel`], and similarity is only ever computed between vectors of one model.

#[cfg(feature = "local")]
mod local;
mod openai;

use crate::error::ProviderError;

#[cfg(feature = "local")]
pub use local::{LocalMiniLm, MAX_TOKENS};
pub use openai::{BatchLimits, OpenAiEmbedder, estimate_tokens};

/// Which vector space a vector belongs to; stored with every vector, never mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddingModel {
    /// `"text-embedding-3-small"` or `"all-MiniLM-L6-v2"`.
    pub name: &'static str,
    /// Length of every vector of this model: 1536 or 384.
    pub dims: usize,
}

impl EmbeddingModel {
    /// OpenAI's hosted model, used in production.
    pub const OPENAI_TEXT_EMBEDDING_3_SMALL: Self = Self {
        name: "text-embedding-3-small",
        dims: 1536,
    };
    /// The local model of [`LocalMiniLm`].
    pub const ALL_MINILM_L6_V2: Self = Self {
        name: "all-MiniLM-L6-v2",
        dims: 384,
    };
}

/// Which tables a model's vectors live in: one per vector space, because the two spaces differ
/// in dimensions and are never compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// OpenAI text-embedding-3-small, 1536 dims.
    OpenAi,
    /// all-MiniLM-L6-v2 run locally, 384 dims.
    Local,
}

impl Space {
    pub fn for_dims(dims: usize) -> Option<Space> {
        match dims {
            1536 => Some(Space::OpenAi),
            384 => Some(Space::Local),
            _ => None,
        }
    }

    /// Submissions' vectors.
    pub fn submission_table(self) -> &'static str {
        match self {
            Space::OpenAi => "submission_embedding",
            Space::Local => "submission_embedding_local",
        }
    }

    /// The moderator's labelled exemplars' vectors.
    pub fn exemplar_table(self) -> &'static str {
        match self {
            Space::OpenAi => "moderation_exemplar",
            Space::Local => "moderation_exemplar_local",
        }
    }
}

/// Turns texts into vectors of one [`EmbeddingModel`].
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    fn model(&self) -> EmbeddingModel;
    /// One vector per input, L2-normalised, in input order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_constants_match_the_vector_sizes_of_the_schema() {
        assert_eq!(EmbeddingModel::ALL_MINILM_L6_V2.dims, 384);
        assert_eq!(EmbeddingModel::OPENAI_TEXT_EMBEDDING_3_SMALL.dims, 1536);
    }
}
