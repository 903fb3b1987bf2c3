//! MPEG-1/2/2.5 Layer III: frames found here, decoded by symphonia's decoder.
//!
//! Only whole frames (bounded by the format at under 3 KB) are handed over; symphonia's own
//! demuxer is not used because it sizes buffers from tag headers.

use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{CODEC_TYPE_MP3, CodecParameters, Decoder, DecoderOptions};
use symphonia::core::formats::Packet;
use symphonia::default::codecs::MpaDecoder;

use super::{DecodeError, Limit};

/// What the stream's frames share; junk that happens to look like a header rarely matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stream {
    version: u8,
    rate: u32,
}

/// Mono samples and their rate.
pub(super) fn decode(bytes: &[u8], limit: Limit) -> Result<(Vec<f32>, u32), DecodeError> {
    let frames = frames(bytes);
    let Some(&(_, stream)) = frames.first() else {
        return Err(DecodeError::Corrupt("MP3: no audio frames".into()));
    };
    let mut params = CodecParameters::new();
    params.for_codec(CODEC_TYPE_MP3);
    let mut decoder = MpaDecoder::try_new(&params, &DecoderOptions::default())
        .map_err(|e| DecodeError::Corrupt(format!("starting the MP3 decoder: {e}")))?;
    let mut out = Vec::new();
    let mut decoded = 0usize;
    for (i, &(frame, _)) in frames.iter().enumerate() {
        let packet = Packet::new_from_slice(0, i as u64, 1, frame);
        // A frame the decoder refuses (typically one whose bit reservoir lies before the
        // first frame found) is skipped, as players do.
        let Ok(AudioBufferRef::F32(buf)) = decoder.decode(&packet) else {
            continue;
        };
        decoded += 1;
        let channels = buf.spec().channels.count().max(1);
        let scale = 1.0 / channels as f32;
        out.extend(
            (0..buf.frames()).map(|n| (0..channels).map(|c| buf.chan(c)[n]).sum::<f32>() * scale),
        );
        limit.check(stream.rate, out.len())?;
    }
    if decoded == 0 {
        return Err(DecodeError::Corrupt(format!(
            "none of its {} MP3 frames could be decoded",
            frames.len()
        )));
    }
    Ok((out, stream.rate))
}

/// Every Layer III frame of the first stream, after any ID3v2 tags; junk between frames
/// (and an ID3v1 tag at the end) is skipped byte by byte, like decoders resynchronise.
fn frames(bytes: &[u8]) -> Vec<(&[u8], Stream)> {
    let mut pos = skip_id3v2(bytes);
    let mut stream = None;
    let mut out = Vec::new();
    while pos + 4 <= bytes.len() {
        let found = header(&bytes[pos..])
            .filter(|&(s, len)| match stream {
                Some(known) => s == known,
                // The first frame must be followed by another (or the end), so that a stray
                // sync pattern cannot pick the stream.
                None => match bytes.get(pos + len..) {
                    Some([]) => true,
                    Some(next) => header(next).is_some_and(|(n, _)| n == s),
                    None => false,
                },
            })
            .and_then(|(s, len)| Some((bytes.get(pos..pos + len)?, s)));
        match found {
            Some((frame, s)) => {
                stream = Some(s);
                out.push((frame, s));
                pos += frame.len();
            }
            None => pos += 1,
        }
    }
    out
}

/// The offset after leading ID3v2 tags (whose sizes are only used to skip, never to allocate).
fn skip_id3v2(bytes: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(tag) = bytes.get(pos..pos + 10).filter(|t| t.starts_with(b"ID3")) {
        // Four 7-bit bytes ("syncsafe"), then a 10-byte footer when flag 0x10 is set.
        let size = tag[6..10]
            .iter()
            .fold(0usize, |acc, &b| acc << 7 | usize::from(b & 0x7F));
        let footer = if tag[5] & 0x10 != 0 { 10 } else { 0 };
        pos += 10 + size + footer;
    }
    pos.min(bytes.len())
}

/// A Layer III frame header at the start of `b`: its stream and the frame's length.
fn header(b: &[u8]) -> Option<(Stream, usize)> {
    let &[b0, b1, b2, _] = b.get(..4)? else {
        return None;
    };
    // 11 sync bits, then version (00 = 2.5, 01 reserved, 10 = 2, 11 = 1) and layer (01 = III).
    if b0 != 0xFF || b1 & 0xE0 != 0xE0 || (b1 >> 1) & 3 != 1 {
        return None;
    }
    let version = (b1 >> 3) & 3;
    let (bitrate_index, rate_index) = (usize::from(b2 >> 4), usize::from((b2 >> 2) & 3));
    let padding = usize::from((b2 >> 1) & 1);
    // Free-format (index 0) frames have no length in the header; none are accepted.
    if version == 1 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const MPEG1_KBPS: [usize; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const MPEG2_KBPS: [usize; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    const RATES: [u32; 3] = [44_100, 48_000, 32_000];
    let (kbps, rate, slots) = match version {
        3 => (MPEG1_KBPS[bitrate_index], RATES[rate_index], 144),
        2 => (MPEG2_KBPS[bitrate_index], RATES[rate_index] / 2, 72),
        _ => (MPEG2_KBPS[bitrate_index], RATES[rate_index] / 4, 72),
    };
    let len = slots * kbps * 1000 / rate as usize + padding;
    Some((Stream { version, rate }, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_follow_the_spec() {
        // MPEG-1 Layer III, 128 kb/s, 44.1 kHz, no padding: 417 bytes.
        assert_eq!(header(&[0xFF, 0xFB, 0x90, 0x00]).map(|h| h.1), Some(417));
        // MPEG-2 Layer III, 32 kb/s, 24 kHz, padded: 97 bytes.
        let (stream, len) = header(&[0xFF, 0xF3, 0x46, 0x00]).unwrap();
        assert_eq!((stream.rate, len), (24_000, 97));
        // Layer II, free format and a reserved rate are not Layer III frames.
        assert_eq!(header(&[0xFF, 0xFD, 0x90, 0x00]), None);
        assert_eq!(header(&[0xFF, 0xFB, 0x00, 0x00]), None);
        assert_eq!(header(&[0xFF, 0xFB, 0x9C, 0x00]), None);
    }

    #[test]
    fn id3v2_sizes_only_skip() {
        let mut tag = b"ID3\x04\x00\x00".to_vec();
        tag.extend_from_slice(&[0x7F, 0x7F, 0x7F, 0x7F]);
        // A tag claiming 256 MB in a 10-byte upload skips to the end, allocating nothing.
        assert_eq!(skip_id3v2(&tag), tag.len());
        assert!(frames(&tag).is_empty());
    }
}
