//! Real servers for tests, benchmarks and the local run: PostgreSQL 15 with pgvector, Google's
//! Pub/Sub emulator and fake-gcs-server.
//!
//! Tests run against the same kinds of servers as production instead of mocks, so SQL, pgvector
//! operators, Pub/Sub semantics and object-store HTTP behave as they will in the cloud. Each
//! server binds to 127.0.0.1 on a free port, keeps its files and logs in a temporary directory
//! and is stopped when its handle is dropped (or, for the process-wide `shared()` instances,
//! when the test binary exits). Binaries are installed by `dev/install-tools`.
//!
//! LiveKit is the exception to loopback: livekit-server offers no loopback ICE candidates, so
//! its tests run inside a network namespace of their own ([`netns`]) with the server on the
//! namespace's address ([`livekit`]), next to a real listener built on LiveKit's Python SDK.
//!
//! Environment variables read:
//! - `RADIO24_CACHE`: cache root (default `$HOME/.cache/radio24`); fake-gcs-server is looked up
//!   in `$RADIO24_CACHE/tools/bin`, livekit-server there too, and the LiveKit SDK's Python in
//!   `$RADIO24_CACHE/tools/venv-livekit`.
//! - `RADIO24_TEST_PG_URL`, `RADIO24_TEST_PUBSUB_HOST`, `RADIO24_TEST_GCS_ENDPOINT`: use an
//!   already running server in the `shared()` constructors instead of starting one.
//! - `RADIO24_PG_BIN`: PostgreSQL binaries (default `/usr/lib/postgresql/15/bin`).
//! - `RADIO24_PUBSUB_EMULATOR_JAR`: the emulator jar (default: the google-cloud-sdk one).
//! - `RADIO24_NETNS`, `RADIO24_NETNS_ADDR`: set by [`netns::reexec_inside`] for the test it
//!   runs inside a namespace.

mod gcs;
pub mod livekit;
pub mod memory;
pub mod netns;
pub mod openai_fake;
pub mod pipeline;
mod postgres;
mod process;
mod pubsub;
pub mod realtime_fake;
pub mod tls_proxy;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use gcs::FakeGcs;
pub use openai_fake::{Fault, OpenAiFake};
pub use postgres::Postgres;
pub use process::{ChildGuard, Shutdown, run_ok, spawn_logged, spawn_logged_with};
pub use pubsub::PubsubEmulator;
pub use realtime_fake::{RealtimeFake, RealtimeFault};

/// How often [`wait_until`] polls: short enough that readiness costs little extra latency,
/// long enough not to load a 2-core machine.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Root of the developer cache: `$RADIO24_CACHE`, else `$HOME/.cache/radio24`.
///
/// Shared with `dev/install-tools`, which puts the tools it builds or downloads under
/// `tools/` here so that they survive `cargo clean` and fresh clones.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env_nonempty("RADIO24_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("radio24")
}

/// `cache_dir()/tools`, where `dev/install-tools` installs downloaded and built tools.
pub fn tools_dir() -> PathBuf {
    cache_dir().join("tools")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it via port 0).
///
/// Another process may take it before the server binds, so the server starters here retry
/// with a new port when the bind fails.
///
/// # Panics
/// If no socket can be bound on 127.0.0.1 at all, which means the machine is unusable for tests.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// Polls `f` every ~25 ms until it returns `true`, failing after `deadline`.
///
/// Tests synchronise with asynchronous effects (a server becoming ready, a message arriving, a
/// row changing state) by polling with a deadline rather than sleeping a guessed time: that is
/// both faster when things are quick and not flaky when the machine is slow. The error names
/// `what` so a timeout says what never happened. A call of `f` that hangs past the deadline
/// counts as a timeout too.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    try_wait_until(what, deadline, || {
        let fut = f();
        async move { Ok(fut.await) }
    })
    .await
}

