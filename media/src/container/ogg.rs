//! Ogg (RFC 3533) carrying Opus (RFC 7845): pages, checked, and the packets in them.
//!
//! An Ogg stream is pages, each a 27-byte header (capture pattern `OggS`, flags, granule
//! position, serial, sequence, CRC, segment count), a lacing table and a body. Lacing
//! values of 255 continue a packet, anything less ends one, and a packet may continue on
//! the next page. Ogg/Opus puts `OpusHead` alone on the first page, then `OpusTags`, then
//! audio packets; a page's granule position is the 48 kHz sample count at the end of the
//! last packet that finishes on it.
//!
//! This file is the one Ogg parser in the crate: the page layer (also used by the
//! streamer's recorder, through `media::ogg`) and [`read`], the Ogg/Opus walker that hands
//! out audio packets in the pieces the pages hold them in, and sums the timing.
//!
//! Edge cases:
//! - every page must pass its CRC; a corrupt page is `Malformed`, a page cut off by the
//!   end of the upload ends the walk (the audio before it counts);
//! - a second serial (multiplexed or chained) is `UnsupportedCodec`, a second BOS page
//!   `Malformed`;
//! - the first page must be BOS and hold exactly one packet, `OpusHead` (major version 0,
//!   at least one channel); Vorbis, FLAC, Speex and others are `UnsupportedCodec`;
//! - a missing `OpusTags` is `Malformed`; a continuation nobody started is skipped;
//! - the duration is the span of granule positions after the headers minus the pre-skip;
//!   a stream cut from a live source may start past zero;
//! - a last granule far below the audio packets present is `Malformed` (it would hide
//!   audio from the length limit); a negative granule is `Malformed`;
//! - no timed audio page after the headers is `UnknownDuration`.

use super::{OPUS_RATE, opus_packet_samples, read_u16_le, samples_to_duration};
use crate::format::{AudioFormat, AudioInfo, ProbeError};

/// Header-type flags (RFC 3533 §6).
pub const FLAG_CONTINUED: u8 = 0x01;
pub const FLAG_BOS: u8 = 0x02;
pub const FLAG_EOS: u8 = 0x04;

pub const CAPTURE: &[u8; 4] = b"OggS";
/// Capture pattern, version, header type, granule, serial, sequence, CRC, segment count.
pub const HEADER_LEN: usize = 27;
/// Offset of the CRC in the page header.
pub const CRC_AT: usize = 22;

/// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, zero initial value and final XOR;
/// not zlib's), one table entry per byte value.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc_update(crc: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(crc, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// The checksum of a page, computed with its CRC field taken as zero.
pub fn page_crc(page: &[u8]) -> u32 {
    let crc = crc_update(0, &page[..CRC_AT]);
    let crc = crc_update(crc, &[0; 4]);
    crc_update(crc, &page[CRC_AT + 4..])
}

/// One page read back from bytes, its checksum verified.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The whole page, header included.
    pub bytes: &'a [u8],
    pub flags: u8,
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
    /// Segment sizes: a value below 255 ends a packet.
    pub lacing: &'a [u8],
    pub body: &'a [u8],
}

/// Why bytes are not a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The bytes end before the page does: a write cut off.
    #[error("truncated Ogg page")]
    Truncated,
    /// Not a page, or its checksum does not match.
    #[error("corrupt Ogg page")]
    Corrupt,
}

impl<'a> Page<'a> {
    /// The page at the start of `buf`.
    pub fn read(buf: &'a [u8]) -> Result<Page<'a>, PageError> {
        if buf.len() < CAPTURE.len() {
            return Err(if CAPTURE.starts_with(buf) {
                PageError::Truncated
            } else {
                PageError::Corrupt
            });
        }
        if !buf.starts_with(CAPTURE) {
            return Err(PageError::Corrupt);
        }
        let header = buf.get(..HEADER_LEN).ok_or(PageError::Truncated)?;
        if header[4] != 0 {
            return Err(PageError::Corrupt);
        }
        let lacing_end = HEADER_LEN + usize::from(header[26]);
        let lacing = buf
            .get(HEADER_LEN..lacing_end)
            .ok_or(PageError::Truncated)?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let bytes = buf
            .get(..lacing_end + body_len)
            .ok_or(PageError::Truncated)?;
        let stored = u32::from_le_bytes(le4(&bytes[CRC_AT..]));
        if page_crc(bytes) != stored {
            return Err(PageError::Corrupt);
        }
        Ok(Page {
            bytes,
            flags: header[5],
            granule: u64::from_le_bytes(header[6..14].try_into().unwrap_or_default()),
            serial: u32::from_le_bytes(le4(&header[14..])),
            sequence: u32::from_le_bytes(le4(&header[18..])),
            lacing,
            body: &bytes[lacing_end..],
        })
    }

    /// The packets this page holds, in order. Meant for pages whose packets never span
    /// pages (the streamer's own).
    pub fn packets(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let body = self.body;
        let mut start = 0;
        let mut end = 0;
        self.lacing.iter().filter_map(move |&l| {
            end += usize::from(l);
            (l < 255).then(|| {
                let packet = &body[start..end];
                start = end;
                packet
            })
        })
    }

    /// The same page with `flags` set, its checksum recomputed.
    pub fn with_flags(&self, flags: u8) -> Vec<u8> {
        let mut page = self.bytes.to_vec();
        page[5] |= flags;
        let crc = page_crc(&page);
        page[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        page
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    b[..4].try_into().unwrap_or_default()
}

/// Iterates over the pages of `buf` until the first that is truncated or corrupt.
pub fn pages(buf: &[u8]) -> impl Iterator<Item = Page<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let page = Page::read(&buf[pos..]).ok()?;
        pos += page.bytes.len();
        Some(page)
    })
}

