//! WebM and Matroska (EBML) carrying one Opus track: the track, and its blocks with their
//! times.
//!
//! EBML is a tree of elements, each a variable-length ID, a variable-length size and a
//! body. The file is an EBML header (`DocType`), then a Segment holding Info (the
//! `TimecodeScale`), Tracks, and Clusters of blocks; a block is a track number, a 16-bit
//! time relative to its Cluster's, flags, and the frame. Browsers' `MediaRecorder` writes
//! Segments and Clusters of unknown size (all ones): they run until an element that cannot
//! be their child. The reader walks the tree once, in file order, and hands every block of
//! the Opus track to its caller with its start and length; the prober sums them, the
//! decoder decodes the payloads.
//!
//! Edge cases:
//! - `DocType` `webm` or `matroska` (some recorders label Opus so); any other is
//!   `Unrecognised`; strings may be NUL-padded;
//! - exactly one track, Opus (`A_OPUS`): video, Vorbis, other codecs or a second track
//!   are `UnsupportedCodec`; no complete track list, or a track without a number, is
//!   `Malformed`;
//! - unknown size is allowed on Segment and Cluster only, elsewhere it is `Malformed`;
//! - sizes past their parent are clamped to it: a cut-off upload keeps the blocks before
//!   the cut; invalid bytes between Clusters are skipped to the next Cluster ID;
//! - a Cluster before Tracks is `Malformed`; blocks of other track numbers are ignored;
//! - the length is first block start to last block end, less `CodecDelay` (or the
//!   `OpusHead` pre-skip); `Info/Duration` counts only when no block was read, so a lying
//!   header cannot hide audio; neither is `UnknownDuration`;
//! - a laced block is timed at 20 ms a frame and handed out flagged `laced`.
//!
//! Bounded work: every element read advances past its header, children are read from
//! their parent's extent only, and nesting is fixed by the walk (Segment, Cluster,
//! BlockGroup), never by the file, so hostile nesting cannot recurse.

use std::time::Duration;

use super::{
    OPUS_RATE, nanos_to_duration, opus_packet_samples, opus_samples_to_nanos, read_u16_le,
};
use crate::format::{AudioFormat, AudioInfo, ProbeError};

pub const MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const AUDIO: u32 = 0xE1;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const BLOCK_DURATION: u32 = 0x9B;
const DISCARD_PADDING: u32 = 0x75A2;
const VOID: u32 = 0xEC;
const CRC32: u32 = 0xBF;
/// Everything a Cluster may contain. Any other ID ends an unknown-size Cluster.
const CLUSTER_CHILDREN: [u32; 9] = [
    TIMECODE,
    0x5854, // SilentTracks
    0xA7,   // Position
    0xAB,   // PrevSize
    SIMPLE_BLOCK,
    BLOCK_GROUP,
    0xAF, // EncryptedBlock
    VOID,
    CRC32,
];
const TRACK_TYPE_AUDIO: u64 = 2;
const DEFAULT_TIMECODE_SCALE_NS: u64 = 1_000_000;
/// Block header flags: the lacing bits.
const LACING: u8 = 0x06;
/// Assumed length of a laced frame, whose TOC we don't dig out.
const LACED_FRAME_NS: i128 = 20_000_000;

/// One element header, with its body's extent already clamped to the parent.
#[derive(Clone, Copy)]
struct Element {
    id: u32,
    body: usize,
    end: usize,
    /// Size was the reserved all-ones value: the element runs until something
    /// that can't be its child appears, or its parent ends.
    unknown: bool,
    /// The claimed size ran past the parent (or the upload): truncated.
    clamped: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// Ran out of bytes in the middle of the header.
    Truncated,
    /// Not a valid EBML ID or size encoding.
    Invalid,
}

