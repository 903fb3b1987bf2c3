//! 24 hours of program on a virtual clock, with a fault every few minutes, through the
//! station's real source graph (`program::build`) and air loop: every 20 ms frame must
//! go out, and the final mix must never stay silent longer than the watchdog allows.
//!
//! The director's part is played by a script that writes into the same feeds the real
//! director uses, on the engine's clock: DJ utterances streamed in bursts, caller clips,
//! music, and faults — voices that stall mid-sentence, abandon, or "speak" digital silence,
//! music that decodes to silence, a caller clip far below the threshold, everything gone.

use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use host_streamer::audio::air::{self, Sink};
use host_streamer::audio::{FRAME_LEN, Frame, Pacing, SAMPLE_RATE, WatchdogConfig};
use host_streamer::metrics::Metrics;
use host_streamer::on_air::Feeds;
use host_streamer::program::{self, AudioConfig};

const FRAMES_PER_SECOND: u64 = 50;
const DAY: u64 = 24 * 3600 * FRAMES_PER_SECOND;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The DJ's stream stops mid-utterance for a while, then resumes.
    VoiceStall { seconds: u64 },
    /// The DJ's voice fails half-way and its audio is dropped.
    VoiceAbandoned,
    /// The voice sends digital silence while claiming to speak.
    VoiceSilent { seconds: u64 },
    /// A music track that decodes to silence.
    SilentMusic { seconds: u64 },
    /// A caller recording far below the silence threshold.
    InaudibleCaller { seconds: u64 },
    /// Every feed empty: only the generated bed is left.
    Nothing { seconds: u64 },
}

/// What the script is doing with a feed.
#[derive(Debug, Clone, Copy)]
struct Stream {
    /// Frames of audio left to push.
    left: u64,
    level: f32,
    /// Frames to push nothing (a stall) before going on.
    stalled: u64,
}

struct Script {
    feeds: Feeds,
    rng: u64,
    next_event: u64,
    dj: Option<Stream>,
    music: Option<Stream>,
    faults: Vec<Fault>,
    phase: f32,
    // Checks on the output.
    frames: u64,
    last_at: Option<DateTime<Utc>>,
    silent_run: u64,
    longest_silent_run: u64,
    peak: f32,
    threshold: f32,
}

impl Script {
    fn draw(&mut self, below: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % below
    }

    /// A speech-like signal: a 180 Hz buzz with syllable-rate amplitude.
    fn chunk(&mut self, frames: u64, level: f32) -> Vec<f32> {
        let n = (frames as usize) * FRAME_LEN;
        (0..n)
            .map(|_| {
                self.phase += 1.0;
                let t = self.phase / SAMPLE_RATE as f32;
                let syllables = 0.6 + 0.4 * (std::f32::consts::TAU * 4.0 * t).sin();
                level * syllables * (std::f32::consts::TAU * 180.0 * t).sin()
            })
            .collect()
    }

    fn start_next_event(&mut self, n: u64) {
        let kind = self.draw(10);
        let seconds = 5 + self.draw(40);
        let fault = match kind {
            0 => Some(Fault::VoiceStall {
                seconds: 2 + self.draw(20),
            }),
            1 => Some(Fault::VoiceAbandoned),
            2 => Some(Fault::VoiceSilent { seconds }),
            3 => Some(Fault::SilentMusic {
                seconds: 30 + self.draw(60),
            }),
            4 => Some(Fault::InaudibleCaller { seconds }),
            5 => Some(Fault::Nothing { seconds }),
            _ => None,
        };
        match fault {
            None => {
                // Normal program: the DJ speaks, or a caller clip plays, over music.
                self.dj = Some(Stream {
                    left: seconds * FRAMES_PER_SECOND,
                    level: 0.3,
                    stalled: 0,
                });
                self.music = Some(Stream {
                    left: 120 * FRAMES_PER_SECOND,
                    level: 0.2,
                    stalled: 0,
                });
                self.feeds.dj.begin();
                if self.draw(2) == 0 {
                    let clip = self.chunk(seconds * FRAMES_PER_SECOND, 0.25);
                    self.feeds.caller.begin();
                    self.feeds.caller.push_f32(SAMPLE_RATE, &clip);
                    self.feeds.caller.end();
                }
            }
            Some(Fault::VoiceStall { seconds }) => {
                self.feeds.dj.begin();
                self.dj = Some(Stream {
                    left: 10 * FRAMES_PER_SECOND,
                    level: 0.3,
                    stalled: seconds * FRAMES_PER_SECOND,
                });
            }
            Some(Fault::VoiceAbandoned) => {
                self.feeds.dj.begin();
                let part = self.chunk(3 * FRAMES_PER_SECOND, 0.3);
                self.feeds.dj.push_f32(SAMPLE_RATE, &part);
                self.feeds.dj.abandon();
                self.dj = None;
            }
            Some(Fault::VoiceSilent { seconds }) => {
                self.feeds.dj.begin();
                self.dj = Some(Stream {
                    left: seconds * FRAMES_PER_SECOND,
                    level: 0.0,
                    stalled: 0,
                });
            }
            Some(Fault::SilentMusic { seconds }) => {
                self.music = Some(Stream {
                    left: seconds * FRAMES_PER_SECOND,
                    level: 0.0,
                    stalled: 0,
                });
            }
            Some(Fault::InaudibleCaller { seconds }) => {
                let clip = self.chunk(seconds * FRAMES_PER_SECOND, 0.0002);
                self.feeds.caller.begin();
                self.feeds.caller.push_f32(SAMPLE_RATE, &clip);
                self.feeds.caller.end();
            }
            Some(Fault::Nothing { seconds: _ }) => {
                self.feeds.dj.abandon();
                self.feeds.caller.abandon();
                self.feeds.music.abandon();
                self.dj = None;
                self.music = None;
            }
        }
        if let Some(f) = fault {
            self.faults.push(f);
        }
        // Faults every few minutes: the next event in 1 to 5 minutes.
        self.next_event = n + (60 + self.draw(240)) * FRAMES_PER_SECOND;
    }

