//! LiveKit for tests: the real livekit-server, a real listener and a reference publisher
//! (both the LiveKit Python SDK, which carries the native libwebrtc).
//!
//! livekit-server offers no loopback ICE candidates, so the server and its peers must share a
//! non-loopback address: run the test inside a network namespace
//! ([`crate::netns::reexec_inside`]) and start the server on the namespace's address.
//!
//! The listener ([`Listener`], `testkit/livekit/listener.py`) writes one JSON line per
//! received audio frame (receive time, RMS level, dominant frequency) and per room event;
//! [`Reception`] turns them into what tests assert on: seconds heard, the longest gap, when
//! audio came back, the pitch heard and when it changed. The publisher ([`Publisher`],
//! `testkit/livekit/publisher.py`) sends raw PCM at real time and reports the wall-clock time
//! of its first frame, so the time every input sample left it is known.
//!
//! Needs `dev/install-tools`: `$RADIO24_CACHE/tools/bin/livekit-server` and the
//! `$RADIO24_CACHE/tools/venv-livekit` Python.

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Map, Value, json};
use shared::livekit::LiveKitConfig;

use crate::process::{ChildGuard, log_tail, spawn_logged};

mod peers;
mod reception;

use crate::{POLL_INTERVAL, Scratch, StartError, require_file, tools_dir, try_wait_until};
pub use peers::*;
pub use reception::*;

/// What `--dev` gives the server when no keys are configured.
pub const API_KEY: &str = "devkey";
pub const API_SECRET: &str = "secret";
/// The identity the station's host publishes as (what [`Listener`] listens to by default).
pub const HOST_IDENTITY: &str = "radio24-host";
/// The sample rate everything here works in (the listener resamples to it).
pub const SAMPLE_RATE: u32 = 48_000;

const READY_DEADLINE: Duration = Duration::from_secs(60);
/// What starting a Python SDK peer may take on a loaded 2-core machine.
const PEER_DEADLINE: Duration = Duration::from_secs(60);

/// livekit-server in development mode (`--dev`: keys `devkey`/`secret`), bound to one
/// non-loopback address with its signal (HTTP/WebSocket), ICE/TCP and ICE/UDP ports there.
///
/// Its log (`livekit-server.log`, kept across restarts) is in a temporary directory removed
/// on drop. Dropping it kills the server.
#[derive(Debug)]
pub struct LiveKitServer {
    addr: Ipv4Addr,
    ports: Ports,
    bin: PathBuf,
    config: PathBuf,
    log_path: PathBuf,
    /// `None` while killed.
    server: Option<ChildGuard>,
    // Last, so the directory goes after the server is dead.
    _scratch: Scratch,
}

/// The server's ports, all on its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP: the signal WebSocket (`/rtc`), the Twirp API and `/` (health).
    pub signal: u16,
    /// ICE over TCP, for peers whose UDP is blocked.
    pub rtc_tcp: u16,
    /// ICE over UDP, all peers on this one port.
    pub rtc_udp: u16,
}