/// Reads an EBML variable-length integer at `pos`: (value without the length
/// marker, encoded length, whether it is the all-ones "unknown" value).
fn read_vint(buf: &[u8], pos: usize, max_len: u32) -> Result<(u64, usize, bool), Bad> {
    let first = *buf.get(pos).ok_or(Bad::Truncated)?;
    let len = first.leading_zeros() + 1;
    if len > max_len {
        return Err(Bad::Invalid);
    }
    let len = len as usize;
    let bytes = buf
        .get(pos..pos.checked_add(len).ok_or(Bad::Invalid)?)
        .ok_or(Bad::Truncated)?;
    let marker_mask = 0xFFu8.checked_shr(len as u32).unwrap_or(0);
    let mut value = u64::from(first & marker_mask);
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok((value, len, value == all_ones))
}

/// Element IDs keep their length marker and are at most four bytes long.
fn read_id(buf: &[u8], pos: usize) -> Result<(u32, usize), Bad> {
    let (value, len, _) = read_vint(buf, pos, 4)?;
    let marker = 1u32 << (7 * len);
    if value == 0 {
        return Err(Bad::Invalid);
    }
    Ok((
        marker | u32::try_from(value).map_err(|_| Bad::Invalid)?,
        len,
    ))
}

fn read_element(buf: &[u8], pos: usize, parent_end: usize) -> Result<Element, Bad> {
    let (id, id_len) = read_id(buf, pos)?;
    let size_pos = pos + id_len;
    let (size, size_len, unknown) = read_vint(buf, size_pos, 8)?;
    let body = size_pos + size_len;
    if body > parent_end {
        return Err(Bad::Truncated);
    }
    let claimed_end = usize::try_from(size).ok().and_then(|s| body.checked_add(s));
    let (end, clamped) = match claimed_end {
        _ if unknown => (parent_end, false),
        Some(end) if end <= parent_end => (end, false),
        _ => (parent_end, true),
    };
    Ok(Element {
        id,
        body,
        end,
        unknown,
        clamped,
    })
}

/// The complete, known-size children of a master element. Stops at the first
/// child that can't be read whole.
fn children(buf: &[u8], parent: Element) -> impl Iterator<Item = Element> + '_ {
    let mut pos = parent.body;
    std::iter::from_fn(move || {
        let el = read_element(buf, pos, parent.end).ok()?;
        if el.unknown || el.clamped {
            pos = parent.end;
            return None;
        }
        pos = el.end;
        Some(el)
    })
}

fn body(buf: &[u8], el: Element) -> &[u8] {
    buf.get(el.body..el.end).unwrap_or_default()
}