    /// Streams audio into the feeds ahead of the engine, in half-second bursts.
    fn feed(&mut self, which: fn(&mut Script) -> (&mut Option<Stream>, bool)) {
        let (stream, is_dj) = which(self);
        let Some(mut s) = *stream else { return };
        if s.stalled > 0 {
            s.stalled -= 1;
            *stream = Some(s);
            return;
        }
        let burst = s.left.min(25);
        let level = s.level;
        s.left -= burst;
        let done = s.left == 0;
        *stream = if done { None } else { Some(s) };
        let audio = self.chunk(burst, level);
        let writer = if is_dj {
            &mut self.feeds.dj
        } else {
            &mut self.feeds.music
        };
        writer.push_f32(SAMPLE_RATE, &audio);
        if done {
            writer.end();
        }
    }
}

impl Sink for Script {
    fn push(&mut self, frame: &Frame, at: DateTime<Utc>) {
        // Every frame present, 20 ms apart.
        if let Some(last) = self.last_at {
            assert_eq!(
                (at - last).num_microseconds(),
                Some(20_000),
                "frame {}",
                self.frames
            );
        }
        self.last_at = Some(at);
        let level = frame.rms_dbfs();
        assert!(
            level.is_finite() || level == f32::NEG_INFINITY,
            "frame {}: {level}",
            self.frames
        );
        if level < self.threshold {
            self.silent_run += 1;
            self.longest_silent_run = self.longest_silent_run.max(self.silent_run);
        } else {
            self.silent_run = 0;
        }
        self.peak = frame.samples.iter().fold(self.peak, |m, s| m.max(s.abs()));
        let n = self.frames;
        self.frames += 1;
        if n >= self.next_event {
            self.start_next_event(n);
        }
        // Voices and music arrive in bursts, ahead of the engine.
        if n.is_multiple_of(25) {
            self.feed(|s| (&mut s.dj, true));
            self.feed(|s| (&mut s.music, false));
        }
    }
}

#[test]
fn a_day_with_faults_every_few_minutes_has_no_gap_and_no_long_silence() {
    let config = AudioConfig::default();
    let (engine, feeds) = program::build(&config);
    let mut script = Script {
        feeds,
        rng: 0x9e37_79b9_7f4a_7c15,
        next_event: 0,
        dj: None,
        music: None,
        faults: Vec::new(),
        phase: 0.0,
        frames: 0,
        last_at: None,
        silent_run: 0,
        longest_silent_run: 0,
        peak: 0.0,
        threshold: config.watchdog.threshold_dbfs,
    };
    let metrics = Metrics::default();
    let report = air::run(
        engine,
        Pacing::Virtual,
        &mut script,
        &metrics,
        &AtomicBool::new(false),
        Some(DAY),
    );

    let limit = frames(config.watchdog);
    let faults = script.faults.len();
    println!(
        "24 h virtual: {} frames, {} faults injected, {} watchdog trips, {:.0} s on the emergency source, longest silent run {} frames ({} ms; limit {} ms), peak {:.3}",
        script.frames,
        faults,
        report.engine.silence_events,
        report.engine.emergency_frames as f64 / 50.0,
        script.longest_silent_run,
        script.longest_silent_run * 20,
        limit * 20,
        script.peak,
    );
    assert_eq!(script.frames, DAY, "every 20 ms frame of the day went out");
    assert_eq!(report.engine.frames, DAY);
    assert!(
        script.longest_silent_run < limit,
        "silent for {} frames",
        script.longest_silent_run
    );
    // Faults every few minutes (events every 1 to 5 minutes, most of them faults), of
    // every kind, and the watchdog had real work.
    assert!(faults > 200, "{faults} faults");
    for kind in [
        "VoiceStall",
        "VoiceAbandoned",
        "VoiceSilent",
        "SilentMusic",
        "InaudibleCaller",
        "Nothing",
    ] {
        assert!(
            script
                .faults
                .iter()
                .any(|f| format!("{f:?}").starts_with(kind)),
            "no {kind}"
        );
    }
    assert!(report.engine.silence_events > 10, "{:?}", report.engine);
    assert!(
        script.peak <= 10f32.powf(-1.0 / 20.0) + 1e-3,
        "peak {}",
        script.peak
    );
}

fn frames(w: WatchdogConfig) -> u64 {
    (w.max_silence.as_millis() / 20) as u64
}
