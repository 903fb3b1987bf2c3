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
use crate::{POLL_INTERVAL, Scratch, StartError, require_file, tools_dir, try_wait_until};

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

/// One line the listener or publisher wrote: its time (Unix seconds), its kind and the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t: f64,
    pub event: String,
    pub fields: Map<String, Value>,
}

impl Event {
    /// A string field (`identity`, `room`, `error`, `metadata`, `track`).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    fn parse(line: &str) -> Option<Event> {
        let Value::Object(mut fields) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let t = fields.remove("t")?.as_f64()?;
        let event = fields.remove("event")?.as_str()?.to_owned();
        Some(Event { t, event, fields })
    }
}

/// One received audio frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Receive time, Unix seconds.
    pub t: f64,
    /// Samples (at 48 kHz mono; 480 = 10 ms).
    pub samples: u32,
    /// Root mean square level, as a fraction of full scale (a full-scale sine is ~0.707).
    pub rms: f32,
    /// Dominant frequency in Hz (0 for silence).
    pub hz: f32,
}

impl Frame {
    pub fn seconds(&self) -> f64 {
        f64::from(self.samples) / f64::from(SAMPLE_RATE)
    }

    fn from_event(e: &Event) -> Option<Frame> {
        let number = |k: &str| e.fields.get(k).and_then(Value::as_f64);
        Some(Frame {
            t: e.t,
            samples: u32::try_from(e.fields.get("n")?.as_u64()?).ok()?,
            rms: number("rms")? as f32,
            hz: number("hz")? as f32,
        })
    }
}

/// A stretch of steady pitch, from [`Reception::pitch_segments`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PitchSegment {
    /// Receive time of the first frame of the stretch.
    pub start: f64,
    /// Receive time of the last frame.
    pub end: f64,
    /// Median frequency over the stretch.
    pub hz: f32,
}

/// The longest time without audible audio, from [`Reception::longest_gap`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// The last audible frame before the gap (or the window's start).
    pub start: f64,
    /// The first audible frame after it (or the window's end).
    pub end: f64,
}

impl Gap {
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

/// Everything a listener has written so far: frames and the other events, in order.
#[derive(Debug, Clone, Default)]
pub struct Reception {
    pub frames: Vec<Frame>,
    pub events: Vec<Event>,
}

impl Reception {
    /// Seconds of audio received, silent frames included.
    pub fn audio_seconds(&self) -> f64 {
        self.frames.iter().map(Frame::seconds).sum()
    }

    /// Seconds of audio received at or above `silence_rms`.
    pub fn audible_seconds(&self, silence_rms: f32) -> f64 {
        self.audible(silence_rms).map(Frame::seconds).sum()
    }

    fn audible(&self, silence_rms: f32) -> impl Iterator<Item = &Frame> {
        self.frames.iter().filter(move |f| f.rms >= silence_rms)
    }

    /// The longest stretch of `[from, to]` in which no audible frame (RMS at least
    /// `silence_rms`) arrived: frames that stop coming and frames that come silent count
    /// alike. A steady stream of 10 ms frames has gaps of ~10 ms.
    pub fn longest_gap(&self, from: f64, to: f64, silence_rms: f32) -> Gap {
        let mut longest = Gap {
            start: from,
            end: from,
        };
        let mut last = from;
        let times = self
            .audible(silence_rms)
            .map(|f| f.t)
            .filter(|t| (from..=to).contains(t))
            .chain(std::iter::once(to));
        for t in times {
            if t - last > longest.seconds() {
                longest = Gap {
                    start: last,
                    end: t,
                };
            }
            last = t;
        }
        longest
    }

    /// The receive time of the first audible frame after `t` (e.g. after a restart).
    pub fn first_audible_after(&self, t: f64, silence_rms: f32) -> Option<f64> {
        self.audible(silence_rms).map(|f| f.t).find(|&ft| ft > t)
    }