fn read_uint(bytes: &[u8]) -> Option<u64> {
    (bytes.len() <= 8).then(|| bytes.iter().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

fn read_int(bytes: &[u8]) -> Option<i64> {
    let raw = read_uint(bytes)?;
    let bits = u32::try_from(bytes.len() * 8).ok()?;
    if bits == 0 {
        return Some(0);
    }
    // Sign-extend from the element's width.
    let shift = 64 - bits;
    Some(((raw << shift) as i64) >> shift)
}

fn read_float(bytes: &[u8]) -> Option<f64> {
    match bytes.len() {
        4 => Some(f64::from(f32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// EBML strings may be padded with NULs (GStreamer writes `webm\0`).
fn trim_nul(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..len]
}

/// The upload's one track, Opus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track<'a> {
    /// What blocks of this track carry in their header.
    pub number: u64,
    /// From `Audio/Channels`, else from `OpusHead`.
    pub channels: Option<u16>,
    /// Decoder delay to drop from the start, in nanoseconds (`CodecDelay`, else the
    /// `OpusHead` pre-skip).
    pub delay_ns: i128,
    /// `CodecPrivate` as stored (for Opus, the `OpusHead`), when there is one.
    pub codec_private: Option<&'a [u8]>,
}

/// One (Simple)Block of the Opus track, as the walk met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// Where it starts on the timeline, in nanoseconds.
    pub start_ns: i128,
    /// How long it plays, in nanoseconds (from `BlockDuration`, else the Opus TOC less any
    /// `DiscardPadding`, else 20 ms per laced frame).
    pub duration_ns: i128,
    /// The block holds several frames (lacing) rather than one Opus packet.
    pub laced: bool,
    /// The frame data after the block header.
    pub payload: &'a [u8],
}

/// A WebM/Matroska upload's track and what the walk measured.
#[derive(Debug, Clone, Copy)]
pub struct Webm<'a> {
    pub track: Track<'a>,
    timecode_scale_ns: u64,
    header_duration: Option<f64>,
    first_start_ns: Option<i128>,
    last_end_ns: Option<i128>,
}

struct State<'a, 's> {
    timecode_scale_ns: u64,
    header_duration: Option<f64>,
    track: Option<Track<'a>>,
    first_start_ns: Option<i128>,
    last_end_ns: Option<i128>,
    on_block: &'s mut dyn FnMut(Block<'a>),
}

/// Walks `buf` (which starts with [`MAGIC`]) once, handing every block of the Opus track
/// to `on_block` in file order.
///
/// # Errors
///
/// `Unrecognised` for another `DocType`, `UnsupportedCodec` for anything but one Opus
/// track, `Malformed` for cut-off or inconsistent headers.
pub fn read<'a>(
    buf: &'a [u8],
    on_block: &mut dyn FnMut(Block<'a>),
) -> Result<Webm<'a>, ProbeError> {
    let header = read_element(buf, 0, buf.len())
        .ok()
        .filter(|h| h.id == EBML && !h.unknown && !h.clamped)
        .ok_or(ProbeError::Malformed("webm: truncated EBML header"))?;
    let doc_type = children(buf, header)
        .find(|el| el.id == DOC_TYPE)
        .map_or(&b"matroska"[..], |el| trim_nul(body(buf, el)));
    if doc_type != b"webm" && doc_type != b"matroska" {
        return Err(ProbeError::Unrecognised);
    }
    let segment = find_segment(buf, header.end)?;
    let mut state = State {
        timecode_scale_ns: DEFAULT_TIMECODE_SCALE_NS,
        header_duration: None,
        track: None,
        first_start_ns: None,
        last_end_ns: None,
        on_block,
    };
    walk_segment(buf, segment, &mut state)?;
    let track = state
        .track
        .ok_or(ProbeError::Malformed("webm: no complete track list"))?;
    Ok(Webm {
        track,
        timecode_scale_ns: state.timecode_scale_ns,
        header_duration: state.header_duration,
        first_start_ns: state.first_start_ns,
        last_end_ns: state.last_end_ns,
    })
}

fn find_segment(buf: &[u8], mut pos: usize) -> Result<Element, ProbeError> {
    const NO_SEGMENT: ProbeError = ProbeError::Malformed("webm: no Segment");
    loop {
        let el = read_element(buf, pos, buf.len()).map_err(|_| NO_SEGMENT)?;
        if el.id == SEGMENT {
            return Ok(el);
        }
        if el.unknown || el.clamped {
            return Err(NO_SEGMENT);
        }
        // Skip top-level Void and the like; `end` is past the header, so we advance.
        pos = el.end;
    }
}

fn walk_segment<'a>(
    buf: &'a [u8],
    segment: Element,
    st: &mut State<'a, '_>,
) -> Result<(), ProbeError> {
    let end = segment.end;
    let mut pos = segment.body;
    while pos < end {
        let el = match read_element(buf, pos, end) {
            Ok(el) => el,
            Err(Bad::Truncated) => break,
            // Garbage: like a demuxer, look for the next Cluster and carry on.
            Err(Bad::Invalid) => match find_cluster(buf, pos + 1, end) {
                Some(next) => {
                    pos = next;
                    continue;
                }
                None => break,
            },
        };
        match el.id {
            // A new top-level element ends an unknown-size Segment.
            EBML | SEGMENT if segment.unknown => break,
            CLUSTER => {
                pos = walk_cluster(buf, el, st)?;
                continue;
            }
            _ if el.unknown => {
                return Err(ProbeError::Malformed(
                    "webm: unknown size on an element other than Segment or Cluster",
                ));
            }
            INFO => read_info(buf, el, st)?,
            TRACKS if st.track.is_none() => st.track = Some(read_tracks(buf, el)?),
            _ => {}
        }
        pos = el.end;
    }
    if st.track.is_none() {
        return Err(ProbeError::Malformed("webm: no complete track list"));
    }
    Ok(())
}

