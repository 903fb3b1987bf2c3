//! Silence detection on the final mix. Inputs can claim to be alive while sending
//! nothing (a stalled decoder producing zeros, a voice stream that never starts); only the
//! signal that goes on air tells the truth.

use std::time::Duration;

use super::frame::{FRAME_DURATION, Frame, frames_in};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchdogConfig {
    /// Frames below this RMS level count as silent.
    pub threshold_dbfs: f32,
    /// How long the mix may stay silent before the watchdog trips.
    pub max_silence: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            threshold_dbfs: -50.0,
            max_silence: Duration::from_millis(1500),
        }
    }
}

/// Counts consecutive silent frames of the output.
#[derive(Debug)]
pub struct SilenceWatchdog {
    config: WatchdogConfig,
    silent_frames: u32,
    limit_frames: u32,
}

impl SilenceWatchdog {
    pub fn new(config: WatchdogConfig) -> Self {
        SilenceWatchdog {
            limit_frames: frames_in(config.max_silence),
            config,
            silent_frames: 0,
        }
    }

    /// Looks at one output frame; `true` when the silence has now lasted too long.
    pub fn observe(&mut self, frame: &Frame) -> bool {
        if frame.rms_dbfs() < self.config.threshold_dbfs {
            self.silent_frames = self.silent_frames.saturating_add(1);
        } else {
            self.silent_frames = 0;
        }
        self.silent_frames >= self.limit_frames
    }

    pub fn reset(&mut self) {
        self.silent_frames = 0;
    }

    /// How long the output has been silent.
    pub fn silent_for(&self) -> Duration {
        FRAME_DURATION * self.silent_frames
    }
}
