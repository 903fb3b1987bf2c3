//! Tests for `media::probe` against real encoder output (see
//! `fixtures/audio/README.md` for how each file was made and its true length).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use media::probe::*;
use proptest::prelude::*;
use proptest::sample::Index;

/// Counts the bytes this thread allocates, so tests can show `probe` allocates
/// nothing, whatever sizes the input claims.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; the counter is a
// const-initialised thread-local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|n| n.set(n.get().saturating_add(layout.size())));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `probe` and checks that it allocated nothing on the way.
fn probe_no_alloc(bytes: &[u8]) -> Result<AudioInfo, ProbeError> {
    let before = ALLOCATED.with(Cell::get);
    let result = probe(bytes);
    let allocated = ALLOCATED.with(Cell::get) - before;
    assert_eq!(allocated, 0, "probe allocated {allocated} bytes");
    result
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/audio/", $name)).as_slice()
    };
}

const SPEECH_16K_S16_WAV: &[u8] = fixture!("speech_16k_s16.wav");
const SPEECH_8K_S24_WAV: &[u8] = fixture!("speech_8k_s24.wav");
const TONE_8K_F32_WAV: &[u8] = fixture!("tone_8k_f32.wav");
const SPEECH_WEBM: &[u8] = fixture!("speech.webm");
const SPEECH_LIVE_WEBM: &[u8] = fixture!("speech_live.webm");
const SPEECH_STREAMABLE_WEBM: &[u8] = fixture!("speech_streamable.webm");
const SPEECH_OPUS_MKA: &[u8] = fixture!("speech_opus.mka");
const SPEECH_OGG: &[u8] = fixture!("speech.ogg");
const SPEECH_MP3: &[u8] = fixture!("speech.mp3");
const SPEECH_NOXING_MP3: &[u8] = fixture!("speech_noxing.mp3");
const SPEECH_MP2: &[u8] = fixture!("speech.mp2");
const VORBIS_OGG: &[u8] = fixture!("vorbis.ogg");
const VORBIS_WEBM: &[u8] = fixture!("vorbis.webm");
const FLAC_OGG: &[u8] = fixture!("flac.ogg");
const VIDEO_WEBM: &[u8] = fixture!("video.webm");

/// PCM length of the spoken phrase every compressed fixture encodes (81 726
/// samples at 48 kHz), i.e. what a gapless decoder plays back.
const PHRASE_SECS: f64 = 1.702_625;
/// PCM length of the shorter phrase in the WAV fixtures (13 564 samples at 16 kHz).
const WAV_PHRASE_SECS: f64 = 0.847_75;
const TOLERANCE_SECS: f64 = 0.060;

struct Expected {
    name: &'static str,
    bytes: &'static [u8],
    format: AudioFormat,
    /// The decoded length of the content.
    truth_secs: f64,
    /// What ffprobe reported when the fixture was made, where it reports one.
    ffprobe_secs: Option<f64>,
    sample_rate: u32,
    channels: u16,
}