fn find_cluster(buf: &[u8], from: usize, end: usize) -> Option<usize> {
    let window = buf.get(from..end)?;
    let at = window.windows(4).position(|w| w == CLUSTER.to_be_bytes())?;
    Some(from + at)
}

fn read_info(buf: &[u8], info: Element, st: &mut State<'_, '_>) -> Result<(), ProbeError> {
    for el in children(buf, info) {
        match el.id {
            TIMECODE_SCALE => match read_uint(body(buf, el)) {
                Some(scale) if scale > 0 => st.timecode_scale_ns = scale,
                _ => return Err(ProbeError::Malformed("webm: bad TimecodeScale")),
            },
            DURATION => st.header_duration = read_float(body(buf, el)),
            _ => {}
        }
    }
    Ok(())
}

fn read_tracks(buf: &[u8], tracks: Element) -> Result<Track<'_>, ProbeError> {
    let mut opus = None;
    for entry in children(buf, tracks).filter(|el| el.id == TRACK_ENTRY) {
        let track = read_track_entry(buf, entry)?;
        if opus.replace(track).is_some() {
            return Err(ProbeError::UnsupportedCodec(
                "webm: more than one audio track",
            ));
        }
    }
    opus.ok_or(ProbeError::Malformed("webm: no tracks"))
}

fn read_track_entry(buf: &[u8], entry: Element) -> Result<Track<'_>, ProbeError> {
    let mut number = None;
    let mut kind = None;
    let mut codec: &[u8] = &[];
    let mut channels = None;
    let mut codec_delay_ns = None;
    let mut head = None;
    let mut codec_private = None;
    for el in children(buf, entry) {
        let bytes = body(buf, el);
        match el.id {
            TRACK_NUMBER => number = read_uint(bytes),
            TRACK_TYPE => kind = read_uint(bytes),
            CODEC_ID => codec = trim_nul(bytes),
            CODEC_DELAY => codec_delay_ns = read_uint(bytes),
            CODEC_PRIVATE => {
                codec_private = Some(bytes);
                if bytes.starts_with(b"OpusHead") {
                    head = read_u16_le(bytes, 10).zip(bytes.get(9).copied());
                }
            }
            AUDIO => {
                channels = children(buf, el)
                    .find(|c| c.id == CHANNELS)
                    .and_then(|c| read_uint(body(buf, c)))
                    .and_then(|c| u16::try_from(c).ok());
            }
            _ => {}
        }
    }
    if codec != b"A_OPUS" || kind.is_some_and(|k| k != TRACK_TYPE_AUDIO) {
        return Err(ProbeError::UnsupportedCodec(describe_track(codec, kind)));
    }
    let number = number
        .filter(|&n| n > 0)
        .ok_or(ProbeError::Malformed("webm: track without a number"))?;
    // CodecDelay is the container's copy of OpusHead's pre-skip; prefer it.
    let delay_ns = match (codec_delay_ns, head) {
        (Some(ns), _) => i128::from(ns),
        (None, Some((pre_skip, _))) => opus_samples_to_nanos(u64::from(pre_skip)),
        (None, None) => 0,
    };
    Ok(Track {
        number,
        // GStreamer leaves Channels out (default 1); OpusHead always has it.
        channels: channels.or(head.map(|(_, count)| u16::from(count))),
        delay_ns,
        codec_private,
    })
}

fn describe_track(codec: &[u8], kind: Option<u64>) -> &'static str {
    if kind == Some(1) || codec.starts_with(b"V_") {
        "webm: video track"
    } else if codec == b"A_VORBIS" {
        "webm: Vorbis audio"
    } else if kind.is_some_and(|k| k != TRACK_TYPE_AUDIO) {
        "webm: non-audio track"
    } else {
        "webm: audio codec other than Opus"
    }
}

