//! MPEG-1/2/2.5 Layer III: the frames [`crate::container::mp3`] walks, decoded by
//! symphonia's decoder.
//!
//! Only whole frames (bounded by the format at under 3 KB) are handed over; symphonia's own
//! demuxer is not used because it sizes buffers from tag headers. The encoder's Info frame
//! is not audio and is not decoded.

use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{CODEC_TYPE_MP3, CodecParameters, Decoder, DecoderOptions};
use symphonia::core::formats::Packet;
use symphonia::default::codecs::MpaDecoder;

use super::{DecodeError, Limit};
use crate::container::mp3;

/// Mono samples and their rate.
pub(super) fn decode(bytes: &[u8], limit: Limit) -> Result<(Vec<f32>, u32), DecodeError> {
    let mut frames = Vec::new();
    let read = mp3::read(bytes, &mut |frame| frames.push(frame))?;
    limit.admit(&read.info())?;
    let rate = read.stream.sample_rate;
    if frames.is_empty() {
        return Err(DecodeError::Corrupt("MP3: no audio frames".into()));
    }
    let mut params = CodecParameters::new();
    params.for_codec(CODEC_TYPE_MP3);
    let mut decoder = MpaDecoder::try_new(&params, &DecoderOptions::default())
        .map_err(|e| DecodeError::Corrupt(format!("starting the MP3 decoder: {e}")))?;
    let mut out = Vec::new();
    let mut decoded = 0usize;
    for (i, &frame) in frames.iter().enumerate() {
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
        limit.check(rate, out.len())?;
    }
    if decoded == 0 {
        return Err(DecodeError::Corrupt(format!(
            "none of its {} MP3 frames could be decoded",
            frames.len()
        )));
    }
    Ok((out, rate))
}