impl LiveKitServer {
    /// Starts `$RADIO24_CACHE/tools/bin/livekit-server --dev` on free ports of `addr`, which
    /// is also the address it offers peers (node IP), and waits until it answers `GET /`.
    pub async fn start(addr: Ipv4Addr) -> Result<LiveKitServer> {
        let bin = tools_dir().join("bin").join("livekit-server");
        require_file(&bin, "livekit-server")?;
        let scratch = Scratch::new("livekit")?;
        let config = scratch.path().join("livekit.yaml");
        let log_path = scratch.path().join("livekit-server.log");
        const ATTEMPTS: usize = 4;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let ports = free_ports(addr)?;
            std::fs::write(&config, config_yaml(addr, ports))
                .with_context(|| format!("writing {}", config.display()))?;
            match spawn_ready(&bin, &config, &log_path, addr, ports).await {
                Ok(server) => {
                    return Ok(LiveKitServer {
                        addr,
                        ports,
                        bin,
                        config,
                        log_path,
                        server: Some(server),
                        _scratch: scratch,
                    });
                }
                Err(StartError::PortTaken(e)) => last = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "starting livekit-server: {ATTEMPTS} port sets were all taken"
            )))
    }

    /// `ws://ADDR:PORT`, what clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}:{}", self.addr, self.ports.signal)
    }

    /// `http://ADDR:PORT`, the Twirp API's base.
    pub fn http_url(&self) -> String {
        format!("http://{}:{}", self.addr, self.ports.signal)
    }

    pub fn api_key(&self) -> &str {
        API_KEY
    }

    pub fn api_secret(&self) -> &str {
        API_SECRET
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The server's output, all runs.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// The station's LiveKit configuration for this server and `room`, as the services get
    /// it from their environment (listener tokens last 10 minutes).
    pub fn config(&self, room: &str) -> LiveKitConfig {
        LiveKitConfig {
            url: self.url(),
            api_key: API_KEY.into(),
            api_secret: API_SECRET.into(),
            room: room.into(),
            listener_ttl: Duration::from_secs(600),
        }
    }

    /// A token for `identity` with `grants`, valid for an hour.
    pub fn token(&self, identity: &str, grants: VideoGrants) -> Result<String> {
        AccessToken::with_api_key(API_KEY, API_SECRET)
            .with_identity(identity)
            .with_ttl(Duration::from_secs(3600))
            .with_grants(grants)
            .to_jwt()
            .context("signing a LiveKit token")
    }

    /// A token that may join `room`, publish and subscribe: a test's control participant.
    pub fn participant_token(&self, room: &str, identity: &str) -> Result<String> {
        self.token(
            identity,
            VideoGrants {
                room_join: true,
                room: room.into(),
                can_publish: Some(true),
                can_subscribe: Some(true),
                ..Default::default()
            },
        )
    }

    /// Whether the server process is running (false after [`LiveKitServer::kill`]).
    pub fn is_running(&self) -> bool {
        self.server.as_ref().is_some_and(ChildGuard::is_running)
    }

    /// Kills the server with SIGKILL, the way a crashed or preempted node goes away: no
    /// leave messages, every room's state lost. Idempotent.
    pub fn kill(&mut self) {
        self.server.take();
    }

    /// Freezes the server (SIGSTOP): its sockets stay open but nothing answers, the way a
    /// hung node or a dead path looks to peers. [`LiveKitServer::thaw`] resumes it.
    pub fn freeze(&self) {
        if let Some(server) = &self.server {
            server.freeze();
        }
    }

    /// Resumes a server frozen by [`LiveKitServer::freeze`].
    pub fn thaw(&self) {
        if let Some(server) = &self.server {
            server.thaw();
        }
    }

    /// Starts the server again (killing it first if running) with the same ports and
    /// configuration, and waits until it answers. Peers must reconnect on their own.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        // The ports were ours a moment ago; retry while the old sockets are being released
        // rather than moving to ports the peers do not know.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match spawn_ready(
                &self.bin,
                &self.config,
                &self.log_path,
                self.addr,
                self.ports,
            )
            .await
            {
                Ok(server) => {
                    self.server = Some(server);
                    return Ok(());
                }
                Err(StartError::PortTaken(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(StartError::PortTaken(e) | StartError::Other(e)) => {
                    return Err(e.context("restarting livekit-server on its ports"));
                }
            }
        }
    }

    /// The server's rooms (Twirp `RoomService/ListRooms`), as JSON objects (`name`, `sid`,
    /// `num_participants`, ...).
    pub async fn list_rooms(&self) -> Result<Vec<Value>> {
        let grants = VideoGrants {
            room_list: true,
            ..Default::default()
        };
        let body = self.twirp("ListRooms", json!({}), grants).await?;
        Ok(array(&body, "rooms"))
    }

    /// The participants of `room` as the server sees them (`identity`, `metadata`,
    /// `permission`, `tracks`, ...).
    pub async fn list_participants(&self, room: &str) -> Result<Vec<Value>> {
        let body = self
            .twirp(
                "ListParticipants",
                json!({ "room": room }),
                admin_grants(room),
            )
            .await?;
        Ok(array(&body, "participants"))
    }

    /// Sets a participant's metadata and attributes from the server side, as the station's
    /// control plane would.
    pub async fn update_participant(
        &self,
        room: &str,
        identity: &str,
        metadata: &str,
        attributes: &[(&str, &str)],
    ) -> Result<()> {
        let attributes: Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let body = json!({ "room": room, "identity": identity, "metadata": metadata, "attributes": attributes });
        self.twirp("UpdateParticipant", body, admin_grants(room))
            .await
            .map(drop)
    }

    async fn twirp(&self, method: &str, body: Value, grants: VideoGrants) -> Result<Value> {
        let token = self.token("radio24-test-admin", grants)?;
        let url = format!("{}/twirp/livekit.RoomService/{method}", self.http_url());
        let response = http_client()?
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} answered {text}"))
    }
}