/// Walks one Cluster and returns where the Segment walk continues.
fn walk_cluster<'a>(
    buf: &'a [u8],
    cluster: Element,
    st: &mut State<'a, '_>,
) -> Result<usize, ProbeError> {
    let track = st
        .track
        .ok_or(ProbeError::Malformed("webm: Cluster before Tracks"))?;
    let mut timecode = 0;
    let mut pos = cluster.body;
    while pos < cluster.end {
        let Ok(el) = read_element(buf, pos, cluster.end) else {
            // Let the Segment walk resynchronise from here.
            return Ok(if cluster.unknown { pos } else { cluster.end });
        };
        if cluster.unknown && !CLUSTER_CHILDREN.contains(&el.id) {
            return Ok(pos);
        }
        if el.unknown {
            return Err(ProbeError::Malformed(
                "webm: unknown-size element in a Cluster",
            ));
        }
        if el.clamped {
            // Cut off mid-block: keep what we have.
            break;
        }
        match el.id {
            TIMECODE => timecode = read_uint(body(buf, el)).unwrap_or(0),
            SIMPLE_BLOCK => st.block(track, body(buf, el), timecode, None, 0),
            BLOCK_GROUP => read_block_group(buf, el, track, timecode, st),
            _ => {}
        }
        pos = el.end;
    }
    Ok(cluster.end)
}

fn read_block_group<'a>(
    buf: &'a [u8],
    group: Element,
    track: Track<'a>,
    tc: u64,
    st: &mut State<'a, '_>,
) {
    let mut block = None;
    let mut duration = None;
    let mut discard_ns = 0;
    for el in children(buf, group) {
        match el.id {
            BLOCK => block = Some(body(buf, el)),
            BLOCK_DURATION => duration = read_uint(body(buf, el)),
            DISCARD_PADDING => discard_ns = read_int(body(buf, el)).unwrap_or(0),
            _ => {}
        }
    }
    if let Some(block) = block {
        st.block(track, block, tc, duration, discard_ns);
    }
}

impl<'a> State<'a, '_> {
    /// Accounts for one (Simple)Block: its start and end on the timeline.
    fn block(
        &mut self,
        track: Track<'a>,
        data: &'a [u8],
        cluster_tc: u64,
        duration: Option<u64>,
        discard_ns: i64,
    ) {
        let Ok((number, len, _)) = read_vint(data, 0, 8) else {
            return;
        };
        let Some(&[tc_hi, tc_lo, flags]) = data.get(len..len + 3) else {
            return;
        };
        if number != track.number {
            return;
        }
        let payload = &data[len + 3..];
        let scale = i128::from(self.timecode_scale_ns);
        let relative = i128::from(i16::from_be_bytes([tc_hi, tc_lo]));
        let start = (i128::from(cluster_tc) + relative).saturating_mul(scale);
        let length = match duration {
            Some(units) => i128::from(units).saturating_mul(scale),
            None if flags & LACING != 0 => {
                // Laced: the first payload byte is the frame count minus one.
                let frames = payload.first().map_or(1, |&n| i128::from(n) + 1);
                frames * LACED_FRAME_NS
            }
            None => {
                let packet = opus_samples_to_nanos(opus_packet_samples(payload));
                (packet - i128::from(discard_ns.max(0))).max(0)
            }
        };
        let end = start.saturating_add(length);
        self.first_start_ns = Some(self.first_start_ns.map_or(start, |s| s.min(start)));
        self.last_end_ns = Some(self.last_end_ns.map_or(end, |e| e.max(end)));
        (self.on_block)(Block {
            start_ns: start,
            duration_ns: length,
            laced: flags & LACING != 0,
            payload,
        });
    }
}

