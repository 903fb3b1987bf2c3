//! Offline speech to text: [`LocalWhisper`] runs OpenAI's Whisper tiny.en in-process on the
//! CPU with candle, so push-to-talk submissions get a transcript with no network and no API
//! key. The weights are the CTranslate2 conversion that `dev/install-tools` installs; they
//! are converted for candle when loaded ([`ct2`]).
//!
//! Pipeline: [`media::decode`] (any accepted upload to 16 kHz mono) → [`mel`] (log-mel
//! spectrogram) → 30 s windows → [`decoder`] (greedy decoding) → text.

mod ct2;
mod decoder;
mod mel;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use async_trait::async_trait;
use bytes::Bytes;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::model::Whisper;
use serde::Deserialize;
use tokenizers::Tokenizer;
use tokio::sync::Semaphore;

use crate::error::ProviderError;
use crate::transcription::{Transcriber, Transcript};
use media::decode::{self, DEFAULT_MAX_DURATION};

use decoder::Rules;
use mel::{HOP, LogMel, MelSpectrogram, WINDOW_FRAMES};

/// Provider and model, as [`Transcriber::name`] reports it and errors carry it.
pub const NAME: &str = "local:whisper-tiny.en";

/// The directory name `dev/install-tools` uses under `$RADIO24_CACHE/tools/models`.
const MODEL_DIR_NAME: &str = "whisper-tiny.en";
const WEIGHTS_FILE: &str = "model.bin";
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";

/// Multilingual Whisper vocabularies have one more token; they also need language and task
/// tokens in the prompt, which this decoder does not write.
const ENGLISH_ONLY_VOCAB: usize = 51_864;

/// OpenAI's thresholds for calling a window silent: the model thinks there is no speech
/// and is unsure of what it produced. Without this check Whisper invents text for silence.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;

/// A window whose loudest sample is below this (-60 dBFS) holds nothing audible and is not
/// run through the model at all: saves the work, and Whisper tends to hallucinate on
/// digital silence.
const SILENCE_PEAK: f32 = 1e-3;

/// Long audio is cut at the quietest 100 ms in the last 5 s before each 30 s mark, so that
/// a word is rarely split between two windows.
const CUT_SEARCH_FRAMES: usize = 500;
const CUT_BLOCK_FRAMES: usize = 10;

/// Whisper tiny.en (CTranslate2 weights) run in-process with candle on the CPU.
///
/// Loaded once (about 170 MB resident, 0.2 s) and cheap to clone: clones share the weights and
/// the concurrency limit. Each transcription runs on tokio's blocking pool; at most
/// [`Self::max_concurrent`] run at once per instance (default 1: one transcription already
/// uses every core's worth of matrix multiplication, more would only share them).
#[derive(Clone)]
pub struct LocalWhisper {
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_duration: Duration,
}

struct Inner {
    /// Never run itself: every transcription clones it (tensors are shared, only the
    /// per-run caches are not) so that runs cannot see each other's state.
    model: Whisper,
    tokenizer: Tokenizer,
    mel: MelSpectrogram,
    rules: Rules,
}

impl std::fmt::Debug for LocalWhisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWhisper")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_duration", &self.max_duration)
            .finish_non_exhaustive()
    }
}

/// The parts of CTranslate2's `config.json` decoding needs.
#[derive(Deserialize)]
struct Ct2Config {
    /// Non-speech symbols (OpenAI's `suppress_tokens="-1"` list) and some special tokens.
    suppress_ids: Vec<u32>,
    /// Masked at the first sampled position only.
    suppress_ids_begin: Vec<u32>,
}