fn admin_grants(room: &str) -> VideoGrants {
    VideoGrants {
        room_admin: true,
        room: room.into(),
        ..Default::default()
    }
}

fn array(body: &Value, key: &str) -> Vec<Value> {
    body.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A client that never goes through a proxy named in the environment: everything here is
/// on the test's own addresses.
fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building an HTTP client")
}

/// Three distinct ports free on `addr` a moment ago (two TCP, one UDP).
fn free_ports(addr: Ipv4Addr) -> Result<Ports> {
    let context = || format!("finding free ports on {addr} (is it an address of this namespace?)");
    let tcp = || -> Result<(TcpListener, u16)> {
        let l = TcpListener::bind((addr, 0)).with_context(context)?;
        let port = l.local_addr()?.port();
        Ok((l, port))
    };
    // Held open together so the kernel cannot hand out the same port twice.
    let (_a, signal) = tcp()?;
    let (_b, rtc_tcp) = tcp()?;
    let udp = UdpSocket::bind((addr, 0)).with_context(context)?;
    let rtc_udp = udp.local_addr()?.port();
    Ok(Ports {
        signal,
        rtc_tcp,
        rtc_udp,
    })
}

/// The server's configuration file. `--dev` on top supplies the dev keys and, since the
/// bind address is not loopback, takes the ICE address from it.
fn config_yaml(addr: Ipv4Addr, ports: Ports) -> String {
    format!(
        "# written by testkit::livekit\n\
         port: {signal}\n\
         bind_addresses: [\"{addr}\"]\n\
         rtc:\n  \
           tcp_port: {tcp}\n  \
           udp_port: {udp}\n  \
           node_ip: {addr}\n  \
           use_external_ip: false\n\
         logging:\n  \
           # --dev would make it debug: megabytes a minute of ICE and RTP chatter\n  \
           level: info\n",
        signal = ports.signal,
        tcp = ports.rtc_tcp,
        udp = ports.rtc_udp,
    )
}

async fn spawn_ready(
    bin: &Path,
    config: &Path,
    log_path: &Path,
    addr: Ipv4Addr,
    ports: Ports,
) -> std::result::Result<ChildGuard, StartError> {
    let mut cmd = Command::new(bin);
    cmd.arg("--dev").arg("--config").arg(config);
    let server = spawn_logged(cmd, log_path)?;
    let client = http_client()?;
    let url = format!("http://{addr}:{}/", ports.signal);
    crate::wait_ready(
        &format!("livekit-server on {addr}:{}", ports.signal),
        &server,
        READY_DEADLINE,
        || async { matches!(crate::http_get(&client, &url).await, Some((200, _))) },
    )
    .await?;
    Ok(server)
}

// -------------------------------------------------------------------------------------------
// The Python SDK peers
// -------------------------------------------------------------------------------------------

/// The venv's Python, which has the LiveKit SDK.
fn python() -> Result<PathBuf> {
    let python = tools_dir().join("venv-livekit").join("bin").join("python");
    require_file(&python, "the LiveKit Python SDK venv")?;
    Ok(python)
}

/// A script of `testkit/livekit/`.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("livekit")
        .join(name)
}

