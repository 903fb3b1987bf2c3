//! Ogg pages (RFC 3533) to Opus packets (RFC 7845).
//!
//! Runs after [`crate::probe::probe`] accepted the bytes as Ogg/Opus, which checked
//! every page's CRC and that there is one logical stream; this only reassembles packets.

use std::borrow::Cow;

use super::DecodeError;
use super::opus::{OpusHead, OpusStream};

const CAPTURE: &[u8; 4] = b"OggS";
/// Capture pattern, version, header type, granule, serial, sequence, CRC, segment count.
const HEADER_LEN: usize = 27;
/// Header-type flag: the page's first packet continues one from the previous page.
const CONTINUED: u8 = 0x01;

/// The `OpusHead` packet and the audio packets after `OpusTags`.
pub(super) fn demux(bytes: &[u8]) -> Result<OpusStream<'_>, DecodeError> {
    let mut packets: Vec<Cow<'_, [u8]>> = Vec::new();
    // A packet cut by a page boundary, copied together (bounded by the upload's size).
    let mut pending: Option<Vec<u8>> = None;
    let mut pos = 0;
    while let Some(page) = bytes.get(pos..).filter(|rest| rest.starts_with(CAPTURE)) {
        let Some(header) = page.get(..HEADER_LEN) else {
            break;
        };
        let segments = usize::from(header[26]);
        let Some(lacing) = page.get(HEADER_LEN..HEADER_LEN + segments) else {
            break;
        };
        let body_start = HEADER_LEN + segments;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        // A page cut off by the end of the upload keeps its complete packets.
        let body = &page[body_start..(body_start + body_len).min(page.len())];
        if header[5] & CONTINUED == 0 {
            // The previous page promised a continuation that never came: drop the fragment.
            pending = None;
        }
        let mut at = 0;
        let mut start = 0;
        for &l in lacing {
            at += usize::from(l);
            if l == 255 {
                continue;
            }
            // A lacing value below 255 ends a packet.
            let Some(part) = body.get(start..at) else {
                break;
            };
            packets.push(match pending.take() {
                Some(mut head) => {
                    head.extend_from_slice(part);
                    Cow::Owned(head)
                }
                None => Cow::Borrowed(part),
            });
            start = at;
        }
        if lacing.last() == Some(&255)
            && let Some(part) = body.get(start..)
        {
            pending.get_or_insert_with(Vec::new).extend_from_slice(part);
        }
        pos += body_start + body_len;
    }

    let mut packets = packets.into_iter();
    let head = packets
        .next()
        .ok_or_else(|| DecodeError::Corrupt("the Ogg stream has no packets".into()))?;
    let head = OpusHead::parse(&head)?;
    // The second packet is `OpusTags`: comments, not audio.
    let tags = packets.next();
    if !tags.as_deref().is_some_and(|t| t.starts_with(b"OpusTags")) {
        return Err(DecodeError::Corrupt(
            "the Ogg stream has no OpusTags".into(),
        ));
    }
    Ok(OpusStream {
        head,
        packets: packets.collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One page (CRC left zero: this demuxer relies on the probe for that).
    fn page(flags: u8, packets: &[&[u8]], open_end: bool) -> Vec<u8> {
        let mut lacing = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
            let last = i + 1 == packets.len();
            if !(last && open_end) {
                lacing.push((p.len() % 255) as u8);
            }
        }
        let mut out = b"OggS".to_vec();
        out.extend_from_slice(&[0, flags]);
        out.extend_from_slice(&[0; 20]);
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        for p in packets {
            out.extend_from_slice(p);
        }
        out
    }

    fn opus_head() -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        h
    }

    #[test]
    fn joins_a_packet_that_spans_pages() {
        let long = vec![7u8; 510];
        let mut bytes = page(0, &[&opus_head()], false);
        bytes.extend(page(0, &[b"OpusTags", &long[..255]], true));
        bytes.extend(page(CONTINUED, &[&long[255..], b"x"], false));
        let stream = demux(&bytes).unwrap();
        assert_eq!(stream.head.pre_skip, 312);
        let lens: Vec<usize> = stream.packets.iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![510, 1]);
    }

    #[test]
    fn a_stream_without_tags_is_corrupt() {
        let bytes = page(0, &[&opus_head()], false);
        assert!(matches!(demux(&bytes), Err(DecodeError::Corrupt(_))));
    }
}
