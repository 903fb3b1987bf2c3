//! RIFF/WAVE: the `fmt ` chunk's parameters and the `data` chunk's PCM frames.
//!
//! A RIFF file is a 12-byte header (`RIFF`, size, `WAVE`) and then chunks, each an ID, a
//! little-endian `u32` size and a body padded to an even length. The reader walks chunks
//! until it holds both `fmt ` and `data`, and hands back the data as whole frames: the
//! duration is the frame count over the rate, the decoder converts the frames.
//!
//! Edge cases:
//! - accepted: integer PCM 16/24/32-bit and IEEE float 32/64-bit, plain or
//!   `WAVE_FORMAT_EXTENSIBLE` with a standard sub-format GUID;
//! - 8-bit and other depths, compressed and unknown encodings are `UnsupportedCodec`;
//! - RF64 does not sniff as WAV, so it is `Unrecognised`;
//! - a block align that disagrees with channels × depth is `Malformed`;
//! - a data size past the end (streamed files leave `0xFFFFFFFF`, or zero in both sizes)
//!   is clamped to the bytes present; a trailing partial frame is not audio;
//! - a chunk size that would overflow ends the walk; empty chunks advance by 8 bytes.

use super::{read_u16_le, read_u32_le, samples_to_duration};
use crate::format::{AudioFormat, AudioInfo, ProbeError};

const PCM: u16 = 1;
const IEEE_FLOAT: u16 = 3;
const EXTENSIBLE: u16 = 0xFFFE;
/// The tail shared by the `KSDATAFORMAT_SUBTYPE_*` GUIDs after the format tag.
const SUBFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// Size fields that streaming writers leave when they cannot seek back.
const PLACEHOLDER_SIZES: [u32; 2] = [0, u32::MAX];

/// How each sample is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Pcm16,
    Pcm24,
    Pcm32,
    Float32,
    Float64,
}

impl Encoding {
    /// Bytes per sample.
    #[must_use]
    pub fn width(self) -> usize {
        match self {
            Self::Pcm16 => 2,
            Self::Pcm24 => 3,
            Self::Pcm32 | Self::Float32 => 4,
            Self::Float64 => 8,
        }
    }

    /// One sample (`width` bytes, little-endian) in `-1.0..1.0`.
    #[must_use]
    pub fn sample(self, b: &[u8]) -> f32 {
        match (self, b) {
            (Self::Pcm16, &[b0, b1, ..]) => f32::from(i16::from_le_bytes([b0, b1])) / 32_768.0,
            // 24-bit: shift into the top of an i32 to keep the sign.
            (Self::Pcm24, &[b0, b1, b2, ..]) => {
                (i32::from_le_bytes([0, b0, b1, b2]) >> 8) as f32 / 8_388_608.0
            }
            (Self::Pcm32, &[b0, b1, b2, b3, ..]) => {
                i32::from_le_bytes([b0, b1, b2, b3]) as f32 / 2_147_483_648.0
            }
            (Self::Float32, &[b0, b1, b2, b3, ..]) => f32::from_le_bytes([b0, b1, b2, b3]),
            (Self::Float64, &[b0, b1, b2, b3, b4, b5, b6, b7, ..]) => {
                f64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]) as f32
            }
            _ => 0.0,
        }
    }
}

/// A WAVE file's format and its audio.
#[derive(Debug, Clone, Copy)]
pub struct Wav<'a> {
    pub encoding: Encoding,
    pub channels: u16,
    pub sample_rate: u32,
    /// The `data` chunk, clamped to the bytes present and cut to whole frames.
    pub data: &'a [u8],
}

/// Whether `buf` starts like a RIFF/WAVE file.
#[must_use]
pub fn sniff(buf: &[u8]) -> bool {
    buf.starts_with(b"RIFF") && buf.get(8..12) == Some(b"WAVE")
}

