//! Everything after the engine's frame: one Opus encoder whose packets go, as Ogg pages, to
//! the HTTP listeners ([`StreamHub`]) and to the segment recorder ([`Recorder`]), and as
//! they are to the LiveKit room ([`RoomFeed`]) when one is configured.
//!
//! The engine calls [`Outputs::push`] once per 20 ms frame on its own thread. That encodes
//! the frame (once, whatever the number of outputs) and hands the packet on without ever
//! waiting: listeners read from a ring and are dropped if they fall behind, the recorder
//! takes packets over a bounded channel and counts what it has to drop.
//!
//! Wiring:
//!
//! ```no_run
//! # use std::{sync::Arc, time::Duration};
//! # use host_streamer::{audio::Frame, metrics::Metrics, output::{OutputConfig, Outputs}};
//! # async fn wire(
//! #     env: shared::config::Env,
//! #     recordings: Arc<dyn shared::store::ObjectStore>,
//! #     metrics: Arc<Metrics>,
//! #     next_frame: impl Fn() -> Frame,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! let config = OutputConfig::from_env(&env)?;
//! let mut outputs = Outputs::start(config, recordings, metrics).await?;
//! let routes: axum::Router = outputs.hub().routes(); // GET/HEAD /stream.ogg, to merge
//! // On the engine thread, every frame:
//! outputs.push(&next_frame(), chrono::Utc::now());
//! // For the on-air log:
//! let segment = outputs.recorder().current_segment();
//! // At shutdown, once the engine has stopped:
//! let report = outputs.finish(Duration::from_secs(20)).await;
//! # Ok(()) }
//! ```

pub mod encoder;
pub mod hub;
pub mod ogg;
pub mod recorder;
pub mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::config::{ConfigError, Env};
use shared::store::ObjectStore;

pub use encoder::{OpusEncoder, PACKET_SAMPLES};
pub use hub::{Listener, STREAM_PATH, StreamHub};
pub use ogg::{OggWriter, OpusHeaders};
pub use recorder::{FinishReport, Recorder, RecordingConfig, RecordingSegment};

use crate::audio::Frame;
use crate::audio::air::Sink;
use crate::livekit::RoomFeed;
use crate::metrics::Metrics;

/// Why the outputs could not start.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("opus encoder: {0}")]
    Encoder(#[from] opus::Error),
    #[error("recording spool {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("output configuration: {0}")]
    Config(String),
}

/// Configuration of the encoder, the listener stream and the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// Opus bitrate in bits per second, 6 000 to 510 000. `STREAM_BITRATE` (`96000` or
    /// `96k`), default 96 kb/s.
    pub bitrate: u32,
    /// Packets per Ogg page of the live stream: its latency. Default 10 (200 ms).
    pub packets_per_page: usize,
    /// Pages a listener may fall behind before it is dropped. Default 50 (10 s).
    pub listener_buffer_pages: usize,
    pub recording: RecordingConfig,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            bitrate: OpusEncoder::DEFAULT_BITRATE,
            packets_per_page: OggWriter::DEFAULT_PACKETS_PER_PAGE,
            listener_buffer_pages: StreamHub::DEFAULT_BUFFER_PAGES,
            recording: RecordingConfig::default(),
        }
    }
}

impl OutputConfig {
    /// Reads `STREAM_BITRATE`, `RECORDING_SEGMENT` (`1h`, `30m`, `10s`) and
    /// `RECORDING_SPOOL_DIR`; everything else keeps its default.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = OutputConfig::default();
        let bitrate = env
            .optional_with("STREAM_BITRATE", parse_bitrate)?
            .unwrap_or(defaults.bitrate);
        let segment = env.duration_or("RECORDING_SEGMENT", defaults.recording.segment)?;
        if let Err(reason) = recorder::validate_segment(segment) {
            let raw = env.raw("RECORDING_SEGMENT").unwrap_or_default();
            return Err(ConfigError::invalid("RECORDING_SEGMENT", raw, reason));
        }
        let spool_dir = env
            .raw("RECORDING_SPOOL_DIR")
            .map_or(defaults.recording.spool_dir, PathBuf::from);
        Ok(OutputConfig {
            bitrate,
            recording: RecordingConfig {
                segment,
                spool_dir,
                ..defaults.recording
            },
            ..defaults
        })
    }
}

/// `96000`, `96k` or `96kbps` to bits per second, within what Opus supports.
fn parse_bitrate(s: &str) -> Result<u32, String> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches("bps").trim_end_matches("b/s");
    let (digits, scale) = match digits.strip_suffix('k') {
        Some(d) => (d, 1000),
        None => (digits, 1),
    };
    let bitrate = digits
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| "expected bits per second, e.g. 96000 or 96k".to_owned())?;
    if !OpusEncoder::BITRATES.contains(&bitrate) {
        return Err("Opus takes 6k to 510k".to_owned());
    }
    Ok(bitrate)
}

