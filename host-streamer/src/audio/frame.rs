//! One 20 ms frame of 48 kHz stereo audio.

use std::time::Duration;

pub const SAMPLE_RATE: u32 = 48_000;
pub const CHANNELS: usize = 2;
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Sample pairs per frame.
pub const FRAME_LEN: usize = (SAMPLE_RATE as usize / 1000) * 20;
/// Interleaved samples per frame.
pub const FRAME_SAMPLES: usize = FRAME_LEN * CHANNELS;

/// How many whole frames `d` lasts, at least one.
pub fn frames_in(d: Duration) -> u32 {
    let frames = d.as_micros() / FRAME_DURATION.as_micros();
    u32::try_from(frames).unwrap_or(u32::MAX).max(1)
}

/// Interleaved stereo samples in -1..=1.
#[derive(Clone, PartialEq)]
pub struct Frame {
    pub samples: Box<[f32; FRAME_SAMPLES]>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:.1} dBFS)", self.rms_dbfs())
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::silent()
    }
}

impl Frame {
    pub fn silent() -> Self {
        Frame {
            samples: Box::new([0.0; FRAME_SAMPLES]),
        }
    }

    pub fn clear(&mut self) {
        self.samples.fill(0.0);
    }

    /// Root mean square level in dBFS (a full-scale sine is about -3 dBFS); digital silence
    /// is `-inf`.
    pub fn rms_dbfs(&self) -> f32 {
        let sum: f32 = self.samples.iter().map(|s| s * s).sum();
        let rms = (sum / FRAME_SAMPLES as f32).sqrt();
        20.0 * rms.log10()
    }
}