impl LocalWhisper {
    /// Loads the model from `dir`, which holds `model.bin`, `config.json` and
    /// `tokenizer.json` of Whisper tiny.en in CTranslate2 format (`dev/install-tools` puts
    /// them in [`Self::default_dir`]). Blocking: reads and converts about 75 MB.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        for file in [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE] {
            let path = dir.join(file);
            ensure!(
                path.is_file(),
                "speech-to-text model file {} is missing (run dev/install-tools, or point \
                 WHISPER_MODEL_DIR at a directory with {WEIGHTS_FILE}, {CONFIG_FILE} and \
                 {TOKENIZER_FILE} of Whisper tiny.en in CTranslate2 format)",
                path.display()
            );
        }

        let config_path = dir.join(CONFIG_FILE);
        let ct2_config: Ct2Config = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {}", config_path.display()))?;

        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!("loading {}: {e}", tokenizer_path.display()))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let (tensors, config) = ct2::load(&weights, ct2_config.suppress_ids.clone())
            .with_context(|| format!("converting {}", weights_path.display()))?;
        drop(weights);
        ensure!(
            config.vocab_size == ENGLISH_ONLY_VOCAB,
            "{} is a multilingual Whisper ({} tokens); this transcriber runs English-only \
             (.en) models",
            weights_path.display(),
            config.vocab_size
        );
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let model = Whisper::load(&vb, config.clone())
            .with_context(|| format!("building Whisper from {}", weights_path.display()))?;

        let token = |text: &str| {
            tokenizer
                .token_to_id(text)
                .ok_or_else(|| anyhow!("{} has no {text} token", tokenizer_path.display()))
        };
        let sot = token("<|startoftranscript|>")?;
        let eot = token("<|endoftext|>")?;
        let no_timestamps = token("<|notimestamps|>")?;
        let no_speech = token("<|nospeech|>").or_else(|_| token("<|nocaptions|>"))?;
        // Everything after <|endoftext|> is a special or timestamp token, none of which may
        // appear in text decoded without timestamps.
        let mut suppress = vec![0f32; config.vocab_size];
        for id in ct2_config
            .suppress_ids
            .iter()
            .map(|&id| id as usize)
            .chain(eot as usize + 1..config.vocab_size)
        {
            if let Some(s) = suppress.get_mut(id) {
                *s = f32::NEG_INFINITY;
            }
        }
        let rules = Rules {
            prompt: vec![sot, no_timestamps],
            eot,
            no_speech,
            suppress,
            suppress_begin: ct2_config.suppress_ids_begin,
            max_tokens: config.max_target_positions / 2,
        };

        Ok(Self {
            inner: Arc::new(Inner {
                mel: MelSpectrogram::new(config.num_mel_bins),
                model,
                tokenizer,
                rules,
            }),
            permits: Arc::new(Semaphore::new(1)),
            max_concurrent: 1,
            max_duration: DEFAULT_MAX_DURATION,
        })
    }

    /// `$WHISPER_MODEL_DIR` if set, else `$RADIO24_CACHE/tools/models/whisper-tiny.en`
    /// (cache root defaulting to `$HOME/.cache/radio24`), where `dev/install-tools` puts it.
    pub fn default_dir() -> PathBuf {
        shared::config::model_dir("WHISPER_MODEL_DIR", MODEL_DIR_NAME)
    }

    /// Allows `n` (at least 1) transcriptions at once through this instance and its clones.
    #[must_use]
    pub fn with_max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self.permits = Arc::new(Semaphore::new(self.max_concurrent));
        self
    }

    /// Refuses audio longer than `max` (default [`DEFAULT_MAX_DURATION`], 10 minutes).
    #[must_use]
    pub fn with_max_duration(mut self, max: Duration) -> Self {
        self.max_duration = max;
        self
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The synchronous core of [`Transcriber::transcribe`], for callers already on a
    /// blocking thread (benchmarks, batch jobs). CPU-bound, and not counted against
    /// [`Self::max_concurrent`]: never call it on an async worker thread.
    pub fn transcribe_blocking(&self, audio: &[u8]) -> Result<Transcript, ProviderError> {
        self.inner.transcribe(audio, self.max_duration)
    }

    /// Transcribes 16 kHz mono samples, skipping the decoding of a container.
    pub fn transcribe_samples_blocking(
        &self,
        samples: &[f32],
    ) -> Result<Transcript, ProviderError> {
        self.inner.transcribe_samples(samples)
    }
}

#[async_trait]
impl Transcriber for LocalWhisper {
    fn name(&self) -> &str {
        NAME
    }

    /// The format is recognised from the bytes; `mime` and `file_name` are not needed.
    async fn transcribe(
        &self,
        audio: Bytes,
        _mime: &str,
        _file_name: &str,
    ) -> Result<Transcript, ProviderError> {
        if audio.is_empty() {
            return Err(permanent("the audio is empty".into()));
        }
        // Owned, so a caller that gives up does not free the slot while the blocking work
        // it started still runs.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| transient("the transcriber is shutting down".into()))?;
        let inner = Arc::clone(&self.inner);
        let max_duration = self.max_duration;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.transcribe(&audio, max_duration)
        })
        .await
        .map_err(|e| {
            if e.is_cancelled() {
                // The runtime is shutting down; another instance can do the work.
                transient("transcription task cancelled".into())
            } else {
                // A panic in inference is a bug that the same input would hit again.
                permanent(format!("transcription panicked: {e}"))
            }
        })?
    }
}

impl Inner {
    fn transcribe(
        &self,
        audio: &[u8],
        max_duration: Duration,
    ) -> Result<Transcript, ProviderError> {
        if audio.is_empty() {
            return Err(permanent("the audio is empty".into()));
        }
        let decoded = decode::decode(audio, max_duration).map_err(|e| permanent(e.to_string()))?;
        self.transcribe_samples(&decoded.samples)
    }

