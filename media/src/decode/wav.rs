//! RIFF/WAVE with integer PCM (16/24/32-bit) or IEEE float (32/64-bit), plain or
//! `WAVE_FORMAT_EXTENSIBLE`: the encodings [`crate::probe`] accepts.

use super::{DecodeError, Limit, push_downmixed};

const PCM: u16 = 1;
const IEEE_FLOAT: u16 = 3;
const EXTENSIBLE: u16 = 0xFFFE;

#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: usize,
    rate: u32,
    bits: u16,
}

/// Mono samples and their rate.
pub(super) fn decode(bytes: &[u8], limit: Limit) -> Result<(Vec<f32>, u32), DecodeError> {
    let streamed_riff = matches!(
        bytes.get(4..8),
        Some([0, 0, 0, 0] | [0xFF, 0xFF, 0xFF, 0xFF])
    );
    let mut format = None;
    let mut data = None;
    let mut pos = 12;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body = pos + 8;
        // Sizes past the end (streamed files leave 0xFFFFFFFF) are clamped to what is there.
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| body.checked_add(s))
            .map_or(bytes.len(), |e| e.min(bytes.len()));
        match &header[..4] {
            b"fmt " => format = Some(read_fmt(&bytes[body..end])?),
            b"data" => {
                // Streaming writers that cannot seek back leave zero sizes (RIFF and data).
                let end = if size == 0 && streamed_riff {
                    bytes.len()
                } else {
                    end
                };
                data = Some(&bytes[body..end]);
                break;
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = end + (end - body) % 2;
    }
    let format = format.ok_or_else(|| DecodeError::Corrupt("WAV: no fmt chunk".into()))?;
    let data = data.ok_or_else(|| DecodeError::Corrupt("WAV: no data chunk".into()))?;

    let width = usize::from(format.bits / 8);
    let frames = data.len() / (width * format.channels);
    limit.check(format.rate, frames)?;
    let sample = |b: &[u8]| -> f32 {
        match (format.tag, format.bits) {
            (PCM, 16) => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            // 24-bit: shift into the top of an i32 to keep the sign.
            (PCM, 24) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
            (PCM, _) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            (_, 32) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        }
    };
    let mut out = Vec::with_capacity(frames);
    let used = &data[..frames * width * format.channels];
    push_downmixed(
        &mut out,
        used.chunks_exact(width).map(sample),
        format.channels,
    );
    Ok((out, format.rate))
}

fn read_fmt(fmt: &[u8]) -> Result<Format, DecodeError> {
    let u16_at = |at: usize| {
        fmt.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let (Some(mut tag), Some(channels), Some(bits)) = (u16_at(0), u16_at(2), u16_at(14)) else {
        return Err(DecodeError::Corrupt("WAV: short fmt chunk".into()));
    };
    let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
    if tag == EXTENSIBLE {
        // The real tag is the first two bytes of the sub-format GUID.
        tag = u16_at(24).ok_or_else(|| DecodeError::Corrupt("WAV: short fmt chunk".into()))?;
    }
    match (tag, bits) {
        (PCM, 16 | 24 | 32) | (IEEE_FLOAT, 32 | 64) if channels > 0 => Ok(Format {
            tag,
            channels: usize::from(channels),
            rate,
            bits,
        }),
        _ => Err(DecodeError::Unsupported(format!(
            "WAV format {tag:#x} with {bits}-bit samples and {channels} channels"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wav(tag: u16, channels: u16, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&8_000u32.to_le_bytes());
        let align = channels * bits / 8;
        out.extend_from_slice(&(8_000 * u32::from(align)).to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    const LIMIT: Limit = Limit {
        max: Duration::from_secs(60),
    };

    #[test]
    fn decodes_each_depth_to_unit_range_and_downmixes() {
        let s16 = wav(
            PCM,
            2,
            16,
            &[0x00, 0x40, 0x00, 0xC0, 0xFF, 0x7F, 0xFF, 0x7F],
        );
        let (samples, rate) = decode(&s16, LIMIT).unwrap();
        assert_eq!(rate, 8_000);
        assert_eq!(samples, vec![0.0, 32_767.0 / 32_768.0]);

        let s24 = wav(PCM, 1, 24, &[0x00, 0x00, 0xC0]);
        assert_eq!(decode(&s24, LIMIT).unwrap().0, vec![-0.5]);

        let f64le = wav(IEEE_FLOAT, 1, 64, &0.25f64.to_le_bytes());
        assert_eq!(decode(&f64le, LIMIT).unwrap().0, vec![0.25]);
    }

    #[test]
    fn a_data_size_past_the_end_is_clamped() {
        let mut bytes = wav(PCM, 1, 16, &[0, 0x40, 0, 0x40, 7]);
        let at = bytes.len() - 9;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bytes, LIMIT).unwrap().0, vec![0.5, 0.5]);
    }

    #[test]
    fn the_limit_applies_before_converting() {
        let bytes = wav(PCM, 1, 16, &vec![0; 2 * 8_000 * 3]);
        let short = Limit {
            max: Duration::from_secs(1),
        };
        assert!(matches!(
            decode(&bytes, short),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