const NO_GRANULE: u64 = u64::MAX;
/// The last page may trim its final packet (at most 120 ms); allow two packets.
const MAX_END_TRIM: u64 = 2 * 5760;

/// A run of one packet's bytes within one page: a whole packet when it both starts and
/// ends here, else a part to join with the next pieces (which only a decoder needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    pub data: &'a [u8],
    /// The packet's first bytes (so a piece that does not start one continues the last).
    pub starts: bool,
    /// The packet's last bytes.
    pub ends: bool,
}

/// An Ogg/Opus stream's headers and what the walk counted.
#[derive(Debug, Clone, Copy)]
pub struct OggOpus<'a> {
    /// The `OpusHead` packet, whole.
    pub head: &'a [u8],
    pub channels: u16,
    /// Samples (at 48 kHz) the encoder prepended.
    pub pre_skip: u64,
    /// Whether an `OpusTags` packet followed the head.
    pub tags: bool,
    walker: Walker,
}

/// The first page must hold exactly one packet, the codec's ID header.
fn read_head<'a>(page: &Page<'a>) -> Result<(&'a [u8], u16, u64), ProbeError> {
    if page.flags & FLAG_BOS == 0 {
        return Err(ProbeError::Malformed(
            "ogg: first page does not start a stream",
        ));
    }
    let packet = page.body;
    if packet.starts_with(b"\x01vorbis") {
        return Err(ProbeError::UnsupportedCodec("ogg: Vorbis"));
    }
    if packet.starts_with(b"\x7FFLAC") {
        return Err(ProbeError::UnsupportedCodec("ogg: FLAC"));
    }
    if packet.starts_with(b"Speex   ") {
        return Err(ProbeError::UnsupportedCodec("ogg: Speex"));
    }
    if !packet.starts_with(b"OpusHead") {
        return Err(ProbeError::UnsupportedCodec("ogg: codec other than Opus"));
    }
    let one_packet = page.lacing.last().is_some_and(|&l| l < 255)
        && page.lacing[..page.lacing.len() - 1]
            .iter()
            .all(|&l| l == 255);
    if !one_packet || packet.len() < 19 {
        return Err(ProbeError::Malformed("ogg: bad OpusHead page"));
    }
    // Only major version 0 is defined; newer majors are incompatible by design.
    if packet[8] >> 4 != 0 {
        return Err(ProbeError::UnsupportedCodec(
            "ogg: unknown OpusHead version",
        ));
    }
    let channels = u16::from(packet[9]);
    if channels == 0 {
        return Err(ProbeError::Malformed("ogg: OpusHead with no channels"));
    }
    let pre_skip = u64::from(read_u16_le(packet, 10).unwrap_or_default());
    Ok((packet, channels, pre_skip))
}

/// Walks the pages of `buf` (which starts with [`CAPTURE`]), handing every piece of every
/// audio packet (those after `OpusTags`) to `on_piece`, in order.
///
/// # Errors
///
/// `UnsupportedCodec` for other codecs and a second stream, `Malformed` for corrupt
/// pages, bad headers and granule positions that disagree with the packets.
pub fn read<'a>(
    buf: &'a [u8],
    on_piece: &mut dyn FnMut(Piece<'a>),
) -> Result<OggOpus<'a>, ProbeError> {
    let first = Page::read(buf).map_err(|e| match e {
        PageError::Truncated => ProbeError::Malformed("ogg: truncated first page"),
        PageError::Corrupt => ProbeError::Malformed("ogg: corrupt first page"),
    })?;
    let (head, channels, pre_skip) = read_head(&first)?;
    let mut walker = Walker::default();
    let mut pos = first.bytes.len();
    loop {
        let page = match Page::read(buf.get(pos..).unwrap_or_default()) {
            Ok(page) => page,
            // Cut off mid-page: measure what came before.
            Err(PageError::Truncated) => break,
            Err(PageError::Corrupt) => return Err(ProbeError::Malformed("ogg: corrupt page")),
        };
        if page.serial != first.serial {
            return Err(ProbeError::UnsupportedCodec(
                "ogg: more than one logical stream",
            ));
        }
        if page.flags & FLAG_BOS != 0 {
            return Err(ProbeError::Malformed("ogg: stream started twice"));
        }
        walker.page(&page, on_piece)?;
        // Every page is at least HEADER_LEN bytes, so this always advances.
        pos += page.bytes.len();
    }
    Ok(OggOpus {
        head,
        channels,
        pre_skip,
        tags: walker.packets > 0,
        walker,
    })
}

