//! One reader per accepted container, each the only parser of its container in the crate.
//!
//! A reader walks the upload once, front to back, and hands its caller what both users
//! need: the codec parameters, and the packets (PCM frames for WAV) with their timing.
//! [`crate::probe`] walks and sums the timing; [`crate::decode`] walks and decodes the
//! packets it was handed. Neither parses the bytes a second time.
//!
//! The readers are the security boundary for uploads, so they share these rules:
//! - they only slice the input: no buffer is sized from a field in the file, and a reader
//!   allocates nothing (packets go to the caller's callback as borrowed slices);
//! - work is linear in the input: every loop advances by at least one byte or one element;
//! - arithmetic on values from the file is checked or saturating;
//! - every refusal is a [`ProbeError`], whichever caller asked.
//!
//! They do not need the `decode` feature: ingest probes without any codec built in.

pub mod mp3;
pub mod ogg;
pub mod wav;
pub mod webm;

use std::time::Duration;

use crate::format::AudioFormat;
#[cfg(doc)]
use crate::format::ProbeError;

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Opus always runs its clock at 48 kHz, whatever the input rate was.
pub const OPUS_RATE: u32 = 48_000;

/// The container `bytes` claim to be, from their first bytes alone (never from a
/// client's `Content-Type`). Only the reader can tell whether the claim holds.
#[must_use]
pub fn sniff(bytes: &[u8]) -> Option<AudioFormat> {
    if bytes.starts_with(&webm::MAGIC) {
        Some(AudioFormat::WebmOpus)
    } else if bytes.starts_with(ogg::CAPTURE) {
        Some(AudioFormat::OggOpus)
    } else if wav::sniff(bytes) {
        Some(AudioFormat::Wav)
    } else if mp3::sniff(bytes) {
        Some(AudioFormat::Mp3)
    } else {
        None
    }
}

/// `samples / rate` seconds as a `Duration`, without floating point.
pub(crate) fn samples_to_duration(samples: u64, rate: u32) -> Duration {
    let Some(rate) = std::num::NonZeroU64::new(u64::from(rate)) else {
        return Duration::ZERO;
    };
    let secs = samples / rate;
    // The remainder is < rate <= u32::MAX, so this product fits in a u64.
    let nanos = (samples % rate) * NANOS_PER_SEC / rate.get();
    Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
}

fn nanos_to_duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

fn opus_samples_to_nanos(samples: u64) -> i128 {
    i128::from(samples) * i128::from(NANOS_PER_SEC) / i128::from(OPUS_RATE)
}

/// Samples (at 48 kHz) in one Opus packet, read from its TOC byte (RFC 6716 §3.1).
#[must_use]
pub fn opus_packet_samples(packet: &[u8]) -> u64 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = toc >> 3;
    let frame: u64 = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config & 1)],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        // Code 3: the frame count is in the low six bits of the next byte.
        _ => packet.get(1).map_or(0, |b| u64::from(b & 0x3F)),
    };
    frame * frames
}

fn read_u16_le(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32_le(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
