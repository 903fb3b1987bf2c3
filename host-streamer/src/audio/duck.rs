//! Speech over a bed: the bed plays at full level alone and is lowered ("ducked") while
//! speech plays, with gain ramps on both edges so neither step clicks or pumps.

use std::time::Duration;

use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};
use super::source::{Pull, Source};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DuckingConfig {
    /// Bed level while speech plays, in dB (negative).
    pub depth_db: f32,
    /// Time to go down to `depth_db` once speech starts.
    pub attack: Duration,
    /// Time to come back to full level once speech ends.
    pub release: Duration,
}

impl Default for DuckingConfig {
    fn default() -> Self {
        DuckingConfig {
            depth_db: -12.0,
            attack: Duration::from_millis(100),
            release: Duration::from_millis(600),
        }
    }
}

/// Speech (a fallback of DJ voice, caller clips, jingles) mixed over a bed.
pub struct Ducking {
    speech: Box<dyn Source>,
    bed: Box<dyn Source>,
    ducked_gain: f32,
    /// Gain change per sample going down and up.
    attack_step: f32,
    release_step: f32,
    gain: f32,
    scratch: Frame,
}

impl Ducking {
    pub fn new(speech: Box<dyn Source>, bed: Box<dyn Source>, config: DuckingConfig) -> Self {
        let ducked_gain = 10f32.powf(config.depth_db / 20.0);
        let per_sample = |d: Duration| {
            let samples = (d.as_secs_f32() * SAMPLE_RATE as f32).max(1.0);
            (1.0 - ducked_gain) / samples
        };
        Ducking {
            speech,
            bed,
            ducked_gain,
            attack_step: per_sample(config.attack),
            release_step: per_sample(config.release),
            gain: 1.0,
            scratch: Frame::silent(),
        }
    }
}

impl Source for Ducking {
    fn name(&self) -> &str {
        "ducking"
    }

    fn is_ready(&self) -> bool {
        self.speech.is_ready() || self.bed.is_ready()
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        frame.clear();
        let speaking = self.speech.is_ready() && self.speech.fill(frame) == Pull::Audio;
        self.scratch.clear();
        let bed = self.bed.is_ready() && self.bed.fill(&mut self.scratch) == Pull::Audio;
        if !speaking && !bed {
            return Pull::Unavailable;
        }
        let (target, step) = if speaking {
            (self.ducked_gain, -self.attack_step)
        } else {
            (1.0, self.release_step)
        };
        for (out, inp) in frame
            .samples
            .chunks_exact_mut(CHANNELS)
            .zip(self.scratch.samples.chunks_exact(CHANNELS))
            .take(FRAME_LEN)
        {
            self.gain = if step < 0.0 {
                (self.gain + step).max(target)
            } else {
                (self.gain + step).min(target)
            };
            for (o, i) in out.iter_mut().zip(inp) {
                *o += i * self.gain;
            }
        }
        Pull::Audio
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::audio::source::Tone;

    /// Speech that is present (silent, so the output is the bed alone) when switched on.
    struct Speech(Arc<AtomicBool>);

    impl Source for Speech {
        fn name(&self) -> &str {
            "speech"
        }

        fn is_ready(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }

        fn fill(&mut self, _frame: &mut Frame) -> Pull {
            Pull::Audio
        }
    }

    fn level(d: &mut Ducking, frames: usize) -> (f32, f32) {
        let mut frame = Frame::silent();
        let mut largest_step = 0f32;
        let mut previous: Option<f32> = None;
        for _ in 0..frames {
            assert_eq!(d.fill(&mut frame), Pull::Audio);
            for s in frame.samples.iter().step_by(CHANNELS) {
                if let Some(p) = previous {
                    largest_step = largest_step.max((s - p).abs());
                }
                previous = Some(*s);
            }
        }
        (frame.rms_dbfs(), largest_step)
    }

    #[test]
    fn the_bed_ducks_under_speech_and_comes_back_without_clicks() {
        let on = Arc::new(AtomicBool::new(false));
        let config = DuckingConfig::default();
        let mut d = Ducking::new(
            Box::new(Speech(on.clone())),
            Box::new(Tone::new("bed", 200.0, 0.5)),
            config,
        );
        let (full, _) = level(&mut d, 10);
        on.store(true, Ordering::Relaxed);
        // 100 ms attack = 5 frames; measure after 10.
        let (ducked, step_down) = level(&mut d, 10);
        assert!(
            (ducked - (full + config.depth_db)).abs() < 0.2,
            "full {full} dBFS, ducked {ducked} dBFS"
        );
        on.store(false, Ordering::Relaxed);
        // 600 ms release = 30 frames; half-way the bed is between the two levels.
        let (half_way, _) = level(&mut d, 15);
        assert!(
            ducked < half_way && half_way < full,
            "{ducked} {half_way} {full}"
        );
        let (back, step_up) = level(&mut d, 20);
        assert!((back - full).abs() < 0.05, "{back} vs {full}");
        // A 200 Hz tone at 0.5 moves at most about 0.013 per sample; a gain jump would
        // show up as a larger step.
        let tone_step = 0.5 * (std::f32::consts::TAU * 200.0 / SAMPLE_RATE as f32);
        assert!(step_down < tone_step * 1.05, "{step_down}");
        assert!(step_up < tone_step * 1.05, "{step_up}");
    }

    #[test]
    fn speech_alone_plays_and_nothing_is_unavailable() {
        let on = Arc::new(AtomicBool::new(true));
        let off = Arc::new(AtomicBool::new(false));
        let mut speech_only = Ducking::new(
            Box::new(Speech(on)),
            Box::new(Speech(off.clone())),
            DuckingConfig::default(),
        );
        let mut frame = Frame::silent();
        assert_eq!(speech_only.fill(&mut frame), Pull::Audio);
        let mut nothing = Ducking::new(
            Box::new(Speech(off.clone())),
            Box::new(Speech(off)),
            DuckingConfig::default(),
        );
        assert!(!nothing.is_ready());
        assert_eq!(nothing.fill(&mut frame), Pull::Unavailable);
    }
}
