//! Greedy decoding of one 30 s window, following OpenAI's `DecodingTask` for English-only
//! models without timestamps: prompt `<|startoftranscript|><|notimestamps|>`, suppressed
//! tokens masked out, the most likely token taken until `<|endoftext|>` or the length limit.

use candle_core::{D, Device, IndexOp, Tensor};
use candle_transformers::models::whisper::model::Whisper;

/// What the decoder needs to know about the vocabulary.
pub(super) struct Rules {
    /// The prompt: `<|startoftranscript|><|notimestamps|>` (no language or task token in
    /// English-only models).
    pub prompt: Vec<u32>,
    pub eot: u32,
    /// `<|nocaptions|>` in English-only vocabularies: its probability right after
    /// `<|startoftranscript|>` is the model's belief that the window holds no speech.
    pub no_speech: u32,
    /// Added to every step's logits: 0 or -inf (non-speech symbols, special and timestamp
    /// tokens).
    pub suppress: Vec<f32>,
    /// Also masked at the first sampled position (space and `<|endoftext|>`, as OpenAI does).
    pub suppress_begin: Vec<u32>,
    /// Tokens sampled per window at most: half the text context, as OpenAI's `sample_len`.
    pub max_tokens: usize,
}

/// One decoded window.
pub(super) struct Segment {
    /// Text tokens, without prompt and `<|endoftext|>`.
    pub tokens: Vec<u32>,
    /// Mean log-probability of the sampled tokens including `<|endoftext|>`.
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
}

/// Decodes one `(1, mels, 3000)` log-mel window.
pub(super) fn greedy(
    model: &mut Whisper,
    mel: &Tensor,
    rules: &Rules,
) -> candle_core::Result<Segment> {
    let features = model.encoder.forward(mel, true)?;
    let mut tokens = rules.prompt.clone();
    let mut sum_logprob = 0f32;
    let mut no_speech_prob = 0f32;
    let mut sampled = 0usize;
    for step in 0..rules.max_tokens {
        let input = Tensor::new(tokens.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        // The first step computes the cross-attention keys for this window; later ones reuse
        // them. candle's decoder has no self-attention cache, so the prefix is recomputed:
        // cheap for tiny and at most 226 tokens.
        let hidden = model.decoder.forward(&input, &features, step == 0)?;
        if step == 0 {
            let at_sot = model.decoder.final_linear(&hidden.i((.., 0..1))?)?;
            let probs = candle_nn::ops::softmax(&at_sot.flatten_all()?, D::Minus1)?;
            no_speech_prob = probs.i(rules.no_speech as usize)?.to_scalar::<f32>()?;
        }
        let last = hidden.dim(1)? - 1;
        let mut logits = model
            .decoder
            .final_linear(&hidden.i((.., last..))?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (l, s) in logits.iter_mut().zip(&rules.suppress) {
            *l += s;
        }
        if step == 0 {
            for &t in &rules.suppress_begin {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let (next, best) = logits
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("the vocabulary is not empty");
        sum_logprob += best - log_sum_exp(&logits);
        sampled += 1;
        if next as u32 == rules.eot {
            break;
        }
        tokens.push(next as u32);
    }
    let text = tokens.split_off(rules.prompt.len());
    Ok(Segment {
        avg_logprob: sum_logprob / sampled.max(1) as f32,
        tokens: text,
        no_speech_prob,
    })
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_ignores_masked_entries() {
        let lse = log_sum_exp(&[0.0, 0.0, f32::NEG_INFINITY]);
        assert!((lse - 2f32.ln()).abs() < 1e-6);
    }
}
