//! A feed: the hand-over between an async producer (a voice, bursty: a Realtime session
//! sends audio faster than real time, then nothing while it thinks; the director with a
//! caller's recording, a jingle or a music track) and the engine (one frame every 20 ms).
//! The producer writes mono audio at any rate into a shared buffer, resampled to 48 kHz;
//! the engine reads it as a [`Source`] that is ready only while it has audio, so a stalled
//! voice lets the bed come back up instead of putting silence on air.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use media::resample::Resampler;

use crate::audio::{CHANNELS, FRAME_LEN, Frame, Pull, SAMPLE_RATE, Source};

/// Audio buffered before a streamed utterance starts to play, so network jitter does not
/// cut it into pieces.
pub const PRE_ROLL: Duration = Duration::from_millis(200);

/// Every item fades in and out over these many samples (10 ms and 20 ms at 48 kHz): a
/// track or a recording that starts or stops mid-waveform would click.
const FADE_IN: usize = 480;
const FADE_OUT: usize = 960;

#[derive(Debug, Default)]
struct State {
    samples: VecDeque<f32>,
    /// A voice is writing an utterance that has not ended yet.
    open: bool,
    /// The engine has started playing the current utterance (pre-roll reached).
    playing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the buffer runs empty after an utterance ended.
    drained: Notify,
}

/// Creates the two ends of one feed.
pub fn channel(name: &str) -> (FeedWriter, FeedSource) {
    let shared = Arc::new(Shared::default());
    (
        FeedWriter {
            shared: shared.clone(),
            resampler: None,
            scratch: Vec::new(),
            converted: Vec::new(),
            fade_in_done: FADE_IN,
        },
        FeedSource {
            name: name.to_owned(),
            shared,
        },
    )
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The producer's end. One utterance at a time: [`FeedWriter::begin`], pushes,
/// [`FeedWriter::end`] (or [`FeedWriter::abandon`] when the voice failed half-way).
pub struct FeedWriter {
    shared: Arc<Shared>,
    resampler: Option<Resampler>,
    scratch: Vec<f32>,
    converted: Vec<f32>,
    /// Samples of the current item's fade-in already written.
    fade_in_done: usize,
}

impl std::fmt::Debug for FeedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedWriter").finish_non_exhaustive()
    }
}

impl FeedWriter {
    pub fn begin(&mut self) {
        self.resampler = None;
        self.fade_in_done = 0;
        let mut state = lock(&self.shared);
        state.open = true;
    }

    /// Mono 16-bit PCM at `rate` Hz.
    pub fn push_pcm16(&mut self, rate: u32, samples: &[i16]) {
        self.scratch.clear();
        self.scratch
            .extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        let scratch = std::mem::take(&mut self.scratch);
        self.push_f32(rate, &scratch);
        self.scratch = scratch;
    }

    /// Mono f32 samples at `rate` Hz.
    pub fn push_f32(&mut self, rate: u32, samples: &[f32]) {
        let resampler = match &mut self.resampler {
            Some(r) if r.rates() == (rate, SAMPLE_RATE) => r,
            slot => slot.insert(Resampler::new(rate, SAMPLE_RATE)),
        };
        self.converted.clear();
        resampler.process(samples, &mut self.converted);
        for s in self.converted.iter_mut().take(FADE_IN - self.fade_in_done) {
            self.fade_in_done += 1;
            *s *= self.fade_in_done as f32 / FADE_IN as f32;
        }
        lock(&self.shared).samples.extend(&self.converted);
    }

    /// The utterance is complete: what is buffered plays out.
    pub fn end(&mut self) {
        self.converted.clear();
        if let Some(r) = &mut self.resampler {
            r.flush(&mut self.converted);
        }
        self.resampler = None;
        let mut state = lock(&self.shared);
        state.samples.extend(&self.converted);
        // Fade out what has not played yet of the item's end.
        let len = state.samples.len();
        let fade = len.min(FADE_OUT);
        for (i, s) in state.samples.range_mut(len - fade..).enumerate() {
            *s *= (fade - 1 - i) as f32 / fade as f32;
        }
        state.open = false;
        if state.samples.is_empty() {
            state.playing = false;
            self.shared.drained.notify_waiters();
        }
    }

