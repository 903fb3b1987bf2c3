//! MPEG audio: ID3v2 tags, then Layer III frames, each handed to the caller whole.
//!
//! An MPEG audio stream has no container: it is frames back to back, each a 4-byte
//! header (11 sync bits, version, layer, bitrate, rate, padding) whose fields give the
//! frame's length and sample count. The reader skips leading ID3v2 tags, finds the
//! stream, reads the encoder's Xing/Info/VBRI tag in the first frame, then walks the
//! frames: the duration is their samples minus the encoder's delay and padding, the
//! decoder decodes the very frames handed out.
//!
//! Edge cases:
//! - the stream needs three consecutive frames up front, at offset 0 or within 8 KiB
//!   after ID3v2 tags; fewer is `Unrecognised` (random bytes often hold one sync pattern);
//! - Layer I/II streams are `UnsupportedCodec`; free-format and reserved fields are no frame;
//! - an ID3v2 tag running past the end is `Malformed`; an invalid one after the first ends
//!   the tags; its size is only ever used to skip;
//! - the Xing/Info/VBRI frame is no audio and is not handed out;
//! - after lost sync (junk, a tag in the middle, ID3v1 at the end) the walk looks ahead for
//!   two frames in a row of the same stream, like decoders; that look-ahead starts once per
//!   byte position and stops at the first match, so the walk stays linear in practice;
//! - the end padding is dropped only when the tag's frame count is all there.

use super::{read_u32_be, samples_to_duration};
use crate::format::{AudioFormat, AudioInfo, ProbeError};

/// Consecutive frames needed before random bytes are believed to be MPEG audio.
const MIN_RUN: usize = 3;
/// After an ID3 tag, how far to look for the first frame (some taggers pad).
const MAX_LEADING_JUNK: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

/// One frame header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub layer: u8,
    pub sample_rate: u32,
    pub mono: bool,
    /// The whole frame's length in bytes, header included.
    pub len: usize,
    /// Samples per channel the frame decodes to.
    pub samples: u64,
}

impl Header {
    fn same_stream(&self, other: &Header) -> bool {
        self.version == other.version
            && self.layer == other.layer
            && self.sample_rate == other.sample_rate
    }
}

