//! What the listener heard, as tests assert on it: seconds heard, gaps, pitch and when it
//! changed, read from the listener's JSON lines.

use super::*;

/// One line the listener or publisher wrote: its time (Unix seconds), its kind and the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t: f64,
    pub event: String,
    pub fields: Map<String, Value>,
}

impl Event {
    /// A string field (`identity`, `room`, `error`, `metadata`, `track`).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    pub(super) fn parse(line: &str) -> Option<Event> {
        let Value::Object(mut fields) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let t = fields.remove("t")?.as_f64()?;
        let event = fields.remove("event")?.as_str()?.to_owned();
        Some(Event { t, event, fields })
    }
}

/// One received audio frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Receive time, Unix seconds.
    pub t: f64,
    /// Samples (at 48 kHz mono; 480 = 10 ms).
    pub samples: u32,
    /// Root mean square level, as a fraction of full scale (a full-scale sine is ~0.707).
    pub rms: f32,
    /// Dominant frequency in Hz (0 for silence).
    pub hz: f32,
}

impl Frame {
    pub fn seconds(&self) -> f64 {
        f64::from(self.samples) / f64::from(SAMPLE_RATE)
    }

    pub(super) fn from_event(e: &Event) -> Option<Frame> {
        let number = |k: &str| e.fields.get(k).and_then(Value::as_f64);
        Some(Frame {
            t: e.t,
            samples: u32::try_from(e.fields.get("n")?.as_u64()?).ok()?,
            rms: number("rms")? as f32,
            hz: number("hz")? as f32,
        })
    }
}

/// A stretch of steady pitch, from [`Reception::pitch_segments`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PitchSegment {
    /// Receive time of the first frame of the stretch.
    pub start: f64,
    /// Receive time of the last frame.
    pub end: f64,
    /// Median frequency over the stretch.
    pub hz: f32,
}

/// The longest time without audible audio, from [`Reception::longest_gap`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// The last audible frame before the gap (or the window's start).
    pub start: f64,
    /// The first audible frame after it (or the window's end).
    pub end: f64,
}

impl Gap {
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

/// Everything a listener has written so far: frames and the other events, in order.
#[derive(Debug, Clone, Default)]
pub struct Reception {
    pub frames: Vec<Frame>,
    pub events: Vec<Event>,
}

impl Reception {
    /// Seconds of audio received, silent frames included.
    pub fn audio_seconds(&self) -> f64 {
        self.frames.iter().map(Frame::seconds).sum()
    }

    /// Seconds of audio received at or above `silence_rms`.
    pub fn audible_seconds(&self, silence_rms: f32) -> f64 {
        self.audible(silence_rms).map(Frame::seconds).sum()
    }

    fn audible(&self, silence_rms: f32) -> impl Iterator<Item = &Frame> {
        self.frames.iter().filter(move |f| f.rms >= silence_rms)
    }

    /// The longest stretch of `[from, to]` in which no audible frame (RMS at least
    /// `silence_rms`) arrived: frames that stop coming and frames that come silent count
    /// alike. A steady stream of 10 ms frames has gaps of ~10 ms.
    pub fn longest_gap(&self, from: f64, to: f64, silence_rms: f32) -> Gap {
        let mut longest = Gap {
            start: from,
            end: from,
        };
        let mut last = from;
        let times = self
            .audible(silence_rms)
            .map(|f| f.t)
            .filter(|t| (from..=to).contains(t))
            .chain(std::iter::once(to));
        for t in times {
            if t - last > longest.seconds() {
                longest = Gap {
                    start: last,
                    end: t,
                };
            }
            last = t;
        }
        longest
    }

    /// The receive time of the first audible frame after `t` (e.g. after a restart).
    pub fn first_audible_after(&self, t: f64, silence_rms: f32) -> Option<f64> {
        self.audible(silence_rms).map(|f| f.t).find(|&ft| ft > t)
    }

    /// The median dominant frequency of the audible frames received in `[from, to)`.
    pub fn pitch(&self, from: f64, to: f64, silence_rms: f32) -> Option<f32> {
        let hz: Vec<f32> = self
            .audible(silence_rms)
            .filter(|f| (from..to).contains(&f.t))
            .map(|f| f.hz)
            .collect();
        median(hz)
    }

    /// Stretches of steady pitch: runs of audible frames whose frequency stays within
    /// `tolerance_hz` of the run's first frame, at least `min_frames` long. Shorter runs, such
    /// as a frame straddling a change or a glitch (a concealed packet under load), are
    /// dropped, and the runs on both sides of a glitch are one segment if their pitch
    /// agrees. A pitch change is heard at the `start` of the next segment.
    pub fn pitch_segments(
        &self,
        silence_rms: f32,
        tolerance_hz: f32,
        min_frames: usize,
    ) -> Vec<PitchSegment> {
        let mut segments: Vec<PitchSegment> = Vec::new();
        let mut run: Vec<&Frame> = Vec::new();
        let mut flush = |run: &mut Vec<&Frame>| {
            if run.len() >= min_frames.max(1) {
                let hz = median(run.iter().map(|f| f.hz).collect()).unwrap_or(0.0);
                let end = run[run.len() - 1].t;
                match segments.last_mut() {
                    Some(last) if (last.hz - hz).abs() <= tolerance_hz => last.end = end,
                    _ => segments.push(PitchSegment {
                        start: run[0].t,
                        end,
                        hz,
                    }),
                }
            }
            run.clear();
        };
        for frame in self.audible(silence_rms) {
            if run
                .first()
                .is_some_and(|first| (frame.hz - first.hz).abs() > tolerance_hz)
            {
                flush(&mut run);
            }
            run.push(frame);
        }
        flush(&mut run);
        segments
    }

    /// The events named `name` (`"metadata"`, `"connected"`, `"subscribed"`, ...).
    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Event> {
        self.events.iter().filter(move |e| e.event == name)
    }

    /// The host's metadata as it changed: (time, metadata).
    pub fn metadata_of(&self, identity: &str) -> Vec<(f64, String)> {
        self.events_named("metadata")
            .filter(|e| e.str("identity") == Some(identity))
            .map(|e| (e.t, e.str("metadata").unwrap_or_default().to_owned()))
            .collect()
    }
}

fn median(mut values: Vec<f32>) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}