    /// The median dominant frequency of the audible frames received in `[from, to)`.
    pub fn pitch(&self, from: f64, to: f64, silence_rms: f32) -> Option<f32> {
        let hz: Vec<f32> = self
            .audible(silence_rms)
            .filter(|f| (from..to).contains(&f.t))
            .map(|f| f.hz)
            .collect();
        median(hz)
    }

    /// Stretches of steady pitch: runs of audible frames whose frequency stays within
    /// `tolerance_hz` of the run's first frame, at least `min_frames` long. Shorter runs, such
    /// as a frame straddling a change or a glitch (a concealed packet under load), are
    /// dropped, and the runs on both sides of a glitch are one segment if their pitch
    /// agrees. A pitch change is heard at the `start` of the next segment.
    pub fn pitch_segments(
        &self,
        silence_rms: f32,
        tolerance_hz: f32,
        min_frames: usize,
    ) -> Vec<PitchSegment> {
        let mut segments: Vec<PitchSegment> = Vec::new();
        let mut run: Vec<&Frame> = Vec::new();
        let mut flush = |run: &mut Vec<&Frame>| {
            if run.len() >= min_frames.max(1) {
                let hz = median(run.iter().map(|f| f.hz).collect()).unwrap_or(0.0);
                let end = run[run.len() - 1].t;
                match segments.last_mut() {
                    Some(last) if (last.hz - hz).abs() <= tolerance_hz => last.end = end,
                    _ => segments.push(PitchSegment {
                        start: run[0].t,
                        end,
                        hz,
                    }),
                }
            }
            run.clear();
        };
        for frame in self.audible(silence_rms) {
            if run
                .first()
                .is_some_and(|first| (frame.hz - first.hz).abs() > tolerance_hz)
            {
                flush(&mut run);
            }
            run.push(frame);
        }
        flush(&mut run);
        segments
    }

    /// The events named `name` (`"metadata"`, `"connected"`, `"subscribed"`, ...).
    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Event> {
        self.events.iter().filter(move |e| e.event == name)
    }

    /// The host's metadata as it changed: (time, metadata).
    pub fn metadata_of(&self, identity: &str) -> Vec<(f64, String)> {
        self.events_named("metadata")
            .filter(|e| e.str("identity") == Some(identity))
            .map(|e| (e.t, e.str("metadata").unwrap_or_default().to_owned()))
            .collect()
    }
}

fn median(mut values: Vec<f32>) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}

/// What a [`Listener`] does once in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
    /// Subscribe to the host's audio and record it (and the room's events).
    Listen,
    /// Try to publish an audio track: `published` or `publish_refused`.
    Publish,
    /// Only join: `joined` (with the room the server put it in) or `refused`.
    Join,
}

impl ListenMode {
    fn arg(self) -> &'static str {
        match self {
            ListenMode::Listen => "listen",
            ListenMode::Publish => "publish",
            ListenMode::Join => "join",
        }
    }
}

/// How to run a [`Listener`].
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    pub mode: ListenMode,
    /// Whose audio to record (default [`HOST_IDENTITY`]).
    pub host: String,
    /// How long the script stays before it leaves and writes `end`.
    pub duration: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            mode: ListenMode::Listen,
            host: HOST_IDENTITY.into(),
            duration: Duration::from_secs(120),
        }
    }
}

/// A real LiveKit listener (`testkit/livekit/listener.py`): joins with a URL and token and
/// records what it hears and sees. Killed on drop.
#[derive(Debug)]
pub struct Listener {
    out: PathBuf,
    read: Mutex<ReadState>,
    process: ChildGuard,
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct ReadState {
    /// Bytes of `out` already parsed (complete lines only).
    offset: u64,
    seen: Reception,
}

impl Listener {
    /// Listens to [`HOST_IDENTITY`]'s audio for up to two minutes.
    pub fn start(url: &str, token: &str) -> Result<Listener> {
        Listener::start_with(url, token, &ListenerOptions::default())
    }

