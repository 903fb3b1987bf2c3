//! A generated bed: a soft chord that breathes slowly. It needs no file, no network and no
//! decoder, so it is always ready: the station's last resort, and the bed of the embedded
//! default when no music library is configured.

use std::f32::consts::TAU;

use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};
use super::source::{Pull, Source};

pub struct Pad {
    name: String,
    /// Partials as rotating phasors: position (cos, sin) and the rotation per sample.
    /// A complex multiply per sample instead of a `sin()`: the pad runs all day.
    partials: Vec<Phasor>,
    level: f32,
    /// Slow swell, one cycle every 8 s, updated once a frame.
    swell: f32,
    swell_phase: f32,
}

impl Pad {
    /// `root` Hz with a minor third and a fifth above, at `level` (linear peak).
    pub fn new(name: impl Into<String>, root: f32, level: f32) -> Self {
        let partials = [1.0, 1.189_207, 1.498_307, 2.0]
            .iter()
            .map(|r| Phasor::new(root * r))
            .collect();
        Pad {
            name: name.into(),
            partials,
            level,
            swell: 0.0,
            swell_phase: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Phasor {
    re: f32,
    im: f32,
    step_re: f32,
    step_im: f32,
}

impl Phasor {
    fn new(hz: f32) -> Self {
        let w = TAU * hz / SAMPLE_RATE as f32;
        Phasor {
            re: 1.0,
            im: 0.0,
            step_re: w.cos(),
            step_im: w.sin(),
        }
    }

    /// The sine of the current phase, then one sample on.
    fn next(&mut self) -> f32 {
        let out = self.im;
        let re = self.re * self.step_re - self.im * self.step_im;
        self.im = self.re * self.step_im + self.im * self.step_re;
        self.re = re;
        out
    }

    fn renormalise(&mut self) {
        let norm = (self.re * self.re + self.im * self.im).sqrt();
        self.re /= norm;
        self.im /= norm;
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
        self.swell_phase = (self.swell_phase + TAU * 0.02 / 8.0) % TAU;
        self.swell = self.swell_phase.sin();
        for pair in frame.samples.chunks_exact_mut(CHANNELS).take(FRAME_LEN) {
            let s: f32 = self.partials.iter_mut().map(Phasor::next).sum();
            // Swell between 60% and 100% of the level.
            let swell = 0.8 + 0.2 * self.swell;
            pair.fill(s * scale * swell);
        }
        // Rounding would slowly change the phasors' length; put it back once a frame.
        for p in &mut self.partials {
            p.renormalise();
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
