//! Ogg pages for one Opus logical stream: RFC 3533 framing with the RFC 7845 mapping.
//!
//! Own code rather than the `ogg` crate: the outputs need pages as separate byte chunks (a
//! listener joins at a page boundary, the recorder appends whole pages to its spool file),
//! end trimming on the last page, and a checking reader to seal spool files after a crash.
//! That is a page writer and a page reader of a hundred lines each; `ogg`'s writer hides
//! page boundaries behind an `io::Write`.
//!
//! Every page starts with a fresh packet: an Opus packet (at most 61,440 bytes, RFC 6716
//! §3.4) always fits on one page, so no packet is ever split, and any page is a place where
//! a listener can start.

use bytes::{BufMut, Bytes, BytesMut};

/// Opus timestamps (granule positions) count samples at 48 kHz, whatever the input rate.
pub const OPUS_GRANULE_RATE: u32 = 48_000;

use media::ogg::{CAPTURE, CRC_AT, HEADER_LEN};
pub use media::ogg::{FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, Page, PageError, page_crc, pages};

/// A page holds at most 255 lacing values.
const MAX_LACING: usize = 255;
/// The largest packet that fits on one page (255 lacing values: 254 × 255 + 254).
pub const MAX_PACKET: usize = MAX_LACING * 255 - 1;

/// What the two Opus header packets say (RFC 7845 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHeaders {
    /// Samples (at 48 kHz) the decoder discards at the start: the encoder's lookahead, plus
    /// any pre-roll packets the stream starts with.
    pub pre_skip: u16,
    /// `OpusTags` vendor string.
    pub vendor: String,
    /// `OpusTags` user comments, `KEY=value`.
    pub comments: Vec<String>,
}

impl OpusHeaders {
    /// Stereo 48 kHz headers with the given pre-skip and no comments.
    pub fn new(pre_skip: u16) -> Self {
        OpusHeaders {
            pre_skip,
            vendor: concat!("radio24 host-streamer ", env!("CARGO_PKG_VERSION")).to_owned(),
            comments: Vec::new(),
        }
    }

    fn opus_head(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(19);
        p.extend_from_slice(b"OpusHead");
        p.push(1); // version
        p.push(2); // channels
        p.extend_from_slice(&self.pre_skip.to_le_bytes());
        p.extend_from_slice(&OPUS_GRANULE_RATE.to_le_bytes()); // input sample rate, informative
        p.extend_from_slice(&0i16.to_le_bytes()); // output gain
        p.push(0); // channel mapping family 0: mono or stereo, no table
        p
    }

    fn opus_tags(&self) -> Vec<u8> {
        let mut p = b"OpusTags".to_vec();
        put_string(&mut p, &self.vendor);
        p.extend_from_slice(&(self.comments.len() as u32).to_le_bytes());
        for comment in &self.comments {
            put_string(&mut p, comment);
        }
        p
    }
}

/// A length-prefixed string, as `OpusTags` stores them.
fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A packet that cannot fit on one Ogg page; no Opus packet is that large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {0}-byte packet does not fit on one Ogg page")]
pub struct PacketTooLarge(pub usize);

/// Turns the packets of one Opus stream into Ogg pages.
///
/// Pages are returned as they complete rather than written anywhere, so one writer can feed
/// a file, a socket or a fan-out. A page is emitted when the next packet does not fit on it
/// any more (by default after 10 packets, 200 ms of 20 ms packets), so the page being built
/// always holds at least one packet and the last page, flagged end-of-stream, is never empty.
#[derive(Debug)]
pub struct OggWriter {
    serial: u32,
    sequence: u32,
    /// Samples of every packet added so far: the granule of the page being built.
    granule: u64,
    packets_per_page: usize,
    /// The page being built: its packet count, lacing values and body.
    packets: usize,
    lacing: Vec<u8>,
    body: Vec<u8>,
    headers: Bytes,
}

impl OggWriter {
    /// Packets per page unless told otherwise: 10 × 20 ms keeps listener latency low while
    /// the 27-byte page header stays about 1 % of a 96 kb/s stream.
    pub const DEFAULT_PACKETS_PER_PAGE: usize = 10;

