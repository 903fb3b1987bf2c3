//! What the prober reports and refuses with, in a leaf module of its own: the container
//! readers and the prober both use these types, and neither should import the other for them.

use std::time::Duration;

/// An accepted upload container and codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// Opus in WebM (or Matroska).
    WebmOpus,
    /// Opus in Ogg.
    OggOpus,
    /// Uncompressed PCM or IEEE float in RIFF/WAVE.
    Wav,
    /// MPEG Layer III.
    Mp3,
}

impl AudioFormat {
    /// The MIME type to store and serve the upload with.
    #[must_use]
    pub fn mime(&self) -> &'static str {
        match self {
            Self::WebmOpus => "audio/webm",
            Self::OggOpus => "audio/ogg",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
        }
    }

    /// The file extension (without a dot) to store the upload under.
    #[must_use]
    pub fn extension(&self) -> &'static str {
        match self {
            Self::WebmOpus => "webm",
            Self::OggOpus => "ogg",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
        }
    }
}

/// What [`crate::probe::probe`] found out about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    pub format: AudioFormat,
    /// Playable length of the audio present in the bytes.
    pub duration: Duration,
    /// Sample rate in Hz. Always 48 kHz for Opus, the rate it decodes and is timed at.
    pub sample_rate: Option<u32>,
    /// Channel count, when the container says.
    pub channels: Option<u16>,
}

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not one of the allowed containers at all.
    #[error("not a recognised audio format (allowed: WebM/Opus, Ogg/Opus, WAV, MP3)")]
    Unrecognised,
    /// An allowed container holding a codec or layout we do not accept.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(&'static str),
    /// An allowed container that is truncated in its headers or inconsistent.
    #[error("malformed audio: {0}")]
    Malformed(&'static str),
    /// A well-formed header with no timed audio after it.
    #[error("audio duration could not be determined")]
    UnknownDuration,
}
