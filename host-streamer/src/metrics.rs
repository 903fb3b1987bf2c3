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
    /// Lines of the DJ that failed moderation and were replaced by a safe line.
    pub dj_lines_replaced: AtomicU64,
    /// Submissions the sweeper announced again after they waited too long between stages.
    pub submissions_reannounced: AtomicU64,
    /// Listeners connected to the local HTTP stream.
    pub listeners: AtomicI64,
    /// Recording segments written to object storage.
    pub recordings_uploaded: AtomicU64,
    /// Recording segment uploads that failed (kept in the spool and retried).
    pub recording_failures: AtomicU64,
    /// The LiveKit publisher: 0 not configured, 1 joining, 2 publishing.
    pub livekit_state: AtomicI64,
    /// Sessions that got the track published.
    pub livekit_joins: AtomicU64,
    /// Join attempts after a session was lost or a join failed.
    pub livekit_reconnects: AtomicU64,
    /// Signal round trip (ping/pong), microseconds.
    pub livekit_signal_rtt_us: AtomicI64,
    /// Media round trip from RTCP receiver reports, microseconds.
    pub livekit_media_rtt_us: AtomicI64,
    /// Packets the server reports lost in the current session.
    pub livekit_packets_lost: AtomicI64,
    /// Fraction lost in the last receiver report, parts per million.
    pub livekit_fraction_lost_ppm: AtomicI64,
    /// Opus packets sent into the room.
    pub livekit_packets_sent: AtomicU64,
    /// Packets not sent because no session was up (or the publisher lagged).
    pub livekit_packets_dropped: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self, now_unix: i64) -> String {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let level = |g: &AtomicI64| g.load(Ordering::Relaxed) as f64;
        let started = self.realtime_session_started.load(Ordering::Relaxed);
        let session_age = if started > 0 {
            (now_unix - started).max(0)
        } else {
            0
        };
        let micros = |g: &AtomicI64| level(g) / 1e6;
        let rows: [(&str, &str, &str, f64); 22] = [
            (
                "frames_total",
                "counter",
                "20 ms frames sent to the outputs.",
                count(&self.frames),
            ),
            (
                "frames_late_total",
                "counter",
                "Frames produced after their deadline.",
                count(&self.frames_late),
            ),
            (
                "fallback_seconds_total",
                "counter",
                "Seconds of output played by the emergency source.",
                count(&self.emergency_frames) * 0.02,
            ),
            (
                "silence_events_total",
                "counter",
                "Times the silence watchdog tripped on the final mix.",
                count(&self.silence_events),
            ),
            (
                "realtime_reconnects_total",
                "counter",
                "Realtime sessions opened after the first.",
                count(&self.realtime_reconnects),
            ),
            (
                "voice_failures_total",
                "counter",
                "Cues a voice failed to speak.",
                count(&self.voice_failures),
            ),
            (
                "dj_lines_replaced_total",
                "counter",
                "Lines of the DJ that failed moderation and aired as a safe line instead.",
                count(&self.dj_lines_replaced),
            ),
            (
                "submissions_reannounced_total",
                "counter",
                "Submissions announced again after waiting too long between stages.",
                count(&self.submissions_reannounced),
            ),
            (
                "recordings_uploaded_total",
                "counter",
                "Recording segments uploaded.",
                count(&self.recordings_uploaded),
            ),
            (
                "recording_failures_total",
                "counter",
                "Recording uploads that failed and were kept for retry.",
                count(&self.recording_failures),
            ),
            (
                "queue_depth",
                "gauge",
                "Claimed submissions waiting to be played.",
                level(&self.queue_depth),
            ),
            (
                "realtime_session_age_seconds",
                "gauge",
                "Age of the current Realtime session.",
                session_age as f64,
            ),
            (
                "listeners",
                "gauge",
                "Listeners on the local HTTP stream.",
                level(&self.listeners),
            ),
            (
                "livekit_state",
                "gauge",
                "LiveKit publisher: 0 not configured, 1 joining, 2 publishing.",
                level(&self.livekit_state),
            ),
            (
                "livekit_joins_total",
                "counter",
                "LiveKit sessions that published the track.",
                count(&self.livekit_joins),
            ),
            (
                "livekit_reconnects_total",
                "counter",
                "LiveKit join attempts after a lost session or a failed join.",
                count(&self.livekit_reconnects),
            ),
            (
                "livekit_signal_rtt_seconds",
                "gauge",
                "LiveKit signal round trip (ping/pong).",
                micros(&self.livekit_signal_rtt_us),
            ),
            (
                "livekit_media_rtt_seconds",
                "gauge",
                "Media round trip from RTCP receiver reports.",
                micros(&self.livekit_media_rtt_us),
            ),
            (
                "livekit_packets_lost",
                "gauge",
                "Packets the LiveKit server reports lost in the current session.",
                level(&self.livekit_packets_lost),
            ),
            (
                "livekit_fraction_lost",
                "gauge",
                "Fraction of packets lost in the last receiver report.",
                level(&self.livekit_fraction_lost_ppm) / 1e6,
            ),
            (
                "livekit_packets_sent_total",
                "counter",
                "Opus packets sent into the LiveKit room.",
                count(&self.livekit_packets_sent),
            ),
            (
                "livekit_packets_dropped_total",
                "counter",
                "Opus packets not sent because no LiveKit session was up.",
                count(&self.livekit_packets_dropped),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP radio24_{name} {help}");
            let _ = writeln!(out, "# TYPE radio24_{name} {kind}");
            let _ = writeln!(out, "radio24_{name} {value}");
        }
        out
    }
}
