//! Content sniffing and duration probing for uploaded audio.
//!
//! The public ingest API calls [`probe`] on the raw upload: the format is decided
//! from the bytes alone (never from the client's `Content-Type`), and the duration
//! is measured from the content so that a length limit can be enforced.
//!
//! Accepted uploads:
//! - **WebM/Opus**: EBML `DocType` `webm` (or `matroska`, see below) whose only track
//!   is Opus (`A_OPUS`). Unknown-size Segments and Clusters, as browsers'
//!   `MediaRecorder` writes them, are supported.
//! - **Ogg/Opus**: one logical stream whose first packet is `OpusHead`.
//! - **WAV**: RIFF/WAVE with integer PCM (16/24/32-bit) or IEEE float (32/64-bit),
//!   plain or `WAVE_FORMAT_EXTENSIBLE`.
//! - **MP3**: MPEG-1/2/2.5 Layer III, optionally behind ID3v2 tags.
//!
//! Decisions worth knowing:
//! - `DocType` `matroska` is accepted (as [`AudioFormat::WebmOpus`]) when its only
//!   track is Opus: Opus-in-Matroska decodes exactly like WebM, and some recorders
//!   label it so. Any video or non-Opus track makes the upload `UnsupportedCodec`.
//! - Ogg pages must pass their CRC; a corrupt page is `Malformed`, and a second
//!   (multiplexed or chained) logical stream is `UnsupportedCodec`.
//! - WAV: 8-bit and other depths, and compressed WAV, are `UnsupportedCodec`;
//!   RF64 is `Unrecognised`. A data size past the end of the upload (streamed files
//!   leave `0xFFFFFFFF`) is clamped to the bytes present.
//! - MP3 needs three consecutive frames up front (at offset 0, or within 8 KiB
//!   after ID3v2 tags); junk later in the stream is skipped like decoders do.
//! - Durations are measured from what is actually in the file (WebM blocks, Ogg
//!   granule positions checked against packet lengths, MP3 frames, WAV data bytes),
//!   so a header that lies about the length cannot slip past a limit. WebM's
//!   `Info/Duration` is only used when no block could be read.
//! - Truncated uploads (cut off inside the audio data) still probe, with the
//!   duration of the audio present. Uploads cut off before the audio data starts
//!   (inside the headers) are `Malformed`, or `UnknownDuration` when the headers are
//!   complete but no timed audio follows. Opus durations exclude the encoder's
//!   pre-skip; MP3 durations exclude the LAME/Xing encoder delay and padding.
//!
//! Hostile input: `probe` never panics, never allocates, makes one forward pass
//! over the bytes (O(n)), and uses checked or saturating arithmetic throughout.

use std::time::Duration;

/// An accepted upload container and codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// Opus in WebM (or Matroska).
    WebmOpus,
    /// Opus in Ogg.
    OggOpus,
    /// Uncompressed PCM or IEEE float in RIFF/WAVE.
    Wav,
    /// MPEG Layer III.
    Mp3,
}

impl AudioFormat {
    /// The MIME type to store and serve the upload with.
    #[must_use]
    pub fn mime(&self) -> &'static str {
        match self {
            Self::WebmOpus => "audio/webm",
            Self::OggOpus => "audio/ogg",
            Self::Wav => "audio/wav",
            Self::Mp3 => "audio/mpeg",
        }
    }

    /// The file extension (without a dot) to store the upload under.
    #[must_use]
    pub fn extension(&self) -> &'static str {
        match self {
            Self::WebmOpus => "webm",
            Self::OggOpus => "ogg",
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
        }
    }
}

/// What [`probe`] found out about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    pub format: AudioFormat,
    /// Playable length of the audio present in the bytes.
    pub duration: Duration,
    /// Sample rate in Hz. Always 48 kHz for Opus, the rate it decodes and is timed at.
    pub sample_rate: Option<u32>,
    /// Channel count, when the container says.
    pub channels: Option<u16>,
}

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not one of the allowed containers at all.
    #[error("not a recognised audio format (allowed: WebM/Opus, Ogg/Opus, WAV, MP3)")]
    Unrecognised,
    /// An allowed container holding a codec or layout we do not accept.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(&'static str),
    /// An allowed container that is truncated in its headers or inconsistent.
    #[error("malformed audio: {0}")]
    Malformed(&'static str),
    /// A well-formed header with no timed audio after it.
    #[error("audio duration could not be determined")]
    UnknownDuration,
}

