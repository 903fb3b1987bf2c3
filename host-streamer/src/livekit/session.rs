//! One LiveKit session, from join to leave: the signal connection, the publisher peer
//! connection that carries the track, and the subscriber peer connection the server opens
//! towards every participant (we answer it; nothing is subscribed on it).
//!
//! Join: signal connect (the join response carries ICE servers and the ping schedule),
//! `AddTrack`, wait for `TrackPublished`, offer, answer, trickle both ways until the
//! publisher connection is up. Then packets flow until something ends the session.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use livekit_protocol as proto;
use livekit_signaling::{SignalClient, SignalEvent, SignalEvents, SignalOptions};
use proto::signal_request::Message as Request;
use proto::signal_response::Message as Response;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::stats::StatsReportType;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::PublisherConfig;
use crate::audio::FRAME_DURATION;
use crate::metrics::Metrics;
use crate::on_air::NowPlaying;

/// From the first signal byte to the track flowing.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The publisher connection may be disconnected this long before the session is given up
/// (ICE may still recover by itself within it).
const DISCONNECTED_GRACE: Duration = Duration::from_secs(4);
/// How often the RTCP figures are read into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Our own token's life; each join signs a new one, and the server refreshes it meanwhile.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// The track's client id (its id in the SDP) and stream id.
const TRACK_CID: &str = "radio24-program";
const STREAM_ID: &str = "radio24";
const TRACK_NAME: &str = "program";
/// Leaving, closing the signal and the peer connections, each at most this long.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The process is stopping.
    Stopped,
    /// The signal connection closed or missed its pongs.
    SignalLost(String),
    /// The server told us to leave.
    Left(String),
    /// The publisher's peer connection failed or stayed disconnected.
    MediaLost(String),
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Stopped => f.write_str("stopping"),
            SessionEnd::SignalLost(why) => write!(f, "signal lost: {why}"),
            SessionEnd::Left(why) => write!(f, "server asked us to leave: {why}"),
            SessionEnd::MediaLost(why) => write!(f, "media connection lost: {why}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Publisher,
    Subscriber,
}

impl Target {
    fn signal(self) -> proto::SignalTarget {
        match self {
            Target::Publisher => proto::SignalTarget::Publisher,
            Target::Subscriber => proto::SignalTarget::Subscriber,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the peer connections' callbacks report.
enum PeerEvent {
    Candidate(Target, RTCIceCandidateInit),
    State(Target, RTCPeerConnectionState),
}

pub struct Session {
    signal: SignalClient,
    events: SignalEvents,
    publisher: Arc<RTCPeerConnection>,
    /// Opened when the server sends its first offer.
    subscriber: Option<Arc<RTCPeerConnection>>,
    track: Arc<TrackLocalStaticSample>,
    track_sid: Option<String>,
    publisher_state: RTCPeerConnectionState,
    disconnected_since: Option<Instant>,
    /// Remote candidates that arrived before their connection had a remote description.
    pending: [Vec<RTCIceCandidateInit>; 2],
    remote_set: [bool; 2],
    peer_tx: mpsc::UnboundedSender<PeerEvent>,
    peer_rx: mpsc::UnboundedReceiver<PeerEvent>,
    ice_servers: Vec<RTCIceServer>,
    metrics: Arc<Metrics>,
    name: String,
    write_errors: u64,
}

impl Session {
    /// Joins the room and publishes the track; the session is live when this returns.
    pub async fn join(config: &PublisherConfig, metrics: Arc<Metrics>) -> anyhow::Result<Session> {
        tokio::time::timeout(JOIN_TIMEOUT, Session::join_within(config, metrics))
            .await
            .map_err(|_| anyhow!("no published track within {JOIN_TIMEOUT:?}"))?
    }

    async fn join_within(
        config: &PublisherConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Session> {
        let token = config
            .room
            .host_token(&config.identity, &config.name, TOKEN_TTL)
            .context("cannot sign the host's token")?;
        let mut options = SignalOptions::default();
        options.auto_subscribe = false;
        let (signal, join, events) = SignalClient::connect(&config.room.url, &token, options, None)
            .await
            .context("signal connection")?;
        tracing::info!(
            server = join.server_info.as_ref().map(|s| s.version.as_str()).unwrap_or(""),
            region = %join.server_region,
            ping_interval = join.ping_interval,
            ping_timeout = join.ping_timeout,
            ice_servers = join.ice_servers.len(),
            "joined the LiveKit room"
        );
        let ice_servers = usable_ice_servers(&join.ice_servers);
        let (peer_tx, peer_rx) = mpsc::unbounded_channel();
        let publisher = new_peer(Target::Publisher, &ice_servers, peer_tx.clone()).await?;
        let track = Arc::new(TrackLocalStaticSample::new(
            opus_capability(),
            TRACK_CID.to_owned(),
            STREAM_ID.to_owned(),
        ));
        let transceiver = publisher
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    send_encodings: Vec::new(),
                }),
            )
            .await?;
        // RTCP from the server must be read for the interceptors (NACK, reports) to see it.
        let sender = transceiver.sender().await;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });

