//! Sample-rate conversion for mono streams arriving in chunks (voice at 24 kHz from
//! OpenAI, espeak-ng at 22.05 kHz, caller clips at whatever they were recorded at) into
//! the engine's 48 kHz. Polyphase windowed-sinc: the exact rational ratio, no drift, and
//! state kept across chunks so chunk boundaries are inaudible.

use std::f64::consts::PI;

/// Filter taps per polyphase branch: about 0.3 ms at 48 kHz of delay, aliasing below
/// -60 dB, 32 multiply-adds per output sample.
const TAPS: usize = 32;

#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Interpolation factor L and decimation factor M (to/from = L/M, reduced).
    up: usize,
    down: usize,
    /// `coefficients[phase * TAPS + t]`, each phase reversed so a dot product with the
    /// last TAPS input samples gives one output sample.
    coefficients: Vec<f32>,
    /// Pending input, starting with TAPS - 1 samples of history.
    input: Vec<f32>,
    /// Position of the next output sample, in 1/L input samples from `input[0]`.
    next: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        assert!(from > 0 && to > 0, "sample rates must be positive");
        let g = gcd(from as usize, to as usize);
        let (up, down) = (to as usize / g, from as usize / g);
        let n = TAPS * up;
        // Cut-off a little under the lower Nyquist frequency, in cycles per sample of the
        // L-times upsampled signal.
        let cutoff = 0.46 / up.max(down) as f64;
        let centre = (n - 1) as f64 / 2.0;
        let prototype: Vec<f64> = (0..n)
            .map(|j| {
                let x = j as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * PI * cutoff * x).sin() / (PI * x)
                };
                let w = 2.0 * PI * j as f64 / (n - 1) as f64;
                let blackman = 0.42 - 0.5 * w.cos() + 0.08 * (2.0 * w).cos();
                sinc * blackman
            })
            .collect();
        // Unity gain at DC for every phase.
        let mut coefficients = vec![0f32; n];
        for phase in 0..up {
            let taps: Vec<f64> = (0..TAPS).map(|k| prototype[phase + k * up]).collect();
            let sum: f64 = taps.iter().sum();
            for (k, h) in taps.iter().enumerate() {
                coefficients[phase * TAPS + (TAPS - 1 - k)] = (h / sum) as f32;
            }
        }
        Resampler {
            from,
            to,
            up,
            down,
            coefficients,
            input: vec![0.0; TAPS - 1],
            next: (TAPS - 1) * up,
        }
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Converts `chunk` and appends what can be computed so far to `out`.
    pub fn process(&mut self, chunk: &[f32], out: &mut Vec<f32>) {
        if self.up == self.down {
            out.extend_from_slice(chunk);
            return;
        }
        self.input.extend_from_slice(chunk);
        loop {
            let newest = self.next / self.up;
            if newest >= self.input.len() {
                break;
            }
            let phase = self.next % self.up;
            let taps = &self.coefficients[phase * TAPS..(phase + 1) * TAPS];
            let window = &self.input[newest + 1 - TAPS..=newest];
            out.push(taps.iter().zip(window).map(|(h, x)| h * x).sum());
            self.next += self.down;
        }
        // Keep only the history the next output needs.
        let drop = (self.next / self.up).saturating_sub(TAPS - 1);
        if drop > 0 {
            self.input.drain(..drop.min(self.input.len()));
            self.next -= drop * self.up;
        }
    }

    /// Pushes out what is still held in the filter (the end of an utterance).
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        self.process(&[0.0; TAPS], out);
        self.input.clear();
        self.input.resize(TAPS - 1, 0.0);
        self.next = (TAPS - 1) * self.up;
    }
}

/// 16-bit PCM to f32 in -1..1.
pub fn pcm16_to_f32(samples: &[i16], out: &mut Vec<f32>) {
    out.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|n| (std::f32::consts::TAU * hz * n as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn lengths_follow_the_exact_ratio_in_any_chunking() {
        for (from, to) in [
            (24_000, 48_000),
            (22_050, 48_000),
            (16_000, 48_000),
            (44_100, 48_000),
        ] {
            let input = sine(from, 440.0, 1.0);
            let mut whole = Vec::new();
            Resampler::new(from, to).process(&input, &mut whole);
            let mut chunked = Vec::new();
            let mut r = Resampler::new(from, to);
            for chunk in input.chunks(317) {
                r.process(chunk, &mut chunked);
            }
            assert_eq!(whole, chunked, "{from} -> {to}");
            let expected = input.len() * to as usize / from as usize;
            assert!(
                whole.len().abs_diff(expected) <= 1,
                "{from}: {} vs {expected}",
                whole.len()
            );
        }
    }

    #[test]
    fn a_tone_keeps_its_level_and_frequency() {
        let mut out = Vec::new();
        Resampler::new(24_000, 48_000).process(&sine(24_000, 1_000.0, 1.0), &mut out);
        let body = &out[1_000..47_000];
        assert!(
            (rms(body) - 0.5 / 2f32.sqrt()).abs() < 0.005,
            "{}",
            rms(body)
        );
        // Zero crossings of a 1 kHz tone: 2 per millisecond.
        let crossings = body
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((crossings as i64 - 958).abs() <= 2, "{crossings}");
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed_when_downsampling() {
        let mut out = Vec::new();
        Resampler::new(48_000, 16_000).process(&sine(48_000, 11_000.0, 0.5), &mut out);
        assert!(rms(&out[200..]) < 0.005, "{}", rms(&out[200..]));
    }
}
