//! The station in its LiveKit room: a participant with a fixed identity that publishes one
//! Opus audio track, the engine's output, and the now-playing line as its metadata.
//!
//! It speaks the standard client signal protocol (`livekit-signaling` over WebSocket, TLS
//! through rustls for LiveKit Cloud) and carries the audio over a pure-Rust WebRTC peer
//! connection (`webrtc`). The packets are the ones the engine's one Opus encoder already
//! made for the HTTP stream and the recorder, so publishing costs no second encode.
//!
//! The engine never waits on the network: the air thread hands packets over a bounded
//! channel with `try_send` ([`RoomFeed`]); while no session is up they are dropped and
//! counted. A session that dies (signal closed or pongs missed, ICE failed or disconnected
//! too long, the server asking us to leave) is replaced by a fresh join with exponential
//! backoff and full jitter, and the track is published again.
//!
//! What it needs from the network: TCP to the signal URL (443 for `wss://`), and UDP to the
//! server's media port or to a TURN server the server hands out in its join response.
//! ICE over TCP and TURN over TLS are not available in this WebRTC stack, so a network that
//! blocks UDP entirely stops the room (never the HTTP stream or the recordings).

mod session;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use shared::config::{ConfigError, Env};
use shared::livekit::LiveKitConfig;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::on_air::NowPlaying;
use session::{Session, SessionEnd};

/// Packets the publisher may fall behind the engine before packets are dropped: 1 s.
const FEED_PACKETS: usize = 50;
/// First wait before a rejoin; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `livekit_state` values.
pub const STATE_JOINING: i64 = 1;
pub const STATE_PUBLISHING: i64 = 2;

/// Where and as whom the station publishes.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`, `LIVEKIT_ROOM`.
    pub room: LiveKitConfig,
    /// `LIVEKIT_IDENTITY`: the host's fixed participant identity.
    pub identity: String,
    /// The participant's display name (`STATION_NAME`).
    pub name: String,
}

impl PublisherConfig {
    /// `None` when `LIVEKIT_URL` is unset: the station then streams over HTTP only.
    pub fn from_env(env: &Env, station_name: &str) -> Result<Option<Self>, ConfigError> {
        let Some(room) = LiveKitConfig::from_env(env)? else {
            return Ok(None);
        };
        let identity: String = env.or("LIVEKIT_IDENTITY", "radio24-host".to_owned())?;
        if identity.trim().is_empty() {
            return Err(ConfigError::invalid(
                "LIVEKIT_IDENTITY",
                &identity,
                "must not be empty",
            ));
        }
        Ok(Some(PublisherConfig {
            room,
            identity,
            name: station_name.to_owned(),
        }))
    }
}

/// The air thread's end of the publisher.
#[derive(Debug, Clone)]
pub struct RoomFeed {
    packets: mpsc::Sender<Bytes>,
    metrics: Arc<Metrics>,
}

impl RoomFeed {
    /// Hands one 20 ms Opus packet to the publisher; never blocks.
    pub fn send(&self, packet: Bytes) {
        if self.packets.try_send(packet).is_err() {
            Metrics::add(&self.metrics.livekit_packets_dropped, 1);
        }
    }
}

/// The publisher: the feed for the outputs, and the task to spawn. The task runs until
/// `stop`, then leaves the room.
pub fn publisher(
    config: PublisherConfig,
    metrics: Arc<Metrics>,
    now_playing: watch::Receiver<NowPlaying>,
    stop: CancellationToken,
) -> (RoomFeed, impl Future<Output = ()> + Send + 'static) {
    // DTLS certificates go through rustls's process-wide provider; with both providers
    // compiled in, rustls will not choose. An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = mpsc::channel(FEED_PACKETS);
    let feed = RoomFeed {
        packets: tx,
        metrics: metrics.clone(),
    };
    (feed, run(config, rx, metrics, now_playing, stop))
}

async fn run(
    config: PublisherConfig,
    mut packets: mpsc::Receiver<Bytes>,
    metrics: Arc<Metrics>,
    mut now_playing: watch::Receiver<NowPlaying>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    metrics
        .livekit_state
        .store(STATE_JOINING, Ordering::Relaxed);
    loop {
        let joined = tokio::select! {
            () = stop.cancelled() => break,
            joined = Session::join(&config, metrics.clone()) => joined,
        };
        match joined {
            Ok(mut session) => {
                failures = 0;
                Metrics::add(&metrics.livekit_joins, 1);
                metrics
                    .livekit_state
                    .store(STATE_PUBLISHING, Ordering::Relaxed);
                tracing::info!(url = %config.room.url, room = %config.room.room,
                    identity = %config.identity, "publishing into the LiveKit room");
                let end = session.run(&mut packets, &mut now_playing, &stop).await;
                session.close(&end).await;
                match end {
                    SessionEnd::Stopped => break,
                    end => tracing::warn!(reason = %end, "LiveKit session lost; rejoining"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt = failures + 1, "cannot join the LiveKit room")
            }
        }
        metrics
            .livekit_state
            .store(STATE_JOINING, Ordering::Relaxed);
        Metrics::add(&metrics.livekit_reconnects, 1);
        let wait = backoff(failures, rand::random());
        failures = failures.saturating_add(1);
        // Packets keep coming while we wait; they are counted and let go.
        let waited = tokio::time::sleep(wait);
        tokio::pin!(waited);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = &mut waited => break,
                Some(_) = packets.recv() => Metrics::add(&metrics.livekit_packets_dropped, 1),
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    metrics.livekit_state.store(0, Ordering::Relaxed);
}

/// Full jitter over an exponential ceiling: `jitter` in `[0, 1)` picks the wait between
/// zero and `FIRST_BACKOFF * 2^failures` (at most `MAX_BACKOFF`), so a fleet of streamers
/// restarting together does not knock on the server in step.
fn backoff(failures: u32, jitter: f64) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        assert_eq!(backoff(0, 0.999_999).as_millis(), 249);
        assert_eq!(backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(10, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 0.5), MAX_BACKOFF / 2);
        assert_eq!(backoff(4, 0.0), Duration::ZERO);
    }

    #[test]
    fn config_names_its_variables() {
        let env = Env::from_pairs::<&str, &str>([]);
        assert!(
            PublisherConfig::from_env(&env, "Radio24")
                .unwrap()
                .is_none()
        );
        let env = Env::from_pairs([
            ("LIVEKIT_URL", "wss://radio24.livekit.cloud"),
            ("LIVEKIT_API_KEY", "key"),
            ("LIVEKIT_API_SECRET", "secret"),
        ]);
        let config = PublisherConfig::from_env(&env, "Radio24").unwrap().unwrap();
        assert_eq!(config.identity, "radio24-host");
        assert_eq!(config.room.room, "radio24");
        let env = Env::from_pairs([("LIVEKIT_URL", "wss://x"), ("LIVEKIT_API_KEY", "key")]);
        let err = PublisherConfig::from_env(&env, "Radio24").unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_API_SECRET"), "{err}");
    }
}
