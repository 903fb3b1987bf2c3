//! Loudness normalisation of the program to a target (LUFS), so a quiet caller, a hot
//! jingle and the DJ arrive at one level. Loudness is measured as ITU-R BS.1770 does
//! (K-weighting, mean square over both channels) on a 3 s sliding window ("short-term
//! loudness"); the gain moves slowly towards target minus measured, never faster than
//! `max_slew` per second, so speech is levelled without pumping. Below a gate (-50 LUFS)
//! the gain holds: silence is never boosted into noise, and the silence watchdog downstream
//! still hears silence as silence. A peak limiter keeps every sample under the ceiling.

use std::collections::VecDeque;
use std::time::Duration;

use super::frame::{CHANNELS, FRAME_LEN, Frame, frames_in};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessConfig {
    /// Target short-term loudness, LUFS. -16 is the usual target of streaming services.
    pub target_lufs: f32,
    /// Largest boost and cut, dB.
    pub max_gain_db: f32,
    /// How fast the gain may move, dB per second.
    pub max_slew_db_per_s: f32,
    /// Loudness below which the gain holds, LUFS.
    pub gate_lufs: f32,
    /// Sample ceiling, dBFS.
    pub ceiling_dbfs: f32,
}

impl Default for LoudnessConfig {
    fn default() -> Self {
        LoudnessConfig {
            target_lufs: -16.0,
            max_gain_db: 15.0,
            max_slew_db_per_s: 3.0,
            gate_lufs: -50.0,
            ceiling_dbfs: -1.0,
        }
    }
}

/// Short-term loudness window.
const WINDOW: Duration = Duration::from_secs(3);
/// How long the limiter takes to let go after a peak.
const LIMITER_RELEASE: Duration = Duration::from_millis(200);

/// A biquad section in transposed direct form II, one state per channel.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    state: [[f64; 2]; CHANNELS],
}

impl Biquad {
    const fn new(b: [f64; 3], a: [f64; 2]) -> Self {
        Biquad {
            b,
            a,
            state: [[0.0; 2]; CHANNELS],
        }
    }

