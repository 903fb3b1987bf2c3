//! WebM / Matroska Opus: the blocks [`crate::container::webm`] walks, as Opus packets.
//!
//! The reader accepted one Opus track and handed over its blocks in file order; this
//! refuses laced blocks (several frames in one block, which browsers never write) and
//! reads the track's `OpusHead`.

use std::borrow::Cow;

use super::DecodeError;
use super::opus::{OpusHead, OpusStream};
use crate::container::webm;

/// The Opus track's header and packets.
pub(super) fn demux(bytes: &[u8]) -> Result<OpusStream<'_>, DecodeError> {
    let mut packets: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut laced = false;
    let read = webm::read(bytes, &mut |block| {
        laced |= block.laced;
        packets.push(Cow::Borrowed(block.payload));
    })?;
    let info = read.info()?;
    if laced {
        return Err(DecodeError::Unsupported(
            "WebM blocks holding several Opus frames (lacing)".into(),
        ));
    }
    // Browsers always write the OpusHead; without one the decoder's defaults apply.
    let head = read
        .track
        .codec_private
        .map(OpusHead::parse)
        .transpose()?
        .unwrap_or_default();
    Ok(OpusStream {
        head,
        info,
        packets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element: its ID bytes, an 8-byte size, the body.
    fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.push(0x01);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    /// A WebM file with one Opus track (number 1) and one Cluster of these SimpleBlocks.
    fn webm(blocks: &[&[u8]]) -> Vec<u8> {
        let mut bytes = el(&[0x1A, 0x45, 0xDF, 0xA3], &el(&[0x42, 0x82], b"webm"));
        let entry = [el(&[0xD7], &[1]), el(&[0x86], b"A_OPUS")].concat();
        let tracks = el(&[0x16, 0x54, 0xAE, 0x6B], &el(&[0xAE], &entry));
        let mut cluster = el(&[0xE7], &[0]);
        for block in blocks {
            cluster.extend(el(&[0xA3], block));
        }
        let segment = [tracks, el(&[0x1F, 0x43, 0xB6, 0x75], &cluster)].concat();
        bytes.extend(el(&[0x18, 0x53, 0x80, 0x67], &segment));
        bytes
    }

    #[test]
    fn laced_blocks_are_refused_and_other_tracks_skipped() {
        // Track 1, timecode 0, keyframe + Xiph lacing.
        assert!(matches!(
            demux(&webm(&[&[0x81, 0, 0, 0x82, 1, 2]])),
            Err(DecodeError::Unsupported(_))
        ));
        let bytes = webm(&[&[0x82, 0, 0, 0x80, 9], &[0x81, 0, 0, 0x80, 9]]);
        let stream = demux(&bytes).unwrap();
        assert_eq!(stream.packets, vec![Cow::Borrowed(&[9u8][..])]);
    }

    #[test]
    fn a_track_without_opus_head_decodes_with_the_defaults() {
        let bytes = webm(&[&[0x81, 0, 0, 0x80, 0xF8]]);
        let stream = demux(&bytes).unwrap();
        assert_eq!(stream.head, OpusHead::default());
        assert_eq!(stream.info.duration, std::time::Duration::from_millis(20));
    }
}