impl OggOpus<'_> {
    /// Samples (at 48 kHz) a decoder plays: the granule span minus the pre-skip.
    ///
    /// # Errors
    ///
    /// `UnknownDuration` without a timed audio page, `Malformed` when the granule
    /// positions hide audio that is present.
    pub fn playable_samples(&self) -> Result<u64, ProbeError> {
        self.walker.playable_samples(self.pre_skip)
    }

    /// The prober's answer: the timing summed.
    ///
    /// # Errors
    ///
    /// As [`Self::playable_samples`].
    pub fn info(&self) -> Result<AudioInfo, ProbeError> {
        Ok(AudioInfo {
            format: AudioFormat::OggOpus,
            duration: samples_to_duration(self.playable_samples()?, OPUS_RATE),
            sample_rate: Some(OPUS_RATE),
            channels: Some(self.channels),
        })
    }
}

/// Follows packets across pages after the ID header page.
#[derive(Debug, Clone, Copy, Default)]
struct Walker {
    /// Packets started so far after `OpusHead`: the first one is `OpusTags`.
    packets: u64,
    /// The last segment seen was 255 bytes, so a packet is still open.
    in_packet: bool,
    /// Samples of the open audio packet, counted when it completes.
    pending: u64,
    /// Samples of all completed audio packets.
    completed: u64,
    /// Granule position where the first audio sample sits.
    start_granule: Option<u64>,
    /// (granule position, completed samples) at the last timed audio page.
    last: Option<(u64, u64)>,
}

impl Walker {
    fn page<'a>(
        &mut self,
        page: &Page<'a>,
        on_piece: &mut dyn FnMut(Piece<'a>),
    ) -> Result<(), ProbeError> {
        let continued = page.flags & FLAG_CONTINUED != 0;
        // A continuation we weren't expecting has no start to count; skip it.
        let mut skipping = continued && !self.in_packet;
        if !continued {
            self.in_packet = false;
            self.pending = 0;
        }
        // The piece of the packet open at `offset`: where it began on this page, and whether
        // the packet began there.
        let mut piece = (0, false);
        let mut offset = 0;
        for &lace in page.lacing {
            let start = offset;
            offset += usize::from(lace);
            if skipping {
                skipping = lace == 255;
                continue;
            }
            if !self.in_packet {
                self.start_packet(page.body.get(start..offset).unwrap_or_default())?;
                piece = (start, true);
            }
            self.in_packet = lace == 255;
            if !self.in_packet {
                self.completed = self.completed.saturating_add(self.pending);
                self.pending = 0;
                self.hand_out(page.body, piece, offset, true, on_piece);
            }
        }
        if self.in_packet && !skipping {
            self.hand_out(page.body, piece, offset, false, on_piece);
        }
        self.note_granule(page.granule)
    }

    /// Hands out the piece from `piece.0` to `end` if it belongs to an audio packet.
    fn hand_out<'a>(
        &self,
        body: &'a [u8],
        (start, starts): (usize, bool),
        end: usize,
        ends: bool,
        on_piece: &mut dyn FnMut(Piece<'a>),
    ) {
        // Packet 1 is OpusTags; audio is everything after.
        if self.packets >= 2 {
            let data = body.get(start..end).unwrap_or_default();
            on_piece(Piece { data, starts, ends });
        }
    }

    fn start_packet(&mut self, first_segment: &[u8]) -> Result<(), ProbeError> {
        if self.packets == 0 && !first_segment.starts_with(b"OpusTags") {
            return Err(ProbeError::Malformed("ogg: missing OpusTags header"));
        }
        if self.packets > 0 {
            // The TOC (and code-3 count byte) always lie in the first segment.
            self.pending = opus_packet_samples(first_segment);
        }
        self.packets += 1;
        Ok(())
    }

