//! The air loop: one dedicated thread that asks the engine for a frame, waits for its slot
//! on the monotonic clock and hands it to the outputs. Nothing in it blocks on the network
//! or the database; outputs take frames without waiting (they drop and count instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::engine::{Engine, EngineStats};
use super::frame::{FRAME_DURATION, Frame};
use super::pace::{Pacer, Pacing, Tick};
use crate::metrics::Metrics;

/// Where finished frames go (the encoder and its listeners, the recorder).
pub trait Sink: Send {
    /// Takes one frame, stamped with the wall-clock time it goes on air. Must not block.
    fn push(&mut self, frame: &Frame, at: DateTime<Utc>);
}

/// What a run of the air loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AirReport {
    pub engine: EngineStats,
    pub late: u64,
}

/// Runs until `stop` is set (the frame in progress is finished first) or `max_frames`
/// have gone out.
pub fn run(
    mut engine: Engine,
    pacing: Pacing,
    sink: &mut dyn Sink,
    metrics: &Metrics,
    stop: &AtomicBool,
    max_frames: Option<u64>,
) -> AirReport {
    let mut pacer = Pacer::new(pacing);
    let start = Utc::now();
    let mut seen = EngineStats::default();
    while !stop.load(Ordering::Relaxed) && max_frames.is_none_or(|max| pacer.frames() < max) {
        let at = start
            + chrono::Duration::from_std(Duration::from_micros(
                FRAME_DURATION.as_micros() as u64 * pacer.frames(),
            ))
            .unwrap_or_default();
        let frame = engine.next_frame();
        if let Tick::Late(behind) = pacer.wait_next() {
            Metrics::add(&metrics.frames_late, 1);
            tracing::debug!(behind_ms = behind.as_millis() as u64, "late frame");
        }
        sink.push(frame, at);
        let stats = engine.stats();
        Metrics::add(&metrics.frames, stats.frames - seen.frames);
        Metrics::add(
            &metrics.emergency_frames,
            stats.emergency_frames - seen.emergency_frames,
        );
        Metrics::add(
            &metrics.silence_events,
            stats.silence_events - seen.silence_events,
        );
        seen = stats;
    }
    AirReport {
        engine: seen,
        late: pacer.late(),
    }
}

/// The air loop running on its own thread, owning the outputs until it stops.
pub struct AirThread<S> {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(AirReport, S)>,
}

impl<S: Sink + 'static> AirThread<S> {
    /// Starts [`run`] in real time on a thread of its own.
    pub fn spawn(engine: Engine, mut sink: S, metrics: Arc<Metrics>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("air".into())
            .spawn(move || {
                let report = run(engine, Pacing::RealTime, &mut sink, &metrics, &flag, None);
                (report, sink)
            })
            .expect("the air thread starts");
        AirThread { stop, handle }
    }

    /// Finishes the frame in progress and returns the outputs, to be closed.
    pub fn stop(self) -> (AirReport, S) {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