impl Webm<'_> {
    /// The prober's answer: from the first block's start to the last block's end, less
    /// the codec delay; `Info/Duration` only when no block could be read.
    ///
    /// # Errors
    ///
    /// `UnknownDuration` with neither blocks nor a sane `Info/Duration`.
    pub fn info(&self) -> Result<AudioInfo, ProbeError> {
        let track = self.track;
        let duration = match (self.first_start_ns, self.last_end_ns) {
            (Some(start), Some(end)) => {
                nanos_to_duration(end.saturating_sub(start).saturating_sub(track.delay_ns))
            }
            _ => self.header_duration().ok_or(ProbeError::UnknownDuration)?,
        };
        Ok(AudioInfo {
            format: AudioFormat::WebmOpus,
            duration,
            sample_rate: Some(OPUS_RATE),
            channels: track.channels,
        })
    }

    /// `Info/Duration`, in `TimecodeScale` units, when it is a sane number.
    fn header_duration(&self) -> Option<Duration> {
        let units = self.header_duration?;
        let secs = units * self.timecode_scale_ns as f64 / 1e9;
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMABLE: &[u8] = include_bytes!("../../tests/fixtures/audio/speech_streamable.webm");
    const SEEKABLE: &[u8] = include_bytes!("../../tests/fixtures/audio/speech.webm");

    #[test]
    fn vints_decode_and_all_ones_is_unknown() {
        assert_eq!(read_vint(&[0x81], 0, 8), Ok((1, 1, false)));
        assert_eq!(read_vint(&[0x40, 0x02], 0, 8), Ok((2, 2, false)));
        assert_eq!(read_vint(&[0xFF], 0, 8), Ok((127, 1, true)));
        assert_eq!(
            read_vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 0, 8),
            Ok(((1 << 56) - 1, 8, true))
        );
        assert_eq!(read_vint(&[0x00], 0, 8), Err(Bad::Invalid));
        assert_eq!(read_vint(&[0x40], 0, 8), Err(Bad::Truncated));
    }

    fn blocks(bytes: &[u8]) -> (Result<Webm<'_>, ProbeError>, Vec<Block<'_>>) {
        let mut seen = Vec::new();
        let read = read(bytes, &mut |b| seen.push(b));
        (read, seen)
    }

    #[test]
    fn blocks_are_handed_out_in_order_with_their_times() {
        for bytes in [STREAMABLE, SEEKABLE] {
            let (read, seen) = blocks(bytes);
            let read = read.unwrap();
            assert!(seen.len() > 50, "{}", seen.len());
            assert!(seen.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
            assert!(seen.iter().all(|b| !b.laced && !b.payload.is_empty()));
            // The sum the prober makes is the blocks' span less the codec delay.
            let first = seen.first().unwrap().start_ns;
            let last = seen.last().map(|b| b.start_ns + b.duration_ns).unwrap();
            let want = nanos_to_duration(last - first - read.track.delay_ns);
            assert_eq!(read.info().unwrap().duration, want);
            assert!(
                read.track
                    .codec_private
                    .is_some_and(|p| p.starts_with(b"OpusHead"))
            );
        }
    }

    #[test]
    fn blocks_of_another_track_are_not_handed_out() {
        let (read, seen) = blocks(SEEKABLE);
        let number = u8::try_from(read.unwrap().track.number).unwrap();
        // Renumber every other block: its one-byte track number sits four bytes before the
        // payload (then the relative time and the flags).
        let mut bytes = SEEKABLE.to_vec();
        for block in seen.iter().step_by(2) {
            let at = block.payload.as_ptr() as usize - SEEKABLE.as_ptr() as usize - 4;
            assert_eq!(bytes[at], 0x80 | number);
            bytes[at] = 0x80 | (number + 1);
        }
        let (read, after) = blocks(&bytes);
        assert!(read.is_ok());
        assert_eq!(after.len(), seen.len() / 2);
        assert_eq!(after[0], seen[1]);
    }

    #[test]
    fn a_cut_inside_a_block_keeps_the_blocks_before_it() {
        let (_, all) = blocks(STREAMABLE);
        let (read, seen) = blocks(&STREAMABLE[..STREAMABLE.len() / 2]);
        assert!(read.is_ok());
        assert!(!seen.is_empty() && seen.len() < all.len());
        assert_eq!(seen[..], all[..seen.len()]);
    }
}
