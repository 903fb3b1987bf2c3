//! The outputs end to end: Opus in Ogg decoded by a real decoder (ffmpeg), HTTP listeners on
//! 127.0.0.1, and recordings in fake-gcs-server.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use host_streamer::audio::{FRAME_LEN, Frame, SAMPLE_RATE};
use host_streamer::metrics::Metrics;
use host_streamer::output::ogg::{FLAG_BOS, FLAG_EOS, pages};
use host_streamer::output::{
    OggWriter, OpusEncoder, OpusHeaders, OutputConfig, Outputs, PACKET_SAMPLES, RecordingConfig,
};
use shared::store::{self, LocalFsStore, ObjectStore};
use testkit::{FakeGcs, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEFT_HZ: f64 = 440.0;
const RIGHT_HZ: f64 = 1000.0;
const AMPLITUDE: f64 = 0.5;
const PRE_SKIP: usize = 312;
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Signal and decoder helpers
// ---------------------------------------------------------------------------------------

/// Sample `n` (from the start of the test signal) of channel `ch`: 440 Hz left, 1 kHz right.
fn tone_sample(ch: usize, n: usize) -> f32 {
    let hz = if ch == 0 { LEFT_HZ } else { RIGHT_HZ };
    (AMPLITUDE * (std::f64::consts::TAU * hz * n as f64 / f64::from(SAMPLE_RATE)).sin()) as f32
}

/// Frame `index` of the test signal.
fn tone_frame(index: usize) -> Frame {
    let mut frame = Frame::silent();
    for (i, pair) in frame.samples.chunks_exact_mut(2).enumerate() {
        let n = index * FRAME_LEN + i;
        pair[0] = tone_sample(0, n);
        pair[1] = tone_sample(1, n);
    }
    frame
}

/// The virtual clock: frame `index` goes on air at 2030-01-01T00:00:01Z + 20 ms × index.
fn on_air(index: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 1).unwrap() + TimeDelta::milliseconds(20 * index as i64)
}

/// PCM from ffmpeg, per channel, in -1..1.
struct Decoded {
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Decoded {
    fn pairs(&self) -> usize {
        self.left.len()
    }
}

/// Decodes Ogg/Opus bytes with ffmpeg, failing on any error output.
fn ffmpeg_decode(bytes: &[u8]) -> Decoded {
    let mut child = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", "-", "-f", "s16le", "-ac", "2", "-ar", "48000", "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg (dev/install-tools installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut pcm = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut pcm).unwrap();
    let mut errors = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert!(
        status.success() && errors.is_empty(),
        "ffmpeg: {status}: {errors}"
    );
    let samples: Vec<f32> = pcm
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    Decoded {
        left: samples.iter().step_by(2).copied().collect(),
        right: samples.iter().skip(1).step_by(2).copied().collect(),
    }
}

fn rms_dbfs(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (sum / samples.len() as f64).log10()
}

/// Frequency by counting sign changes.
fn zero_crossing_hz(samples: &[f32]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / f64::from(SAMPLE_RATE))
}

/// Signal-to-noise ratio of `decoded` against the test signal from sample `first` on.
fn snr_db(decoded: &[f32], ch: usize, first: usize) -> f64 {
    let (mut signal, mut noise) = (0.0, 0.0);
    for (i, &d) in decoded.iter().enumerate() {
        let s = f64::from(tone_sample(ch, first + i));
        signal += s * s;
        noise += (f64::from(d) - s).powi(2);
    }
    10.0 * (signal / noise).log10()
}

/// The level, pitch and timing of the test tone survived, `decoded` starting at sample
/// `first` of the test signal. The first and last 20 ms are left out of level and pitch
/// (codec start-up, a stream cut mid-period).
fn assert_tone(decoded: &Decoded, first: usize) {
    let inner = 960..decoded.pairs() - 960;
    let expected_dbfs = 20.0 * (AMPLITUDE / 2f64.sqrt()).log10();
    for (ch, samples, hz) in [(0, &decoded.left, LEFT_HZ), (1, &decoded.right, RIGHT_HZ)] {
        let level = rms_dbfs(&samples[inner.clone()]);
        assert!(
            (level - expected_dbfs).abs() < 0.5,
            "channel {ch}: {level:.2} dBFS, expected {expected_dbfs:.2}"
        );
        let pitch = zero_crossing_hz(&samples[inner.clone()]);
        assert!(
            (pitch - hz).abs() < hz * 0.01,
            "channel {ch}: {pitch:.1} Hz, expected {hz}"
        );
        // Sample-aligned with the input: misplaced by the 312-sample pre-skip, a 440 Hz tone
        // would be 1.8 rad out of phase and this would be below 0 dB.
        let snr = snr_db(&samples[inner.clone()], ch, first + inner.start);
        assert!(
            snr > 15.0,
            "channel {ch}: SNR {snr:.1} dB against the input"
        );
    }
}

