//! The whole submission pipeline on loopback, as it runs in production but with local
//! parts: the ingest, embed and moderate binaries as processes, Pub/Sub emulator topics with
//! push subscriptions aimed at embed and moderate (retry policy and dead-letter topics
//! included), fake-gcs-server for the uploads and Postgres + pgvector; on request, the
//! host-streamer pulling the ready topic and streaming on air.
//!
//! Every pipeline gets its own topics, bucket and database, so tests sharing one emulator
//! and one Postgres do not see each other's messages.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shared::bus::{Bus, BusConfig, DeadLetterSpec, Subscription, SubscriptionSpec};
use shared::dead_letter;

use crate::{ChildGuard, FakeGcs, Postgres, PubsubEmulator, Shutdown, free_port, wait_until};

pub const PROJECT: &str = "radio24-local";

/// The path of a workspace binary next to the running executable (tests run from
/// `target/<profile>/deps`, binaries live in `target/<profile>`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "binary {name} not found next to {}; build it first: cargo build --bins",
        exe.display()
    )
}

/// How to run the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Port for ingest; 0 picks a free one.
    pub ingest_port: u16,
    /// Deliveries before a message goes to its dead-letter topic (Pub/Sub: 5..=100).
    pub max_delivery_attempts: i32,
    pub minimum_backoff: Duration,
    pub maximum_backoff: Duration,
    /// Extra variables per service: `("embed", "OPENAI_API_KEY", "...")`.
    pub env: Vec<(&'static str, String, String)>,
    /// Build with `--release` binaries (benchmarks).
    pub release: bool,
    /// Also run the host-streamer, on this port (0 picks a free one).
    pub streamer: Option<u16>,
    /// SQL run on the pipeline's database before the streamer starts (a test schedule).
    pub before_streamer: Vec<String>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            ingest_port: 0,
            max_delivery_attempts: 5,
            minimum_backoff: Duration::from_millis(200),
            maximum_backoff: Duration::from_secs(2),
            env: Vec::new(),
            release: false,
            streamer: None,
            before_streamer: Vec::new(),
        }
    }
}

/// Topic names of one pipeline.
#[derive(Debug, Clone)]
pub struct Topics {
    pub ingested: String,
    pub embedded: String,
    pub ready: String,
}

pub struct Pipeline {
    pub db_url: String,
    pub db: sqlx::PgPool,
    pub bus: Bus,
    pub topics: Topics,
    pub ingest_url: String,
    pub embed_url: String,
    pub moderate_url: String,
    pub ingest: ChildGuard,
    pub embed: ChildGuard,
    pub moderate: ChildGuard,
    /// A pull subscription on the ready topic, made before anything could be published.
    pub ready_subscription: String,
    /// The host-streamer and its URL, when asked for.
    pub streamer: Option<(ChildGuard, String)>,
    /// The bucket of the uploads (and the streamer's recordings).
    pub bucket: String,
    logs: PathBuf,
}

/// What every service process of one pipeline is started with.
struct Launch {
    db_url: String,
    emulator_host: String,
    gcs_endpoint: String,
    bucket: String,
    topics: Topics,
    logs: PathBuf,
}

impl Pipeline {
    pub async fn start(
        pg: &Postgres,
        emulator: &PubsubEmulator,
        gcs: &FakeGcs,
        options: PipelineOptions,
    ) -> Result<Pipeline> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let db_url = pg.create_database().await?;
        let bucket = format!("uploads-{id}");
        gcs.create_bucket(&bucket).await?;
        let topics = Topics {
            ingested: format!("p{id}-submission-ingested"),
            embedded: format!("p{id}-submission-embedded"),
            ready: format!("p{id}-submission-ready"),
        };
        let bus =
            Bus::connect(&BusConfig::new(PROJECT).with_emulator_host(emulator.host())).await?;
        for topic in [&topics.ingested, &topics.embedded, &topics.ready] {
            bus.ensure_topic(topic).await?;
            let dead = dead_letter::topic_for(topic);
            bus.ensure_topic(&dead).await?;
            bus.ensure_pull_subscription(&dead, &dead, Duration::from_secs(60))
                .await?;
        }
        let ready_subscription = format!("p{id}-ready-listener");
        bus.ensure_pull_subscription(&topics.ready, &ready_subscription, Duration::from_secs(60))
            .await?;
        let streamer_subscription = format!("p{id}-streamer");
        if options.streamer.is_some() {
            bus.ensure_pull_subscription(
                &topics.ready,
                &streamer_subscription,
                Duration::from_secs(60),
            )
            .await?;
        }