/// Sniffs `bytes` and measures the audio in them.
///
/// # Errors
///
/// [`ProbeError::Unrecognised`] when the bytes are none of the allowed containers,
/// [`ProbeError::UnsupportedCodec`] when the container holds something other than
/// the allowed codecs, [`ProbeError::Malformed`] when the headers are cut off or
/// inconsistent, and [`ProbeError::UnknownDuration`] when no timed audio follows them.
pub fn probe(bytes: &[u8]) -> Result<AudioInfo, ProbeError> {
    if bytes.starts_with(&webm::MAGIC) {
        webm::probe(bytes)
    } else if bytes.starts_with(ogg::CAPTURE) {
        ogg::probe(bytes)
    } else if wav::sniff(bytes) {
        wav::probe(bytes)
    } else if mp3::sniff(bytes) {
        mp3::probe(bytes)
    } else {
        Err(ProbeError::Unrecognised)
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Opus always runs its clock at 48 kHz, whatever the input rate was.
const OPUS_RATE: u32 = 48_000;

/// `samples / rate` seconds as a `Duration`, without floating point.
fn samples_to_duration(samples: u64, rate: u32) -> Duration {
    let Some(rate) = std::num::NonZeroU64::new(u64::from(rate)) else {
        return Duration::ZERO;
    };
    let secs = samples / rate;
    // The remainder is < rate <= u32::MAX, so this product fits in a u64.
    let nanos = (samples % rate) * NANOS_PER_SEC / rate.get();
    Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
}

fn nanos_to_duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

fn opus_samples_to_nanos(samples: u64) -> i128 {
    i128::from(samples) * i128::from(NANOS_PER_SEC) / i128::from(OPUS_RATE)
}

/// Samples (at 48 kHz) in one Opus packet, read from its TOC byte (RFC 6716 §3.1).
fn opus_packet_samples(packet: &[u8]) -> u64 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = toc >> 3;
    let frame: u64 = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config & 1)],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        // Code 3: the frame count is in the low six bits of the next byte.
        _ => packet.get(1).map_or(0, |b| u64::from(b & 0x3F)),
    };
    frame * frames
}

