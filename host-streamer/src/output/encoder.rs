//! The one Opus encoder of the station: every output (listeners, recordings) carries its
//! packets, so the audio is encoded once whatever the number of outputs.

use bytes::Bytes;

use crate::audio::{FRAME_LEN, FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// Samples (48 kHz) in one packet: one engine frame, 20 ms.
pub const PACKET_SAMPLES: u32 = FRAME_LEN as u32;

/// Room for any packet of one 20 ms frame (libopus's recommended maximum).
const MAX_PACKET_BYTES: usize = 4000;

/// Encodes 20 ms engine frames into Opus packets, one per frame.
///
/// 48 kHz stereo, `Application::Audio` (music and speech alike, full band), constrained
/// VBR so the stream's bandwidth stays close to the configured bitrate.
pub struct OpusEncoder {
    inner: opus::Encoder,
    buf: Box<[u8; MAX_PACKET_BYTES]>,
    pre_skip: u16,
    bitrate: u32,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("bitrate", &self.bitrate)
            .field("pre_skip", &self.pre_skip)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// The bitrate unless configured: transparent for music in stereo at a size
    /// (12 kB/s, 43 MB an hour) listeners on mobile data can afford.
    pub const DEFAULT_BITRATE: u32 = 96_000;
    /// The bitrates libopus accepts, bits per second.
    pub const BITRATES: std::ops::RangeInclusive<u32> = 6_000..=510_000;

    /// An encoder at `bitrate` bits per second; libopus clamps values outside
    /// [`Self::BITRATES`], which configuration refuses.
    pub fn new(bitrate: u32) -> Result<Self, opus::Error> {
        let mut inner = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Stereo,
            opus::Application::Audio,
        )?;
        let bits = i32::try_from(bitrate).unwrap_or(i32::MAX);
        inner.set_bitrate(opus::Bitrate::Bits(bits))?;
        inner.set_vbr(true)?;
        inner.set_vbr_constraint(true)?;
        let lookahead = inner.get_lookahead()?;
        Ok(OpusEncoder {
            inner,
            buf: Box::new([0; MAX_PACKET_BYTES]),
            pre_skip: u16::try_from(lookahead).unwrap_or(u16::MAX),
            bitrate,
        })
    }

    /// Samples the decoder must drop at the start of a stream: the encoder's lookahead
    /// (312 at 48 kHz for `Application::Audio`). The Ogg `OpusHead` carries it.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// The packet for `frame`, [`PACKET_SAMPLES`] long.
    pub fn encode(&mut self, frame: &Frame) -> Result<Bytes, opus::Error> {
        let samples: &[f32; FRAME_SAMPLES] = &frame.samples;
        let len = self.inner.encode_float(samples, &mut self.buf[..])?;
        Ok(Bytes::copy_from_slice(&self.buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Source, Tone};

    #[test]
    fn one_packet_per_frame_near_the_bitrate() {
        let mut enc = OpusEncoder::new(64_000).unwrap();
        assert_eq!(enc.pre_skip(), 312);
        let mut tone = Tone::new("test", 440.0, 0.5);
        let mut frame = Frame::silent();
        let mut bytes = 0;
        for _ in 0..100 {
            tone.fill(&mut frame);
            let packet = enc.encode(&frame).unwrap();
            assert_eq!(
                opus::packet::get_nb_samples(&packet, SAMPLE_RATE).unwrap(),
                PACKET_SAMPLES as usize
            );
            bytes += packet.len();
        }
        // Two seconds at 64 kb/s are 16,000 bytes; constrained VBR stays close.
        assert!((12_000..=20_000).contains(&bytes), "{bytes} bytes");
    }
}