        let mut session = Session {
            signal,
            events,
            publisher,
            subscriber: None,
            track,
            track_sid: None,
            publisher_state: RTCPeerConnectionState::New,
            disconnected_since: None,
            pending: [Vec::new(), Vec::new()],
            remote_set: [false, false],
            peer_tx,
            peer_rx,
            ice_servers,
            metrics,
            name: config.name.clone(),
            write_errors: 0,
        };
        session
            .signal
            .send(Request::AddTrack(proto::AddTrackRequest {
                cid: TRACK_CID.to_owned(),
                name: TRACK_NAME.to_owned(),
                r#type: proto::TrackType::Audio as i32,
                source: proto::TrackSource::Microphone as i32,
                audio_features: vec![
                    proto::AudioTrackFeature::TfStereo as i32,
                    proto::AudioTrackFeature::TfNoDtx as i32,
                ],
                ..Default::default()
            }))
            .await;
        while session.track_sid.is_none() {
            session.step().await?;
        }
        let offer = session.publisher.create_offer(None).await?;
        session
            .publisher
            .set_local_description(offer.clone())
            .await?;
        session
            .signal
            .send(Request::Offer(proto::SessionDescription {
                r#type: "offer".to_owned(),
                sdp: offer.sdp,
                ..Default::default()
            }))
            .await;
        while session.publisher_state != RTCPeerConnectionState::Connected {
            session.step().await?;
            if matches!(
                session.publisher_state,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            ) {
                bail!("publisher connection {}", session.publisher_state);
            }
        }
        Ok(session)
    }

    /// One event during the join.
    async fn step(&mut self) -> anyhow::Result<()> {
        let end = tokio::select! {
            event = self.events.recv() => self.on_signal(event).await,
            Some(event) = self.peer_rx.recv() => self.on_peer(event).await,
        };
        match end {
            Some(end) => Err(anyhow!("{end}")),
            None => Ok(()),
        }
    }

    /// Sends packets until the session ends.
    pub async fn run(
        &mut self,
        packets: &mut mpsc::Receiver<Bytes>,
        now_playing: &mut watch::Receiver<NowPlaying>,
        stop: &CancellationToken,
    ) -> SessionEnd {
        let current = now_playing.borrow_and_update().clone();
        self.send_now_playing(&current).await;
        // Whatever queued during the join is stale: start with the newest audio.
        while packets.try_recv().is_ok() {
            Metrics::add(&self.metrics.livekit_packets_dropped, 1);
        }
        let mut stats = tokio::time::interval(STATS_INTERVAL);
        loop {
            let give_up = self
                .disconnected_since
                .map(|since| since + DISCONNECTED_GRACE);
            let end = tokio::select! {
                () = stop.cancelled() => Some(SessionEnd::Stopped),
                packet = packets.recv() => match packet {
                    Some(packet) => {
                        self.write(packet).await;
                        None
                    }
                    None => Some(SessionEnd::Stopped),
                },
                event = self.events.recv() => self.on_signal(event).await,
                Some(event) = self.peer_rx.recv() => self.on_peer(event).await,
                Ok(()) = now_playing.changed() => {
                    let current = now_playing.borrow_and_update().clone();
                    self.send_now_playing(&current).await;
                    None
                }
                _ = stats.tick() => {
                    self.read_stats().await;
                    None
                }
                () = sleep_until(give_up) => Some(SessionEnd::MediaLost(format!(
                    "disconnected for {DISCONNECTED_GRACE:?}"
                ))),
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    async fn write(&mut self, packet: Bytes) {
        let sample = Sample {
            data: packet,
            duration: FRAME_DURATION,
            ..Default::default()
        };
        match self.track.write_sample(&sample).await {
            Ok(()) => Metrics::add(&self.metrics.livekit_packets_sent, 1),
            Err(e) => {
                Metrics::add(&self.metrics.livekit_packets_dropped, 1);
                self.write_errors += 1;
                if self.write_errors % 500 == 1 {
                    tracing::warn!(error = %e, errors = self.write_errors, "cannot send a packet");
                }
            }
        }
    }

    /// Handles a signal event; `Some` when it ends the session.
    async fn on_signal(&mut self, event: Option<SignalEvent>) -> Option<SessionEnd> {
        let message = match event {
            None => return Some(SessionEnd::SignalLost("signal task ended".into())),
            Some(SignalEvent::Close(why)) => return Some(SessionEnd::SignalLost(why.into())),
            Some(SignalEvent::Message(message)) => *message,
        };
        let handled = match message {
            Response::Answer(answer) => self.on_answer(answer).await,
            Response::Offer(offer) => self.on_offer(offer).await,
            Response::Trickle(trickle) => self.on_trickle(trickle).await,
            Response::TrackPublished(published) if published.cid == TRACK_CID => {
                let sid = published.track.map(|t| t.sid).unwrap_or_default();
                tracing::info!(track_sid = %sid, "track published");
                self.track_sid = Some(sid);
                Ok(())
            }
            Response::Leave(leave) => {
                let reason = proto::DisconnectReason::try_from(leave.reason)
                    .map_or_else(|_| leave.reason.to_string(), |r| r.as_str_name().to_owned());
                return Some(SessionEnd::Left(reason));
            }
            Response::PongResp(pong) => {
                let rtt_ms = unix_millis() - pong.last_ping_timestamp;
                self.metrics
                    .livekit_signal_rtt_us
                    .store(rtt_ms.max(0) * 1000, Ordering::Relaxed);
                Ok(())
            }
            Response::RequestResponse(response) if response.reason != 0 => {
                tracing::warn!(?response, "the server refused a request");
                Ok(())
            }
            _ => Ok(()),
        };
        // A negotiation step that fails leaves the connection unusable: start over.
        handled
            .err()
            .map(|e| SessionEnd::MediaLost(format!("negotiation: {e:#}")))
    }

    async fn on_answer(&mut self, answer: proto::SessionDescription) -> anyhow::Result<()> {
        self.publisher
            .set_remote_description(RTCSessionDescription::answer(answer.sdp)?)
            .await?;
        self.remote_set[Target::Publisher.index()] = true;
        self.add_pending(Target::Publisher).await
    }

    /// The server's subscriber connection: answer it (it carries the server's data
    /// channels; we subscribe to nothing).
    async fn on_offer(&mut self, offer: proto::SessionDescription) -> anyhow::Result<()> {
        let subscriber = match &self.subscriber {
            Some(pc) => Arc::clone(pc),
            None => {
                let pc =
                    new_peer(Target::Subscriber, &self.ice_servers, self.peer_tx.clone()).await?;
                self.subscriber = Some(Arc::clone(&pc));
                pc
            }
        };
        subscriber
            .set_remote_description(RTCSessionDescription::offer(offer.sdp)?)
            .await?;
        self.remote_set[Target::Subscriber.index()] = true;
        self.add_pending(Target::Subscriber).await?;
        let answer = subscriber.create_answer(None).await?;
        subscriber.set_local_description(answer.clone()).await?;
        self.signal
            .send(Request::Answer(proto::SessionDescription {
                r#type: "answer".to_owned(),
                sdp: answer.sdp,
                id: offer.id,
                ..Default::default()
            }))
            .await;
        Ok(())
    }

    async fn on_trickle(&mut self, trickle: proto::TrickleRequest) -> anyhow::Result<()> {
        let target = if trickle.target == proto::SignalTarget::Subscriber as i32 {
            Target::Subscriber
        } else {
            Target::Publisher
        };
        let candidate: RTCIceCandidateInit = serde_json::from_str(&trickle.candidate_init)
            .with_context(|| format!("candidate {}", trickle.candidate_init))?;
        self.pending[target.index()].push(candidate);
        if self.remote_set[target.index()] {
            self.add_pending(target).await?;
        }
        Ok(())
    }

    async fn add_pending(&mut self, target: Target) -> anyhow::Result<()> {
        let pc = match target {
            Target::Publisher => Arc::clone(&self.publisher),
            Target::Subscriber => match &self.subscriber {
                Some(pc) => Arc::clone(pc),
                None => return Ok(()),
            },
        };
        for candidate in std::mem::take(&mut self.pending[target.index()]) {
            pc.add_ice_candidate(candidate).await?;
        }
        Ok(())
    }

    async fn on_peer(&mut self, event: PeerEvent) -> Option<SessionEnd> {
        match event {
            PeerEvent::Candidate(target, candidate) => {
                let candidate_init = serde_json::to_string(&candidate).unwrap_or_default();
                self.signal
                    .send(Request::Trickle(proto::TrickleRequest {
                        candidate_init,
                        target: target.signal() as i32,
                        r#final: false,
                    }))
                    .await;
                None
            }
            PeerEvent::State(Target::Subscriber, state) => {
                tracing::debug!(%state, "subscriber connection");
                None
            }
            PeerEvent::State(Target::Publisher, state) => {
                tracing::info!(%state, "publisher connection");
                self.publisher_state = state;
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.disconnected_since = None;
                        None
                    }
                    RTCPeerConnectionState::Disconnected => {
                        self.disconnected_since.get_or_insert_with(Instant::now);
                        None
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        Some(SessionEnd::MediaLost(state.to_string()))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The now-playing line as the host's metadata (JSON) and attributes.
    async fn send_now_playing(&self, now: &NowPlaying) {
        self.signal
            .send(Request::UpdateMetadata(proto::UpdateParticipantMetadata {
                metadata: now.to_json(),
                name: self.name.clone(),
                attributes: now.attributes(),
                request_id: self.signal.next_request_id(),
            }))
            .await;
    }

    /// Loss and round trip from the server's RTCP receiver reports.
    async fn read_stats(&self) {
        let report = self.publisher.get_stats().await;
        for stats in report.reports.values() {
            if let StatsReportType::RemoteInboundRTP(remote) = stats
                && remote.kind == "audio"
            {
                let m = &self.metrics;
                m.livekit_packets_lost
                    .store(remote.packets_lost, Ordering::Relaxed);
                m.livekit_fraction_lost_ppm
                    .store((remote.fraction_lost * 1e6) as i64, Ordering::Relaxed);
                // webrtc-rs reports this one in milliseconds (not the W3C seconds).
                if let Some(rtt_ms) = remote.round_trip_time {
                    m.livekit_media_rtt_us
                        .store((rtt_ms * 1e3) as i64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Leaves the room (unless the server is already gone) and closes everything.
    pub async fn close(self, end: &SessionEnd) {
        if matches!(end, SessionEnd::Stopped | SessionEnd::MediaLost(_)) {
            let leave = Request::Leave(proto::LeaveRequest {
                can_reconnect: false,
                reason: proto::DisconnectReason::ClientInitiated as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                ..Default::default()
            });
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.signal.send(leave)).await;
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.signal.close()).await;
        for pc in std::iter::once(&self.publisher).chain(self.subscriber.as_ref()) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, pc.close()).await;
        }
        self.metrics
            .livekit_packets_lost
            .store(0, Ordering::Relaxed);
    }
}

/// The ICE servers of a join response that this WebRTC stack can use: STUN, and TURN over
/// UDP. TURN over TCP or TLS (which LiveKit Cloud also offers) is left out rather than
/// handed to a stack that cannot speak it.
fn usable_ice_servers(servers: &[proto::IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .filter_map(|s| {
            let (usable, skipped): (Vec<String>, Vec<String>) =
                s.urls.iter().cloned().partition(|url| {
                    let url = url.to_ascii_lowercase();
                    url.starts_with("stun:")
                        || (url.starts_with("turn:") && !url.contains("transport=tcp"))
                });
            if !skipped.is_empty() {
                tracing::debug!(?skipped, "ICE server URLs this stack cannot use");
            }
            (!usable.is_empty()).then(|| RTCIceServer {
                urls: usable,
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
        })
        .collect()
}

/// Opus as the engine encodes it: 48 kHz stereo, 20 ms packets, no DTX (the station is
/// never silent on purpose, and DTX would count as gaps).
fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1".to_owned(),
        rtcp_feedback: Vec::new(),
    }
}

/// A peer connection whose candidates and state changes come back as [`PeerEvent`]s.
async fn new_peer(
    target: Target,
    ice_servers: &[RTCIceServer],
    events: mpsc::UnboundedSender<PeerEvent>,
) -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    // Notice a dead path in seconds, not the default half minute.
    settings.set_ice_timeouts(
        Some(Duration::from_secs(3)),
        Some(Duration::from_secs(8)),
        Some(Duration::from_secs(1)),
    );
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration {
            ice_servers: ice_servers.to_vec(),
            ..Default::default()
        })
        .await?,
    );
    let candidates = events.clone();
    pc.on_ice_candidate(Box::new(move |candidate| {
        let candidates = candidates.clone();
        Box::pin(async move {
            if let Some(candidate) = candidate
                && let Ok(mut init) = candidate.to_json()
            {
                // One media section each way: the first.
                init.sdp_mid = Some("0".to_owned());
                let _ = candidates.send(PeerEvent::Candidate(target, init));
            }
        })
    }));
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let _ = events.send(PeerEvent::State(target, state));
        Box::pin(async {})
    }));
    Ok(pc)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stun_and_udp_turn_are_kept() {
        let servers = [
            proto::IceServer {
                urls: vec![
                    "turn:turn.example.net:3478?transport=udp".into(),
                    "turn:turn.example.net:3478?transport=tcp".into(),
                    "turns:turn.example.net:443?transport=tcp".into(),
                ],
                username: "user".into(),
                credential: "pass".into(),
            },
            proto::IceServer {
                urls: vec!["turns:only.example.net:443".into()],
                ..Default::default()
            },
            proto::IceServer {
                urls: vec!["stun:stun.example.net:3478".into()],
                ..Default::default()
            },
        ];
        let usable = usable_ice_servers(&servers);
        assert_eq!(usable.len(), 2);
        assert_eq!(usable[0].urls, ["turn:turn.example.net:3478?transport=udp"]);
        assert_eq!(usable[0].username, "user");
        assert_eq!(usable[1].urls, ["stun:stun.example.net:3478"]);
    }
}