/// What an Ogg stream holds, checked page by page: every byte in a page with a valid
/// CRC, one serial, consecutive sequence numbers (after the headers, for a listener who
/// joined late), BOS on the first page only, granules that count the packets.
#[derive(Debug)]
struct OggSummary {
    audio_pages: usize,
    packets: usize,
    last_granule: u64,
    ends_with_eos: bool,
}

fn check_ogg(bytes: &[u8]) -> OggSummary {
    let all: Vec<_> = pages(bytes).collect();
    let covered: usize = all.iter().map(|p| p.bytes.len()).sum();
    assert_eq!(covered, bytes.len(), "bytes outside valid pages");
    assert!(all.len() >= 2, "no header pages");
    assert_eq!(all[0].flags, FLAG_BOS);
    assert!(all[0].packets().next().unwrap().starts_with(b"OpusHead"));
    assert!(all[1].packets().next().unwrap().starts_with(b"OpusTags"));
    assert_eq!((all[0].sequence, all[1].sequence), (0, 1));
    let audio = &all[2..];
    assert!(all.iter().all(|p| p.serial == all[0].serial), "one serial");
    assert!(audio.iter().all(|p| p.flags & FLAG_BOS == 0));
    assert!(
        audio.iter().rev().skip(1).all(|p| p.flags & FLAG_EOS == 0),
        "EOS before the end"
    );
    let first_granule = audio.first().map_or(0, |p| {
        p.granule - p.packets().count() as u64 * u64::from(PACKET_SAMPLES)
    });
    let mut packets = 0;
    for (i, pair) in audio.windows(2).enumerate() {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "sequence at page {i}"
        );
    }
    for (i, page) in audio.iter().enumerate() {
        packets += page.packets().count();
        let counted = first_granule + (packets as u64) * u64::from(PACKET_SAMPLES);
        let trimmed = i + 1 == audio.len() && page.flags & FLAG_EOS != 0;
        if trimmed {
            assert!(page.granule <= counted, "last granule beyond its packets");
        } else {
            assert_eq!(page.granule, counted, "granule of audio page {i}");
        }
    }
    OggSummary {
        audio_pages: audio.len(),
        packets,
        last_granule: audio.last().map_or(0, |p| p.granule - first_granule),
        ends_with_eos: audio.last().is_some_and(|p| p.flags & FLAG_EOS != 0),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

#[test]
fn a_tone_survives_opus_and_ogg_into_a_real_decoder() {
    let mut encoder = OpusEncoder::new(OpusEncoder::DEFAULT_BITRATE).unwrap();
    let mut writer = OggWriter::new(42, &OpusHeaders::new(encoder.pre_skip()));
    let mut bytes = writer.headers().to_vec();
    let frames = 150; // 3 s
    for i in 0..frames {
        let packet = encoder.encode(&tone_frame(i)).unwrap();
        if let Some(page) = writer.push(&packet, PACKET_SAMPLES).unwrap() {
            bytes.extend_from_slice(&page);
        }
    }
    bytes.extend_from_slice(&writer.finish(None));

    let summary = check_ogg(&bytes);
    assert_eq!(summary.packets, frames);
    assert_eq!(summary.audio_pages, 15);
    assert_eq!(summary.last_granule, (frames * FRAME_LEN) as u64);
    assert!(summary.ends_with_eos);
    // The probe of uploaded audio (its own CRC and granule checks) agrees.
    let info = media::probe::probe(&bytes).unwrap();
    assert_eq!(
        info.duration,
        Duration::from_micros(((frames * FRAME_LEN - PRE_SKIP) as u64 * 1_000_000) / 48_000)
    );

    let decoded = ffmpeg_decode(&bytes);
    // The encoder's lookahead: the last 312 samples are still inside it.
    assert_eq!(decoded.pairs(), frames * FRAME_LEN - PRE_SKIP);
    assert_tone(&decoded, 0);
}

// ---------------------------------------------------------------------------------------
// Engine and listeners
// ---------------------------------------------------------------------------------------

/// Outputs recording into a local directory (the listener tests do not look at it).
async fn local_outputs(config: OutputConfig, spool: &Path, metrics: Arc<Metrics>) -> Outputs {
    let store = Arc::new(LocalFsStore::new(spool.join("store")).await.unwrap());
    let config = OutputConfig {
        recording: RecordingConfig {
            spool_dir: spool.join("spool"),
            ..config.recording
        },
        ..config
    };
    Outputs::start(config, store, metrics).await.unwrap()
}

/// Plays frames `frames` of the test signal into `outputs` from a thread of its own, like
/// the engine: every 20 ms when `paced`, else every `gap`. Returns the outputs and the
/// longest `push`.
async fn play(mut outputs: Outputs, frames: Range<usize>, period: Duration) -> (Outputs, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut longest = Duration::ZERO;
        for (k, i) in frames.enumerate() {
            let due = start + period * k as u32;
            // The engine's pacing, not synchronisation: frames go out on a clock.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let frame = tone_frame(i);
            let t = Instant::now();
            outputs.push(&frame, on_air(i));
            longest = longest.max(t.elapsed());
        }
        (outputs, longest)
    })
    .await
    .unwrap()
}