impl<'a> Wav<'a> {
    /// Walks the chunks of `buf` (which [`sniff`] accepted) to `fmt ` and `data`.
    ///
    /// # Errors
    ///
    /// `Malformed` without a usable `fmt ` or a `data` chunk, `UnsupportedCodec` for
    /// encodings other than the accepted ones.
    pub fn read(buf: &'a [u8]) -> Result<Self, ProbeError> {
        let riff_size = read_u32_le(buf, 4).unwrap_or_default();
        let mut format = None;
        let mut data = None;
        let mut pos: usize = 12;
        while format.is_none() || data.is_none() {
            let Some(header) = buf.get(pos..).and_then(|rest| rest.get(..8)) else {
                break;
            };
            let (id, size) = (&header[..4], read_u32_le(header, 4).unwrap_or_default());
            let body = pos + 8;
            let available = buf.len() - body;
            let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
            match id {
                b"fmt " => {
                    format = Some(read_fmt(buf.get(body..body + size_usize.min(available)))?);
                }
                b"data" => {
                    let streamed =
                        size == u32::MAX || (size == 0 && PLACEHOLDER_SIZES.contains(&riff_size));
                    // Never trust a size past the bytes we actually hold.
                    let len = if streamed {
                        available
                    } else {
                        size_usize.min(available)
                    };
                    data = buf.get(body..body + len);
                    if len == available {
                        break;
                    }
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            let Some(next) = body
                .checked_add(size_usize)
                .and_then(|n| n.checked_add(size_usize & 1))
            else {
                break;
            };
            pos = next;
        }
        let (encoding, channels, sample_rate) =
            format.ok_or(ProbeError::Malformed("wav: no fmt chunk"))?;
        let data = data.ok_or(ProbeError::Malformed("wav: no data chunk"))?;
        let frame_bytes = usize::from(channels) * encoding.width();
        let whole = data.len() - data.len() % frame_bytes;
        Ok(Self {
            encoding,
            channels,
            sample_rate,
            data: &data[..whole],
        })
    }

    /// Bytes per frame (one sample of every channel); never zero.
    #[must_use]
    pub fn frame_bytes(&self) -> usize {
        usize::from(self.channels) * self.encoding.width()
    }

    /// The PCM frames in order; frame `n` plays at `n / sample_rate` seconds.
    pub fn frames(&self) -> std::slice::ChunksExact<'a, u8> {
        self.data.chunks_exact(self.frame_bytes())
    }

    /// How many frames the data holds.
    #[must_use]
    pub fn frame_count(&self) -> u64 {
        u64::try_from(self.data.len() / self.frame_bytes()).unwrap_or(u64::MAX)
    }

    /// The prober's answer: the frames summed.
    #[must_use]
    pub fn info(&self) -> AudioInfo {
        AudioInfo {
            format: AudioFormat::Wav,
            duration: samples_to_duration(self.frame_count(), self.sample_rate),
            sample_rate: Some(self.sample_rate),
            channels: Some(self.channels),
        }
    }
}

/// Encoding, channels and rate from a `fmt ` chunk's body.
fn read_fmt(chunk: Option<&[u8]>) -> Result<(Encoding, u16, u32), ProbeError> {
    let fmt = chunk
        .filter(|c| c.len() >= 16)
        .ok_or(ProbeError::Malformed("wav: short fmt chunk"))?;
    let field = |at| read_u16_le(fmt, at).unwrap_or_default();
    let mut tag = field(0);
    let channels = field(2);
    let sample_rate = read_u32_le(fmt, 4).unwrap_or_default();
    let block_align = field(12);
    let bits = field(14);
    if tag == EXTENSIBLE {
        tag = extensible_subformat(fmt)?;
    }
    let encoding = match (tag, bits) {
        (PCM, 16) => Encoding::Pcm16,
        (PCM, 24) => Encoding::Pcm24,
        (PCM, 32) => Encoding::Pcm32,
        (IEEE_FLOAT, 32) => Encoding::Float32,
        (IEEE_FLOAT, 64) => Encoding::Float64,
        (PCM, _) => {
            return Err(ProbeError::UnsupportedCodec(
                "wav: PCM bit depth not 16/24/32",
            ));
        }
        (IEEE_FLOAT, _) => {
            return Err(ProbeError::UnsupportedCodec("wav: float not 32/64-bit"));
        }
        _ => {
            return Err(ProbeError::UnsupportedCodec(
                "wav: compressed or non-PCM encoding",
            ));
        }
    };
    if channels == 0 || sample_rate == 0 {
        return Err(ProbeError::Malformed("wav: zero channels or sample rate"));
    }
    let frame_bytes = usize::from(channels) * encoding.width();
    if usize::from(block_align) != frame_bytes {
        return Err(ProbeError::Malformed(
            "wav: block align disagrees with format",
        ));
    }
    Ok((encoding, channels, sample_rate))
}

/// The real format tag of a `WAVE_FORMAT_EXTENSIBLE` header.
fn extensible_subformat(fmt: &[u8]) -> Result<u16, ProbeError> {
    let guid = fmt
        .get(24..40)
        .filter(|_| read_u16_le(fmt, 16).is_some_and(|cb| cb >= 22))
        .ok_or(ProbeError::Malformed("wav: short extensible fmt chunk"))?;
    if guid[2..] != SUBFORMAT_TAIL {
        return Err(ProbeError::UnsupportedCodec(
            "wav: unknown extensible subformat",
        ));
    }
    Ok(u16::from_le_bytes([guid[0], guid[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::wav;

    #[test]
    fn the_frames_handed_out_are_whole_and_their_count_is_the_duration() {
        let bytes = wav(PCM, 2, 16, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let read = Wav::read(&bytes).unwrap();
        let frames: Vec<&[u8]> = read.frames().collect();
        assert_eq!(frames, vec![&[1, 2, 3, 4][..], &[5, 6, 7, 8][..]]);
        assert_eq!(read.frame_count(), 2);
        assert_eq!(read.info().duration, std::time::Duration::from_micros(250));
    }

    #[test]
    fn a_data_chunk_before_fmt_is_still_found() {
        let mut bytes = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\x00\x40".to_vec();
        bytes.extend_from_slice(&wav(PCM, 1, 16, &[])[12..36]);
        let read = Wav::read(&bytes).unwrap();
        assert_eq!(
            (read.encoding, read.data),
            (Encoding::Pcm16, &[0, 0x40][..])
        );
    }

    #[test]
    fn every_encoding_converts_to_the_unit_range() {
        assert_eq!(Encoding::Pcm16.sample(&[0x00, 0xC0]), -0.5);
        assert_eq!(Encoding::Pcm24.sample(&[0x00, 0x00, 0x40]), 0.5);
        assert_eq!(Encoding::Pcm32.sample(&[0, 0, 0, 0x80]), -1.0);
        assert_eq!(Encoding::Float32.sample(&0.25f32.to_le_bytes()), 0.25);
        assert_eq!(Encoding::Float64.sample(&0.25f64.to_le_bytes()), 0.25);
        // A short slice (never handed out by `frames`) is silence, not a panic.
        assert_eq!(Encoding::Float64.sample(&[1]), 0.0);
    }

    #[test]
    fn a_chunk_size_past_the_end_ends_the_walk() {
        let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
        bytes.extend_from_slice(b"junk\xff\xff\xff\xff");
        assert_eq!(
            Wav::read(&bytes).unwrap_err(),
            ProbeError::Malformed("wav: no fmt chunk")
        );
    }
}
