//! The output that cannot fail: the program (whatever it is made of) when it plays, the
//! emergency source when the program has nothing, and the emergency source when the
//! silence watchdog hears dead air on the final mix, whatever the program claims, until
//! the program is audible again.

use super::declick::Declick;
use super::frame::Frame;
use super::loudness::{LoudnessConfig, Normalizer};
use super::source::{Pull, Source};
use super::watchdog::{SilenceWatchdog, WatchdogConfig};

/// What an operator watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub frames: u64,
    /// Frames played by the emergency source (program unavailable or silenced).
    pub emergency_frames: u64,
    /// Times the watchdog tripped.
    pub silence_events: u64,
}

pub struct Engine {
    program: Box<dyn Source>,
    emergency: Box<dyn Source>,
    watchdog: SilenceWatchdog,
    /// The watchdog tripped and the program has not been audible since.
    covering: bool,
    frame: Frame,
    stats: EngineStats,
    /// Whether the last frame came from the emergency source.
    was_emergency: bool,
    threshold_dbfs: f32,
    declick: Declick,
    normalizer: Option<Normalizer>,
}

impl Engine {
    /// `emergency` must always be ready (a local bed, a tone): it is what plays when
    /// nothing else can.
    pub fn new(
        program: Box<dyn Source>,
        emergency: Box<dyn Source>,
        watchdog: WatchdogConfig,
    ) -> Self {
        Engine {
            program,
            emergency,
            watchdog: SilenceWatchdog::new(watchdog),
            covering: false,
            frame: Frame::silent(),
            stats: EngineStats::default(),
            was_emergency: false,
            threshold_dbfs: watchdog.threshold_dbfs,
            declick: Declick::default(),
            normalizer: None,
        }
    }

