//! Radio24's audio media: what callers upload and what the station plays.
//!
//! - [`container`]: one reader per accepted container (WebM/Matroska, Ogg, WAV, MP3), the
//!   only parser of each. A reader walks the bytes once and yields the codec parameters
//!   and the packets with their timing.
//! - [`probe`]: the security boundary for uploads: walk and sum. Identifies the container
//!   and codec and measures the duration of untrusted bytes with bounded work and no
//!   buffer sized from an untrusted field.
//! - [`ogg`]: Ogg pages (reading with checks, the CRC), for the prober and the recorder;
//!   the page layer of [`container::ogg`].
//! - [`resample`]: sample-rate conversion for mono and stereo f32.
//! - [`decode`] (feature `decode`): walk and decode, to mono PCM (Opus through libopus, MP3
//!   through symphonia), for local transcription and for playing recordings on air.

pub mod container;
#[cfg(feature = "decode")]
pub mod decode;
mod format;
pub mod probe;
pub mod resample;

pub use container::ogg;
#[cfg(test)]
mod test_files;
