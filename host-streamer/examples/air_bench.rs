//! The air path's cost: the station's source graph (voice ducking a bed, loudness, the
//! watchdog) mixed, encoded to Opus and paginated for listeners and recordings, fed with a
//! voice file every 30 s over a looping bed, the same stream `bench/streamer.sh` asks
//! Liquidsoap to produce. The voice is pushed at 24 kHz, as the Realtime API delivers it,
//! so its resampling to 48 kHz is part of the cost.
//!
//! ```text
//! air_bench --voice speech.wav --bed bed.wav --virtual 3600   # 1 h of audio, flat out
//! air_bench --voice speech.wav --bed bed.wav --real 600       # 10 min in real time
//! ```
//! Prints CPU seconds, frames late, and RSS once a minute of audio.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use host_streamer::audio::air::{self, Sink};
use host_streamer::audio::{Frame, Pacing, SAMPLE_RATE};
use host_streamer::metrics::Metrics;
use host_streamer::on_air::Feeds;
use host_streamer::output::{OutputConfig, Outputs};
use host_streamer::program::{self, AudioConfig};
use media::decode::decode_at;

/// The Realtime API's output rate.
const VOICE_RATE: u32 = 24_000;

struct Bench {
    outputs: Outputs,
    feeds: Feeds,
    /// At [`VOICE_RATE`].
    voice: Vec<f32>,
    bed: Vec<f32>,
    frames: u64,
    started: Instant,
    metrics: Arc<Metrics>,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    let u = unsafe { usage.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

impl Sink for Bench {
    fn push(&mut self, frame: &Frame, at: DateTime<Utc>) {
        self.outputs.push(frame, at);
        // The voice every 30 s, the bed kept topped up (it loops).
        if self.frames.is_multiple_of(1_500) {
            self.feeds.dj.begin();
            self.feeds.dj.push_f32(VOICE_RATE, &self.voice);
            self.feeds.dj.end();
        }
        if self.feeds.music.queued() < Duration::from_secs(5) {
            self.feeds.music.begin();
            self.feeds.music.push_f32(SAMPLE_RATE, &self.bed);
            self.feeds.music.end();
        }
        self.frames += 1;
        if self.frames.is_multiple_of(3_000) {
            println!(
                "minute {:>3}: rss {:>6} KiB, cpu {:>7.2} s, wall {:>7.1} s, frames late {}",
                self.frames / 3_000,
                rss_kib("VmRSS:"),
                cpu_seconds(),
                self.started.elapsed().as_secs_f64(),
                self.metrics
                    .frames_late
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

fn decode(path: &str, rate: u32) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode_at(&bytes, Duration::from_secs(600), rate)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .samples
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (pacing, seconds) = match (arg("--virtual"), arg("--real")) {
        (Some(s), None) => (Pacing::Virtual, s.parse::<u64>()?),
        (None, Some(s)) => (Pacing::RealTime, s.parse::<u64>()?),
        _ => anyhow::bail!("usage: air_bench --voice F --bed F (--virtual S | --real S)"),
    };
    let voice = decode(
        &arg("--voice").unwrap_or_else(|| "speech.wav".into()),
        VOICE_RATE,
    );
    let bed = decode(
        &arg("--bed").unwrap_or_else(|| "bed.wav".into()),
        SAMPLE_RATE,
    );
    let spool = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let metrics = Arc::new(Metrics::default());
    let outputs = runtime.block_on(async {
        let store =
            shared::store::open(&format!("file://{}/store", spool.path().display()), None).await?;
        let mut config = OutputConfig::default();
        config.recording.spool_dir = spool.path().join("spool");
        anyhow::Ok(Outputs::start(config, store, metrics.clone()).await?)
    })?;
    let (engine, feeds) = program::build(&AudioConfig::default());
    let mut bench = Bench {
        outputs,
        feeds,
        voice,
        bed,
        frames: 0,
        started: Instant::now(),
        metrics: metrics.clone(),
    };
    let rss_before = rss_kib("VmRSS:");
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let report = air::run(
        engine,
        pacing,
        &mut bench,
        &metrics,
        &AtomicBool::new(false),
        Some(seconds * 50),
    );
    let cpu = cpu_seconds() - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{:?}: {} s of audio in {wall:.1} s wall; cpu {cpu:.2} s = {:.3} % of one core at real time \
         ({:.1} us per frame); frames late {}; silence events {}; rss {} KiB before, {} KiB after, peak {} KiB",
        pacing,
        seconds,
        cpu / seconds as f64 * 100.0,
        cpu / (seconds * 50) as f64 * 1e6,
        report.late,
        report.engine.silence_events,
        rss_before,
        rss_kib("VmRSS:"),
        rss_kib("VmHWM:"),
    );
    runtime.block_on(bench.outputs.finish(Duration::from_secs(10)));
    Ok(())
}
