//! The real LiveKit peers tests drive: a listener and a reference publisher, both the
//! LiveKit Python SDK (native libwebrtc) run as child processes.

use super::*;

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
