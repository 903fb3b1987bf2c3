//! Google's Pub/Sub emulator (the Java one shipped with the Cloud SDK).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::OnceCell;

use crate::process::{ChildGuard, spawn_logged};
use crate::{
    POLL_INTERVAL, Scratch, StartError, env_nonempty, http_get, register_exit_hook, require_file,
    start_on_free_port, wait_ready,
};

const DEFAULT_JAR_DIR: &str = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib";
/// The JVM takes ~1.5-2 s to start when idle; much longer while cargo builds on 2 cores.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// The Pub/Sub emulator, listening on 127.0.0.1 (gRPC and the REST API on one port).
///
/// Clients reach it with `PUBSUB_EMULATOR_HOST`-style configuration: [`PubsubEmulator::host`]
/// gives `127.0.0.1:PORT`. Its state is in memory only: a restart loses every topic and
/// subscription. Known differences from the real service: subscription filters are not
/// enforced, a dead-letter policy on an ordered subscription crashes it, project ids must have
/// at least 6 characters and topic/subscription ids at least 3.
///
/// Output goes to a log file ([`PubsubEmulator::log_path`]); dropping it kills the JVM.
#[derive(Debug)]
pub struct PubsubEmulator {
    host: String,
    local: Option<Local>,
}

#[derive(Debug)]
struct Local {
    jar: PathBuf,
    port: u16,
    scratch: Scratch,
    log_path: PathBuf,
    /// `None` while stopped.
    server: Option<ChildGuard>,
}

static SHARED: OnceCell<PubsubEmulator> = OnceCell::const_new();

impl PubsubEmulator {
    /// Starts the emulator on a free port and waits until it answers `GET /` with `200 Ok`.
    pub async fn start() -> Result<Self> {
        let jar = find_jar()?;
        let scratch = Scratch::new("pubsub")?;
        let log_path = scratch.path().join("pubsub-emulator.log");
        let (server, port) = start_on_free_port("the Pub/Sub emulator", |port| {
            let jar = jar.clone();
            let log_path = log_path.clone();
            async move {
                let server = spawn(&jar, port, &log_path)?;
                wait_for(&server, port).await?;
                Ok::<_, StartError>((server, port))
            }
        })
        .await?;
        Ok(Self {
            host: format!("127.0.0.1:{port}"),
            local: Some(Local {
                jar,
                port,
                scratch,
                log_path,
                server: Some(server),
            }),
        })
    }

    /// A handle on an emulator that is already running at `host` (`HOST:PORT`); it cannot be
    /// stopped or restarted from here.
    pub fn external(host: &str) -> Self {
        Self {
            host: host.trim().to_string(),
            local: None,
        }
    }

    /// The process-wide emulator, started on first use and shared by every test in this test
    /// binary; tests isolate themselves with unique topic and subscription names. With
    /// `RADIO24_TEST_PUBSUB_HOST` set, that emulator is used instead.
    ///
    /// Being shared, it cannot be stopped or restarted: a test about outages starts its own
    /// with [`PubsubEmulator::start`]. Safe to call from many tokio runtimes at once.
    pub async fn shared() -> Result<&'static PubsubEmulator> {
        SHARED
            .get_or_try_init(|| async {
                if let Some(host) = env_nonempty("RADIO24_TEST_PUBSUB_HOST") {
                    return Ok(PubsubEmulator::external(&host));
                }
                let emulator = PubsubEmulator::start().await?;
                register_exit_hook();
                Ok(emulator)
            })
            .await
    }

    /// `127.0.0.1:PORT`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// `http://127.0.0.1:PORT`, the base of the emulator's REST API.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The file with the emulator's stdout and stderr (kept across restarts), if started here.
    pub fn log_path(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.log_path.as_path())
    }

    /// Kills the emulator (the whole JVM), e.g. to test how services ride out an outage.
    /// Idempotent; a no-op for an external emulator.
    pub fn stop(&mut self) {
        if let Some(local) = &mut self.local {
            local.server.take();
        }
    }

    /// Freezes the emulator (SIGSTOP): connections stay open but nothing answers, the way a
    /// hung dependency behaves. Its state survives; [`PubsubEmulator::resume`] thaws it. A
    /// no-op for an external emulator.
    pub fn pause(&self) {
        if let Some(server) = self.local.as_ref().and_then(|l| l.server.as_ref()) {
            server.freeze();
        }
    }

    /// Thaws an emulator frozen by [`PubsubEmulator::pause`].
    pub fn resume(&self) {
        if let Some(server) = self.local.as_ref().and_then(|l| l.server.as_ref()) {
            server.thaw();
        }
    }

    /// Stops the emulator if running and starts it again on the same port, waiting until it
    /// is ready. The new instance starts empty: topics and subscriptions must be created
    /// again (the emulator keeps no state on disk).
    pub async fn restart(&mut self) -> Result<()> {
        let Some(local) = &mut self.local else {
            bail!(
                "cannot restart an external Pub/Sub emulator ({})",
                self.host
            );
        };
        local.server.take();
        // The port was ours a moment ago; retry for a while in case the old socket is slow to
        // be released, rather than moving to a port clients do not know.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let attempt = async {
                let server = spawn(&local.jar, local.port, &local.log_path)?;
                wait_for(&server, local.port).await?;
                Ok::<_, StartError>(server)
            };
            match attempt.await {
                Ok(server) => {
                    local.server = Some(server);
                    return Ok(());
                }
                Err(StartError::PortTaken(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(StartError::PortTaken(e) | StartError::Other(e)) => {
                    return Err(e.context(format!(
                        "restarting the Pub/Sub emulator on port {}",
                        local.port
                    )));
                }
            }
        }
    }

    /// Kills a server started here and removes its directory (log included). Idempotent.
    fn shutdown(&self) {
        if let Some(local) = &self.local {
            if let Some(server) = &local.server {
                server.kill();
            }
            local.scratch.remove();
        }
    }
}

impl Drop for PubsubEmulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn shutdown_shared() {
    if let Some(emulator) = SHARED.get() {
        emulator.shutdown();
    }
}

/// `$RADIO24_PUBSUB_EMULATOR_JAR`, else the newest `cloud-pubsub-emulator-*-all.jar` of the
/// Cloud SDK.
fn find_jar() -> Result<PathBuf> {
    if let Some(jar) = env_nonempty("RADIO24_PUBSUB_EMULATOR_JAR") {
        let jar = PathBuf::from(jar);
        require_file(&jar, "Pub/Sub emulator jar")?;
        return Ok(jar);
    }
    let dir = Path::new(DEFAULT_JAR_DIR);
    let mut jars: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("cloud-pubsub-emulator-") && n.ends_with("-all.jar")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    jars.sort();
    jars.pop().with_context(|| {
        format!(
            "Pub/Sub emulator jar not found in {}/cloud-pubsub-emulator-*-all.jar: run dev/install-tools",
            dir.display()
        )
    })
}

fn spawn(jar: &Path, port: u16, log_path: &Path) -> Result<ChildGuard> {
    let mut cmd = Command::new("java");
    cmd.arg("-jar")
        .arg(jar)
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"));
    spawn_logged(cmd, log_path)
}

async fn wait_for(server: &ChildGuard, port: u16) -> std::result::Result<(), StartError> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    wait_ready(
        &format!("the Pub/Sub emulator on port {port}"),
        server,
        READY_DEADLINE,
        || async {
            matches!(http_get(&client, &url).await, Some((200, body)) if body.trim() == "Ok")
        },
    )
    .await
}
