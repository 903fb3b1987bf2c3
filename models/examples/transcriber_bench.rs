//! Speed and memory of the local transcriber, to size the services that run it:
//!
//!     cargo run --release -p models --example transcriber_bench
//!
//! Makes about 10 s of speech with espeak-ng, encodes it as Ogg/Opus with ffmpeg (as a
//! push-to-talk upload arrives), and prints the model's load time, the time to decode the
//! upload, the real-time factor of whole transcriptions (processing time / audio length;
//! below 1 is faster than real time) and the process's resident memory (VmRSS now, VmHWM
//! peak). Needs the model, espeak-ng and ffmpeg from `dev/install-tools`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use media::decode::{self, DEFAULT_MAX_DURATION};
use models::whisper::LocalWhisper;

const RUNS: usize = 3;
const SPEECH: &str = "Good morning Radio twenty four. I am driving to work and the ring road is \
    completely blocked near exit twelve, so please tell everyone to avoid it. Thank you!";

fn main() -> anyhow::Result<()> {
    let upload = speech_upload()?;
    let dir = LocalWhisper::default_dir();
    println!(
        "model dir {}, {} CPUs, upload {} bytes of Ogg/Opus",
        dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        upload.len()
    );
    println!("before load:   {}", memory());

    let started = Instant::now();
    let model = LocalWhisper::load(&dir).context("loading the model (run dev/install-tools)")?;
    println!("load:          {:>8.1} ms", ms(started.elapsed()));
    println!("after load:    {}", memory());

    let started = Instant::now();
    let decoded = decode::decode(&upload, DEFAULT_MAX_DURATION)?;
    let decode_time = started.elapsed();
    let audio = decoded.duration();
    println!(
        "decode:        {:>8.1} ms for {:.1} s of audio",
        ms(decode_time),
        audio.as_secs_f64()
    );

    // The first run pays for lazy set-up (thread pools, allocator growth); keep it out.
    let first = Instant::now();
    let transcript = model.transcribe_blocking(&upload)?;
    println!("first run:     {:>8.1} ms", ms(first.elapsed()));
    println!("transcript:    {:?}", transcript.text);

    let started = Instant::now();
    for _ in 0..RUNS {
        model.transcribe_blocking(&upload)?;
    }
    let per_run = started.elapsed() / RUNS as u32;
    println!(
        "transcribe:    {:>8.1} ms per run (mean of {RUNS}), real-time factor {:.3}",
        ms(per_run),
        per_run.as_secs_f64() / audio.as_secs_f64()
    );
    println!("after runs:    {}", memory());
    Ok(())
}

/// `SPEECH` spoken by espeak-ng and encoded as 24 kb/s Ogg/Opus by ffmpeg.
fn speech_upload() -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("speech.wav");
    let ogg = dir.path().join("speech.ogg");
    let status = Command::new("espeak-ng")
        .args(["-s", "175", "-w"])
        .arg(&wav)
        .arg(SPEECH)
        .status()
        .context("running espeak-ng (dev/install-tools installs it)")?;
    ensure!(status.success(), "espeak-ng failed");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-c:a", "libopus", "-b:a", "24k", "-f", "ogg"])
        .arg(&ogg)
        .status()
        .context("running ffmpeg (dev/install-tools installs it)")?;
    ensure!(status.success(), "ffmpeg failed");
    Ok(std::fs::read(ogg)?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn memory() -> testkit::memory::Memory {
    testkit::memory::Memory::of_self()
}