const ACCEPTED: &[Expected] = &[
    Expected {
        name: "speech_16k_s16.wav",
        bytes: SPEECH_16K_S16_WAV,
        format: AudioFormat::Wav,
        truth_secs: WAV_PHRASE_SECS,
        ffprobe_secs: Some(0.847_75),
        sample_rate: 16_000,
        channels: 1,
    },
    Expected {
        name: "speech_8k_s24.wav",
        bytes: SPEECH_8K_S24_WAV,
        format: AudioFormat::Wav,
        truth_secs: WAV_PHRASE_SECS,
        ffprobe_secs: Some(0.847_75),
        sample_rate: 8_000,
        channels: 1,
    },
    Expected {
        name: "tone_8k_f32.wav",
        bytes: TONE_8K_F32_WAV,
        format: AudioFormat::Wav,
        truth_secs: 0.5,
        ffprobe_secs: Some(0.5),
        sample_rate: 8_000,
        channels: 1,
    },
    Expected {
        name: "speech.webm",
        bytes: SPEECH_WEBM,
        format: AudioFormat::WebmOpus,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: Some(1.71),
        sample_rate: 48_000,
        channels: 1,
    },
    Expected {
        name: "speech_live.webm",
        bytes: SPEECH_LIVE_WEBM,
        format: AudioFormat::WebmOpus,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: None,
        sample_rate: 48_000,
        channels: 1,
    },
    Expected {
        name: "speech_streamable.webm",
        bytes: SPEECH_STREAMABLE_WEBM,
        format: AudioFormat::WebmOpus,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: None,
        sample_rate: 48_000,
        channels: 1,
    },
    Expected {
        name: "speech_opus.mka",
        bytes: SPEECH_OPUS_MKA,
        format: AudioFormat::WebmOpus,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: Some(1.71),
        sample_rate: 48_000,
        channels: 1,
    },
    Expected {
        name: "speech.ogg",
        bytes: SPEECH_OGG,
        format: AudioFormat::OggOpus,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: Some(1.709_125),
        sample_rate: 48_000,
        channels: 1,
    },
    Expected {
        name: "speech.mp3",
        bytes: SPEECH_MP3,
        format: AudioFormat::Mp3,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: Some(1.752),
        sample_rate: 24_000,
        channels: 1,
    },
    Expected {
        name: "speech_noxing.mp3",
        bytes: SPEECH_NOXING_MP3,
        format: AudioFormat::Mp3,
        truth_secs: PHRASE_SECS,
        ffprobe_secs: Some(1.752),
        sample_rate: 24_000,
        channels: 1,
    },
];

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn assert_close(name: &str, got: Duration, want_secs: f64) {
    let diff = (secs(got) - want_secs).abs();
    assert!(
        diff <= TOLERANCE_SECS,
        "{name}: duration {got:?} is {diff:.4}s away from {want_secs}s"
    );
}

fn probe_ok(bytes: &[u8]) -> AudioInfo {
    probe_no_alloc(bytes).unwrap_or_else(|e| panic!("probe failed: {e:?}"))
}

#[test]
fn accepted_fixtures_have_right_format_and_duration() {
    for want in ACCEPTED {
        let info = probe_no_alloc(want.bytes)
            .unwrap_or_else(|e| panic!("{}: probe failed: {e:?}", want.name));
        assert_eq!(info.format, want.format, "{}", want.name);
        assert_close(want.name, info.duration, want.truth_secs);
        if let Some(ffprobe) = want.ffprobe_secs {
            assert_close(want.name, info.duration, ffprobe);
        }
        assert_eq!(info.sample_rate, Some(want.sample_rate), "{}", want.name);
        assert_eq!(info.channels, Some(want.channels), "{}", want.name);
    }
}

#[test]
fn exact_durations_where_the_container_allows() {
    // WAV: data bytes / frame size. Ogg: granule minus pre-skip. MP3: frames minus
    // the LAME tag's encoder delay and padding. All equal the source PCM length.
    for bytes in [SPEECH_16K_S16_WAV, SPEECH_8K_S24_WAV] {
        assert_eq!(probe_ok(bytes).duration, Duration::from_micros(847_750));
    }
    assert_eq!(
        probe_ok(TONE_8K_F32_WAV).duration,
        Duration::from_millis(500)
    );
    assert_eq!(
        probe_ok(SPEECH_OGG).duration,
        Duration::from_micros(1_702_625)
    );
    assert_eq!(
        probe_ok(SPEECH_MP3).duration,
        Duration::from_micros(1_702_625)
    );
    // Without an Info tag the length is whole frames: 73 × 576 samples at 24 kHz.
    assert_eq!(
        probe_ok(SPEECH_NOXING_MP3).duration,
        Duration::from_millis(1_752)
    );
}

#[test]
fn mime_and_extension() {
    let cases = [
        (AudioFormat::WebmOpus, "audio/webm", "webm"),
        (AudioFormat::OggOpus, "audio/ogg", "ogg"),
        (AudioFormat::Wav, "audio/wav", "wav"),
        (AudioFormat::Mp3, "audio/mpeg", "mp3"),
    ];
    for (format, mime, ext) in cases {
        assert_eq!(format.mime(), mime);
        assert_eq!(format.extension(), ext);
    }
}

/// Offset of the first Cluster element (its ID's bytes) in a WebM file.
fn first_cluster(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
        .expect("fixture has a Cluster")
}

const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