    fn note_granule(&mut self, granule: u64) -> Result<(), ProbeError> {
        // -1 means no packet finishes on this page; before audio there is no timing.
        if granule == NO_GRANULE || self.packets < 2 {
            return Ok(());
        }
        if granule > i64::MAX as u64 {
            return Err(ProbeError::Malformed("ogg: negative granule position"));
        }
        if self.start_granule.is_none() {
            // Streams cut from a live source may not start at zero.
            self.start_granule = Some(granule.saturating_sub(self.completed));
        }
        self.last = Some((granule, self.completed));
        Ok(())
    }

    fn playable_samples(&self, pre_skip: u64) -> Result<u64, ProbeError> {
        let (granule, completed) = self.last.ok_or(ProbeError::UnknownDuration)?;
        let span = granule.saturating_sub(self.start_granule.unwrap_or(0));
        // A last granule far below the audio actually present is a lie (or a
        // broken muxer); trusting it would under-report the length.
        if completed > span.saturating_add(MAX_END_TRIM) {
            return Err(ProbeError::Malformed(
                "ogg: granule positions disagree with the packets",
            ));
        }
        Ok(span.saturating_sub(pre_skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::{ogg_page as page, opus_head};

    #[test]
    fn the_checksum_is_ogg_s() {
        // The catalogue check value of these CRC parameters.
        assert_eq!(crc_update(0, b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn short_and_foreign_bytes_are_told_apart() {
        assert_eq!(Page::read(b"Og").unwrap_err(), PageError::Truncated);
        assert_eq!(Page::read(b"RIFF....").unwrap_err(), PageError::Corrupt);
        let mut page = vec![0u8; HEADER_LEN];
        page[..4].copy_from_slice(CAPTURE);
        let crc = page_crc(&page);
        page[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let read = Page::read(&page).unwrap();
        assert_eq!((read.bytes.len(), read.packets().count()), (HEADER_LEN, 0));
        page[10] ^= 1;
        assert_eq!(Page::read(&page).unwrap_err(), PageError::Corrupt);
    }

    /// A piece as (length, starts, ends).
    type Seen = (usize, bool, bool);

    fn pieces(bytes: &[u8]) -> (Result<OggOpus<'_>, ProbeError>, Vec<Seen>) {
        let mut seen = Vec::new();
        let read = read(bytes, &mut |p| seen.push((p.data.len(), p.starts, p.ends)));
        (read, seen)
    }

    #[test]
    fn a_packet_across_pages_is_handed_out_in_pieces() {
        // 510 bytes of 20 ms CELT (TOC 0xF8), then a one-byte packet.
        let long = [vec![0xF8], vec![7u8; 509]].concat();
        let mut bytes = page(FLAG_BOS, 0, &[&opus_head()], false);
        bytes.extend(page(0, NO_GRANULE, &[b"OpusTags", &long[..255]], true));
        bytes.extend(page(FLAG_CONTINUED, 1272, &[&long[255..], &[0xF8]], false));
        let (read, seen) = pieces(&bytes);
        let read = read.unwrap();
        assert_eq!(
            seen,
            vec![(255, true, false), (255, false, true), (1, true, true)]
        );
        assert_eq!((read.pre_skip, read.channels, read.tags), (312, 1, true));
        assert_eq!(read.playable_samples(), Ok(1272 - 312));
    }

    #[test]
    fn a_continuation_nobody_started_is_skipped() {
        let mut bytes = page(FLAG_BOS, 0, &[&opus_head()], false);
        bytes.extend(page(0, 0, &[b"OpusTags"], false));
        bytes.extend(page(FLAG_CONTINUED, 960, &[b"orphan", &[0xF8]], false));
        let (read, seen) = pieces(&bytes);
        assert_eq!(seen, vec![(1, true, true)]);
        assert_eq!(read.unwrap().playable_samples(), Ok(960 - 312));
    }

    #[test]
    fn headers_alone_have_no_duration_and_no_pieces() {
        let mut bytes = page(FLAG_BOS, 0, &[&opus_head()], false);
        bytes.extend(page(0, 0, &[b"OpusTags"], false));
        let (read, seen) = pieces(&bytes);
        assert_eq!(read.unwrap().info(), Err(ProbeError::UnknownDuration));
        assert!(seen.is_empty());
    }

    #[test]
    fn a_page_of_another_stream_is_refused() {
        let mut bytes = page(FLAG_BOS, 0, &[&opus_head()], false);
        let mut other = page(0, 0, &[b"OpusTags"], false);
        other[14] ^= 1;
        let crc = page_crc(&other);
        other[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        bytes.extend(other);
        assert_eq!(
            pieces(&bytes).0.unwrap_err(),
            ProbeError::UnsupportedCodec("ogg: more than one logical stream")
        );
    }
}