    fn transcribe_samples(&self, samples: &[f32]) -> Result<Transcript, ProviderError> {
        let mel = self.mel.compute(samples);
        let mut model = self.model.clone();
        let mut texts = Vec::new();
        for (start, len) in windows(samples) {
            let window = &samples[start * HOP..((start + len) * HOP).min(samples.len())];
            if window.iter().all(|s| s.abs() < SILENCE_PEAK) {
                continue;
            }
            let text = self
                .transcribe_window(&mut model, &mel, start, len)
                .map_err(|e| permanent(format!("inference: {e}")))?;
            if !text.is_empty() {
                texts.push(text);
            }
        }
        Ok(Transcript {
            text: texts.join(" "),
            // English-only model; named as OpenAI's whisper-1 names it.
            language: Some("english".to_owned()),
            duration: Some(Duration::from_secs_f64(
                samples.len() as f64 / mel::SAMPLE_RATE as f64,
            )),
        })
    }

    /// The text of frames `start..start + len`, or nothing when the model thinks the window
    /// holds no speech.
    fn transcribe_window(
        &self,
        model: &mut Whisper,
        mel: &LogMel,
        start: usize,
        len: usize,
    ) -> anyhow::Result<String> {
        let input = Tensor::from_vec(
            mel.window(start, len),
            (1, mel.mels, WINDOW_FRAMES),
            &Device::Cpu,
        )?;
        let segment = decoder::greedy(model, &input, &self.rules)?;
        if segment.no_speech_prob > NO_SPEECH_THRESHOLD && segment.avg_logprob < LOGPROB_THRESHOLD {
            return Ok(String::new());
        }
        let text = self
            .tokenizer
            .decode(&segment.tokens, true)
            .map_err(|e| anyhow!("detokenizing: {e}"))?;
        Ok(text.trim().to_owned())
    }
}

/// The model windows covering `samples`, as (first frame, frame count): whole 30 s windows,
/// each ending at the quietest moment of its last 5 s, then the rest.
fn windows(samples: &[f32]) -> Vec<(usize, usize)> {
    let content = samples.len() / HOP;
    let mut out = Vec::new();
    let mut start = 0;
    while start < content {
        let remaining = content - start;
        if remaining <= WINDOW_FRAMES {
            out.push((start, remaining));
            break;
        }
        let earliest = start + WINDOW_FRAMES - CUT_SEARCH_FRAMES;
        let energy = |block: usize| -> f32 {
            let from = block * HOP;
            samples[from..from + CUT_BLOCK_FRAMES * HOP]
                .iter()
                .map(|s| s * s)
                .sum()
        };
        // Blocks that end by the 30 s mark; the cut goes at the end of the quietest.
        let cut = (earliest..=start + WINDOW_FRAMES - CUT_BLOCK_FRAMES)
            .step_by(CUT_BLOCK_FRAMES)
            .min_by(|&a, &b| energy(a).total_cmp(&energy(b)))
            .map_or(start + WINDOW_FRAMES, |block| block + CUT_BLOCK_FRAMES);
        out.push((start, cut - start));
        start = cut;
    }
    out
}

fn permanent(reason: String) -> ProviderError {
    ProviderError::permanent(NAME, reason)
}

fn transient(reason: String) -> ProviderError {
    ProviderError::transient(NAME, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_dir_names_the_install_step() {
        let err = LocalWhisper::load(Path::new("no-such-model-dir")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dev/install-tools"), "{msg}");
        assert!(msg.contains("no-such-model-dir"), "{msg}");
    }

    #[test]
    fn short_audio_is_one_window() {
        let samples = vec![0.1f32; 16_000 * 12];
        assert_eq!(windows(&samples), vec![(0, 1_200)]);
        assert!(windows(&[]).is_empty());
    }

    #[test]
    fn long_audio_is_cut_at_a_quiet_moment_before_each_30_s_mark() {
        // 70 s of noise-like signal with a silent gap at 27.0 to 27.3 s.
        let mut samples: Vec<f32> = (0..16_000u64 * 70)
            .map(|i| ((i * 7_919) % 1_000) as f32 / 1_000.0 - 0.5)
            .collect();
        samples[27 * 16_000..27 * 16_000 + 4_800].fill(0.0);
        let w = windows(&samples);
        assert_eq!(w[0], (0, 2_710), "{w:?}");
        // Windows tile the audio without gaps and never exceed 30 s.
        let mut next = 0;
        for &(start, len) in &w {
            assert_eq!(start, next);
            assert!(len <= WINDOW_FRAMES);
            next = start + len;
        }
        assert_eq!(next, samples.len() / HOP);
    }
}
