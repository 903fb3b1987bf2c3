//! A generated bed: a soft chord that breathes slowly. It needs no file, no network and no
//! decoder, so it is always ready: the station's last resort, and the bed of the embedded
//! default when no music library is configured.

use std::f32::consts::TAU;

use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};
use super::source::{Pull, Source};

pub struct Pad {
    name: String,
    /// Partials: frequency (Hz) and phase.
    partials: Vec<(f32, f32)>,
    level: f32,
    /// Slow swell, one cycle every `swell_seconds`.
    swell_phase: f32,
    swell_step: f32,
}

impl Pad {
    /// `root` Hz with a minor third and a fifth above, at `level` (linear peak).
    pub fn new(name: impl Into<String>, root: f32, level: f32) -> Self {
        let partials = [1.0, 1.189_207, 1.498_307, 2.0]
            .iter()
            .map(|r| (root * r, 0.0))
            .collect();
        Pad {
            name: name.into(),
            partials,
            level,
            swell_phase: 0.0,
            swell_step: TAU / (8.0 * SAMPLE_RATE as f32),
        }
    }
}

impl Source for Pad {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        let scale = self.level / self.partials.len() as f32;
        for pair in frame.samples.chunks_exact_mut(CHANNELS).take(FRAME_LEN) {
            let mut s = 0.0;
            for (hz, phase) in &mut self.partials {
                s += phase.sin();
                *phase = (*phase + TAU * *hz / SAMPLE_RATE as f32) % TAU;
            }
            // Swell between 60% and 100% of the level.
            let swell = 0.8 + 0.2 * self.swell_phase.sin();
            self.swell_phase = (self.swell_phase + self.swell_step) % TAU;
            pair.fill(s * scale * swell);
        }
        Pull::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pad_is_always_audible_and_never_clips() {
        let mut pad = Pad::new("bed", 110.0, 0.3);
        let mut frame = Frame::silent();
        for _ in 0..50 * 20 {
            assert_eq!(pad.fill(&mut frame), Pull::Audio);
            assert!(frame.rms_dbfs() > -40.0, "{frame:?}");
            assert!(frame.samples.iter().all(|s| s.abs() <= 0.3));
        }
    }
}
