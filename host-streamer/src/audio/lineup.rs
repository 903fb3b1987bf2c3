//! The line-up tone: a known signal for checking the whole chain end to end, from the engine
//! to a listener's ears (broadcast engineers line up a circuit with a tone before the show).
//!
//! A sine at -18 dBFS (the EBU alignment level) that alternates between 1 kHz on even UTC
//! seconds and 500 Hz on odd ones, switching on the exact sample where the second turns at
//! the engine's output. Whoever hears it can tell both that the pitch is right and, from
//! when each switch reaches them, how late the chain delivers: the end-to-end latency.

use std::f32::consts::TAU;
use std::time::{SystemTime, UNIX_EPOCH};

use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};
use super::source::{Pull, Source};

/// On even UTC seconds.
pub const EVEN_HZ: f32 = 1000.0;
/// On odd UTC seconds.
pub const ODD_HZ: f32 = 500.0;
/// -18 dBFS.
const AMPLITUDE: f32 = 0.125_89;

/// Reads the wall clock for each frame (the air thread releases a frame as soon as it is
/// filled, so the fill time is the time it goes on air).
pub struct LineUp {
    phase: f32,
    clock: fn() -> SystemTime,
}

impl LineUp {
    pub fn new() -> Self {
        LineUp::with_clock(SystemTime::now)
    }

    pub fn with_clock(clock: fn() -> SystemTime) -> Self {
        LineUp { phase: 0.0, clock }
    }

    /// The frequency at `micros` since the Unix epoch.
    pub fn frequency_at(micros: u128) -> f32 {
        if (micros / 1_000_000).is_multiple_of(2) {
            EVEN_HZ
        } else {
            ODD_HZ
        }
    }
}

impl Default for LineUp {
    fn default() -> Self {
        LineUp::new()
    }
}

impl Source for LineUp {
    fn name(&self) -> &str {
        "line-up tone"
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        let start = (self.clock)()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        for (i, pair) in frame
            .samples
            .chunks_exact_mut(CHANNELS)
            .take(FRAME_LEN)
            .enumerate()
        {
            let at = start + (i as u128 * 1_000_000) / u128::from(SAMPLE_RATE);
            let step = TAU * LineUp::frequency_at(at) / SAMPLE_RATE as f32;
            pair.fill(AMPLITUDE * self.phase.sin());
            // Phase-continuous: the switch changes the pitch, not the waveform's level.
            self.phase = (self.phase + step) % TAU;
        }
        Pull::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn just_before_an_odd_second() -> SystemTime {
        // 10 ms before second 1_700_000_001 turns.
        UNIX_EPOCH + Duration::from_micros(1_700_000_000_990_000)
    }

    /// Zero crossings in a stretch of one channel, as a frequency.
    fn frequency(samples: &[f32]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 * SAMPLE_RATE as f32 / (2.0 * samples.len() as f32)
    }

    #[test]
    fn switches_pitch_on_the_second() {
        let mut tone = LineUp::with_clock(just_before_an_odd_second);
        let mut frame = Frame::silent();
        assert_eq!(tone.fill(&mut frame), Pull::Audio);
        let left: Vec<f32> = frame.samples.chunks_exact(CHANNELS).map(|p| p[0]).collect();
        // 10 ms of 1 kHz, then 10 ms of 500 Hz.
        let (even, odd) = left.split_at(480);
        assert!(
            (frequency(even) - EVEN_HZ).abs() < 60.0,
            "{}",
            frequency(even)
        );
        assert!((frequency(odd) - ODD_HZ).abs() < 60.0, "{}", frequency(odd));
        let peak = left.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((20.0 * peak.log10() + 18.0).abs() < 0.1, "peak {peak}");
        // No step at the switch: neighbouring samples stay within one 1 kHz step.
        let max_step = left
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0f32, f32::max);
        assert!(max_step <= AMPLITUDE * TAU * EVEN_HZ / SAMPLE_RATE as f32 + 1e-4);
    }
}