const BITRATES_V1: [[u32; 14]; 3] = [
    [
        32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
];
const BITRATES_V2: [[u32; 14]; 3] = [
    [
        32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// The header `h` (big-endian), if it is a valid MPEG audio frame header.
#[must_use]
pub fn parse_header(h: u32) -> Option<Header> {
    if h >> 21 != 0x7FF || h & 3 == 2 {
        return None; // no sync, or reserved emphasis
    }
    let version = match (h >> 19) & 3 {
        0 => Version::Mpeg25,
        2 => Version::Mpeg2,
        3 => Version::Mpeg1,
        _ => return None,
    };
    let layer = match (h >> 17) & 3 {
        1 => 3,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    let bitrate_index = ((h >> 12) & 0xF) as usize;
    // 0 is "free format", which has no computable frame length; 15 is invalid.
    if bitrate_index == 0 || bitrate_index == 15 {
        return None;
    }
    let table = if version == Version::Mpeg1 {
        &BITRATES_V1
    } else {
        &BITRATES_V2
    };
    let bitrate = u64::from(table[usize::from(layer - 1)][bitrate_index - 1]) * 1000;
    let base_rate = match (h >> 10) & 3 {
        0 => 44_100,
        1 => 48_000,
        2 => 32_000,
        _ => return None,
    };
    let sample_rate = match version {
        Version::Mpeg1 => base_rate,
        Version::Mpeg2 => base_rate / 2,
        Version::Mpeg25 => base_rate / 4,
    };
    let padding = u64::from((h >> 9) & 1);
    let samples: u64 = match (layer, version) {
        (1, _) => 384,
        (2, _) | (3, Version::Mpeg1) => 1152,
        _ => 576,
    };
    let rate = u64::from(sample_rate);
    let len = if layer == 1 {
        (12 * bitrate / rate + padding) * 4
    } else {
        samples / 8 * bitrate / rate + padding
    };
    Some(Header {
        version,
        layer,
        sample_rate,
        mono: (h >> 6) & 3 == 3,
        len: usize::try_from(len).ok()?,
        samples,
    })
}

/// A frame at `pos` that fits entirely in `buf`.
fn frame_at(buf: &[u8], pos: usize) -> Option<Header> {
    let frame = parse_header(read_u32_be(buf, pos)?)?;
    (pos.checked_add(frame.len)? <= buf.len()).then_some(frame)
}

fn frame_of(buf: &[u8], pos: usize, stream: &Header) -> Option<Header> {
    frame_at(buf, pos).filter(|f| f.same_stream(stream))
}

/// A frame at `pos` followed by enough frames of the same stream to believe it.
fn run_at(buf: &[u8], pos: usize, needed: usize) -> Option<Header> {
    let first = frame_at(buf, pos)?;
    let mut at = pos;
    for _ in 0..needed {
        at += frame_of(buf, at, &first)?.len;
    }
    Some(first)
}

/// Whether `buf` starts like MPEG audio: an ID3v2 tag or a frame header.
#[must_use]
pub fn sniff(buf: &[u8]) -> bool {
    buf.starts_with(b"ID3") || read_u32_be(buf, 0).and_then(parse_header).is_some()
}

/// The stream's parameters and what the walk counted.
#[derive(Debug, Clone, Copy)]
pub struct Mp3 {
    /// The first frame's header: version, layer, rate, channel mode of the stream.
    pub stream: Header,
    /// The encoder's Xing/Info/VBRI tag, when the first frame is one.
    pub encoder: Option<EncoderTag>,
    /// Audio frames handed out.
    pub frames: u64,
}

/// What the encoder wrote about the stream in its first frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderTag {
    /// Audio frames in the whole stream.
    pub frames: Option<u64>,
    /// Encoder delay and end padding in samples (LAME tag), for gapless length.
    pub delay: u64,
    pub padding: u64,
}

/// Walks the frames of `buf` (which [`sniff`] accepted), handing each audio frame, header
/// included, to `on_frame`.
///
/// # Errors
///
/// `Unrecognised` without three frames in a row up front, `UnsupportedCodec` for
/// Layer I/II, `Malformed` for a cut-off ID3v2 tag.
pub fn read<'a>(buf: &'a [u8], on_frame: &mut dyn FnMut(&'a [u8])) -> Result<Mp3, ProbeError> {
    let start = skip_id3(buf)?;
    let window = if start == 0 { 0 } else { MAX_LEADING_JUNK };
    let last = start.saturating_add(window).min(buf.len());
    let (first_pos, stream) = (start..=last)
        .find_map(|p| run_at(buf, p, MIN_RUN).map(|f| (p, f)))
        .ok_or(ProbeError::Unrecognised)?;
    if stream.layer != 3 {
        return Err(ProbeError::UnsupportedCodec("mpeg audio layer I/II"));
    }
    let encoder = encoder_tag(buf, first_pos, &stream);
    // The Xing/Info/VBRI frame carries no audio.
    let mut pos = first_pos + if encoder.is_some() { stream.len } else { 0 };
    let mut frames: u64 = 0;
    while let Some((at, frame)) = next_frame(buf, pos, &stream) {
        frames += 1;
        pos = at + frame.len;
        on_frame(&buf[at..pos]);
    }
    Ok(Mp3 {
        stream,
        encoder,
        frames,
    })
}

impl Mp3 {
    /// Samples per channel a gapless decoder plays: the frames' minus delay and padding.
    #[must_use]
    pub fn playable_samples(&self) -> u64 {
        let tag = self.encoder.unwrap_or_default();
        let mut samples = self.frames.saturating_mul(self.stream.samples);
        samples = samples.saturating_sub(tag.delay);
        // The end padding only applies if the end is actually there.
        if tag.frames.is_some_and(|f| self.frames >= f) {
            samples = samples.saturating_sub(tag.padding);
        }
        samples
    }

    /// The prober's answer: the frames summed.
    #[must_use]
    pub fn info(&self) -> AudioInfo {
        AudioInfo {
            format: AudioFormat::Mp3,
            duration: samples_to_duration(self.playable_samples(), self.stream.sample_rate),
            sample_rate: Some(self.stream.sample_rate),
            channels: Some(if self.stream.mono { 1 } else { 2 }),
        }
    }
}

/// The next frame at or after `pos`. After lost sync (garbage, a tag in the
/// middle) it looks ahead, as decoders do, for two frames in a row.
fn next_frame(buf: &[u8], pos: usize, stream: &Header) -> Option<(usize, Header)> {
    if let Some(frame) = frame_of(buf, pos, stream) {
        return Some((pos, frame));
    }
    (pos.checked_add(1)?..buf.len()).find_map(|p| {
        let frame = frame_of(buf, p, stream)?;
        let next = p + frame.len;
        (next == buf.len() || frame_of(buf, next, stream).is_some()).then_some((p, frame))
    })
}

/// Skips ID3v2 tags (some files carry several back to back).
fn skip_id3(buf: &[u8]) -> Result<usize, ProbeError> {
    let mut pos: usize = 0;
    while buf.get(pos..).is_some_and(|rest| rest.starts_with(b"ID3")) {
        let header = buf
            .get(pos..)
            .and_then(|rest| rest.get(..10))
            .ok_or(ProbeError::Malformed("mp3: truncated ID3 tag"))?;
        let syncsafe = &header[6..10];
        if header[3] == 0xFF || header[4] == 0xFF || syncsafe.iter().any(|b| b & 0x80 != 0) {
            return if pos == 0 {
                Err(ProbeError::Unrecognised)
            } else {
                Ok(pos)
            };
        }
        let size = syncsafe
            .iter()
            .fold(0usize, |s, &b| (s << 7) | usize::from(b));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        pos = pos.saturating_add(10 + size + footer);
        if pos > buf.len() {
            return Err(ProbeError::Malformed("mp3: ID3 tag runs past the end"));
        }
    }
    Ok(pos)
}

/// Reads a Xing/Info (with LAME extension) or VBRI header from the first frame.
fn encoder_tag(buf: &[u8], pos: usize, stream: &Header) -> Option<EncoderTag> {
    let frame = buf.get(pos..pos + stream.len)?;
    let side_info = match (stream.version, stream.mono) {
        (Version::Mpeg1, true) => 17,
        (Version::Mpeg1, false) => 32,
        (_, true) => 9,
        (_, false) => 17,
    };
    let xing = 4 + side_info;
    match frame.get(xing..xing + 4) {
        Some(b"Xing" | b"Info") => Some(xing_tag(frame, xing)),
        _ if frame.get(36..40) == Some(b"VBRI") => Some(EncoderTag {
            frames: read_u32_be(frame, 50).map(u64::from),
            ..EncoderTag::default()
        }),
        _ => None,
    }
}

fn xing_tag(frame: &[u8], xing: usize) -> EncoderTag {
    let flags = read_u32_be(frame, xing + 4).unwrap_or_default();
    let mut at = xing + 8;
    let mut frames = None;
    if flags & 1 != 0 {
        frames = read_u32_be(frame, at).map(u64::from);
        at += 4;
    }
    // Byte count, table of contents, quality: skip whichever are present.
    for (bit, len) in [(2, 4), (4, 100), (8, 4)] {
        if flags & bit != 0 {
            at += len;
        }
    }
    let mut tag = EncoderTag {
        frames,
        ..EncoderTag::default()
    };
    // LAME extension: 9-byte encoder string, then delay/padding (12 bits each) at +21.
    if let Some(lame) = frame.get(at..at + 24)
        && [&b"LAME"[..], b"Lavf", b"Lavc"]
            .iter()
            .any(|p| lame.starts_with(p))
    {
        let [a, b, c] = [lame[21], lame[22], lame[23]].map(u64::from);
        tag.delay = (a << 4) | (b >> 4);
        tag.padding = ((b & 0xF) << 8) | c;
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream (version and rate) and length of a Layer III header, as the decoder
    /// used to ask for them.
    fn header(b: &[u8]) -> Option<(Header, usize)> {
        let h = parse_header(read_u32_be(b, 0)?).filter(|h| h.layer == 3)?;
        Some((h, h.len))
    }

    #[test]
    fn frame_lengths_follow_the_spec() {
        // MPEG-1 Layer III, 128 kb/s, 44.1 kHz, no padding: 417 bytes.
        assert_eq!(header(&[0xFF, 0xFB, 0x90, 0x00]).map(|h| h.1), Some(417));
        // MPEG-2 Layer III, 32 kb/s, 24 kHz, padded: 97 bytes.
        let (stream, len) = header(&[0xFF, 0xF3, 0x46, 0x00]).unwrap();
        assert_eq!((stream.sample_rate, len), (24_000, 97));
        // Layer II, free format and a reserved rate are not Layer III frames.
        assert_eq!(header(&[0xFF, 0xFD, 0x90, 0x00]), None);
        assert_eq!(header(&[0xFF, 0xFB, 0x00, 0x00]), None);
        assert_eq!(header(&[0xFF, 0xFB, 0x9C, 0x00]), None);
    }

    #[test]
    fn id3v2_sizes_only_skip() {
        let mut tag = b"ID3\x04\x00\x00".to_vec();
        tag.extend_from_slice(&[0x7F, 0x7F, 0x7F, 0x7F]);
        // A tag claiming 256 MB in a 10-byte upload skips past the end, allocating nothing.
        assert_eq!(
            skip_id3(&tag),
            Err(ProbeError::Malformed("mp3: ID3 tag runs past the end"))
        );
        let mut frames = 0;
        assert!(read(&tag, &mut |_| frames += 1).is_err());
        assert_eq!(frames, 0);
    }

    /// `count` MPEG-2 Layer III frames at 24 kHz, 32 kb/s, unpadded (96 bytes each).
    fn frames(count: usize) -> Vec<u8> {
        let mut frame = [0u8; 96];
        frame[..4].copy_from_slice(&[0xFF, 0xF3, 0x44, 0xC4]);
        frame.repeat(count)
    }

    #[test]
    fn every_frame_is_handed_out_whole_and_counted() {
        let bytes = frames(5);
        let mut lens = Vec::new();
        let mp3 = read(&bytes, &mut |f| lens.push((f[0], f.len()))).unwrap();
        assert_eq!(lens, vec![(0xFF, 96); 5]);
        assert_eq!((mp3.frames, mp3.playable_samples()), (5, 5 * 576));
    }

    #[test]
    fn junk_between_frames_is_skipped_and_not_handed_out() {
        let mut bytes = frames(3);
        bytes.extend_from_slice(b"junk junk");
        bytes.extend(frames(2));
        let mut handed = 0;
        let mp3 = read(&bytes, &mut |f| {
            assert_eq!(f.len(), 96);
            handed += 1;
        })
        .unwrap();
        assert_eq!((mp3.frames, handed), (5, 5));
    }

    #[test]
    fn an_info_frame_is_read_and_not_handed_out_as_audio() {
        let mut bytes = frames(4);
        // Mono MPEG-2: side info is 9 bytes, so the tag sits at 13.
        bytes[13..17].copy_from_slice(b"Info");
        bytes[17..21].copy_from_slice(&1u32.to_be_bytes());
        bytes[21..25].copy_from_slice(&3u32.to_be_bytes());
        let mut handed = 0;
        let mp3 = read(&bytes, &mut |_| handed += 1).unwrap();
        assert_eq!(handed, 3);
        assert_eq!(mp3.encoder.and_then(|t| t.frames), Some(3));
    }
}