/// The engine's one entry point into the outputs.
#[derive(Debug)]
pub struct Outputs {
    encoder: OpusEncoder,
    /// The live stream's pages; `None` once finished.
    live: Option<OggWriter>,
    hub: StreamHub,
    recorder: Recorder,
    room: Option<RoomFeed>,
    encode_failures: u64,
}

impl Outputs {
    /// Builds the encoder, the listener hub and the recorder (which first uploads what a
    /// previous run left in the spool). Needs a tokio runtime; `recordings` is the store the
    /// segments go to.
    pub async fn start(
        config: OutputConfig,
        recordings: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Outputs, OutputError> {
        if !OpusEncoder::BITRATES.contains(&config.bitrate) {
            return Err(OutputError::Config(format!(
                "bitrate {} outside what Opus takes (6k to 510k)",
                config.bitrate
            )));
        }
        let encoder = OpusEncoder::new(config.bitrate)?;
        let headers = OpusHeaders::new(encoder.pre_skip());
        let live =
            OggWriter::new(rand::random(), &headers).with_packets_per_page(config.packets_per_page);
        let hub = StreamHub::new(
            live.headers().clone(),
            config.listener_buffer_pages,
            Arc::clone(&metrics),
        );
        let recorder = Recorder::start(config.recording, headers, recordings, metrics).await?;
        tracing::info!(
            bitrate = config.bitrate,
            pre_skip = encoder.pre_skip(),
            "outputs started"
        );
        Ok(Outputs {
            encoder,
            live: Some(live),
            hub,
            recorder,
            room: None,
            encode_failures: 0,
        })
    }

    /// Also sends every packet to the LiveKit publisher.
    pub fn with_room(mut self, room: RoomFeed) -> Self {
        self.room = Some(room);
        self
    }

    /// Encodes `frame` and sends it to the listeners and the recorder; `at` is when it goes
    /// on air (it places the frame in a recording segment). Never blocks. Call it from one
    /// thread, once per frame, in order.
    pub fn push(&mut self, frame: &Frame, at: DateTime<Utc>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let packet = match self.encoder.encode(frame) {
            Ok(packet) => packet,
            Err(e) => {
                self.encode_failures += 1;
                if self.encode_failures % 500 == 1 {
                    tracing::error!(failures = self.encode_failures, error = %e,
                        "opus encoding failed; frame skipped");
                }
                return;
            }
        };
        match live.push(&packet, PACKET_SAMPLES) {
            Ok(Some(page)) => self.hub.publish(page),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "live stream: packet skipped"),
        }
        if let Some(room) = &self.room {
            room.send(packet.clone());
        }
        self.recorder.record(packet, at);
    }

    /// The listener fan-out, for the HTTP routes.
    pub fn hub(&self) -> &StreamHub {
        &self.hub
    }

    /// The recorder, for the current segment and the drop count.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The encoder's delay in samples, which every stream's `OpusHead` declares.
    pub fn pre_skip(&self) -> u16 {
        self.encoder.pre_skip()
    }

    /// At shutdown, once the engine has stopped pushing: ends the live stream (listeners
    /// get its last page and the end of the response) and finishes the recorder, waiting up
    /// to `within` for the uploads.
    pub async fn finish(mut self, within: Duration) -> FinishReport {
        if let Some(live) = self.live.take() {
            self.hub.publish(live.finish(None));
        }
        self.hub.close();
        self.recorder.finish(within).await
    }
}

/// The air loop's sink: the engine core only knows [`Sink`], and the outputs plug into it
/// here.
impl Sink for Outputs {
    fn push(&mut self, frame: &Frame, at: DateTime<Utc>) {
        Outputs::push(self, frame, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_env_and_defaults() {
        let config = OutputConfig::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config, OutputConfig::default());
        assert_eq!(config.bitrate, 96_000);
        assert_eq!(config.recording.segment, Duration::from_secs(3600));

        let env = Env::from_pairs([
            ("STREAM_BITRATE", "128k"),
            ("RECORDING_SEGMENT", "2s"),
            ("RECORDING_SPOOL_DIR", "var/spool"),
        ]);
        let config = OutputConfig::from_env(&env).unwrap();
        assert_eq!(config.bitrate, 128_000);
        assert_eq!(config.recording.segment, Duration::from_secs(2));
        assert_eq!(config.recording.spool_dir, PathBuf::from("var/spool"));

        for (name, value) in [
            ("STREAM_BITRATE", "1M"),
            ("STREAM_BITRATE", "600k"),
            ("RECORDING_SEGMENT", "7m"),
            ("RECORDING_SEGMENT", "1500ms"),
        ] {
            let err = OutputConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn bitrates_parse() {
        assert_eq!(parse_bitrate("96000"), Ok(96_000));
        assert_eq!(parse_bitrate("64kbps"), Ok(64_000));
        assert_eq!(parse_bitrate("32 kb/s"), Ok(32_000));
        assert!(parse_bitrate("5000").is_err());
        assert!(parse_bitrate("fast").is_err());
    }
}
