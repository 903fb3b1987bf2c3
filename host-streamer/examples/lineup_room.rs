//! The line-up tone published into a LiveKit room by the host-streamer's own engine,
//! outputs and publisher, without the database or the queue: for checking a LiveKit
//! deployment by ear and for the publishing benchmark (`bench/livekit.sh`).
//!
//! ```text
//! LIVEKIT_URL=ws://10.0.0.2:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \
//!     cargo run --release -p host-streamer --example lineup_room -- --seconds 60
//! ```
//!
//! Prints the publisher's metrics once at the end (and every `--every` seconds).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use host_streamer::audio::air::AirThread;
use host_streamer::livekit::{self, PublisherConfig};
use host_streamer::metrics::Metrics;
use host_streamer::on_air::NowPlaying;
use host_streamer::output::{OutputConfig, Outputs};
use host_streamer::program::{self, AudioConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: u64 = arg("--seconds").map_or(Ok(60), |s| s.parse())?;
    let every: u64 = arg("--every").map_or(Ok(0), |s| s.parse())?;
    let env = shared::config::Env::from_process();
    let room = PublisherConfig::from_env(&env, "Radio24")?
        .ok_or_else(|| anyhow::anyhow!("LIVEKIT_URL is not set"))?;

    let spool = tempfile::tempdir()?;
    let store =
        shared::store::open(&format!("file://{}/store", spool.path().display()), None).await?;
    let mut config = OutputConfig::default();
    config.recording.spool_dir = spool.path().join("spool");
    let metrics = Arc::new(Metrics::default());
    let outputs = Outputs::start(config, store, metrics.clone()).await?;
    let stop = CancellationToken::new();
    let tone = NowPlaying::new("LINEUP", "tone", None);
    let (_keep, now_playing) = tokio::sync::watch::channel(tone);
    let (feed, publisher) = livekit::publisher(room, metrics.clone(), now_playing, stop.clone());
    let publisher = tokio::spawn(publisher);
    let air = AirThread::spawn(
        program::build_lineup(&AudioConfig::default()),
        outputs.with_room(feed),
        metrics.clone(),
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(every.max(1)));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick(), if every > 0 => print_metrics(&metrics),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    stop.cancel();
    publisher.await?;
    let (report, _outputs) = tokio::task::spawn_blocking(move || air.stop()).await?;
    print_metrics(&metrics);
    println!(
        "air: {} frames, {} late, {} silence events",
        report.engine.frames, report.late, report.engine.silence_events
    );
    Ok(())
}

fn print_metrics(metrics: &Metrics) {
    let m = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let g = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed);
    println!(
        "livekit: state {} joins {} reconnects {} sent {} dropped {} lost {} signal_rtt_ms {:.1} media_rtt_ms {:.1}",
        g(&metrics.livekit_state),
        m(&metrics.livekit_joins),
        m(&metrics.livekit_reconnects),
        m(&metrics.livekit_packets_sent),
        m(&metrics.livekit_packets_dropped),
        g(&metrics.livekit_packets_lost),
        g(&metrics.livekit_signal_rtt_us) as f64 / 1000.0,
        g(&metrics.livekit_media_rtt_us) as f64 / 1000.0,
    );
}

fn tracing_subscriber_init() {
    shared::telemetry::init("info");
}