        let logs = std::env::temp_dir().join(format!("radio24-pipeline-{id}"));
        std::fs::create_dir_all(&logs)?;
        let launch = Launch {
            db_url: db_url.clone(),
            emulator_host: emulator.host(),
            gcs_endpoint: gcs.endpoint(),
            bucket: bucket.clone(),
            topics: topics.clone(),
            logs,
        };
        // ingest first: it migrates the database the others then find ready.
        let ingest_port = match options.ingest_port {
            0 => free_port(),
            port => port,
        };
        let (ingest, ingest_url) = launch.spawn("ingest", ingest_port, &options)?;
        wait_ready(&ingest, &format!("{ingest_url}/readyz")).await?;
        let (embed, embed_url) = launch.spawn("embed", free_port(), &options)?;
        let (moderate, moderate_url) = launch.spawn("moderate", free_port(), &options)?;
        wait_ready(&embed, &format!("{embed_url}/healthz")).await?;
        wait_ready(&moderate, &format!("{moderate_url}/healthz")).await?;
        let db = sqlx::PgPool::connect(&db_url).await?;
        for sql in &options.before_streamer {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&db)
                .await?;
        }
        let streamer = match options.streamer {
            Some(port) => {
                let port = if port == 0 { free_port() } else { port };
                let mut with_subscription = options.clone();
                with_subscription.env.push((
                    "host-streamer",
                    "READY_SUBSCRIPTION".into(),
                    streamer_subscription,
                ));
                with_subscription.env.push((
                    "host-streamer",
                    "RECORDING_SPOOL_DIR".into(),
                    launch.logs.join("spool").display().to_string(),
                ));
                let (child, url) = launch.spawn("host-streamer", port, &with_subscription)?;
                wait_ready(&child, &format!("{url}/readyz")).await?;
                Some((child, url))
            }
            None => None,
        };
        let p = Pipeline {
            db,
            db_url,
            bus,
            topics,
            ingest_url,
            embed_url,
            moderate_url,
            ingest,
            embed,
            moderate,
            ready_subscription,
            streamer,
            bucket,
            logs: launch.logs,
        };
        for (topic, name, url) in [
            (&p.topics.ingested, "embed", &p.embed_url),
            (&p.topics.embedded, "moderate", &p.moderate_url),
        ] {
            let spec = SubscriptionSpec::push(format!("{url}/push"), Duration::from_secs(90))
                .with_dead_letter(DeadLetterSpec {
                    topic: dead_letter::topic_for(topic),
                    max_delivery_attempts: options.max_delivery_attempts,
                    minimum_backoff: options.minimum_backoff,
                    maximum_backoff: options.maximum_backoff,
                });
            p.bus
                .ensure_subscription(topic, &format!("p{id}-{name}"), &spec)
                .await?;
        }
        Ok(p)
    }

    /// A pipeline on this test process's shared Postgres, emulator and fake-gcs-server.
    pub async fn start_shared(options: PipelineOptions) -> Result<Pipeline> {
        let (pg, emulator, gcs) = tokio::try_join!(
            Postgres::shared(),
            PubsubEmulator::shared(),
            FakeGcs::shared()
        )?;
        Pipeline::start(pg, emulator, gcs, options).await
    }

    /// Posts a text submission as an anonymous listener; its id once accepted.
    pub async fn post_text(&self, text: &str) -> Result<uuid::Uuid> {
        let res = reqwest::Client::new()
            .post(format!("{}/v1/submissions", self.ingest_url))
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await?;
        let status = res.status();
        let body: serde_json::Value = res.json().await?;
        if status != 202 {
            bail!("submission answered {status}: {body}");
        }
        body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("no id in {body}"))
    }

    /// Opens the ready listener's streaming pull.
    pub async fn ready(&self) -> Result<Subscription> {
        Ok(self.bus.subscribe(&self.ready_subscription).await?)
    }

    /// Where the services write their logs.
    pub fn logs(&self) -> &std::path::Path {
        &self.logs
    }

    /// The last lines of every service's log, for a failing test's message.
    pub fn log_tails(&self, lines: usize) -> String {
        [&self.ingest, &self.embed, &self.moderate]
            .into_iter()
            .chain(self.streamer.as_ref().map(|(c, _)| c))
            .map(|c| format!("--- {} ---\n{}", c.name(), c.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Launch {
    fn spawn(
        &self,
        service: &'static str,
        port: u16,
        options: &PipelineOptions,
    ) -> Result<(ChildGuard, String)> {
        let path = if options.release {
            let debug = binary(service)?;
            let release = debug
                .parent()
                .and_then(|d| d.parent())
                .map(|t| t.join("release").join(service))
                .context("target dir")?;
            if release.is_file() { release } else { debug }
        } else {
            binary(service)?
        };
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &self.db_url)
            .env("PUBSUB_EMULATOR_HOST", &self.emulator_host)
            .env("GOOGLE_CLOUD_PROJECT", PROJECT)
            .env("STORAGE_EMULATOR_HOST", &self.gcs_endpoint)
            .env("UPLOADS_URL", format!("gs://{}", self.bucket))
            .env("TOPIC_SUBMISSION_INGESTED", &self.topics.ingested)
            .env("TOPIC_SUBMISSION_EMBEDDED", &self.topics.embedded)
            .env("TOPIC_SUBMISSION_READY", &self.topics.ready)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("OUTBOX_GRACE", "2s");
        // Where the local models are.
        for (k, v) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            if k_str.starts_with("RADIO24_") || k_str.ends_with("_MODEL_DIR") {
                cmd.env(&k, v);
            }
        }
        match service {
            "ingest" => {
                cmd.env("AUTH_MODE", "anonymous")
                    .env("RATE_LIMIT_PER_IP", "1000000/min")
                    .env("RATE_LIMIT_PER_USER", "1000000/min");
            }
            "embed" => {
                cmd.env("PUSH_AUTH", "off");
            }
            "moderate" => {
                cmd.env("PUSH_AUTH", "off").env("OPERATOR_AUTH", "off");
            }
            "host-streamer" => {
                // ingest already relays the outbox here.
                cmd.env("OUTBOX_RELAY", "off").env("OPERATOR_AUTH", "off");
            }
            _ => {}
        }
        for (_, k, v) in options.env.iter().filter(|(s, _, _)| *s == service) {
            cmd.env(k, v);
        }
        let guard = crate::spawn_logged_with(
            cmd,
            self.logs.join(format!("{service}.log")),
            Shutdown::Signal {
                signal: libc::SIGTERM,
                grace: Duration::from_secs(10),
            },
        )?;
        Ok((guard, format!("http://127.0.0.1:{port}")))
    }
}

async fn wait_ready(child: &ChildGuard, url: &str) -> Result<()> {
    let client = reqwest::Client::new();
    let ready = wait_until(url, Duration::from_secs(60), || async {
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            || !child.is_running()
    })
    .await;
    if ready.is_err() || !child.is_running() {
        bail!(
            "{} did not become ready at {url}:\n{}",
            child.name(),
            child.log_tail(40)
        );
    }
    Ok(())
}