fn read_u16_le(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32_le(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// WebM / Matroska (EBML).
mod webm {
    use super::{
        AudioFormat, AudioInfo, OPUS_RATE, ProbeError, nanos_to_duration, opus_packet_samples,
        opus_samples_to_nanos, read_u16_le,
    };
    use std::time::Duration;

    pub(super) const MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

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

    #[derive(Clone, Copy)]
    struct OpusTrack {
        number: u64,
        channels: Option<u16>,
        /// Decoder delay to drop from the start, in nanoseconds.
        delay_ns: i128,
    }

    struct State {
        timecode_scale_ns: u64,
        header_duration: Option<f64>,
        track: Option<OpusTrack>,
        first_start_ns: Option<i128>,
        last_end_ns: Option<i128>,
    }

    pub(super) fn probe(buf: &[u8]) -> Result<AudioInfo, ProbeError> {
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
        };
        walk_segment(buf, segment, &mut state)?;
        state.finish()
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

    fn walk_segment(buf: &[u8], segment: Element, st: &mut State) -> Result<(), ProbeError> {
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

    fn read_info(buf: &[u8], info: Element, st: &mut State) -> Result<(), ProbeError> {
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

    fn read_tracks(buf: &[u8], tracks: Element) -> Result<OpusTrack, ProbeError> {
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

    fn read_track_entry(buf: &[u8], entry: Element) -> Result<OpusTrack, ProbeError> {
        let mut number = None;
        let mut kind = None;
        let mut codec: &[u8] = &[];
        let mut channels = None;
        let mut codec_delay_ns = None;
        let mut head = None;
        for el in children(buf, entry) {
            let bytes = body(buf, el);
            match el.id {
                TRACK_NUMBER => number = read_uint(bytes),
                TRACK_TYPE => kind = read_uint(bytes),
                CODEC_ID => codec = trim_nul(bytes),
                CODEC_DELAY => codec_delay_ns = read_uint(bytes),
                CODEC_PRIVATE if bytes.starts_with(b"OpusHead") => {
                    head = read_u16_le(bytes, 10).zip(bytes.get(9).copied());
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
        Ok(OpusTrack {
            number,
            // GStreamer leaves Channels out (default 1); OpusHead always has it.
            channels: channels.or(head.map(|(_, count)| u16::from(count))),
            delay_ns,
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
    fn walk_cluster(buf: &[u8], cluster: Element, st: &mut State) -> Result<usize, ProbeError> {
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

    fn read_block_group(buf: &[u8], group: Element, track: OpusTrack, tc: u64, st: &mut State) {
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

    impl State {
        /// Accounts for one (Simple)Block: its start and end on the timeline.
        fn block(
            &mut self,
            track: OpusTrack,
            data: &[u8],
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
                None if flags & 0x06 != 0 => {
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
        }

        fn finish(self) -> Result<AudioInfo, ProbeError> {
            let track = self
                .track
                .ok_or(ProbeError::Malformed("webm: no complete track list"))?;
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
}

/// Ogg/Opus (RFC 3533, RFC 7845).
mod ogg {
    use super::{
        AudioFormat, AudioInfo, OPUS_RATE, ProbeError, opus_packet_samples, read_u16_le,
        samples_to_duration,
    };

    pub(super) use crate::ogg::CAPTURE;
    use crate::ogg::{FLAG_BOS, FLAG_CONTINUED, Page, PageError};

    const NO_GRANULE: u64 = u64::MAX;
    /// The last page may trim its final packet (at most 120 ms); allow two packets.
    const MAX_END_TRIM: u64 = 2 * 5760;

    struct Head {
        channels: u16,
        pre_skip: u64,
    }

    /// The first page must hold exactly one packet, the codec's ID header.
    fn read_head(page: &Page<'_>) -> Result<Head, ProbeError> {
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
        Ok(Head { channels, pre_skip })
    }

    pub(super) fn probe(buf: &[u8]) -> Result<AudioInfo, ProbeError> {
        let first = Page::read(buf).map_err(|e| match e {
            PageError::Truncated => ProbeError::Malformed("ogg: truncated first page"),
            PageError::Corrupt => ProbeError::Malformed("ogg: corrupt first page"),
        })?;
        let head = read_head(&first)?;
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
            walker.page(&page)?;
            // Every page is at least HEADER_LEN bytes, so this always advances.
            pos += page.bytes.len();
        }
        let samples = walker.playable_samples(head.pre_skip)?;
        Ok(AudioInfo {
            format: AudioFormat::OggOpus,
            duration: samples_to_duration(samples, OPUS_RATE),
            sample_rate: Some(OPUS_RATE),
            channels: Some(head.channels),
        })
    }

    /// Follows packets across pages after the ID header page.
    #[derive(Default)]
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
        fn page(&mut self, page: &Page<'_>) -> Result<(), ProbeError> {
            let continued = page.flags & FLAG_CONTINUED != 0;
            // A continuation we weren't expecting has no start to count; skip it.
            let mut skipping = continued && !self.in_packet;
            if !continued {
                self.in_packet = false;
                self.pending = 0;
            }
            let mut offset = 0;
            for &lace in page.lacing {
                let segment = page.body.get(offset..offset + usize::from(lace));
                offset += usize::from(lace);
                if skipping {
                    skipping = lace == 255;
                    continue;
                }
                if !self.in_packet {
                    self.start_packet(segment.unwrap_or_default())?;
                }
                self.in_packet = lace == 255;
                if !self.in_packet {
                    self.completed = self.completed.saturating_add(self.pending);
                    self.pending = 0;
                }
            }
            self.note_granule(page.granule)
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
}

/// RIFF/WAVE.
mod wav {
    use super::{
        AudioFormat, AudioInfo, ProbeError, read_u16_le, read_u32_le, samples_to_duration,
    };

    const PCM: u16 = 1;
    const IEEE_FLOAT: u16 = 3;
    const EXTENSIBLE: u16 = 0xFFFE;
    /// The tail shared by the `KSDATAFORMAT_SUBTYPE_*` GUIDs after the format tag.
    const SUBFORMAT_TAIL: [u8; 14] = [
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ];
    /// Size fields that streaming writers leave when they cannot seek back.
    const PLACEHOLDER_SIZES: [u32; 2] = [0, u32::MAX];

    pub(super) fn sniff(buf: &[u8]) -> bool {
        buf.starts_with(b"RIFF") && buf.get(8..12) == Some(b"WAVE")
    }

    #[derive(Clone, Copy)]
    struct Format {
        channels: u16,
        sample_rate: u32,
        frame_bytes: u64,
    }

    pub(super) fn probe(buf: &[u8]) -> Result<AudioInfo, ProbeError> {
        let riff_size = read_u32_le(buf, 4).unwrap_or_default();
        let mut format = None;
        let mut data_len = None;
        let mut pos: usize = 12;
        while format.is_none() || data_len.is_none() {
            let Some(header) = buf.get(pos..).and_then(|rest| rest.get(..8)) else {
                break;
            };
            let (id, size) = (&header[..4], read_u32_le(header, 4).unwrap_or_default());
            let body = pos + 8;
            let available = buf.len() - body;
            let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
            match id {
                b"fmt " => {
                    format = Some(read_fmt(buf.get(body..body + size_usize.min(available)))?)
                }
                b"data" => {
                    let streamed =
                        size == u32::MAX || (size == 0 && PLACEHOLDER_SIZES.contains(&riff_size));
                    // Never trust a size past the bytes we actually hold.
                    let len = if streamed {
                        available
                    } else {
                        size_usize.min(available)
                    };
                    data_len = Some(len);
                    if len == available {
                        break;
                    }
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            let Some(next) = body
                .checked_add(size_usize)
                .and_then(|n| n.checked_add(size_usize & 1))
            else {
                break;
            };
            pos = next;
        }
        let format = format.ok_or(ProbeError::Malformed("wav: no fmt chunk"))?;
        let data_len = data_len.ok_or(ProbeError::Malformed("wav: no data chunk"))?;
        let frames = u64::try_from(data_len).unwrap_or(u64::MAX) / format.frame_bytes;
        Ok(AudioInfo {
            format: AudioFormat::Wav,
            duration: samples_to_duration(frames, format.sample_rate),
            sample_rate: Some(format.sample_rate),
            channels: Some(format.channels),
        })
    }

    fn read_fmt(chunk: Option<&[u8]>) -> Result<Format, ProbeError> {
        let fmt = chunk
            .filter(|c| c.len() >= 16)
            .ok_or(ProbeError::Malformed("wav: short fmt chunk"))?;
        let field = |at| read_u16_le(fmt, at).unwrap_or_default();
        let mut tag = field(0);
        let channels = field(2);
        let sample_rate = read_u32_le(fmt, 4).unwrap_or_default();
        let block_align = field(12);
        let bits = field(14);
        if tag == EXTENSIBLE {
            tag = extensible_subformat(fmt)?;
        }
        match (tag, bits) {
            (PCM, 16 | 24 | 32) | (IEEE_FLOAT, 32 | 64) => {}
            (PCM, _) => {
                return Err(ProbeError::UnsupportedCodec(
                    "wav: PCM bit depth not 16/24/32",
                ));
            }
            (IEEE_FLOAT, _) => {
                return Err(ProbeError::UnsupportedCodec("wav: float not 32/64-bit"));
            }
            _ => {
                return Err(ProbeError::UnsupportedCodec(
                    "wav: compressed or non-PCM encoding",
                ));
            }
        }
        if channels == 0 || sample_rate == 0 {
            return Err(ProbeError::Malformed("wav: zero channels or sample rate"));
        }
        let frame_bytes = u64::from(channels) * u64::from(bits / 8);
        if u64::from(block_align) != frame_bytes {
            return Err(ProbeError::Malformed(
                "wav: block align disagrees with format",
            ));
        }
        Ok(Format {
            channels,
            sample_rate,
            frame_bytes,
        })
    }

    /// The real format tag of a `WAVE_FORMAT_EXTENSIBLE` header.
    fn extensible_subformat(fmt: &[u8]) -> Result<u16, ProbeError> {
        let guid = fmt
            .get(24..40)
            .filter(|_| read_u16_le(fmt, 16).is_some_and(|cb| cb >= 22))
            .ok_or(ProbeError::Malformed("wav: short extensible fmt chunk"))?;
        if guid[2..] != SUBFORMAT_TAIL {
            return Err(ProbeError::UnsupportedCodec(
                "wav: unknown extensible subformat",
            ));
        }
        Ok(u16::from_le_bytes([guid[0], guid[1]]))
    }
}

/// MPEG audio (ID3v2 + Layer III frames).
mod mp3 {
    use super::{AudioFormat, AudioInfo, ProbeError, read_u32_be, samples_to_duration};

    /// Consecutive frames needed before random bytes are believed to be MPEG audio.
    const MIN_RUN: usize = 3;
    /// After an ID3 tag, how far to look for the first frame (some taggers pad).
    const MAX_LEADING_JUNK: usize = 8 * 1024;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Version {
        Mpeg1,
        Mpeg2,
        Mpeg25,
    }

    #[derive(Clone, Copy)]
    struct Frame {
        version: Version,
        layer: u8,
        sample_rate: u32,
        mono: bool,
        len: usize,
        samples: u64,
    }

    impl Frame {
        fn same_stream(&self, other: &Frame) -> bool {
            self.version == other.version
                && self.layer == other.layer
                && self.sample_rate == other.sample_rate
        }
    }

    const BITRATES_V1: [[u32; 14]; 3] = [
        [
            32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const BITRATES_V2: [[u32; 14]; 3] = [
        [
            32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];

    fn parse_header(h: u32) -> Option<Frame> {
        if h >> 21 != 0x7FF || h & 3 == 2 {
            return None; // no sync, or reserved emphasis
        }
        let version = match (h >> 19) & 3 {
            0 => Version::Mpeg25,
            2 => Version::Mpeg2,
            3 => Version::Mpeg1,
            _ => return None,
        };
        let layer = match (h >> 17) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let bitrate_index = ((h >> 12) & 0xF) as usize;
        // 0 is "free format", which has no computable frame length; 15 is invalid.
        if bitrate_index == 0 || bitrate_index == 15 {
            return None;
        }
        let table = if version == Version::Mpeg1 {
            &BITRATES_V1
        } else {
            &BITRATES_V2
        };
        let bitrate = u64::from(table[usize::from(layer - 1)][bitrate_index - 1]) * 1000;
        let base_rate = match (h >> 10) & 3 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match version {
            Version::Mpeg1 => base_rate,
            Version::Mpeg2 => base_rate / 2,
            Version::Mpeg25 => base_rate / 4,
        };
        let padding = u64::from((h >> 9) & 1);
        let samples: u64 = match (layer, version) {
            (1, _) => 384,
            (2, _) | (3, Version::Mpeg1) => 1152,
            _ => 576,
        };
        let rate = u64::from(sample_rate);
        let len = if layer == 1 {
            (12 * bitrate / rate + padding) * 4
        } else {
            samples / 8 * bitrate / rate + padding
        };
        Some(Frame {
            version,
            layer,
            sample_rate,
            mono: (h >> 6) & 3 == 3,
            len: usize::try_from(len).ok()?,
            samples,
        })
    }

    /// A frame at `pos` that fits entirely in `buf`.
    fn frame_at(buf: &[u8], pos: usize) -> Option<Frame> {
        let frame = parse_header(read_u32_be(buf, pos)?)?;
        (pos.checked_add(frame.len)? <= buf.len()).then_some(frame)
    }

    fn frame_of(buf: &[u8], pos: usize, stream: &Frame) -> Option<Frame> {
        frame_at(buf, pos).filter(|f| f.same_stream(stream))
    }

    /// A frame at `pos` followed by enough frames of the same stream to believe it.
    fn run_at(buf: &[u8], pos: usize, needed: usize) -> Option<Frame> {
        let first = frame_at(buf, pos)?;
        let mut at = pos;
        for _ in 0..needed {
            at += frame_of(buf, at, &first)?.len;
        }
        Some(first)
    }

    pub(super) fn sniff(buf: &[u8]) -> bool {
        buf.starts_with(b"ID3") || read_u32_be(buf, 0).and_then(parse_header).is_some()
    }

    pub(super) fn probe(buf: &[u8]) -> Result<AudioInfo, ProbeError> {
        let start = skip_id3(buf)?;
        let window = if start == 0 { 0 } else { MAX_LEADING_JUNK };
        let last = start.saturating_add(window).min(buf.len());
        let (first_pos, stream) = (start..=last)
            .find_map(|p| run_at(buf, p, MIN_RUN).map(|f| (p, f)))
            .ok_or(ProbeError::Unrecognised)?;
        if stream.layer != 3 {
            return Err(ProbeError::UnsupportedCodec("mpeg audio layer I/II"));
        }
        let tag = encoder_tag(buf, first_pos, &stream);
        // The Xing/Info/VBRI frame carries no audio.
        let mut pos = first_pos + if tag.is_some() { stream.len } else { 0 };
        let mut frames: u64 = 0;
        while let Some((at, frame)) = next_frame(buf, pos, &stream) {
            frames += 1;
            pos = at + frame.len;
        }
        let tag = tag.unwrap_or_default();
        let mut samples = frames.saturating_mul(stream.samples);
        samples = samples.saturating_sub(tag.delay);
        // The end padding only applies if the end is actually there.
        if tag.frames.is_some_and(|f| frames >= f) {
            samples = samples.saturating_sub(tag.padding);
        }
        Ok(AudioInfo {
            format: AudioFormat::Mp3,
            duration: samples_to_duration(samples, stream.sample_rate),
            sample_rate: Some(stream.sample_rate),
            channels: Some(if stream.mono { 1 } else { 2 }),
        })
    }

    /// The next frame at or after `pos`. After lost sync (garbage, a tag in the
    /// middle) it looks ahead, as decoders do, for two frames in a row.
    fn next_frame(buf: &[u8], pos: usize, stream: &Frame) -> Option<(usize, Frame)> {
        if let Some(frame) = frame_of(buf, pos, stream) {
            return Some((pos, frame));
        }
        (pos.checked_add(1)?..buf.len()).find_map(|p| {
            let frame = frame_of(buf, p, stream)?;
            let next = p + frame.len;
            (next == buf.len() || frame_of(buf, next, stream).is_some()).then_some((p, frame))
        })
    }

    /// Skips ID3v2 tags (some files carry several back to back).
    fn skip_id3(buf: &[u8]) -> Result<usize, ProbeError> {
        let mut pos: usize = 0;
        while buf.get(pos..).is_some_and(|rest| rest.starts_with(b"ID3")) {
            let header = buf
                .get(pos..)
                .and_then(|rest| rest.get(..10))
                .ok_or(ProbeError::Malformed("mp3: truncated ID3 tag"))?;
            let syncsafe = &header[6..10];
            if header[3] == 0xFF || header[4] == 0xFF || syncsafe.iter().any(|b| b & 0x80 != 0) {
                return if pos == 0 {
                    Err(ProbeError::Unrecognised)
                } else {
                    Ok(pos)
                };
            }
            let size = syncsafe
                .iter()
                .fold(0usize, |s, &b| (s << 7) | usize::from(b));
            let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
            pos = pos.saturating_add(10 + size + footer);
            if pos > buf.len() {
                return Err(ProbeError::Malformed("mp3: ID3 tag runs past the end"));
            }
        }
        Ok(pos)
    }

    #[derive(Default)]
    struct EncoderTag {
        frames: Option<u64>,
        /// Encoder delay and end padding in samples (LAME tag), for gapless length.
        delay: u64,
        padding: u64,
    }

    /// Reads a Xing/Info (with LAME extension) or VBRI header from the first frame.
    fn encoder_tag(buf: &[u8], pos: usize, stream: &Frame) -> Option<EncoderTag> {
        let frame = buf.get(pos..pos + stream.len)?;
        let side_info = match (stream.version, stream.mono) {
            (Version::Mpeg1, true) => 17,
            (Version::Mpeg1, false) => 32,
            (_, true) => 9,
            (_, false) => 17,
        };
        let xing = 4 + side_info;
        match frame.get(xing..xing + 4) {
            Some(b"Xing" | b"Info") => Some(xing_tag(frame, xing)),
            _ if frame.get(36..40) == Some(b"VBRI") => Some(EncoderTag {
                frames: read_u32_be(frame, 50).map(u64::from),
                ..EncoderTag::default()
            }),
            _ => None,
        }
    }

    fn xing_tag(frame: &[u8], xing: usize) -> EncoderTag {
        let flags = read_u32_be(frame, xing + 4).unwrap_or_default();
        let mut at = xing + 8;
        let mut frames = None;
        if flags & 1 != 0 {
            frames = read_u32_be(frame, at).map(u64::from);
            at += 4;
        }
        // Byte count, table of contents, quality: skip whichever are present.
        for (bit, len) in [(2, 4), (4, 100), (8, 4)] {
            if flags & bit != 0 {
                at += len;
            }
        }
        let mut tag = EncoderTag {
            frames,
            ..EncoderTag::default()
        };
        // LAME extension: 9-byte encoder string, then delay/padding (12 bits each) at +21.
        if let Some(lame) = frame.get(at..at + 24)
            && [&b"LAME"[..], b"Lavf", b"Lavc"]
                .iter()
                .any(|p| lame.starts_with(p))
        {
            let [a, b, c] = [lame[21], lame[22], lame[23]].map(u64::from);
            tag.delay = (a << 4) | (b >> 4);
            tag.padding = ((b & 0xF) << 8) | c;
        }
        tag
    }
}