#[test]
fn streaming_webm_fixtures_really_lack_duration_and_sizes() {
    for bytes in [SPEECH_LIVE_WEBM, SPEECH_STREAMABLE_WEBM] {
        let headers = &bytes[..first_cluster(bytes)];
        // No Info/Duration (ID 0x4489) anywhere before the audio starts...
        assert!(!headers.windows(2).any(|w| w == [0x44, 0x89]));
        // ...and an unknown-size Segment.
        let segment = headers
            .windows(4)
            .position(|w| w == [0x18, 0x53, 0x80, 0x67])
            .expect("Segment");
        assert_eq!(bytes[segment + 4..segment + 12], UNKNOWN_SIZE_8);
    }
    // The streamable (MediaRecorder-like) one also has unknown-size Clusters.
    let cluster = first_cluster(SPEECH_STREAMABLE_WEBM);
    assert_eq!(
        SPEECH_STREAMABLE_WEBM[cluster + 4..cluster + 12],
        UNKNOWN_SIZE_8
    );
    // And the seekable one does carry a Duration, which agrees with the blocks.
    assert!(
        SPEECH_WEBM[..first_cluster(SPEECH_WEBM)]
            .windows(2)
            .any(|w| w == [0x44, 0x89])
    );
}

#[test]
fn unknown_size_cluster_ends_at_next_top_level_element() {
    let full = probe_ok(SPEECH_STREAMABLE_WEBM).duration;
    // Cues, Tags and a Void after the last unknown-size Cluster end it; then junk.
    let mut bytes = SPEECH_STREAMABLE_WEBM.to_vec();
    bytes.extend_from_slice(&[0x1C, 0x53, 0xBB, 0x6B, 0x84, 0xBB, 0x82, 0xB3, 0x80]);
    bytes.extend_from_slice(&[0x12, 0x54, 0xC3, 0x67, 0x83, 0x73, 0x73, 0x80]);
    bytes.extend_from_slice(&[0xEC, 0x82, 0xA3, 0xA3, 0x00, 0x00, 0x00]);
    assert_eq!(probe_ok(&bytes).duration, full);
}

#[test]
fn webm_blocks_win_over_a_lying_duration_header() {
    // Info/Duration is an 8-byte float; claim one millisecond.
    let mut bytes = SPEECH_WEBM.to_vec();
    let at = bytes
        .windows(3)
        .position(|w| w == [0x44, 0x89, 0x88])
        .expect("Duration")
        + 3;
    bytes[at..at + 8].copy_from_slice(&1.0f64.to_be_bytes());
    assert_close("lying webm", probe_ok(&bytes).duration, PHRASE_SECS);
}

