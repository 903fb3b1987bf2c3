//! Radio24's audio media: what callers upload and what the station plays.
//!
//! - [`probe`]: the security boundary for uploads. Identifies the container and codec and
//!   measures the duration of untrusted bytes with bounded work and no buffer sized from an
//!   untrusted field.
//! - [`ogg`]: Ogg pages (reading with checks, the CRC), for the prober and the recorder.
//! - [`resample`]: sample-rate conversion for mono and stereo f32.
//! - [`decode`] (feature `decode`): probed uploads to 16 kHz mono PCM (Opus through libopus,
//!   MP3 through symphonia), for local transcription and for playing recordings on air.

#[cfg(feature = "decode")]
pub mod decode;
pub mod ogg;
pub mod probe;
pub mod resample;
