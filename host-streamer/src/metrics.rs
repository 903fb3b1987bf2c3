//! What an operator watches, as Prometheus text on `/metrics` (Cloud Monitoring scrapes it
//! with Managed Service for Prometheus). Plain atomics: the engine thread updates them
//! every frame without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames sent to the outputs.
    pub frames: AtomicU64,
    /// Frames produced after their deadline (the pacer fell behind).
    pub frames_late: AtomicU64,
    /// Frames played by the emergency source.
    pub emergency_frames: AtomicU64,
    /// Times the silence watchdog tripped.
    pub silence_events: AtomicU64,
    /// Ready submissions claimed and waiting to be played.
    pub queue_depth: AtomicI64,
    /// Realtime sessions opened after the first (rotations, drops, expiries).
    pub realtime_reconnects: AtomicU64,
    /// When the current Realtime session started (Unix seconds), 0 without one.
    pub realtime_session_started: AtomicI64,
    /// Cues a voice failed to speak, so the next voice in the chain spoke them.
    pub voice_failures: AtomicU64,
    /// Listeners connected to the local HTTP stream.
    pub listeners: AtomicI64,
    /// Recording segments written to object storage.
    pub recordings_uploaded: AtomicU64,
    /// Recording segment uploads that failed (kept in the spool and retried).
    pub recording_failures: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self, now_unix: i64) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP radio24_{name} {help}");
            let _ = writeln!(out, "# TYPE radio24_{name} counter");
            let _ = writeln!(out, "radio24_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        counter(
            "frames_total",
            "20 ms frames sent to the outputs.",
            get(&self.frames),
        );
        counter(
            "frames_late_total",
            "Frames produced after their deadline.",
            get(&self.frames_late),
        );
        counter(
            "fallback_seconds_total",
            "Seconds of output played by the emergency source.",
            get(&self.emergency_frames) * 0.02,
        );
        counter(
            "silence_events_total",
            "Times the silence watchdog tripped on the final mix.",
            get(&self.silence_events),
        );
        counter(
            "realtime_reconnects_total",
            "Realtime sessions opened after the first.",
            get(&self.realtime_reconnects),
        );
        counter(
            "voice_failures_total",
            "Cues a voice failed to speak.",
            get(&self.voice_failures),
        );
        counter(
            "recordings_uploaded_total",
            "Recording segments uploaded.",
            get(&self.recordings_uploaded),
        );
        counter(
            "recording_failures_total",
            "Recording uploads that failed and were kept for retry.",
            get(&self.recording_failures),
        );
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP radio24_{name} {help}");
            let _ = writeln!(out, "# TYPE radio24_{name} gauge");
            let _ = writeln!(out, "radio24_{name} {value}");
        };
        gauge(
            "queue_depth",
            "Claimed submissions waiting to be played.",
            self.queue_depth.load(Ordering::Relaxed) as f64,
        );
        let started = self.realtime_session_started.load(Ordering::Relaxed);
        let age = if started > 0 {
            (now_unix - started).max(0)
        } else {
            0
        };
        gauge(
            "realtime_session_age_seconds",
            "Age of the current Realtime session.",
            age as f64,
        );
        gauge(
            "listeners",
            "Listeners on the local HTTP stream.",
            self.listeners.load(Ordering::Relaxed) as f64,
        );
        out
    }
}
