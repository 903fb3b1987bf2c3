//! Whisper's input features: the 80-bin log-mel spectrogram of 16 kHz audio, computed as
//! OpenAI's `whisper.audio.log_mel_spectrogram` does (periodic Hann window of 400 samples,
//! hop 160, reflect-padded centred frames, Slaney-scale mel filters with Slaney area
//! normalisation, log10 clamped to 8 below the maximum, then scaled to about [-1, 1]).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub(super) const SAMPLE_RATE: usize = 16_000;
pub(super) const N_FFT: usize = 400;
pub(super) const HOP: usize = 160;
/// Frequency bins of one frame's spectrum.
const N_BINS: usize = N_FFT / 2 + 1;
/// One model window: 30 s of frames.
pub(super) const WINDOW_FRAMES: usize = 3_000;
pub(super) const WINDOW_SAMPLES: usize = WINDOW_FRAMES * HOP;

/// A log-mel spectrogram stored mel-band-major: band `m` is `values[m * frames..][..frames]`.
pub(super) struct LogMel {
    pub values: Vec<f32>,
    pub mels: usize,
    /// Frames including the 30 s of padding after the audio.
    pub frames: usize,
}

impl LogMel {
    /// `len` frames from `start` (at most [`WINDOW_FRAMES`]), band-major and filled up to
    /// `WINDOW_FRAMES` with zeros, ready to be a `(1, mels, 3000)` tensor. Zero-filling is
    /// what OpenAI's `transcribe` does for a window shorter than 30 s.
    pub(super) fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.mels * WINDOW_FRAMES];
        let end = start
            .saturating_add(len.min(WINDOW_FRAMES))
            .min(self.frames);
        let start = start.min(end);
        for (m, row) in out.chunks_exact_mut(WINDOW_FRAMES).enumerate() {
            let band = &self.values[m * self.frames..(m + 1) * self.frames];
            row[..end - start].copy_from_slice(&band[start..end]);
        }
        out
    }
}

