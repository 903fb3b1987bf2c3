//! OpenAI's embeddings endpoint (`text-embedding-3-small`) as an [`Embedder`]: inputs grouped
//! into as few requests as the batch limits allow, vectors read back as base64.

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Embedder, EmbeddingModel};
use crate::error::ProviderError;
use crate::openai::{OpenAiClient, PROVIDER};

/// What [`OpenAiEmbedder`] embeds with: `text-embedding-3-small`, 1536 dimensions.
const MODEL: EmbeddingModel = EmbeddingModel::OPENAI_TEXT_EMBEDDING_3_SMALL;

/// The API's limit per input is 8191 tokens; this leaves room for the estimate being off.
const MAX_INPUT_TOKENS: usize = 8000;

/// How inputs are grouped into requests. The API allows 2048 inputs and 300k tokens per
/// request; the defaults stay well below so that one request also finishes well within the
/// per-attempt timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_inputs: usize,
    /// In estimated tokens (see [`estimate_tokens`]).
    pub max_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_inputs: 512,
            max_tokens: 100_000,
        }
    }
}

/// An over-estimate of the tokens OpenAI's tokenizers make of `text`, without shipping a
/// tokenizer: English averages about 4 bytes per token, so counting one token per 2 ASCII
/// bytes and 2 per other character stays above the real count for natural language.
pub fn estimate_tokens(text: &str) -> usize {
    let (ascii, other) = text.chars().fold((0usize, 0usize), |(a, o), c| {
        if c.is_ascii() { (a + 1, o) } else { (a, o + 1) }
    });
    ascii.div_ceil(2) + other * 2
}

/// The longest prefix of `text` (at a character boundary) estimated at most `max_tokens`.
fn truncate_to_tokens(text: &str, max_tokens: usize) -> &str {
    let mut tokens2 = 0usize; // in half tokens, so one ASCII byte counts 1
    for (i, c) in text.char_indices() {
        tokens2 += if c.is_ascii() { 1 } else { 4 };
        if tokens2.div_ceil(2) > max_tokens {
            return &text[..i];
        }
    }
    text
}

/// OpenAI's embeddings endpoint as an [`Embedder`].
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: OpenAiClient,
    limits: BatchLimits,
}

impl OpenAiEmbedder {
    pub fn new(client: OpenAiClient) -> Self {
        OpenAiEmbedder {
            client,
            limits: BatchLimits::default(),
        }
    }

    /// Overrides how inputs are grouped into requests (tests use small limits).
    ///
    /// # Panics
    /// If either limit is zero.
    pub fn with_batch_limits(mut self, limits: BatchLimits) -> Self {
        assert!(limits.max_inputs > 0 && limits.max_tokens > 0);
        self.limits = limits;
        self
    }

    /// Splits `texts` into consecutive `(start, end)` ranges under the limits.
    fn batches(&self, tokens: &[usize]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let (mut start, mut sum) = (0, 0);
        for (i, &t) in tokens.iter().enumerate() {
            if i > start
                && (i - start >= self.limits.max_inputs || sum + t > self.limits.max_tokens)
            {
                out.push((start, i));
                (start, sum) = (i, 0);
            }
            sum += t;
        }
        if start < tokens.len() {
            out.push((start, tokens.len()));
        }
        out
    }

    async fn embed_batch(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let req = EmbeddingsRequest {
            model: MODEL.name,
            input: inputs,
            // Base64 little-endian f32s: a quarter of the bytes of JSON numbers, and what
            // OpenAI's own SDKs ask for.
            encoding_format: "base64",
        };
        let res: EmbeddingsResponse = self.client.post_json("embeddings", &req).await?;
        let malformed = |what: String| ProviderError::Transient {
            provider: PROVIDER,
            reason: format!("malformed embeddings response: {what}"),
        };
        let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        for item in res.data {
            let vector = item.embedding.into_vec().map_err(&malformed)?;
            if vector.len() != MODEL.dims {
                return Err(malformed(format!(
                    "{} dimensions instead of {}",
                    vector.len(),
                    MODEL.dims
                )));
            }
            let slot = out
                .get_mut(item.index)
                .ok_or_else(|| malformed(format!("index {} out of range", item.index)))?;
            if slot.replace(vector).is_some() {
                return Err(malformed(format!("index {} twice", item.index)));
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| malformed(format!("no embedding for index {i}"))))
            .collect()
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> EmbeddingModel {
        MODEL
    }

    /// Embeds `texts` in as few requests as the batch limits allow, in order. Inputs over the
    /// per-input token limit are cut to their beginning, which is what near-duplicate
    /// detection needs from them; empty inputs are refused, as the API would.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(ProviderError::Permanent {
                provider: PROVIDER,
                reason: format!("input {i} is empty"),
            });
        }
        let inputs: Vec<&str> = texts
            .iter()
            .map(|t| {
                let cut = truncate_to_tokens(t, MAX_INPUT_TOKENS);
                if cut.len() < t.len() {
                    tracing::info!(
                        bytes = t.len(),
                        kept = cut.len(),
                        "embedding input truncated"
                    );
                }
                cut
            })
            .collect();
        let tokens: Vec<usize> = inputs.iter().map(|t| estimate_tokens(t)).collect();
        let mut out = Vec::with_capacity(texts.len());
        for (start, end) in self.batches(&tokens) {
            out.extend(self.embed_batch(&inputs[start..end]).await?);
        }
        Ok(out)
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'a str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

impl EmbeddingValue {
    fn into_vec(self) -> Result<Vec<f32>, String> {
        match self {
            EmbeddingValue::Floats(v) => Ok(v),
            EmbeddingValue::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("bad base64: {e}"))?;
                if bytes.len() % 4 != 0 {
                    return Err("base64 length is not a multiple of 4 bytes".to_owned());
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::OpenAiConfig;

    #[test]
    fn token_estimate_and_truncation() {
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_tokens("héllo"), 2 + 2);
        let long = "é".repeat(10_000);
        let cut = truncate_to_tokens(&long, 100);
        assert_eq!(estimate_tokens(cut), 100);
        assert_eq!(truncate_to_tokens("short", 100), "short");
    }

    #[test]
    fn batches_respect_both_limits() {
        let client = OpenAiClient::new(OpenAiConfig::new("k"));
        let e = OpenAiEmbedder::new(client).with_batch_limits(BatchLimits {
            max_inputs: 3,
            max_tokens: 10,
        });
        assert_eq!(e.batches(&[1, 1, 1, 1]), vec![(0, 3), (3, 4)]);
        assert_eq!(
            e.batches(&[6, 6, 4, 20, 1]),
            vec![(0, 1), (1, 3), (3, 4), (4, 5)]
        );
        assert!(e.batches(&[]).is_empty());
    }
}