    /// The voice failed half-way: drop what has not played yet so another voice can say
    /// the same thing from the start.
    pub fn abandon(&mut self) {
        self.resampler = None;
        let mut state = lock(&self.shared);
        state.samples.clear();
        state.open = false;
        state.playing = false;
        self.shared.drained.notify_waiters();
    }

    /// Audio written but not played yet.
    pub fn queued(&self) -> Duration {
        let n = lock(&self.shared).samples.len();
        Duration::from_secs_f64(n as f64 / f64::from(SAMPLE_RATE))
    }

    /// Waits until the last ended utterance has been played out.
    pub async fn drained(&self) {
        loop {
            let notified = self.shared.drained.notified();
            {
                let state = lock(&self.shared);
                if !state.open && state.samples.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// The engine's end: plays the buffered audio, 48 kHz mono duplicated to both channels.
pub struct FeedSource {
    name: String,
    shared: Arc<Shared>,
}

impl Source for FeedSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_ready(&self) -> bool {
        let state = lock(&self.shared);
        let pre_roll = (PRE_ROLL.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
        if state.playing || !state.open {
            // Playing, or a finished utterance: play whatever there is.
            !state.samples.is_empty()
        } else {
            state.samples.len() >= pre_roll
        }
    }

    fn fill(&mut self, frame: &mut Frame) -> Pull {
        if !self.is_ready() {
            return Pull::Unavailable;
        }
        let mut state = lock(&self.shared);
        state.playing = true;
        let n = state.samples.len().min(FRAME_LEN);
        for (pair, s) in frame
            .samples
            .chunks_exact_mut(CHANNELS)
            .zip(state.samples.drain(..n))
        {
            pair.fill(s);
        }
        for pair in frame.samples.chunks_exact_mut(CHANNELS).skip(n) {
            pair.fill(0.0);
        }
        if state.samples.is_empty() && !state.open {
            state.playing = false;
            self.shared.drained.notify_waiters();
        }
        Pull::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn speech_waits_for_pre_roll_then_plays_out_and_signals_drained() {
        let (mut writer, mut source) = channel("voice");
        assert!(!source.is_ready());
        writer.begin();
        // 100 ms at 24 kHz: under the pre-roll, not played yet.
        writer.push_pcm16(24_000, &[1000; 2_400]);
        assert!(!source.is_ready());
        writer.push_pcm16(24_000, &[1000; 4_800]);
        assert!(source.is_ready());
        writer.end();
        let mut frame = Frame::silent();
        let mut frames = 0;
        while source.fill(&mut frame) == Pull::Audio {
            frames += 1;
        }
        // 300 ms of audio = 15 frames, the last one completed by the resampler's flush.
        assert_eq!(frames, 15);
        tokio::time::timeout(Duration::from_secs(1), writer.drained())
            .await
            .expect("drained once played out");
    }

    #[test]
    fn items_fade_in_and_out() {
        let (mut writer, mut source) = channel("music");
        writer.begin();
        writer.push_f32(48_000, &[0.5; 9_600]);
        writer.end();
        let mut frame = Frame::silent();
        let mut left: Vec<f32> = Vec::new();
        while source.fill(&mut frame) == Pull::Audio {
            left.extend(frame.samples.iter().step_by(CHANNELS));
        }
        assert!(
            left[0] < 0.01 && (left[FADE_IN] - 0.5).abs() < 1e-6,
            "{}",
            left[0]
        );
        assert!(left[9_599] < 1e-6 && (left[9_600 - FADE_OUT - 1] - 0.5).abs() < 1e-3);
        let largest_step = left[..9_600]
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0f32, f32::max);
        assert!(
            largest_step <= 0.5 / FADE_IN as f32 + 1e-6,
            "{largest_step}"
        );
    }

    #[test]
    fn abandon_drops_what_has_not_played() {
        let (mut writer, source) = channel("voice");
        writer.begin();
        writer.push_pcm16(48_000, &[1000; 48_000]);
        writer.abandon();
        assert!(!source.is_ready());
        assert_eq!(writer.queued(), Duration::ZERO);
    }
}
