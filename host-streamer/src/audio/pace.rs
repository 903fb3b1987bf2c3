//! Frame pacing. In real time, frame `n` is due at `start + n × 20 ms` on the monotonic
//! clock: deadlines are computed from the start, never by adding up sleeps, so the stream
//! cannot drift, and a frame produced after its deadline is counted as late. On a virtual
//! clock (tests, benchmarks) frames are produced as fast as the CPU allows.

use std::time::{Duration, Instant};

use super::frame::FRAME_DURATION;

fn frames_duration(frames: u64) -> Duration {
    Duration::from_micros(FRAME_DURATION.as_micros() as u64 * frames)
}

/// Beyond this much behind (the host was suspended, the process stopped), the pacer
/// starts a new timeline instead of rushing out the backlog.
const RESYNC_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    RealTime,
    Virtual,
}

#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    start: Instant,
    /// Frames paced since `start`.
    frames: u64,
    /// Frames released after their deadline.
    late: u64,
}

/// What happened to one frame's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    OnTime,
    /// Released this long after its deadline.
    Late(Duration),
}

impl Pacer {
    pub fn new(pacing: Pacing) -> Self {
        Pacer {
            pacing,
            start: Instant::now(),
            frames: 0,
            late: 0,
        }
    }

    /// Waits until the next frame is due (real time) and says whether it is late. A frame
    /// counts as late once it is a whole frame behind: up to that, the output's own
    /// buffering absorbs the jitter.
    pub fn wait_next(&mut self) -> Tick {
        self.frames += 1;
        if self.pacing == Pacing::Virtual {
            return Tick::OnTime;
        }
        let due = self.start + frames_duration(self.frames);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
            return Tick::OnTime;
        }
        let behind = now - due;
        if behind > RESYNC_AFTER {
            tracing::warn!(
                behind_ms = behind.as_millis() as u64,
                "engine fell far behind; restarting its timeline"
            );
            self.start = now - frames_duration(self.frames);
        }
        if behind >= FRAME_DURATION {
            self.late += 1;
            Tick::Late(behind)
        } else {
            Tick::OnTime
        }
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn late(&self) -> u64 {
        self.late
    }
}
