//! WebM / Matroska (EBML) to Opus packets.
//!
//! Runs after [`crate::probe::probe`] accepted the bytes as WebM/Opus with a single
//! Opus track. One forward pass over the elements: Segment, Cluster and BlockGroup are
//! entered whatever their size says, so the unknown-size Segments and Clusters that
//! browsers' `MediaRecorder` writes need no special case (Matroska IDs are unique across
//! levels, so a Cluster's children cannot be mistaken for top-level elements).

use std::borrow::Cow;

use super::DecodeError;
use super::opus::{OpusHead, OpusStream};

const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const SIMPLE_BLOCK: u32 = 0xA3;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;

/// Block header flags: the lacing bits.
const LACING: u8 = 0x06;

struct Element {
    id: u32,
    /// Where the body starts.
    body: usize,
    /// Body length; `None` for an unknown size (all ones).
    size: Option<u64>,
}

/// The Opus track's header and packets.
pub(super) fn demux(bytes: &[u8]) -> Result<OpusStream<'_>, DecodeError> {
    let mut track: Option<(u64, OpusHead)> = None;
    let mut packets: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        // Whatever does not parse ends the stream: a truncated upload keeps what came before.
        let Some(el) = read_element(bytes, pos) else {
            break;
        };
        match (el.id, el.size) {
            (SEGMENT | CLUSTER | BLOCK_GROUP, _) => {
                pos = el.body;
                continue;
            }
            (_, None) => return Err(corrupt("an element of unknown size")),
            _ => {}
        }
        let end = el
            .size
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| el.body.checked_add(s));
        let Some(body) = end.and_then(|end| bytes.get(el.body..end)) else {
            // Cut off inside this element.
            break;
        };
        match el.id {
            TRACKS => track = Some(read_tracks(body)?),
            SIMPLE_BLOCK | BLOCK => {
                if let Some((number, _)) = track
                    && let Some(frame) = read_block(body, number)?
                {
                    packets.push(Cow::Borrowed(frame));
                }
            }
            _ => {}
        }
        pos = el.body + body.len();
    }
    let (_, head) = track.ok_or_else(|| corrupt("no Opus track"))?;
    Ok(OpusStream { head, packets })
}

/// The number and header of the first Opus track.
fn read_tracks(tracks: &[u8]) -> Result<(u64, OpusHead), DecodeError> {
    for entry in children(tracks).filter(|(id, _)| *id == TRACK_ENTRY) {
        let mut number = None;
        let mut opus = false;
        let mut private = None;
        for (id, body) in children(entry.1) {
            match id {
                TRACK_NUMBER => number = read_uint(body),
                CODEC_ID => opus = trim_nul(body) == b"A_OPUS",
                CODEC_PRIVATE => private = Some(body),
                _ => {}
            }
        }
        if let (Some(number), true) = (number, opus) {
            // Browsers always write the OpusHead; without one the decoder's defaults apply.
            let head = private
                .map(OpusHead::parse)
                .transpose()?
                .unwrap_or_default();
            return Ok((number, head));
        }
    }
    Err(corrupt("no Opus track"))
}

/// The frame of a (Simple)Block of track `number`; `None` for other tracks.
fn read_block(block: &[u8], number: u64) -> Result<Option<&[u8]>, DecodeError> {
    let (track, len) = read_vint(block, 0).ok_or_else(|| corrupt("a block header"))?;
    // Track number, 16-bit relative timecode, flags.
    let Some(&flags) = block.get(len + 2) else {
        return Err(corrupt("a block header"));
    };
    if track != Some(number) {
        return Ok(None);
    }
    if flags & LACING != 0 {
        return Err(DecodeError::Unsupported(
            "WebM blocks holding several Opus frames (lacing)".into(),
        ));
    }
    Ok(block.get(len + 3..))
}

/// The children of a master element's body as (id, body); stops at the first that does
/// not fit.
fn children(body: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let el = read_element(body, pos)?;
        let size = usize::try_from(el.size?).ok()?;
        let child = body.get(el.body..el.body.checked_add(size)?)?;
        pos = el.body + size;
        Some((el.id, child))
    })
}

fn read_element(buf: &[u8], pos: usize) -> Option<Element> {
    let (id, id_len) = read_id(buf, pos)?;
    let (size, size_len) = read_vint(buf, pos + id_len)?;
    Some(Element {
        id,
        body: pos + id_len + size_len,
        size,
    })
}

/// An element ID: a variable-length integer of 1 to 4 bytes, marker bit kept.
fn read_id(buf: &[u8], pos: usize) -> Option<(u32, usize)> {
    let first = *buf.get(pos)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let bytes = buf.get(pos..pos + len)?;
    Some((
        bytes.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)),
        len,
    ))
}

/// A size or track number: 1 to 8 bytes, marker bit cleared; `None` inside for all ones
/// (unknown size).
fn read_vint(buf: &[u8], pos: usize) -> Option<(Option<u64>, usize)> {
    let first = *buf.get(pos)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = buf.get(pos..pos + len)?;
    let marker_cleared = u64::from(first) & (0xFF >> len);
    let value = bytes[1..]
        .iter()
        .fold(marker_cleared, |acc, &b| acc << 8 | u64::from(b));
    let all_ones = (1u64 << (7 * len)) - 1;
    Some(((value != all_ones).then_some(value), len))
}

fn read_uint(body: &[u8]) -> Option<u64> {
    (body.len() <= 8).then(|| body.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

/// Strings may be NUL-padded (GStreamer and some browsers pad `CodecID`).
fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn corrupt(what: &str) -> DecodeError {
    DecodeError::Corrupt(format!("WebM: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_decode_and_all_ones_is_unknown() {
        assert_eq!(read_vint(&[0x81], 0), Some((Some(1), 1)));
        assert_eq!(read_vint(&[0x40, 0x02], 0), Some((Some(2), 2)));
        assert_eq!(read_vint(&[0xFF], 0), Some((None, 1)));
        assert_eq!(
            read_vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 0),
            Some((None, 8))
        );
        assert_eq!(read_vint(&[0x00], 0), None);
        assert_eq!(read_vint(&[0x40], 0), None);
    }

    #[test]
    fn laced_blocks_are_refused_and_other_tracks_skipped() {
        // Track 1, timecode 0, keyframe + Xiph lacing.
        assert!(matches!(
            read_block(&[0x81, 0, 0, 0x82, 1, 2], 1),
            Err(DecodeError::Unsupported(_))
        ));
        assert_eq!(read_block(&[0x82, 0, 0, 0x80, 9], 1).unwrap(), None);
        assert_eq!(
            read_block(&[0x81, 0, 0, 0x80, 9], 1).unwrap(),
            Some(&[9u8][..])
        );
    }
}