    /// Normalises the output's loudness (before the watchdog listens to it).
    pub fn with_loudness(mut self, config: LoudnessConfig) -> Self {
        self.normalizer = Some(Normalizer::new(config));
        self
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The next 20 ms of output. Never fails, never blocks.
    pub fn next_frame(&mut self) -> &Frame {
        self.stats.frames += 1;
        self.frame.clear();
        let played = self.program.is_ready() && self.program.fill(&mut self.frame) == Pull::Audio;
        if self.covering && played && self.frame.rms_dbfs() >= self.threshold_dbfs {
            // While covering, the program is still pulled, so a silent item plays out in
            // real time instead of waiting, but it is judged by its signal, not its claim.
            self.covering = false;
            tracing::info!(
                program = self.program.name(),
                "program audible again: back on air"
            );
        }
        let mut emergency = self.covering || !played;
        if emergency {
            self.play_emergency();
        }
        if let Some(n) = &mut self.normalizer {
            n.process(&mut self.frame);
        }
        if self.watchdog.observe(&self.frame) {
            self.stats.silence_events += 1;
            tracing::warn!(
                silent_ms = self.watchdog.silent_for().as_millis() as u64,
                program = self.program.name(),
                emergency = self.emergency.name(),
                "dead air on the output: switching to the emergency source"
            );
            self.watchdog.reset();
            self.covering = true;
            if !emergency {
                // This very frame already goes out with the emergency source.
                self.play_emergency();
                emergency = true;
            }
        }
        if emergency {
            self.stats.emergency_frames += 1;
        }
        self.declick
            .apply(&mut self.frame, emergency != self.was_emergency);
        self.was_emergency = emergency;
        &self.frame
    }

    fn play_emergency(&mut self) {
        self.frame.clear();
        if self.emergency.fill(&mut self.frame) == Pull::Unavailable {
            // A broken emergency source leaves silence in the frame; the watchdog keeps
            // counting and logging, which is all that is left to do.
            tracing::error!(emergency = self.emergency.name(), "emergency source failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audio::frame::FRAME_DURATION;
    use crate::audio::source::Tone;

    /// A program source scripted frame by frame: plays a tone, has nothing, or claims to
    /// play while sending zeros (a stalled decoder).
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Behaviour {
        Plays,
        Unavailable,
        SilentButAlive,
    }

    struct Scripted {
        tone: Tone,
        script: Box<dyn FnMut(u64) -> Behaviour + Send>,
        frame: u64,
        next: Behaviour,
    }

    impl Scripted {
        fn new(script: impl FnMut(u64) -> Behaviour + Send + 'static) -> Self {
            let mut script: Box<dyn FnMut(u64) -> Behaviour + Send> = Box::new(script);
            let next = script(0);
            Scripted {
                tone: Tone::new("program-tone", 440.0, 0.3),
                script,
                frame: 0,
                next,
            }
        }
    }

    impl Source for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        fn is_ready(&self) -> bool {
            self.next != Behaviour::Unavailable
        }

        fn fill(&mut self, frame: &mut Frame) -> Pull {
            let pull = match self.next {
                Behaviour::Plays => self.tone.fill(frame),
                Behaviour::SilentButAlive => Pull::Audio,
                Behaviour::Unavailable => Pull::Unavailable,
            };
            self.frame += 1;
            self.next = (self.script)(self.frame);
            pull
        }
    }

    fn engine(program: impl Source + 'static) -> Engine {
        Engine::new(
            Box::new(program),
            Box::new(Tone::new("emergency", 220.0, 0.2)),
            WatchdogConfig::default(),
        )
    }

    /// Runs `frames` frames and returns the longest run of silent output frames.
    fn longest_silence(engine: &mut Engine, frames: u64) -> u32 {
        let threshold = WatchdogConfig::default().threshold_dbfs;
        let (mut run, mut longest) = (0u32, 0u32);
        for _ in 0..frames {
            if engine.next_frame().rms_dbfs() < threshold {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest
    }

    #[test]
    fn a_playing_program_goes_out_untouched() {
        let mut e = engine(Scripted::new(|_| Behaviour::Plays));
        let mut reference = Tone::new("reference", 440.0, 0.3);
        let mut expected = Frame::silent();
        for _ in 0..100 {
            reference.fill(&mut expected);
            assert_eq!(e.next_frame(), &expected);
        }
        assert_eq!(e.stats().emergency_frames, 0);
    }

    #[test]
    fn an_unavailable_program_is_covered_in_the_same_frame() {
        let mut e = engine(Scripted::new(|n| {
            if n < 10 {
                Behaviour::Plays
            } else {
                Behaviour::Unavailable
            }
        }));
        assert_eq!(longest_silence(&mut e, 500), 0);
        assert_eq!(e.stats().emergency_frames, 490);
        assert_eq!(e.stats().silence_events, 0);
    }

    #[test]
    fn silence_that_claims_to_be_audio_trips_the_watchdog_within_two_seconds() {
        // Plays 1 s, sends "audio" of zeros for 20 s, then plays again.
        let mut e = engine(Scripted::new(|n| match n {
            0..50 => Behaviour::Plays,
            50..1050 => Behaviour::SilentButAlive,
            _ => Behaviour::Plays,
        }));
        let config = WatchdogConfig::default();
        let limit = (config.max_silence.as_millis() / 20) as u32;
        let longest = longest_silence(&mut e, 1050);
        assert!(
            FRAME_DURATION * longest < Duration::from_secs(2),
            "silent for {longest} frames"
        );
        assert_eq!(
            longest,
            limit - 1,
            "the frame that trips it is already covered"
        );
        assert_eq!(
            e.stats().silence_events,
            1,
            "covered until the program is audible"
        );
        assert_eq!(e.stats().emergency_frames, 1000 - u64::from(limit) + 1);
        // The program was consumed while covered: its next audible frame goes straight out.
        let mut reference = Tone::new("reference", 440.0, 0.3);
        let mut expected = Frame::silent();
        for _ in 0..50 {
            reference.fill(&mut expected);
        }
        reference.fill(&mut expected);
        let back = e.next_frame().clone();
        // Declicked on the switch back: compare after the 5 ms ramp.
        assert_eq!(back.samples[960..], expected.samples[960..]);
        assert_eq!(e.stats().emergency_frames, 1000 - u64::from(limit) + 1);
    }

    #[test]
    fn ten_minutes_of_a_flaky_program_never_go_silent_for_long() {
        // Deterministic pseudo-random segments of 2 to 8 s: playing, nothing, or a stall.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut draw = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut behaviour, mut until) = (Behaviour::Plays, 0u64);
        let mut e = engine(Scripted::new(move |n| {
            if n >= until {
                until = n + 100 + draw() % 300;
                behaviour = [
                    Behaviour::Plays,
                    Behaviour::Unavailable,
                    Behaviour::SilentButAlive,
                ][(draw() % 3) as usize];
            }
            behaviour
        }));
        let frames = 10 * 60 * 50;
        let longest = longest_silence(&mut e, frames);
        let stats = e.stats();
        assert_eq!(stats.frames, frames);
        assert!(
            FRAME_DURATION * longest < WatchdogConfig::default().max_silence,
            "silent for {longest} frames"
        );
        assert!(stats.silence_events > 0, "{stats:?}");
        assert!(
            stats.emergency_frames > 0 && stats.emergency_frames < frames,
            "{stats:?}"
        );
    }
}
