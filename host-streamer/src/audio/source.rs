//! Sources of audio. A source may be unable to play (nothing queued, a decoder failed, a
//! socket dropped); [`Fallback`] plays the first that can, and a chain that ends in a
//! source that always can ([`Tone`], a local bed) can never fail.

use std::f32::consts::TAU;

use super::declick::Declick;
use super::frame::{CHANNELS, FRAME_LEN, Frame, SAMPLE_RATE};

/// What a source did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// The frame holds this source's next 20 ms.
    Audio,
    /// The source has nothing to play now; the frame is untouched.
    Unavailable,
}

pub trait Source: Send {
    /// For logs and metrics.
    fn name(&self) -> &str;

    /// Whether the next [`Source::fill`] would play. A fallback asks this before switching,
    /// so a source that is not ready is never started half-way.
    fn is_ready(&self) -> bool;

    /// Writes the next 20 ms into `frame`, or says it cannot.
    fn fill(&mut self, frame: &mut Frame) -> Pull;
}

/// A sine tone: the always-ready last resort, and a test signal.
pub struct Tone {
    name: String,
    frequency: f32,
    amplitude: f32,
    phase: f32,
}

impl Tone {
    pub fn new(name: impl Into<String>, frequency: f32, amplitude: f32) -> Self {
        Tone {
            name: name.into(),
            frequency,
            amplitude,
            phase: 0.0,
        }
    }
}

impl Source for Tone {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        let step = TAU * self.frequency / SAMPLE_RATE as f32;
        for pair in frame.samples.chunks_exact_mut(CHANNELS).take(FRAME_LEN) {
            let s = self.amplitude * self.phase.sin();
            pair.fill(s);
            self.phase = (self.phase + step) % TAU;
        }
        Pull::Audio
    }
}

/// Plays the first ready source in priority order. It stays with the source it plays until
/// that one stops delivering, then moves on, so a higher-priority source that becomes
/// ready takes over at the next frame (a caller clip interrupts a bed).
pub struct Fallback {
    name: String,
    sources: Vec<Box<dyn Source>>,
    current: Option<usize>,
    declick: Declick,
}

impl Fallback {
    pub fn new(name: impl Into<String>, sources: Vec<Box<dyn Source>>) -> Self {
        Fallback {
            name: name.into(),
            sources,
            current: None,
            declick: Declick::default(),
        }
    }

    /// The source that played the last frame.
    pub fn current(&self) -> Option<&str> {
        self.current.map(|i| self.sources[i].name())
    }
}

impl Source for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_ready(&self) -> bool {
        self.sources.iter().any(|s| s.is_ready())
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        for (i, source) in self.sources.iter_mut().enumerate() {
            if source.is_ready() && source.fill(frame) == Pull::Audio {
                let switched = self.current.is_some_and(|c| c != i);
                if self.current != Some(i) {
                    tracing::info!(fallback = %self.name, to = source.name(), "switching source");
                    self.current = Some(i);
                }
                self.declick.apply(frame, switched);
                return Pull::Audio;
            }
        }
        self.current = None;
        Pull::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A tone that can be switched off from the test.
    struct Switchable {
        tone: Tone,
        on: Arc<AtomicBool>,
    }

    impl Source for Switchable {
        fn name(&self) -> &str {
            self.tone.name()
        }

        fn is_ready(&self) -> bool {
            self.on.load(Ordering::Relaxed)
        }

        fn fill(&mut self, frame: &mut Frame) -> Pull {
            if self.is_ready() {
                self.tone.fill(frame)
            } else {
                Pull::Unavailable
            }
        }
    }

    #[test]
    fn fallback_plays_the_first_ready_source_and_returns_to_it() {
        let voice_on = Arc::new(AtomicBool::new(false));
        let voice = Switchable {
            tone: Tone::new("voice", 300.0, 0.5),
            on: voice_on.clone(),
        };
        let mut fallback = Fallback::new(
            "program",
            vec![Box::new(voice), Box::new(Tone::new("bed", 100.0, 0.1))],
        );
        let mut frame = Frame::silent();
        assert!(fallback.is_ready());
        assert_eq!(fallback.fill(&mut frame), Pull::Audio);
        assert_eq!(fallback.current(), Some("bed"));
        voice_on.store(true, Ordering::Relaxed);
        assert_eq!(fallback.fill(&mut frame), Pull::Audio);
        assert_eq!(fallback.current(), Some("voice"));
        voice_on.store(false, Ordering::Relaxed);
        assert_eq!(fallback.fill(&mut frame), Pull::Audio);
        assert_eq!(fallback.current(), Some("bed"));
    }

    #[test]
    fn a_fallback_of_unavailable_sources_is_unavailable() {
        let off = Arc::new(AtomicBool::new(false));
        let mut fallback = Fallback::new(
            "program",
            vec![Box::new(Switchable {
                tone: Tone::new("voice", 300.0, 0.5),
                on: off,
            })],
        );
        let mut frame = Frame::silent();
        assert!(!fallback.is_ready());
        assert_eq!(fallback.fill(&mut frame), Pull::Unavailable);
        assert_eq!(fallback.current(), None);
        assert_eq!(
            frame,
            Frame::silent(),
            "an unavailable source leaves the frame alone"
        );
    }

    #[test]
    fn a_tone_is_continuous_across_frames_and_at_the_right_level() {
        let mut tone = Tone::new("t", 1000.0, 1.0);
        let mut frame = Frame::silent();
        tone.fill(&mut frame);
        // A full-scale sine is -3 dBFS RMS.
        assert!(
            (frame.rms_dbfs() + 3.01).abs() < 0.05,
            "{}",
            frame.rms_dbfs()
        );
        let last = frame.samples[FRAME_LEN * CHANNELS - 1];
        tone.fill(&mut frame);
        let step = TAU * 1000.0 / SAMPLE_RATE as f32;
        // The next sample continues the phase (no click at frame boundaries).
        let expected_next = (last.asin() + step).sin();
        assert!((frame.samples[0] - expected_next).abs() < 0.02);
    }
}