/// Like [`wait_until`], but `f` can fail, which stops the waiting at once with that error
/// (e.g. the server being waited for has exited).
pub async fn try_wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    // std's clock, not tokio's: a test with paused tokio time must still get real deadlines.
    let start = Instant::now();
    loop {
        let remaining = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining, f()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return Err(e.context(format!("while waiting for {what}"))),
            Err(_) => bail!("timed out after {deadline:?} waiting for {what}"),
        }
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// An environment variable's value, treating empty as unset.
pub(crate) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Fails with a hint to run `dev/install-tools` when a required file is missing.
pub(crate) fn require_file(path: &Path, what: &str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        bail!(
            "{what} not found at {}: run dev/install-tools",
            path.display()
        )
    }
}

/// Prefix of the temporary directories servers keep their data and logs in; the pid after it
/// lets a later run remove the directories of test processes that died without cleaning up.
const SCRATCH_PREFIX: &str = "radio24-testkit-";

/// A server's temporary directory. Removable through `&self` so a process-wide instance can be
/// cleaned up by the exit hook.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
    dir: Mutex<Option<tempfile::TempDir>>,
}

impl Scratch {
    pub(crate) fn new(kind: &str) -> Result<Self> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_scratch_dirs);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-{kind}-", std::process::id()))
            .tempdir()
            .context("creating a temporary directory")?;
        Ok(Self {
            path: dir.path().to_path_buf(),
            dir: Mutex::new(Some(dir)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn remove(&self) {
        let dir = self
            .dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(dir);
    }
}

/// Removes scratch directories whose test process no longer exists (it was killed before its
/// exit hook ran). Their servers are already gone: they got the parent-death signal.
fn sweep_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Registers (once) a C `atexit` hook that stops the process-wide `shared()` servers and
/// removes their directories. Statics are never dropped in Rust, so without it a test binary
/// would leave their temporary directories behind (the processes themselves would still be
/// ended by the parent-death signal, but Postgres would leak its shared memory).
pub(crate) fn register_exit_hook() {
    static REGISTER: Once = Once::new();
    extern "C" fn at_exit() {
        // Must not unwind across the C boundary; none of these panic.
        postgres::shutdown_shared();
        pubsub::shutdown_shared();
        gcs::shutdown_shared();
    }
    REGISTER.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no arguments, as atexit expects.
        unsafe { libc::atexit(at_exit) };
    });
}

/// Starts a server on a free port, retrying with another port when the chosen one was taken in
/// the meantime (the log says so), so parallel tests never fail on a port race.
pub(crate) async fn start_on_free_port<T, F, Fut>(what: &str, mut start: F) -> Result<T>
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = std::result::Result<T, StartError>>,
{
    const ATTEMPTS: usize = 4;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match start(free_port()).await {
            Ok(server) => return Ok(server),
            Err(StartError::PortTaken(e)) => last = Some(e),
            Err(StartError::Other(e)) => return Err(e),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!("starting {what}: {ATTEMPTS} ports were all taken")))
}

/// Why starting a server failed: a port race (worth retrying on another port) or anything else.
pub(crate) enum StartError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl StartError {
    /// Classifies a failed start by the server's log.
    pub(crate) fn from_log(error: anyhow::Error, log: &str) -> Self {
        let taken = ["already in use", "could not bind", "address in use"]
            .iter()
            .any(|needle| log.to_ascii_lowercase().contains(needle));
        if taken {
            StartError::PortTaken(error)
        } else {
            StartError::Other(error)
        }
    }
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// Waits until `child` answers `probe`, failing at once (with the end of its log) if it exits.
pub(crate) async fn wait_ready<F, Fut>(
    what: &str,
    child: &ChildGuard,
    deadline: Duration,
    mut probe: F,
) -> std::result::Result<(), StartError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let result = try_wait_until(what, deadline, || {
        let exited = child.exit_status();
        let fut = probe();
        async move {
            if let Some(status) = exited {
                bail!("{} exited ({status})", child.name());
            }
            Ok(fut.await)
        }
    })
    .await;
    result.map_err(|e| {
        let log = child.log_tail(30);
        let e = e.context(format!(
            "{what} did not start; end of {}:\n{log}",
            child.log_path().display()
        ));
        StartError::from_log(e, &log)
    })
}

/// HTTP GET returning the status and body, or `None` if the server does not answer yet.
pub(crate) async fn http_get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}
