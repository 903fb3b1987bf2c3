//! Ogg/Opus: the packets [`crate::container::ogg`] walks, joined where they span pages.
//!
//! The reader checked every page (CRC, one stream, `OpusHead` first) and hands over the
//! audio packets in the pieces the pages hold them in; this joins the pieces of a packet
//! that spans pages (a copy bounded by the upload's size) and reads `OpusHead`.

use std::borrow::Cow;

use super::DecodeError;
use super::opus::{OpusHead, OpusStream};
use crate::container::ogg;

/// The `OpusHead` packet and the audio packets after `OpusTags`.
pub(super) fn demux(bytes: &[u8]) -> Result<OpusStream<'_>, DecodeError> {
    let mut packets: Vec<Cow<'_, [u8]>> = Vec::new();
    // A packet cut by a page boundary, copied together.
    let mut open: Option<Vec<u8>> = None;
    let read = ogg::read(bytes, &mut |piece| match (piece.starts, piece.ends) {
        (true, true) => {
            open = None;
            packets.push(Cow::Borrowed(piece.data));
        }
        (true, false) => open = Some(piece.data.to_vec()),
        (false, ends) => {
            if let Some(packet) = open.as_mut() {
                packet.extend_from_slice(piece.data);
            }
            if ends && let Some(packet) = open.take() {
                packets.push(Cow::Owned(packet));
            }
        }
    })?;
    // The second packet is `OpusTags`: comments, not audio.
    if !read.tags {
        return Err(DecodeError::Corrupt(
            "the Ogg stream has no OpusTags".into(),
        ));
    }
    let head = OpusHead::parse(read.head)?;
    Ok(OpusStream {
        head,
        info: read.info()?,
        packets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::{FLAG_BOS, FLAG_CONTINUED as CONTINUED};
    use crate::test_files::{ogg_page, opus_head};

    /// One page of one stream at granule 0.
    fn page(flags: u8, packets: &[&[u8]], open_end: bool) -> Vec<u8> {
        ogg_page(flags, 0, packets, open_end)
    }

    #[test]
    fn joins_a_packet_that_spans_pages() {
        let long = vec![7u8; 510];
        let mut bytes = page(FLAG_BOS, &[&opus_head()], false);
        bytes.extend(page(0, &[b"OpusTags", &long[..255]], true));
        bytes.extend(page(CONTINUED, &[&long[255..], b"x"], false));
        let stream = demux(&bytes).unwrap();
        assert_eq!(stream.head.pre_skip, 312);
        let lens: Vec<usize> = stream.packets.iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![510, 1]);
    }

    #[test]
    fn a_stream_without_tags_is_corrupt() {
        let bytes = page(FLAG_BOS, &[&opus_head()], false);
        assert!(matches!(demux(&bytes), Err(DecodeError::Corrupt(_))));
    }
}
