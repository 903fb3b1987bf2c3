//! Opus packets (from [`super::ogg`] or [`super::webm`]) to mono samples through libopus.
//!
//! The stream's measured duration is admitted against the limit before the first packet
//! is decoded; the limit is applied again while samples are produced.

use std::borrow::Cow;

use super::{DecodeError, Limit};
use crate::format::AudioInfo;

/// Opus always decodes at 48 kHz.
pub(super) const RATE: u32 = 48_000;

/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5_760;

/// What a demuxer found: the stream's `OpusHead` and its audio packets in order.
pub(super) struct OpusStream<'a> {
    pub head: OpusHead,
    /// What the container reader measured while it walked (the prober's answer).
    pub info: AudioInfo,
    /// Slices of the upload, or owned where a packet spans Ogg pages.
    pub packets: Vec<Cow<'a, [u8]>>,
}

/// The fields of the identification header (RFC 7845 §5.1) that decoding needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct OpusHead {
    /// Samples (at 48 kHz) the encoder prepended, to drop from the start.
    pub pre_skip: u16,
    /// Q7.8 dB to apply to the output.
    pub output_gain: i16,
}

impl OpusHead {
    /// Parses `OpusHead`, refusing channel layouts a single-stream decoder cannot play.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let corrupt = |what: &str| DecodeError::Corrupt(format!("Opus header: {what}"));
        if bytes.len() < 19 || !bytes.starts_with(b"OpusHead") {
            return Err(corrupt("missing or short"));
        }
        // Major version 0 only (RFC 7845: a higher major version is incompatible).
        if bytes[8] >= 16 {
            return Err(corrupt("unknown version"));
        }
        let channels = bytes[9];
        if channels == 0 {
            return Err(corrupt("zero channels"));
        }
        let family = bytes[18];
        // Family 1 with one stream is a plain mono/stereo stream in a different wrapper;
        // anything else is surround, which needs the multistream decoder.
        let single_stream = family == 0 || bytes.get(19) == Some(&1);
        if channels > 2 || !single_stream {
            return Err(DecodeError::Unsupported(format!(
                "Opus with {channels} channels (mapping family {family})"
            )));
        }
        Ok(Self {
            pre_skip: u16::from_le_bytes([bytes[10], bytes[11]]),
            output_gain: i16::from_le_bytes([bytes[16], bytes[17]]),
        })
    }
}

/// Decodes every packet to mono at [`RATE`] (libopus downmixes stereo itself), then drops the
/// pre-skip. A packet libopus refuses is skipped, as players do; a stream of nothing but
/// such packets is corrupt.
pub(super) fn decode(stream: OpusStream<'_>, limit: Limit) -> Result<(Vec<f32>, u32), DecodeError> {
    limit.admit(&stream.info)?;
    let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono)
        .map_err(|e| DecodeError::Corrupt(format!("starting the Opus decoder: {e}")))?;
    let mut frame = [0f32; MAX_PACKET_SAMPLES];
    let mut out = Vec::new();
    let (mut good, mut bad) = (0usize, 0usize);
    for packet in &stream.packets {
        // An empty packet is a gap the encoder chose (DTX) and carries no samples.
        if packet.is_empty() {
            continue;
        }
        match decoder.decode_float(packet, &mut frame, false) {
            Ok(n) => {
                good += 1;
                out.extend_from_slice(&frame[..n.min(frame.len())]);
                limit.check(RATE, out.len())?;
            }
            Err(_) => bad += 1,
        }
    }
    if good == 0 && bad > 0 {
        return Err(DecodeError::Corrupt(format!(
            "none of its {bad} Opus packets could be decoded"
        )));
    }
    out.drain(..usize::from(stream.head.pre_skip).min(out.len()));
    if stream.head.output_gain != 0 {
        let gain = 10f32.powf(f32::from(stream.head.output_gain) / (20.0 * 256.0));
        out.iter_mut().for_each(|s| *s *= gain);
    }
    Ok((out, RATE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, family: u8, streams: u8) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend_from_slice(&[1, channels]);
        h.extend_from_slice(&312u16.to_le_bytes());
        h.extend_from_slice(&48_000u32.to_le_bytes());
        h.extend_from_slice(&(-256i16).to_le_bytes());
        h.push(family);
        if family != 0 {
            h.extend_from_slice(&[streams, 0]);
            h.extend(0..channels);
        }
        h
    }

    #[test]
    fn reads_pre_skip_and_gain() {
        let parsed = OpusHead::parse(&head(2, 0, 0)).unwrap();
        assert_eq!(
            parsed,
            OpusHead {
                pre_skip: 312,
                output_gain: -256
            }
        );
        assert!(OpusHead::parse(&head(2, 1, 1)).is_ok());
    }

    #[test]
    fn refuses_surround_and_junk() {
        assert!(matches!(
            OpusHead::parse(&head(6, 1, 4)),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            OpusHead::parse(b"OpusHead"),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
