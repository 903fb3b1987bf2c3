//! fake-gcs-server, an in-memory Cloud Storage emulator.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::OnceCell;

use crate::process::{ChildGuard, spawn_logged};
use crate::{
    Scratch, StartError, env_nonempty, http_get, register_exit_hook, require_file,
    start_on_free_port, tools_dir, wait_ready,
};

const READY_DEADLINE: Duration = Duration::from_secs(30);

/// fake-gcs-server over plain HTTP with the in-memory backend, on 127.0.0.1.
///
/// It speaks the Cloud Storage JSON API (`/storage/v1/...`, `/upload/storage/v1/...`,
/// `/download/storage/v1/...`) at [`FakeGcs::endpoint`]. Buckets are created over that JSON
/// API with [`FakeGcs::create_bucket`]: the gRPC StorageControl API is not implemented.
/// Uploads from the `google-cloud-storage` crate (>= 1.19) must use `with_known_crc32c(..)` or
/// `send_buffered()`, otherwise the fake stores the trailing checksum as part of the body.
///
/// Its output goes to `fake-gcs-server.log` in its directory; dropping it kills the server.
#[derive(Debug)]
pub struct FakeGcs {
    endpoint: String,
    local: Option<Local>,
}

#[derive(Debug)]
struct Local {
    server: ChildGuard,
    scratch: Scratch,
}

static SHARED: OnceCell<FakeGcs> = OnceCell::const_new();

impl FakeGcs {
    /// Starts `$RADIO24_CACHE/tools/bin/fake-gcs-server` (installed by `dev/install-tools`) on a
    /// free port and waits until it lists buckets.
    pub async fn start() -> Result<Self> {
        let bin = tools_dir().join("bin").join("fake-gcs-server");
        require_file(&bin, "fake-gcs-server")?;
        let scratch = Scratch::new("gcs")?;
        let (server, port) = start_on_free_port("fake-gcs-server", |port| {
            let address = format!("127.0.0.1:{port}");
            let endpoint = format!("http://{address}");
            let mut cmd = Command::new(&bin);
            cmd.args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", &port.to_string()])
            // Both are echoed back in URLs (selfLink, mediaLink, resumable upload
            // Location), so they must name this server, not storage.googleapis.com.
            .args(["-public-host", &address])
            .args(["-external-url", &endpoint]);
            let log_path = scratch.path().join("fake-gcs-server.log");
            async move {
                let server = spawn_logged(cmd, log_path)?;
                let client = reqwest::Client::new();
                let url = format!("{endpoint}/storage/v1/b");
                wait_ready(
                    &format!("fake-gcs-server on port {port}"),
                    &server,
                    READY_DEADLINE,
                    || async { matches!(http_get(&client, &url).await, Some((200, _))) },
                )
                .await?;
                Ok::<_, StartError>((server, port))
            }
        })
        .await?;
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            local: Some(Local { server, scratch }),
        })
    }

    /// A handle on a fake-gcs-server already running at `endpoint` (`http://HOST:PORT`).
    pub fn external(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            local: None,
        }
    }

    /// The process-wide server, started on first use and shared by every test in this test
    /// binary; tests isolate themselves with unique bucket names. With
    /// `RADIO24_TEST_GCS_ENDPOINT` set, that server is used instead. Safe to call from many
    /// tokio runtimes at once.
    pub async fn shared() -> Result<&'static FakeGcs> {
        SHARED
            .get_or_try_init(|| async {
                if let Some(endpoint) = env_nonempty("RADIO24_TEST_GCS_ENDPOINT") {
                    return Ok(FakeGcs::external(&endpoint));
                }
                let gcs = FakeGcs::start().await?;
                register_exit_hook();
                Ok(gcs)
            })
            .await
    }

    /// `http://127.0.0.1:PORT`, the value for `STORAGE_EMULATOR_HOST` and client endpoints.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The file with the server's output (one line per request), if started here.
    pub fn log_path(&self) -> Option<std::path::PathBuf> {
        self.local
            .as_ref()
            .map(|l| l.server.log_path().to_path_buf())
    }

    /// Creates bucket `name` (`POST /storage/v1/b?project=test`).
    ///
    /// Uses a new HTTP client per call: a client kept in a shared instance would tie its
    /// connection pool to the tokio runtime of whichever test made it.
    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        let url = format!("{}/storage/v1/b?project=test", self.endpoint);
        let response = reqwest::Client::new()
            .post(&url)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("creating bucket {name}: {status}: {body}");
        }
        Ok(())
    }

    /// Kills a server started here and removes its directory. Idempotent.
    fn shutdown(&self) {
        if let Some(local) = &self.local {
            local.server.kill();
            local.scratch.remove();
        }
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn shutdown_shared() {
    if let Some(gcs) = SHARED.get() {
        gcs.shutdown();
    }
}