    pub fn start_with(url: &str, token: &str, options: &ListenerOptions) -> Result<Listener> {
        let python = python()?;
        let scratch = Scratch::new("listener")?;
        let out = scratch.path().join("listener.jsonl");
        let mut cmd = Command::new(python);
        cmd.arg("-u")
            .arg(script("listener.py"))
            .args(["--url", url, "--token", token, "--mode", options.mode.arg()])
            .args(["--host", &options.host])
            .arg("--duration")
            .arg(options.duration.as_secs_f64().to_string())
            .arg("--out")
            .arg(&out);
        let process = spawn_logged(cmd, scratch.path().join("listener.log"))?;
        Ok(Listener {
            out,
            read: Mutex::new(ReadState::default()),
            process,
            scratch,
        })
    }

    /// Everything recorded up to now (a copy: for a long recording, prefer
    /// [`Listener::with_reception`]).
    pub fn reception(&self) -> Result<Reception> {
        self.with_reception(Reception::clone)
    }

    /// Reads what the script wrote since the last call and applies `f` to everything
    /// recorded so far, without copying it.
    pub fn with_reception<R>(&self, f: impl FnOnce(&Reception) -> R) -> Result<R> {
        let mut state = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut new = Vec::new();
        match std::fs::File::open(&self.out) {
            Ok(mut file) => {
                file.seek(SeekFrom::Start(state.offset))?;
                file.read_to_end(&mut new)
                    .with_context(|| format!("reading {}", self.out.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("opening {}", self.out.display())),
        }
        // Only complete lines: the script may be half-way through writing one.
        let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in String::from_utf8_lossy(&new[..complete]).lines() {
            let event = Event::parse(line)
                .with_context(|| format!("unreadable line from the listener: {line}"))?;
            if event.event == "frame" {
                let frame = Frame::from_event(&event)
                    .with_context(|| format!("unreadable frame line: {line}"))?;
                state.seen.frames.push(frame);
            } else {
                state.seen.events.push(event);
            }
        }
        state.offset += complete as u64;
        Ok(f(&state.seen))
    }

    /// Polls until `done` holds for what was recorded, failing at `deadline`, or at once
    /// if the script exits first (with the end of its log). Returns what was recorded.
    pub async fn wait_for<F>(
        &self,
        what: &str,
        deadline: Duration,
        mut done: F,
    ) -> Result<Reception>
    where
        F: FnMut(&Reception) -> bool,
    {
        let result = try_wait_until(what, deadline, || {
            let exited = self.process.exit_status();
            let outcome = self.with_reception(&mut done);
            async move {
                match (outcome?, exited) {
                    (true, _) => Ok(true),
                    (false, Some(status)) => bail!("the listener exited ({status})"),
                    (false, None) => Ok(false),
                }
            }
        })
        .await;
        match result {
            Ok(()) => self.reception(),
            Err(e) => {
                let last: Vec<Event> = self
                    .with_reception(|r| r.events.iter().rev().take(8).rev().cloned().collect())
                    .unwrap_or_default();
                Err(e.context(format!(
                    "listener log ends:\n{}\nits last events: {last:?}",
                    self.process.log_tail(20)
                )))
            }
        }
    }

    /// Waits for the first event named `name` and returns it.
    pub async fn wait_for_event(&self, name: &str, deadline: Duration) -> Result<Event> {
        let seen = self
            .wait_for(&format!("the listener's \"{name}\" event"), deadline, |r| {
                r.events_named(name).next().is_some()
            })
            .await?;
        seen.events_named(name)
            .next()
            .cloned()
            .context("event vanished")
    }

    /// Waits until `seconds` of audio at or above `silence_rms` have been heard.
    pub async fn wait_for_audio(
        &self,
        seconds: f64,
        silence_rms: f32,
        deadline: Duration,
    ) -> Result<Reception> {
        self.wait_for(&format!("{seconds} s of audible audio"), deadline, |r| {
            r.audible_seconds(silence_rms) >= seconds
        })
        .await
    }

    /// The script's own output (SDK logs, tracebacks).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The JSON-lines file being written, e.g. to keep as a benchmark artefact.
    pub fn output_path(&self) -> &Path {
        &self.out
    }

    pub fn process(&self) -> &ChildGuard {
        &self.process
    }

    /// Directory of its output and log (removed on drop).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }
}

/// The reference publisher (`testkit/livekit/publisher.py`): publishes raw s16le 48 kHz mono
/// PCM as one audio track, paced at real time. Killed on drop.
#[derive(Debug)]
pub struct Publisher {
    process: ChildGuard,
    _scratch: Scratch,
}

impl Publisher {
    /// Publishes `pcm` (a file of raw s16le 48 kHz mono) into `room` as `identity`, once or
    /// over and over (`repeat`), with a token it signs with the server's dev keys.
    pub fn start(
        server: &LiveKitServer,
        room: &str,
        identity: &str,
        pcm: &Path,
        repeat: bool,
    ) -> Result<Publisher> {
        let python = python()?;
        let scratch = Scratch::new("publisher")?;
        let mut cmd = Command::new(python);
        cmd.arg("-u")
            .arg(script("publisher.py"))
            .args([
                "--url",
                &server.url(),
                "--room",
                room,
                "--identity",
                identity,
            ])
            .args(["--api-key", API_KEY, "--api-secret", API_SECRET])
            .arg("--pcm")
            .arg(pcm);
        if repeat {
            cmd.arg("--loop");
        }
        let process = spawn_logged(cmd, scratch.path().join("publisher.log"))?;
        Ok(Publisher {
            process,
            _scratch: scratch,
        })
    }

    /// The publisher's JSON lines so far (`started`, `finished`, `reconnecting`, ...).
    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.process.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(Event::parse)
            .collect()
    }

    /// Waits until the first frame has gone out; returns its wall-clock time (Unix seconds).
    /// Input second `s` leaves the publisher at that time + `s`.
    pub async fn started(&self) -> Result<f64> {
        let mut started = None;
        try_wait_until("the publisher's first frame", PEER_DEADLINE, || {
            let exited = self.process.exit_status();
            started = self
                .events()
                .iter()
                .find(|e| e.event == "started")
                .map(|e| e.t);
            let found = started.is_some();
            async move {
                match (found, exited) {
                    (true, _) => Ok(true),
                    (false, Some(status)) => bail!("the publisher exited ({status})"),
                    (false, None) => Ok(false),
                }
            }
        })
        .await
        .with_context(|| format!("publisher log ends:\n{}", self.process.log_tail(20)))?;
        started.context("no start time")
    }

    pub fn process(&self) -> &ChildGuard {
        &self.process
    }
}

/// `seconds` of a sine at `hz`, at `amplitude` (fraction of full scale), as s16le 48 kHz
/// mono bytes, the publisher's input format.
pub fn tone(hz: f64, seconds: f64, amplitude: f64) -> Vec<u8> {
    tones(&[(hz, seconds)], amplitude)
}

/// Tones back to back, `(hz, seconds)` each, as s16le 48 kHz mono bytes. The phase runs on
/// across a change of pitch, so the change makes no click.
pub fn tones(parts: &[(f64, f64)], amplitude: f64) -> Vec<u8> {
    let rate = f64::from(SAMPLE_RATE);
    let mut phase = 0.0f64;
    let mut out = Vec::new();
    for &(hz, seconds) in parts {
        let n = (seconds * rate).round() as usize;
        for _ in 0..n {
            let sample = (phase.sin() * amplitude * f64::from(i16::MAX)).round() as i16;
            out.extend_from_slice(&sample.to_le_bytes());
            phase = (phase + std::f64::consts::TAU * hz / rate) % std::f64::consts::TAU;
        }
    }
    out
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
