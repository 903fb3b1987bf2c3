//! Content sniffing and duration probing for uploaded audio: the security boundary.
//!
//! The public ingest API calls [`probe`] on the raw upload: the format is decided from the
//! bytes alone (never from the client's `Content-Type`), and the duration is measured from
//! the content so that a length limit can be enforced.
//!
//! Probing is "walk and sum": the container's reader in [`crate::container`] walks the
//! bytes once and the timing it reports is summed; nothing is decoded. The decoder walks
//! with the same readers, so what is probed is exactly what is played.
//!
//! Accepted uploads (each reader's module doc lists its edge cases):
//! - **WebM/Opus**: `DocType` `webm` or `matroska` whose only track is Opus; unknown-size
//!   Segments and Clusters (browsers' `MediaRecorder`) included.
//! - **Ogg/Opus**: one logical stream whose first packet is `OpusHead`, every page's CRC
//!   checked.
//! - **WAV**: RIFF/WAVE with integer PCM (16/24/32-bit) or IEEE float (32/64-bit), plain
//!   or `WAVE_FORMAT_EXTENSIBLE`; RF64 is `Unrecognised`.
//! - **MP3**: MPEG-1/2/2.5 Layer III, optionally behind ID3v2 tags; three frames in a row
//!   up front.
//!
//! Durations come from what is in the file (WebM blocks, Ogg granules checked against the
//! packets, MP3 frames, WAV data bytes), so a header that lies about the length cannot
//! slip past a limit. Truncated uploads (cut inside the audio) probe with the audio
//! present; cut inside the headers they are `Malformed`, or `UnknownDuration` when the
//! headers are whole but no timed audio follows. Opus durations exclude the pre-skip, MP3
//! durations the LAME/Xing encoder delay and padding.
//!
//! Hostile input: `probe` never panics, never allocates, makes one forward pass over the
//! bytes (O(n)), and uses checked or saturating arithmetic throughout.

use crate::container::{mp3, ogg, sniff, wav, webm};
pub use crate::format::{AudioFormat, AudioInfo, ProbeError};

/// Sniffs `bytes` and measures the audio in them.
///
/// # Errors
///
/// [`ProbeError::Unrecognised`] when the bytes are none of the allowed containers,
/// [`ProbeError::UnsupportedCodec`] when the container holds something other than
/// the allowed codecs, [`ProbeError::Malformed`] when the headers are cut off or
/// inconsistent, and [`ProbeError::UnknownDuration`] when no timed audio follows them.
pub fn probe(bytes: &[u8]) -> Result<AudioInfo, ProbeError> {
    match sniff(bytes).ok_or(ProbeError::Unrecognised)? {
        AudioFormat::WebmOpus => webm::read(bytes, &mut |_| {})?.info(),
        AudioFormat::OggOpus => ogg::read(bytes, &mut |_| {})?.info(),
        AudioFormat::Wav => Ok(wav::Wav::read(bytes)?.info()),
        AudioFormat::Mp3 => Ok(mp3::read(bytes, &mut |_| {})?.info()),
    }
}