/// Seconds since the Unix epoch, the clock the Python peers stamp their lines with.
pub fn unix_time(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// [`unix_time`] of now.
pub fn unix_now() -> f64 {
    unix_time(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 ms frames from `start`, one per `(rms, hz)`.
    fn frames(start: f64, levels: &[(f32, f32)]) -> Vec<Frame> {
        levels
            .iter()
            .enumerate()
            .map(|(i, &(rms, hz))| Frame {
                t: start + i as f64 * 0.01,
                samples: 480,
                rms,
                hz,
            })
            .collect()
    }

    fn reception(frames: Vec<Frame>) -> Reception {
        Reception {
            frames,
            events: Vec::new(),
        }
    }

    #[test]
    fn gaps_count_silent_and_missing_frames_alike() {
        let mut heard = frames(100.0, &[(0.2, 440.0); 10]); // 100.00 ..= 100.09
        heard.extend(frames(100.10, &[(0.0, 0.0); 20])); // silent until 100.29
        heard.extend(frames(100.30, &[(0.2, 440.0); 10])); // 100.30 ..= 100.39
        heard.extend(frames(101.00, &[(0.2, 440.0); 10])); // nothing 100.39 .. 101.00
        let r = reception(heard);
        let gap = r.longest_gap(100.0, 101.09, 0.01);
        assert!((gap.start - 100.39).abs() < 1e-9 && (gap.end - 101.0).abs() < 1e-9);
        // Within a window that ends earlier, the silent stretch is the longest.
        let gap = r.longest_gap(100.0, 100.35, 0.01);
        assert!((gap.seconds() - 0.21).abs() < 1e-9, "{gap:?}");
        // A window with no audio at all is one gap.
        assert!((r.longest_gap(200.0, 201.0, 0.01).seconds() - 1.0).abs() < 1e-9);
        assert_eq!(r.first_audible_after(100.09, 0.01), Some(100.30));
        assert!((r.audio_seconds() - 0.5).abs() < 1e-9);
        assert!((r.audible_seconds(0.01) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn pitch_segments_find_changes_and_ignore_glitches() {
        let mut levels = vec![(0.2, 440.0); 30];
        levels[12] = (0.2, 1200.0); // one concealed frame
        levels.push((0.2, 550.0)); // straddles the change
        levels.extend([(0.2, 660.0); 30]);
        let r = reception(frames(0.0, &levels));
        let segments = r.pitch_segments(0.01, 15.0, 5);
        assert_eq!(
            segments.iter().map(|s| s.hz).collect::<Vec<_>>(),
            vec![440.0, 660.0]
        );
        assert!((segments[1].start - 0.31).abs() < 1e-9, "{segments:?}");
        assert_eq!(r.pitch(0.0, 0.3, 0.01), Some(440.0));
        assert_eq!(r.pitch(0.4, 1.0, 0.01), Some(660.0));
    }

    #[test]
    fn tones_are_continuous_s16le_at_48_khz() {
        let pcm = tones(&[(440.0, 0.5), (880.0, 0.25)], 0.5);
        assert_eq!(pcm.len(), (0.75 * 48_000.0) as usize * 2);
        let samples: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((16_000..=16_384).contains(&peak), "{peak}");
        // No click at the change: neighbouring samples differ by at most one 880 Hz step.
        let max_step = samples
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0);
        assert!(max_step < 1900, "{max_step}");
        // 440 Hz: 440 rising zero crossings in the first second's half.
        let crossings = samples[..24_000]
            .windows(2)
            .filter(|w| w[0] < 0 && w[1] >= 0)
            .count();
        assert!((219..=221).contains(&crossings), "{crossings}");
    }

    #[test]
    fn config_binds_everything_to_the_address() {
        let ports = Ports {
            signal: 7880,
            rtc_tcp: 7881,
            rtc_udp: 7882,
        };
        let yaml = config_yaml(Ipv4Addr::new(10, 224, 3, 2), ports);
        for line in [
            "port: 7880",
            "bind_addresses: [\"10.224.3.2\"]",
            "  tcp_port: 7881",
            "  udp_port: 7882",
            "  node_ip: 10.224.3.2",
            "  use_external_ip: false",
        ] {
            assert!(yaml.lines().any(|l| l == line), "{line:?} not in\n{yaml}");
        }
    }
}
