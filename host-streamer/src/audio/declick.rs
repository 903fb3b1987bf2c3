//! Source switches without clicks. When the output moves from one source to another, the
//! new source's first samples are blended from the old source's last sample value over a
//! few milliseconds, so the waveform never jumps (a jump is heard as a click). The old
//! source may be gone (that is often why we switch), so its last value is all there is.

use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};

/// 5 ms: long enough to remove the step, short enough to keep the new source's attack.
const RAMP: usize = SAMPLE_RATE as usize / 200;

#[derive(Debug, Default, Clone)]
pub struct Declick {
    last: [f32; CHANNELS],
}

impl Declick {
    /// Call for every frame that goes out; `switched` when it comes from another source
    /// than the frame before.
    pub fn apply(&mut self, frame: &mut Frame, switched: bool) {
        if switched {
            for (n, pair) in frame
                .samples
                .chunks_exact_mut(CHANNELS)
                .take(RAMP.min(FRAME_LEN))
                .enumerate()
            {
                let r = (n + 1) as f32 / RAMP as f32;
                for (s, last) in pair.iter_mut().zip(self.last) {
                    *s = *s * r + last * (1.0 - r);
                }
            }
        }
        self.last
            .copy_from_slice(&frame.samples[FRAME_LEN * CHANNELS - CHANNELS..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_between_sources_becomes_a_ramp() {
        let mut d = Declick::default();
        let mut high = Frame::silent();
        high.samples.fill(0.8);
        d.apply(&mut high, false);
        let mut low = Frame::silent();
        low.samples.fill(-0.8);
        d.apply(&mut low, true);
        let left: Vec<f32> = low.samples.iter().step_by(CHANNELS).copied().collect();
        let largest_step = std::iter::once(0.8)
            .chain(left.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0f32, f32::max);
        assert!(largest_step <= 1.6 / RAMP as f32 + 1e-4, "{largest_step}");
        assert_eq!(
            left[RAMP], -0.8,
            "after the ramp the new source is untouched"
        );
        // Without a switch nothing is changed.
        let mut again = low.clone();
        d.apply(&mut again, false);
        assert_eq!(again, low);
    }
}