    fn run(&mut self, channel: usize, x: f64) -> f64 {
        let s = &mut self.state[channel];
        let y = self.b[0] * x + s[0];
        s[0] = self.b[1] * x - self.a[0] * y + s[1];
        s[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// BS.1770 K-weighting at 48 kHz: a high shelf (the head) then a high-pass (RLB).
fn k_weighting() -> [Biquad; 2] {
    [
        Biquad::new(
            [
                1.535_124_859_586_97,
                -2.691_696_189_406_38,
                1.198_392_810_852_85,
            ],
            [-1.690_659_293_182_41, 0.732_480_774_215_85],
        ),
        Biquad::new(
            [1.0, -2.0, 1.0],
            [-1.990_047_454_833_98, 0.990_072_250_366_21],
        ),
    ]
}

pub struct Normalizer {
    config: LoudnessConfig,
    filters: [Biquad; 2],
    /// K-weighted mean square of each frame in the window, and their sum.
    window: VecDeque<f64>,
    window_frames: usize,
    window_sum: f64,
    /// Current gain, dB.
    gain_db: f32,
    /// Limiter gain (linear, <= 1) and its recovery per sample.
    limiter: f32,
    limiter_release: f32,
    ceiling: f32,
}

impl Normalizer {
    pub fn new(config: LoudnessConfig) -> Self {
        let release_samples = frames_in(LIMITER_RELEASE) as f32 * FRAME_LEN as f32;
        Normalizer {
            config,
            filters: k_weighting(),
            window: VecDeque::new(),
            window_frames: frames_in(WINDOW) as usize,
            window_sum: 0.0,
            gain_db: 0.0,
            limiter: 1.0,
            limiter_release: 1.0 / release_samples,
            ceiling: 10f32.powf(config.ceiling_dbfs / 20.0),
        }
    }

    /// Short-term loudness of the input, LUFS (`-inf` for silence).
    pub fn loudness(&self) -> f32 {
        if self.window.is_empty() {
            return f32::NEG_INFINITY;
        }
        let mean_square = self.window_sum.max(0.0) / self.window.len() as f64;
        (-0.691 + 10.0 * mean_square.log10()) as f32
    }

    /// The gain applied now, dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// Measures `frame` and applies the gain and the limiter in place.
    pub fn process(&mut self, frame: &mut Frame) {
        self.measure(frame);
        let loudness = self.loudness();
        let from = self.gain_db;
        if loudness > self.config.gate_lufs {
            let wanted = (self.config.target_lufs - loudness)
                .clamp(-self.config.max_gain_db, self.config.max_gain_db);
            let step = self.config.max_slew_db_per_s * 0.02;
            self.gain_db = from + (wanted - from).clamp(-step, step);
        }
        // Ramp linearly across the frame from the last gain to the new one.
        let (g0, g1) = (db_to_gain(from), db_to_gain(self.gain_db));
        let per_sample = (g1 - g0) / FRAME_LEN as f32;
        for (n, pair) in frame.samples.chunks_exact_mut(CHANNELS).enumerate() {
            let gain = g0 + per_sample * (n + 1) as f32;
            let peak = pair.iter().fold(0f32, |m, s| m.max((s * gain).abs()));
            // Instant attack (no sample over the ceiling), slow release.
            let needed = if peak * self.limiter > self.ceiling {
                self.ceiling / peak
            } else {
                (self.limiter + self.limiter_release).min(1.0)
            };
            self.limiter = needed.min(1.0);
            for s in pair {
                *s *= gain * self.limiter;
            }
        }
    }

    fn measure(&mut self, frame: &Frame) {
        let mut sum = 0.0;
        for pair in frame.samples.chunks_exact(CHANNELS) {
            for (channel, &s) in pair.iter().enumerate() {
                let mut y = f64::from(s);
                for f in &mut self.filters {
                    y = f.run(channel, y);
                }
                sum += y * y;
            }
        }
        // BS.1770: the channels' mean squares add up.
        let mean_square = sum / FRAME_LEN as f64;
        self.window.push_back(mean_square);
        self.window_sum += mean_square;
        if self.window.len() > self.window_frames {
            self.window_sum -= self.window.pop_front().unwrap_or(0.0);
        }
    }
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Pull, Source, Tone};

    /// Runs `seconds` of a 1 kHz tone at `amplitude` through `n`; returns the output's
    /// last-second peak and its short-term loudness measured by a fresh meter.
    fn run(n: &mut Normalizer, amplitude: f32, seconds: u32) -> (f32, f32) {
        let mut tone = Tone::new("t", 1_000.0, amplitude);
        let mut meter = Normalizer::new(LoudnessConfig {
            max_gain_db: 0.0,
            ..LoudnessConfig::default()
        });
        let mut frame = Frame::silent();
        let mut peak = 0f32;
        for i in 0..seconds * 50 {
            assert_eq!(tone.fill(&mut frame), Pull::Audio);
            n.process(&mut frame);
            if i >= (seconds - 1) * 50 {
                peak = frame.samples.iter().fold(peak, |m, s| m.max(s.abs()));
            }
            meter.measure(&frame);
        }
        (peak, meter.loudness())
    }

    #[test]
    fn the_meter_reads_a_known_tone_as_bs1770_does() {
        // A 1 kHz sine at -20 dBFS peak in both channels reads about -20 LUFS (+3 dB for
        // two channels, -3 dB sine RMS, K-weighting ~0 dB at 1 kHz, -0.691).
        let mut n = Normalizer::new(LoudnessConfig::default());
        let mut tone = Tone::new("t", 1_000.0, 0.1);
        let mut frame = Frame::silent();
        for _ in 0..200 {
            tone.fill(&mut frame);
            n.measure(&frame);
        }
        assert!((n.loudness() - (-20.0)).abs() < 0.3, "{}", n.loudness());
    }

    #[test]
    fn quiet_and_loud_programs_both_reach_the_target() {
        for amplitude in [0.03, 0.1, 0.9] {
            let mut n = Normalizer::new(LoudnessConfig::default());
            let (peak, loudness) = run(&mut n, amplitude, 20);
            assert!(
                (loudness - (-16.0)).abs() < 1.0,
                "{amplitude}: {loudness} LUFS"
            );
            assert!(peak <= db_to_gain(-1.0) + 1e-4, "{amplitude}: peak {peak}");
        }
    }

    #[test]
    fn silence_is_not_boosted_and_the_gain_moves_slowly() {
        let mut n = Normalizer::new(LoudnessConfig::default());
        run(&mut n, 0.0005, 10); // About -63 LUFS: under the gate.
        assert_eq!(n.gain_db(), 0.0);
        // From 0 dB towards +10 dB at 3 dB/s: after one second, 3 dB.
        run(&mut n, 0.03, 1);
        assert!((n.gain_db() - 3.0).abs() < 0.1, "{}", n.gain_db());
    }

    #[test]
    fn a_sudden_peak_never_exceeds_the_ceiling() {
        let mut n = Normalizer::new(LoudnessConfig::default());
        run(&mut n, 0.03, 10); // Gain well up...
        let (peak, _) = run(&mut n, 1.0, 1); // ...then full scale arrives.
        assert!(peak <= db_to_gain(-1.0) + 1e-4, "{peak}");
    }
}
