//! all-MiniLM-L6-v2 run in-process with candle on the CPU: the offline default embedder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::{Embedder, EmbeddingModel};
use crate::error::ProviderError;

/// The name [`ProviderError`]s of [`LocalMiniLm`] carry.
const PROVIDER: &str = "local all-MiniLM-L6-v2";

/// sentence-transformers' `max_seq_length` for this model (its `sentence_bert_config.json`);
/// the bundled `tokenizer.json` says 128, which would embed long texts differently from the
/// reference implementation. Counts `[CLS]` and `[SEP]`.
pub const MAX_TOKENS: usize = 256;

/// Texts run through the model together: large enough to amortise per-call overhead, small
/// enough that a batch of 256-token texts keeps its attention scores (batch x 12 heads x
/// 256 x 256 floats, about 100 MB at 32) modest on a small Cloud Run instance.
const MAX_BATCH: usize = 32;

/// The files [`LocalMiniLm::load`] reads, as `dev/install-tools` installs them.
const WEIGHTS_FILE: &str = "model.safetensors";
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";

/// all-MiniLM-L6-v2 (sentence-transformers) run in-process with candle on the CPU: BERT,
/// mean pooling over the attention mask, then L2 normalisation, as sentence-transformers
/// computes it.
///
/// Loaded once (about 90 MB of weights) and cheap to clone: clones share the model.
/// Inference runs on tokio's blocking pool, so it never stalls the async runtime.
#[derive(Clone)]
pub struct LocalMiniLm {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for LocalMiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMiniLm").finish_non_exhaustive()
    }
}

impl LocalMiniLm {
    /// Loads the model from `dir`, which holds `model.safetensors`, `config.json` and
    /// `tokenizer.json` of sentence-transformers/all-MiniLM-L6-v2 (`dev/install-tools` puts
    /// them in [`Self::default_dir`]). Blocking: reads about 90 MB.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        for file in [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE] {
            let path = dir.join(file);
            ensure!(
                path.is_file(),
                "embedding model file {} is missing (run dev/install-tools, or point \
                 EMBEDDING_MODEL_DIR at a directory with {WEIGHTS_FILE}, {CONFIG_FILE} \
                 and {TOKENIZER_FILE})",
                path.display()
            );
        }

        let config_path = dir.join(CONFIG_FILE);
        let config: BertConfig = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {}", config_path.display()))?;
        // Vectors are labelled ALL_MINILM_L6_V2; another BERT here would silently put
        // vectors of a different space under that label.
        ensure!(
            config.hidden_size == EmbeddingModel::ALL_MINILM_L6_V2.dims,
            "{} describes a model with {} dimensions, not all-MiniLM-L6-v2's {}",
            config_path.display(),
            config.hidden_size,
            EmbeddingModel::ALL_MINILM_L6_V2.dims
        );

        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", tokenizer_path.display()))?;
        // Padding happens per batch in `embed_batch`; the file's fixed 128-token padding
        // would waste work on short texts.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| anyhow::anyhow!("configuring truncation: {e}"))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        // Read, not mmap: no `unsafe`, and the buffer is freed once the tensors are built.
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .with_context(|| format!("parsing {}", weights_path.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("building BERT from {}", weights_path.display()))?;

        Ok(Self {
            inner: Arc::new(Inner { model, tokenizer }),
        })
    }

    /// `$EMBEDDING_MODEL_DIR` if set, else `$RADIO24_CACHE/tools/models/all-MiniLM-L6-v2`
    /// (cache root defaulting to `$HOME/.cache/radio24`), where `dev/install-tools` puts it.
    pub fn default_dir() -> PathBuf {
        shared::config::model_dir("EMBEDDING_MODEL_DIR", EmbeddingModel::ALL_MINILM_L6_V2.name)
    }

    /// The synchronous core of [`Embedder::embed`], for callers already on a blocking
    /// thread (benchmarks, batch jobs). CPU-bound: never call it on an async worker thread.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        self.inner.embed_blocking(texts)
    }
}

#[async_trait::async_trait]
impl Embedder for LocalMiniLm {
    fn model(&self) -> EmbeddingModel {
        EmbeddingModel::ALL_MINILM_L6_V2
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || inner.embed_blocking(&texts))
            .await
            .map_err(|e| {
                if e.is_cancelled() {
                    // The runtime is shutting down; another instance can do the work.
                    ProviderError::Transient {
                        provider: PROVIDER,
                        reason: "inference task cancelled".into(),
                    }
                } else {
                    // A panic in inference is a bug that the same input would hit again.
                    ProviderError::Permanent {
                        provider: PROVIDER,
                        reason: format!("inference panicked: {e}"),
                    }
                }
            })?
    }
}

impl Inner {
    fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect(), true)
            .map_err(|e| permanent(format!("tokenizing: {e}")))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();

        // Batch texts of similar length together so little compute goes to padding, then
        // put the vectors back in input order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i]).collect();
            let embedded = self
                .embed_batch(&batch)
                .map_err(|e| permanent(format!("inference: {e}")))?;
            for (&i, v) in chunk.iter().zip(embedded) {
                vectors[i] = v;
            }
        }
        Ok(vectors)
    }

    /// Runs one padded batch through BERT and pools it. Token ids already carry `[CLS]`
    /// and `[SEP]` and are at most [`MAX_TOKENS`] long.
    fn embed_batch(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        // Pad id and pad mask are 0 ([PAD] is id 0 in this vocabulary); the mask keeps
        // padding out of attention and out of the mean.
        let mut input_ids = vec![0u32; batch.len() * longest];
        let mut mask = vec![0u32; batch.len() * longest];
        for (row, ids) in batch.iter().enumerate() {
            let start = row * longest;
            input_ids[start..start + ids.len()].copy_from_slice(ids);
            mask[start..start + ids.len()].fill(1);
        }
        let shape = (batch.len(), longest);
        let input_ids = Tensor::from_vec(input_ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let token_type_ids = input_ids.zeros_like()?;

        let hidden = self
            .model
            .forward(&input_ids, &token_type_ids, Some(&mask))?; // (batch, tokens, 384)

        // Mean pooling over real tokens (sentence-transformers' `pooling_mode_mean_tokens`).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (batch, tokens, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (batch, 384)
        let counts = mask.sum(1)?; // (batch, 1), at least 2: [CLS] and [SEP]
        let pooled = summed.broadcast_div(&counts)?;

        let mut vectors = pooled.to_vec2::<f32>()?;
        for v in &mut vectors {
            l2_normalise(v);
        }
        Ok(vectors)
    }
}

/// Scales `v` to unit length; the same epsilon as torch's `F.normalize` guards a zero vector.
fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

fn permanent(reason: String) -> ProviderError {
    ProviderError::permanent(PROVIDER, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_gives_unit_length_and_leaves_zero_alone() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 4];
        l2_normalise(&mut zero);
        assert_eq!(zero, vec![0.0; 4]);
    }

    #[test]
    fn missing_model_dir_names_the_install_step() {
        let err = LocalMiniLm::load(Path::new("no-such-model-dir")).unwrap_err();
        assert!(err.to_string().contains("dev/install-tools"), "{err}");
    }
}