    /// A stream with serial number `serial`; its two header pages are built at once.
    pub fn new(serial: u32, headers: &OpusHeaders) -> Self {
        let mut writer = OggWriter {
            serial,
            sequence: 0,
            granule: 0,
            packets_per_page: Self::DEFAULT_PACKETS_PER_PAGE,
            packets: 0,
            lacing: Vec::with_capacity(MAX_LACING),
            body: Vec::new(),
            headers: Bytes::new(),
        };
        let mut out = BytesMut::new();
        writer.add(&headers.opus_head());
        writer.emit(FLAG_BOS, &mut out);
        writer.add(&headers.opus_tags());
        writer.emit(0, &mut out);
        writer.headers = out.freeze();
        writer
    }

    /// Emits a page every `n` packets (at least 1); a page may close earlier when full.
    pub fn with_packets_per_page(mut self, n: usize) -> Self {
        self.packets_per_page = n.max(1);
        self
    }

    /// The `OpusHead` and `OpusTags` pages, which every reader must get first.
    pub fn headers(&self) -> &Bytes {
        &self.headers
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Samples of all packets added so far, pre-skip included.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Adds a packet lasting `samples` (48 kHz); returns the previous page if this packet
    /// did not fit on it.
    pub fn push(&mut self, packet: &[u8], samples: u32) -> Result<Option<Bytes>, PacketTooLarge> {
        if packet.len() > MAX_PACKET {
            return Err(PacketTooLarge(packet.len()));
        }
        let full = self.packets >= self.packets_per_page
            || self.lacing.len() + lacing_len(packet) > MAX_LACING;
        let page = full.then(|| {
            let mut out = BytesMut::new();
            self.emit(0, &mut out);
            out.freeze()
        });
        self.add(packet);
        self.granule += u64::from(samples);
        Ok(page)
    }

    /// Ends the stream: the last page, flagged end-of-stream.
    ///
    /// `tail` is `(packet, keep)`: the packet that follows this stream's last one in the
    /// encoder's output, when there is one (a recording segment closed by the next
    /// segment's first packet), and how many of its samples belong to this stream. The
    /// encoder delays its output by its lookahead, so the end of this stream's audio is in
    /// that packet: it is added, and the last granule position keeps only `keep` samples of
    /// it (end trimming, RFC 7845 §4.4), so that consecutive segments decode to exactly
    /// their share of the audio.
    pub fn finish(mut self, tail: Option<(&[u8], u32)>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some((packet, keep)) = tail.filter(|(p, _)| p.len() <= MAX_PACKET) {
            if self.lacing.len() + lacing_len(packet) > MAX_LACING {
                self.emit(0, &mut out);
            }
            self.add(packet);
            self.granule += u64::from(keep);
        }
        self.emit(FLAG_EOS, &mut out);
        out.freeze()
    }

    fn add(&mut self, packet: &[u8]) {
        self.lacing
            .extend(std::iter::repeat_n(255u8, packet.len() / 255));
        self.lacing.push((packet.len() % 255) as u8);
        self.body.extend_from_slice(packet);
        self.packets += 1;
    }

    /// Writes the page being built to `out` and starts the next one.
    fn emit(&mut self, flags: u8, out: &mut BytesMut) {
        let start = out.len();
        out.reserve(HEADER_LEN + self.lacing.len() + self.body.len());
        out.put_slice(CAPTURE);
        out.put_u8(0); // version
        out.put_u8(flags);
        out.put_u64_le(self.granule);
        out.put_u32_le(self.serial);
        out.put_u32_le(self.sequence);
        out.put_u32_le(0); // CRC, filled in below
        out.put_u8(self.lacing.len() as u8);
        out.put_slice(&self.lacing);
        out.put_slice(&self.body);
        let crc = page_crc(&out[start..]);
        out[start + CRC_AT..start + CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
        self.packets = 0;
        self.lacing.clear();
        self.body.clear();
    }
}

/// Lacing values a packet takes: one per 255 bytes, plus the one below 255 that ends it.
fn lacing_len(packet: &[u8]) -> usize {
    packet.len() / 255 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize, fill: u8) -> Vec<u8> {
        vec![fill; len]
    }

    #[test]
    fn headers_follow_rfc_7845() {
        let mut h = OpusHeaders::new(312);
        h.comments.push("TITLE=Radio24".into());
        let w = OggWriter::new(0xdead_beef, &h);
        let pages: Vec<Page<'_>> = pages(w.headers()).collect();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].flags, FLAG_BOS);
        assert_eq!((pages[0].sequence, pages[1].sequence), (0, 1));
        assert!(
            pages
                .iter()
                .all(|p| p.serial == 0xdead_beef && p.granule == 0)
        );
        let head: Vec<&[u8]> = pages[0].packets().collect();
        assert_eq!(head.len(), 1);
        assert_eq!(
            head[0],
            &[
                b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0,
                0, 0, 0
            ]
        );
        let tags: Vec<&[u8]> = pages[1].packets().collect();
        assert!(tags[0].starts_with(b"OpusTags"));
        assert!(tags[0].ends_with(b"\x0d\x00\x00\x00TITLE=Radio24"));
    }

    #[test]
    fn pages_carry_whole_packets_and_granules() {
        let mut w = OggWriter::new(7, &OpusHeaders::new(312)).with_packets_per_page(3);
        let mut out = w.headers().to_vec();
        let sizes = [1, 254, 255, 256, 510, 600, 3, 4];
        for (i, &len) in sizes.iter().enumerate() {
            if let Some(page) = w.push(&packet(len, i as u8), 960).unwrap() {
                out.extend_from_slice(&page);
            }
        }
        out.extend_from_slice(&w.finish(None));

        let pages: Vec<Page<'_>> = pages(&out).collect();
        let total: usize = pages.iter().map(|p| p.bytes.len()).sum();
        assert_eq!(total, out.len(), "every page reads back with a valid CRC");
        let audio = &pages[2..];
        let per_page: Vec<usize> = audio.iter().map(|p| p.packets().count()).collect();
        assert_eq!(per_page, vec![3, 3, 2]);
        let granules: Vec<u64> = audio.iter().map(|p| p.granule).collect();
        assert_eq!(granules, vec![3 * 960, 6 * 960, 8 * 960]);
        let seqs: Vec<u32> = pages.iter().map(|p| p.sequence).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert_eq!(audio.last().unwrap().flags, FLAG_EOS);
        assert!(audio[..2].iter().all(|p| p.flags == 0));
        let lens: Vec<usize> = audio
            .iter()
            .flat_map(|p| p.packets())
            .map(<[u8]>::len)
            .collect();
        assert_eq!(lens, sizes);
    }

    #[test]
    fn a_full_page_closes_early_and_oversized_packets_are_refused() {
        let mut w = OggWriter::new(1, &OpusHeaders::new(0)).with_packets_per_page(100);
        let big = packet(255 * 100, 1); // 101 lacing values
        assert!(w.push(&big, 960).unwrap().is_none());
        assert!(w.push(&big, 960).unwrap().is_none());
        let page = w.push(&big, 960).unwrap().expect("no room for a third");
        assert_eq!(Page::read(&page).unwrap().packets().count(), 2);
        assert_eq!(
            w.push(&packet(MAX_PACKET + 1, 0), 960),
            Err(PacketTooLarge(MAX_PACKET + 1))
        );
    }

    #[test]
    fn a_tail_packet_is_trimmed_to_what_is_kept() {
        let mut w = OggWriter::new(1, &OpusHeaders::new(312));
        for _ in 0..4 {
            assert!(w.push(&[1, 2, 3], 960).unwrap().is_none());
        }
        let last = w.finish(Some((&[9, 9], 312)));
        let page = Page::read(&last).unwrap();
        assert_eq!(page.flags, FLAG_EOS);
        assert_eq!(page.packets().count(), 5);
        assert_eq!(page.granule, 4 * 960 + 312);
    }

    #[test]
    fn reader_tells_truncation_from_corruption() {
        let w = OggWriter::new(1, &OpusHeaders::new(312));
        let bytes = w.headers().to_vec();
        let first_len = Page::read(&bytes).unwrap().bytes.len();
        assert_eq!(
            Page::read(&bytes[..first_len - 1]).unwrap_err(),
            PageError::Truncated
        );
        assert_eq!(Page::read(&bytes[..2]).unwrap_err(), PageError::Truncated);
        let mut bad = bytes.clone();
        bad[first_len - 1] ^= 1;
        assert_eq!(Page::read(&bad).unwrap_err(), PageError::Corrupt);
        let flagged = Page::read(&bytes).unwrap().with_flags(FLAG_EOS);
        let page = Page::read(&flagged).unwrap();
        assert_eq!(page.flags, FLAG_BOS | FLAG_EOS);
    }
}