async fn serve(outputs: &Outputs) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = outputs.hub().routes();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// Connects a listener and reads its stream to the end in the background.
async fn listen(addr: SocketAddr) -> tokio::task::JoinHandle<Vec<u8>> {
    let response = reqwest::get(format!("http://{addr}/stream.ogg"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/ogg");
    assert_eq!(response.headers()["cache-control"], "no-store");
    tokio::spawn(async move {
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        body
    })
}

async fn listeners_reach(metrics: &Metrics, n: i64) {
    wait_until(&format!("{n} listeners"), DEADLINE, || async {
        metrics.listeners.load(Ordering::Relaxed) == n
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_joining_at_different_times_each_get_a_clean_stream() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let outputs = local_outputs(OutputConfig::default(), dir.path(), Arc::clone(&metrics)).await;
    let addr = serve(&outputs).await;

    let head = reqwest::Client::new()
        .head(format!("http://{addr}/stream.ogg"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "audio/ogg");
    assert_eq!(
        metrics.listeners.load(Ordering::Relaxed),
        0,
        "HEAD joins nothing"
    );

    let first = listen(addr).await;
    listeners_reach(&metrics, 1).await;
    let (outputs, _) = play(outputs, 0..50, Duration::from_millis(20)).await;
    let second = listen(addr).await;
    listeners_reach(&metrics, 2).await;
    let (outputs, _) = play(outputs, 50..125, Duration::from_millis(20)).await;
    outputs.finish(Duration::from_secs(5)).await;
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    listeners_reach(&metrics, 0).await;

    let a = check_ogg(&first);
    assert_eq!(a.packets, 125, "the first listener heard everything");
    assert!(a.ends_with_eos);
    let b = check_ogg(&second);
    // The second joined after 1 s: it starts with the next page, up to one page earlier.
    assert!((75..=85).contains(&b.packets), "{b:?}");
    assert!(b.ends_with_eos);
    // Same header pages, then exactly the first listener's last pages.
    let header_len = pages(&first).take(2).map(|p| p.bytes.len()).sum::<usize>();
    assert_eq!(first[..header_len], second[..header_len]);
    assert!(first.ends_with(&second[header_len..]));

    let decoded = ffmpeg_decode(&first);
    assert_eq!(decoded.pairs(), 125 * FRAME_LEN - PRE_SKIP);
    assert_tone(&decoded, 0);
    let decoded = ffmpeg_decode(&second);
    let expected = b.packets * FRAME_LEN - PRE_SKIP;
    assert!(
        decoded.pairs().abs_diff(expected) <= FRAME_LEN,
        "{} decoded, {expected} expected",
        decoded.pairs()
    );
}

/// The largest Opus packet of a 20 ms frame, which 510 kb/s makes every packet.
const OPUS_MAX_FRAME_BYTES: usize = 1275;
/// hyper's default limit on a connection's write buffer.
const HYPER_WRITE_BUFFER: usize = 8192 + 4096 * 100;

/// The most a TCP socket's send buffer grows to (Linux's `tcp_wmem` maximum; 4 MiB, the
/// usual value, when that cannot be read).
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

/// A listener whose socket is connected but never read.
async fn stalled_listener(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream.ogg HTTP/1.1\r\nHost: radio24\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_stops_reading_delays_nobody_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = OutputConfig {
        // Opus's largest packets (1275 bytes), to fill buffers quickly.
        bitrate: 510_000,
        // 51 s of audio, which the flood below plays in 1.3 s.
        listener_buffer_pages: 256,
        ..OutputConfig::default()
    };
    let outputs = local_outputs(config, dir.path(), Arc::clone(&metrics)).await;
    let addr = serve(&outputs).await;

    let mut stalled = stalled_listener(addr).await;
    listeners_reach(&metrics, 1).await;
    let reader = listen(addr).await;
    listeners_reach(&metrics, 2).await;

    // Real time first, then 40 times as fast, half as much again as the stalled listener's
    // buffers (the server's send buffer, the server's own write buffer) and the ring hold.
    let ring_bytes = 256 * 10 * OPUS_MAX_FRAME_BYTES;
    let buffered = max_send_buffer() + HYPER_WRITE_BUFFER + ring_bytes;
    let total = 100 + buffered * 3 / 2 / OPUS_MAX_FRAME_BYTES;
    let (outputs, longest_paced) = play(outputs, 0..100, Duration::from_millis(20)).await;
    let started = Instant::now();
    let (outputs, longest_flood) = play(outputs, 100..total, Duration::from_micros(500)).await;
    println!(
        "longest push: {longest_paced:?} paced, {longest_flood:?} flooding ({} frames in {:?})",
        total - 100,
        started.elapsed()
    );

    // The stalled listener reads again: it gets what its buffers held, then the server
    // closes the connection although the stream goes on.
    let mut got = 0usize;
    let mut buf = vec![0; 64 * 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    println!("the stalled listener got {got} bytes before being dropped");
    assert!(closed.is_ok(), "the stalled listener was never dropped");
    listeners_reach(&metrics, 1).await;

    outputs.finish(Duration::from_secs(5)).await;
    let heard = reader.await.unwrap();
    let summary = check_ogg(&heard);
    assert_eq!(
        summary.packets, total,
        "the reading listener missed nothing"
    );
    assert!(got < heard.len());
    // Waiting on the stalled listener would block a push for good; the bound only leaves
    // room for a loaded machine (a push costs well under a millisecond).
    let longest = longest_paced.max(longest_flood);
    assert!(longest < Duration::from_millis(100), "{longest:?}");
    let decoded = ffmpeg_decode(&heard);
    assert_eq!(decoded.pairs(), total * FRAME_LEN - PRE_SKIP);
}

// ---------------------------------------------------------------------------------------
// Recordings
// ---------------------------------------------------------------------------------------

const CHANNEL: &str = "test";

/// A fresh bucket name on the shared fake-gcs-server (created when `create`) and a store on it.
async fn gcs_bucket(create: bool) -> (&'static FakeGcs, String, Arc<dyn ObjectStore>) {
    let gcs = FakeGcs::shared().await.expect("fake-gcs-server");
    let bucket = format!("radio24-recordings-{:016x}", rand::random::<u64>());
    if create {
        gcs.create_bucket(&bucket).await.unwrap();
    }
    let store = store::open(&format!("gs://{bucket}"), Some(&gcs.endpoint()))
        .await
        .unwrap();
    (gcs, bucket, store)
}

/// Recording in `segment`-long segments, spooled in `spool`, retrying uploads quickly.
fn recording_config(spool: &Path, segment: Duration) -> OutputConfig {
    OutputConfig {
        recording: RecordingConfig {
            channel: CHANNEL.to_owned(),
            segment,
            spool_dir: spool.to_owned(),
            // The tests push faster than real time; nothing may be dropped.
            queue_packets: 20_000,
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            ..RecordingConfig::default()
        },
        ..OutputConfig::default()
    }
}

fn key(stem: &str) -> String {
    format!("recordings/{CHANNEL}/2030/01/01/{stem}.ogg")
}

fn spool_file(spool: &Path, stem: &str) -> std::path::PathBuf {
    spool.join(CHANNEL).join(format!("{stem}.ogg"))
}

/// A store that notes the content type of every `put`: the client sends it, but
/// fake-gcs-server does not keep it from this client's uploads, so it is checked here.
#[derive(Debug)]
struct NotingStore {
    inner: Arc<dyn ObjectStore>,
    content_types: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl ObjectStore for NotingStore {
    async fn put(
        &self,
        key: &str,
        data: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), store::StoreError> {
        self.content_types
            .lock()
            .unwrap()
            .push((key.to_owned(), content_type.to_owned()));
        self.inner.put(key, data, content_type).await
    }
    async fn get(&self, key: &str) -> Result<bytes::Bytes, store::StoreError> {
        self.inner.get(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, store::StoreError> {
        self.inner.exists(key).await
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
    async fn ping(&self) -> Result<(), store::StoreError> {
        self.inner.ping().await
    }
}

/// How a recording segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The next segment's first packet ended it: exact length.
    NextSegment,
    /// Shutdown or crash: the encoder's lookahead is missing from its end.
    Cut,
}

/// A recording segment holding `frames` of the test signal, checked as an Ogg stream and
/// decoded: exactly its share of the signal, sample-aligned. Segments after the first of a
/// run start with 4 packets of pre-roll.
fn assert_segment(bytes: &[u8], frames: Range<usize>, ending: Ending) {
    let summary = check_ogg(bytes);
    assert!(summary.ends_with_eos);
    let preroll = if frames.start > 0 { 4 } else { 0 };
    let head = pages(bytes).next().unwrap();
    let head = head.packets().next().unwrap();
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    assert_eq!(pre_skip, preroll * FRAME_LEN + PRE_SKIP);
    let decoded = ffmpeg_decode(bytes);
    let n = frames.len();
    match ending {
        Ending::NextSegment => {
            assert_eq!(summary.packets, preroll + n + 1);
            let granule = (preroll + n) * FRAME_LEN + PRE_SKIP;
            assert_eq!(summary.last_granule, granule as u64);
            assert_eq!(decoded.pairs(), n * FRAME_LEN);
        }
        Ending::Cut => {
            assert_eq!(summary.packets, preroll + n);
            assert_eq!(decoded.pairs(), n * FRAME_LEN - PRE_SKIP);
        }
    }
    assert_tone(&decoded, frames.start * FRAME_LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_cut_on_clock_multiples_and_each_decodes() {
    let (_, bucket, gcs) = gcs_bucket(true).await;
    let store = Arc::new(NotingStore {
        inner: gcs,
        content_types: Default::default(),
    });
    let spool = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = recording_config(spool.path(), Duration::from_secs(2));
    let mut outputs = Outputs::start(config, store.clone(), Arc::clone(&metrics))
        .await
        .unwrap();

    // Frames 0..250 go on air from 00:00:01 to 00:00:06: segments start at 00:00:01 (the
    // recorder starts mid-segment), 00:00:02 and 00:00:04.
    for i in 0..30 {
        outputs.push(&tone_frame(i), on_air(i));
    }
    let recorder = outputs.recorder().clone();
    wait_until("the first segment to open", DEADLINE, || async {
        recorder.current_segment().is_some()
    })
    .await
    .unwrap();
    let current = recorder.current_segment().unwrap();
    assert_eq!(current.key, key("20300101T000001Z"));
    assert_eq!(current.uri, format!("gs://{bucket}/{}", current.key));
    assert_eq!(current.started_at, on_air(0));
    for i in 30..250 {
        outputs.push(&tone_frame(i), on_air(i));
    }
    let report = outputs.finish(DEADLINE).await;
    assert_eq!(report.left_in_spool, 0, "{report:?}");
    assert_eq!(recorder.dropped_packets(), 0);
    assert_eq!(metrics.recordings_uploaded.load(Ordering::Relaxed), 3);
    assert_eq!(metrics.recording_failures.load(Ordering::Relaxed), 0);
    assert_eq!(recorder.current_segment(), None);

    for (stem, frames, ending) in [
        ("20300101T000001Z", 0..50, Ending::NextSegment),
        ("20300101T000002Z", 50..150, Ending::NextSegment),
        ("20300101T000004Z", 150..250, Ending::Cut),
    ] {
        let bytes = store.get(&key(stem)).await.unwrap();
        assert_segment(&bytes, frames, ending);
    }
    assert_eq!(
        std::fs::read_dir(spool.path().join(CHANNEL))
            .unwrap()
            .count(),
        0
    );
    let mut content_types = store.content_types.lock().unwrap().clone();
    content_types.sort();
    let expected: Vec<(String, String)> =
        ["20300101T000001Z", "20300101T000002Z", "20300101T000004Z"]
            .iter()
            .map(|stem| (key(stem), "audio/ogg".to_owned()))
            .collect();
    assert_eq!(content_types, expected);
}

#[test]
fn a_recording_cut_short_by_a_crash_is_sealed_and_uploaded_at_the_next_start() {
    let spool = tempfile::tempdir().unwrap();
    let config = recording_config(spool.path(), Duration::from_secs(3600));
    let stem = "20300101T000001Z";
    let file = spool_file(spool.path(), stem);

    // First run: 120 frames make 11 pages of 10 packets in the spool file (the 12th is still
    // being filled), then the process dies: no segment end, no upload.
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let bucket = crashed.block_on(async {
        let (_, bucket, store) = gcs_bucket(true).await;
        let metrics = Arc::new(Metrics::default());
        let mut outputs = Outputs::start(config.clone(), store, metrics)
            .await
            .unwrap();
        for i in 0..120 {
            outputs.push(&tone_frame(i), on_air(i));
        }
        wait_until("11 audio pages in the spool file", DEADLINE, || async {
            let bytes = std::fs::read(&file).unwrap_or_default();
            pages(&bytes).count() == 13
        })
        .await
        .unwrap();
        std::mem::forget(outputs);
        bucket
    });
    crashed.shutdown_background();

    // The crash also tore the last write: the file ends inside page 11.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();

    // Next start: the leftover is sealed (10 pages, the last flagged end-of-stream) and
    // uploaded under the key it would have had.
    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let gcs = FakeGcs::shared().await.unwrap();
        let store = store::open(&format!("gs://{bucket}"), Some(&gcs.endpoint()))
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::default());
        let outputs = Outputs::start(config.clone(), Arc::clone(&store), Arc::clone(&metrics))
            .await
            .unwrap();
        wait_until("the leftover to be uploaded", DEADLINE, || async {
            !file.exists()
        })
        .await
        .unwrap();
        let uploaded = store.get(&key(stem)).await.unwrap();
        assert_segment(&uploaded, 0..100, Ending::Cut);
        assert_eq!(metrics.recordings_uploaded.load(Ordering::Relaxed), 1);
        let report = outputs.finish(DEADLINE).await;
        assert_eq!(report.left_in_spool, 0);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_stays_in_the_spool_until_a_retry_succeeds() {
    // No bucket yet: every upload fails.
    let (gcs, bucket, store) = gcs_bucket(false).await;
    let spool = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = recording_config(spool.path(), Duration::from_secs(2));
    let mut outputs = Outputs::start(config, Arc::clone(&store), Arc::clone(&metrics))
        .await
        .unwrap();
    // Frame 50 starts the 00:00:02 segment, which closes the first one.
    for i in 0..60 {
        outputs.push(&tone_frame(i), on_air(i));
    }
    let first = spool_file(spool.path(), "20300101T000001Z");
    wait_until("two failed upload attempts", DEADLINE, || async {
        metrics.recording_failures.load(Ordering::Relaxed) >= 2
    })
    .await
    .unwrap();
    assert!(first.exists(), "a failed upload keeps its file");
    assert_eq!(metrics.recordings_uploaded.load(Ordering::Relaxed), 0);

    gcs.create_bucket(&bucket).await.unwrap();
    wait_until("a retry to upload the segment", DEADLINE, || async {
        !first.exists()
    })
    .await
    .unwrap();
    let bytes = store.get(&key("20300101T000001Z")).await.unwrap();
    assert_segment(&bytes, 0..50, Ending::NextSegment);
    assert_eq!(metrics.recordings_uploaded.load(Ordering::Relaxed), 1);

    let report = outputs.finish(DEADLINE).await;
    assert_eq!((report.uploaded, report.left_in_spool), (1, 0));
    let bytes = store.get(&key("20300101T000002Z")).await.unwrap();
    assert_segment(&bytes, 50..60, Ending::Cut);
}