#[test]
fn rejected_codecs() {
    let cases = [
        ("vorbis.ogg", VORBIS_OGG),
        ("flac.ogg", FLAC_OGG),
        ("vorbis.webm", VORBIS_WEBM),
        ("video.webm", VIDEO_WEBM),
        ("speech.mp2", SPEECH_MP2),
    ];
    for (name, bytes) in cases {
        let result = probe_no_alloc(bytes);
        assert!(
            matches!(result, Err(ProbeError::UnsupportedCodec(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn wav_with_unsupported_encodings() {
    // Patch the plain 16-bit fixture's fmt chunk: tag at 20, bits at 34.
    let mut alaw = SPEECH_16K_S16_WAV.to_vec();
    alaw[20] = 6; // WAVE_FORMAT_ALAW
    alaw[34] = 8;
    alaw[32] = 1; // block align
    let mut pcm8 = SPEECH_16K_S16_WAV.to_vec();
    pcm8[34] = 8;
    pcm8[32] = 1;
    for bytes in [alaw, pcm8] {
        assert!(matches!(
            probe_no_alloc(&bytes),
            Err(ProbeError::UnsupportedCodec(_))
        ));
    }
}

#[test]
fn not_audio_is_unrecognised() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    let text = b"Hello, this is not audio at all. Please accept my upload.\n".repeat(50);
    let zeros = vec![0u8; 64 * 1024];
    let ones = vec![0xFFu8; 64 * 1024];
    let riff_avi = b"RIFF\x24\0\0\0AVI LIST\x04\0\0\0hdrl".to_vec();
    let mut id3_then_png = SPEECH_MP3[..72].to_vec();
    id3_then_png.extend_from_slice(png);
    let webm_with_other_doctype = [
        0x1A, 0x45, 0xDF, 0xA3, 0x87, 0x42, 0x82, 0x84, b'f', b'o', b'o', b'!',
    ];
    let cases: [&[u8]; 8] = [
        &[],
        png,
        &text,
        &zeros,
        &ones,
        &riff_avi,
        &id3_then_png,
        &webm_with_other_doctype,
    ];
    for bytes in cases {
        assert_eq!(probe_no_alloc(bytes), Err(ProbeError::Unrecognised));
    }
}

/// A WAV whose header claims 4 GB, as streaming writers leave it, or as a
/// hostile client might: the data size is clamped to the bytes present.
#[test]
fn wav_claiming_four_gigabytes_is_clamped() {
    let full = probe_ok(SPEECH_16K_S16_WAV).duration;
    let data_size_at = SPEECH_16K_S16_WAV
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 4;
    for claim in [u32::MAX, u32::MAX - 1, 0xF000_0000] {
        let mut bytes = SPEECH_16K_S16_WAV.to_vec();
        bytes[4..8].copy_from_slice(&claim.to_le_bytes());
        bytes[data_size_at..data_size_at + 4].copy_from_slice(&claim.to_le_bytes());
        assert_eq!(probe_ok(&bytes).duration, full, "claim {claim:#x}");
    }
    // Streamed with zero placeholders in both sizes.
    let mut bytes = SPEECH_16K_S16_WAV.to_vec();
    bytes[4..8].fill(0);
    bytes[data_size_at..data_size_at + 4].fill(0);
    assert_eq!(probe_ok(&bytes).duration, full);
}

#[test]
fn truncated_audio_data_gives_the_length_present() {
    // WAV: 44-byte header, then 2 bytes per sample at 16 kHz.
    let wav = probe_ok(&SPEECH_16K_S16_WAV[..10_044]);
    assert_eq!(wav.duration, Duration::from_micros(312_500));
    // Ogg: cut inside the second audio page; the first ends at granule 48 000.
    let ogg = probe_ok(&SPEECH_OGG[..SPEECH_OGG.len() - 100]);
    assert_eq!(ogg.duration, Duration::from_micros(993_500));
    // The others: some audio, less than all of it.
    for bytes in [
        SPEECH_WEBM,
        SPEECH_STREAMABLE_WEBM,
        SPEECH_LIVE_WEBM,
        SPEECH_MP3,
    ] {
        let full = probe_ok(bytes);
        let half = probe_ok(&bytes[..bytes.len() / 2]);
        assert_eq!(half.format, full.format);
        assert!(half.duration > Duration::from_millis(300), "{half:?}");
        assert!(
            half.duration < full.duration - Duration::from_millis(300),
            "{half:?}"
        );
    }
}

#[test]
fn truncated_headers_are_malformed_or_unknown() {
    use ProbeError::{Malformed, UnknownDuration};
    assert!(matches!(
        probe_no_alloc(&SPEECH_16K_S16_WAV[..30]),
        Err(Malformed(_))
    ));
    assert!(matches!(
        probe_no_alloc(&SPEECH_16K_S16_WAV[..40]),
        Err(Malformed(_))
    ));
    assert!(matches!(
        probe_no_alloc(&SPEECH_OGG[..40]),
        Err(Malformed(_))
    ));
    assert!(matches!(
        probe_no_alloc(&SPEECH_WEBM[..20]),
        Err(Malformed(_))
    ));
    assert!(matches!(
        probe_no_alloc(&SPEECH_STREAMABLE_WEBM[..250]),
        Err(Malformed(_))
    ));
    assert!(matches!(
        probe_no_alloc(&SPEECH_MP3[..30]),
        Err(Malformed(_))
    ));
    // Headers complete, no audio yet: nothing to time.
    let ogg_headers_only = 47 + 90; // OpusHead page + OpusTags page
    assert_eq!(
        probe_no_alloc(&SPEECH_OGG[..ogg_headers_only]),
        Err(UnknownDuration)
    );
    let streamable_headers = first_cluster(SPEECH_STREAMABLE_WEBM);
    assert_eq!(
        probe_no_alloc(&SPEECH_STREAMABLE_WEBM[..streamable_headers]),
        Err(UnknownDuration)
    );
    // With an Info/Duration and no blocks, the header's claim is all there is.
    let seekable_headers = first_cluster(SPEECH_WEBM);
    let info = probe_ok(&SPEECH_WEBM[..seekable_headers]);
    assert_eq!(info.duration, Duration::from_millis(1_710));
}

#[test]
fn every_truncation_is_sane() {
    for want in ACCEPTED {
        let full = probe_ok(want.bytes).duration;
        for cut in (0..want.bytes.len()).step_by(37) {
            match probe_no_alloc(&want.bytes[..cut]) {
                Ok(info) => {
                    assert_eq!(info.format, want.format, "{} cut at {cut}", want.name);
                    // MP3 can't drop its end padding once the end is gone: one frame.
                    assert!(
                        info.duration <= full + Duration::from_millis(30),
                        "{} cut at {cut}: {info:?}",
                        want.name
                    );
                }
                Err(
                    ProbeError::Malformed(_)
                    | ProbeError::UnknownDuration
                    | ProbeError::Unrecognised,
                ) => {}
                Err(e) => panic!("{} cut at {cut}: {e:?}", want.name),
            }
        }
    }
}

fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &byte) in page.iter().enumerate() {
        let byte = if (22..26).contains(&i) { 0 } else { byte };
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Recomputes the checksum of every whole page, so mutations reach the page walker.
fn fix_ogg_crcs(bytes: &mut [u8]) {
    let mut pos = 0;
    while bytes.len() >= pos + 27 && bytes[pos..].starts_with(b"OggS") {
        let segments = usize::from(bytes[pos + 26]);
        let Some(lacing) = bytes.get(pos + 27..pos + 27 + segments) else {
            return;
        };
        let len = 27 + segments + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
        let Some(page) = bytes.get(pos..pos + len) else {
            return;
        };
        let crc = ogg_crc(page);
        bytes[pos + 22..pos + 26].copy_from_slice(&crc.to_le_bytes());
        pos += len;
    }
}

/// Page offsets: OpusHead (0), OpusTags (47), audio (137), last audio (3294).
const OGG_LAST_PAGE: usize = 3294;

#[test]
fn ogg_granule_that_hides_audio_is_malformed() {
    let mut bytes = SPEECH_OGG.to_vec();
    // Claim the last page ends at 1.1 s although 1.72 s of packets are there.
    bytes[OGG_LAST_PAGE + 6..OGG_LAST_PAGE + 14].copy_from_slice(&52_800u64.to_le_bytes());
    fix_ogg_crcs(&mut bytes);
    assert!(matches!(
        probe_no_alloc(&bytes),
        Err(ProbeError::Malformed(_))
    ));
    // A corrupted checksum is refused too.
    let mut bytes = SPEECH_OGG.to_vec();
    bytes[OGG_LAST_PAGE + 100] ^= 1;
    assert!(matches!(
        probe_no_alloc(&bytes),
        Err(ProbeError::Malformed(_))
    ));
}

#[test]
fn ogg_with_a_second_stream_is_refused() {
    let mut bytes = SPEECH_OGG.to_vec();
    bytes.extend_from_slice(&SPEECH_OGG[..47]);
    bytes[SPEECH_OGG.len() + 14] ^= 0xFF; // another serial number
    fix_ogg_crcs(&mut bytes);
    assert_eq!(
        probe_no_alloc(&bytes),
        Err(ProbeError::UnsupportedCodec(
            "ogg: more than one logical stream"
        ))
    );
}

#[test]
fn mp3_survives_junk_and_padding() {
    let full = probe_ok(SPEECH_NOXING_MP3).duration;
    // Junk in the middle: decoders resync, and so do we.
    let mut junk = SPEECH_NOXING_MP3.to_vec();
    let middle = junk.len() / 2;
    junk.splice(
        middle..middle,
        b"garbage in the middle of the stream ".repeat(10),
    );
    let info = probe_ok(&junk);
    assert!(secs(info.duration) >= secs(full) - 0.05, "{info:?}");
    // An ID3v1 tag at the end is not audio.
    let mut tagged = SPEECH_NOXING_MP3.to_vec();
    tagged.extend_from_slice(b"TAG");
    tagged.extend_from_slice(&[b' '; 125]);
    assert_eq!(probe_ok(&tagged).duration, full);
    // Zero padding after the ID3v2 tag (10 + 62 bytes) before the first frame.
    let mut padded = SPEECH_MP3.to_vec();
    padded.splice(72..72, [0u8; 1000]);
    assert_eq!(probe_ok(&padded).duration, probe_ok(SPEECH_MP3).duration);
}

#[test]
fn two_mp3_frames_are_not_enough() {
    // The no-Xing file's frames are 96 bytes (32 kb/s, 24 kHz); the first three
    // may differ, so take exactly what two of its frames span.
    let two = {
        let first = 96 + usize::from(SPEECH_NOXING_MP3[2] & 2 != 0);
        let second = 96 + usize::from(SPEECH_NOXING_MP3[first + 2] & 2 != 0);
        first + second
    };
    assert_eq!(
        probe_no_alloc(&SPEECH_NOXING_MP3[..two]),
        Err(ProbeError::Unrecognised)
    );
}

/// Inputs built to make a naive prober slow, allocate, or spin: each must be
/// answered in one pass.
#[test]
fn adversarial_inputs_are_linear() {
    const LEN: usize = 2 << 20;
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    // Endless Ogg capture patterns with bad pages.
    inputs.push(b"OggS".repeat(LEN / 4));
    // A valid Ogg head, then capture patterns.
    let mut ogg = SPEECH_OGG[..137].to_vec();
    ogg.extend(b"OggS\0".repeat(LEN / 5));
    inputs.push(ogg);
    // MP3 headers that never chain, after an ID3 tag.
    let mut mp3 = SPEECH_MP3[..72].to_vec();
    mp3.extend([0xFF, 0xF3, 0x84, 0xC0].repeat(LEN / 4));
    inputs.push(mp3);
    // A real MP3 stream followed by megabytes of near-sync bytes.
    let mut tail = SPEECH_NOXING_MP3.to_vec();
    tail.extend([0xFF, 0xF3].repeat(LEN / 2));
    inputs.push(tail);
    // WebM headers, then tiny elements and invalid IDs forever.
    let mut webm = SPEECH_STREAMABLE_WEBM[..first_cluster(SPEECH_STREAMABLE_WEBM)].to_vec();
    webm.extend([0xEC, 0x80].repeat(LEN / 4));
    webm.extend([0x00].repeat(LEN / 4));
    inputs.push(webm);
    // Many unknown-size clusters.
    let mut clusters = SPEECH_STREAMABLE_WEBM[..first_cluster(SPEECH_STREAMABLE_WEBM)].to_vec();
    clusters.extend([0x1F, 0x43, 0xB6, 0x75, 0xFF].repeat(LEN / 5));
    inputs.push(clusters);
    // A WAV made only of empty chunks.
    let mut wav = b"RIFF\xff\xff\xff\xffWAVE".to_vec();
    wav.extend(b"junk\0\0\0\0".repeat(LEN / 8));
    inputs.push(wav);
    for input in &inputs {
        let started = std::time::Instant::now();
        let _ = probe_no_alloc(input);
        // Generous even for an unoptimised build; a quadratic walk takes hours.
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

fn fixture_bytes() -> Vec<&'static [u8]> {
    let mut all: Vec<&[u8]> = ACCEPTED.iter().map(|e| e.bytes).collect();
    all.extend([SPEECH_MP2, VORBIS_OGG, VORBIS_WEBM, FLAC_OGG, VIDEO_WEBM]);
    all
}

/// A fixture with a few bytes overwritten, maybe truncated, and for Ogg maybe
/// with checksums fixed so the damage gets past the page check.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    let fixtures = fixture_bytes();
    (
        any::<Index>(),
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..12),
        prop::option::of(any::<Index>()),
        any::<bool>(),
    )
        .prop_map(move |(which, edits, cut, fix_crc)| {
            let mut bytes = which.get(&fixtures).to_vec();
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            if fix_crc {
                fix_ogg_crcs(&mut bytes);
            }
            bytes
        })
}

/// Arbitrary bytes behind each format's magic, to get past the sniffing.
fn magic_then_noise() -> impl Strategy<Value = Vec<u8>> {
    let magics: [&[u8]; 6] = [
        &[0x1A, 0x45, 0xDF, 0xA3],
        &SPEECH_STREAMABLE_WEBM[..330],
        b"OggS",
        b"RIFF\xff\xff\xff\xffWAVEfmt ",
        b"ID3\x04\0\0\0\0\0\0",
        &[0xFF, 0xFB, 0x90, 0x64],
    ];
    (any::<Index>(), prop::collection::vec(any::<u8>(), 0..2048)).prop_map(move |(which, noise)| {
        let mut bytes = which.get(&magics).to_vec();
        bytes.extend(noise);
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = probe_no_alloc(&bytes);
    }

    #[test]
    fn magic_then_noise_never_panics(bytes in magic_then_noise()) {
        let _ = probe_no_alloc(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(bytes in mutated_fixture()) {
        let _ = probe_no_alloc(&bytes);
    }
}