/// Computes the spectrogram with precomputed filters and FFT plan.
pub(super) struct MelSpectrogram {
    /// `mels` rows of `N_BINS` weights.
    filters: Vec<f32>,
    mels: usize,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl MelSpectrogram {
    pub(super) fn new(mels: usize) -> Self {
        // torch.hann_window(400) is periodic: the denominator is N, not N - 1.
        let window = (0..N_FFT)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        Self {
            filters: slaney_mel_filters(mels),
            mels,
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    /// The spectrogram of `samples` followed by 30 s of silence, as OpenAI computes it (the
    /// padding shapes the last frames and the maximum the range is clamped against).
    pub(super) fn compute(&self, samples: &[f32]) -> LogMel {
        let mut padded = Vec::with_capacity(samples.len() + WINDOW_SAMPLES);
        padded.extend_from_slice(samples);
        padded.resize(samples.len() + WINDOW_SAMPLES, 0.0);
        // torch.stft(center=True) yields 1 + len / hop frames; OpenAI drops the last one.
        let frames = padded.len() / HOP;
        let half = (N_FFT / 2) as isize;
        let last = padded.len() as isize - 1;
        // Centred frames reach half a window before the start and past the end: reflect.
        let sample_at = |i: isize| {
            let reflected = if i < 0 {
                -i
            } else if i > last {
                2 * last - i
            } else {
                i
            };
            padded[reflected as usize]
        };

        let mut values = vec![0f32; self.mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = [0f32; N_BINS];
        for f in 0..frames {
            let start = (f * HOP) as isize - half;
            for (k, slot) in input.iter_mut().enumerate() {
                *slot = sample_at(start + k as isize) * self.window[k];
            }
            if input.iter().all(|&x| x == 0.0) {
                power.fill(0.0);
            } else {
                self.fft
                    .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                    .expect("buffers come from the plan");
                for (p, c) in power.iter_mut().zip(&spectrum) {
                    *p = c.norm_sqr();
                }
            }
            for m in 0..self.mels {
                let weights = &self.filters[m * N_BINS..(m + 1) * N_BINS];
                let energy: f32 = weights.iter().zip(&power).map(|(w, p)| w * p).sum();
                values[m * frames + f] = energy.max(1e-10).log10();
            }
        }
        // Dynamic range of 80 dB below the loudest point, then roughly unit scale.
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut values {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        LogMel {
            values,
            mels: self.mels,
            frames,
        }
    }
}

/// librosa's `filters.mel(sr=16000, n_fft=400, n_mels, htk=False, norm="slaney")`:
/// triangles equally spaced on the Slaney mel scale (linear below 1 kHz, logarithmic
/// above) from 0 Hz to Nyquist, each scaled to unit area (2 / bandwidth).
fn slaney_mel_filters(mels: usize) -> Vec<f32> {
    let top = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
    let edges: Vec<f64> = (0..mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (mels + 1) as f64))
        .collect();
    let mut filters = Vec::with_capacity(mels * N_BINS);
    for m in 0..mels {
        let (lo, centre, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (hi - lo);
        filters.extend((0..N_BINS).map(|k| {
            let hz = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            let rising = (hz - lo) / (centre - lo);
            let falling = (hi - hz) / (hi - centre);
            (rising.min(falling).max(0.0) * norm) as f32
        }));
    }
    filters
}

/// Slaney's mel scale: 3 mels per 200 Hz up to 1 kHz, then 27 mels per factor 6.4.
const LINEAR_HZ_PER_MEL: f64 = 200.0 / 3.0;
const BREAK_HZ: f64 = 1_000.0;
const BREAK_MEL: f64 = BREAK_HZ / LINEAR_HZ_PER_MEL;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz < BREAK_HZ {
        hz / LINEAR_HZ_PER_MEL
    } else {
        BREAK_MEL + (hz / BREAK_HZ).ln() / log_step()
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < BREAK_MEL {
        mel * LINEAR_HZ_PER_MEL
    } else {
        BREAK_HZ * ((mel - BREAK_MEL) * log_step()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_breaks_at_1_khz() {
        assert!((hz_to_mel(1_000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(6_400.0) - 42.0).abs() < 1e-9);
        for hz in [0.0, 300.0, 999.0, 1_000.0, 4_000.0, 8_000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
    }

    #[test]
    fn filters_match_librosa_values() {
        let f = slaney_mel_filters(80);
        // The first triangle spans 0 to 74.48 Hz with its apex at 37.24 Hz; bin 1 (40 Hz)
        // is on its falling side at 0.926 of the apex height 2 / 74.48 Hz.
        let first = &f[..N_BINS];
        assert!(first[0] == 0.0 && first[1] > 0.0 && first[2] == 0.0);
        assert!((first[1] - 0.024_862_6).abs() < 1e-4, "{}", first[1]);
        // Each filter covers a single contiguous run of bins.
        for m in 0..80 {
            let row = &f[m * N_BINS..(m + 1) * N_BINS];
            let nonzero: Vec<usize> = (0..N_BINS).filter(|&k| row[k] > 0.0).collect();
            assert!(!nonzero.is_empty(), "filter {m} is empty");
            assert_eq!(nonzero.last().unwrap() - nonzero[0] + 1, nonzero.len());
        }
    }

    #[test]
    fn a_tone_lights_up_the_band_it_is_in() {
        let spec = MelSpectrogram::new(80);
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| (2.0 * std::f32::consts::PI * 1_000.0 * i as f32 / SAMPLE_RATE as f32).sin())
            .collect();
        let mel = spec.compute(&tone);
        assert_eq!(mel.frames, (SAMPLE_RATE + WINDOW_SAMPLES) / HOP);
        let frame = 50;
        let loudest = (0..80)
            .max_by(|&a, &b| {
                mel.values[a * mel.frames + frame].total_cmp(&mel.values[b * mel.frames + frame])
            })
            .unwrap();
        // 1 kHz is mel 15, which is band 15 x 81 / mel(8 kHz) of 80, i.e. about 27.
        let expected = (15.0 * 81.0 / hz_to_mel(8_000.0)).round() as usize - 1;
        assert!(
            loudest.abs_diff(expected) <= 1,
            "loudest {loudest}, expected {expected}"
        );
        // The padding is silence: at the floor, 8 below the maximum.
        let max = mel.values.iter().copied().fold(f32::MIN, f32::max);
        let floor = mel.values[mel.frames - 1];
        assert!((max - floor - 2.0).abs() < 1e-5, "max {max}, floor {floor}");
        let window = mel.window(10, 5);
        assert_eq!(window.len(), 80 * WINDOW_FRAMES);
        assert_eq!(window[27 * WINDOW_FRAMES], mel.values[27 * mel.frames + 10]);
        assert_eq!(window[27 * WINDOW_FRAMES + 5], 0.0);
    }
}
