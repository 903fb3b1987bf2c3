//! Spawns ingest against fresh resources: its own database, topic and subscription.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use futures::StreamExt;
use std::time::Duration;

use shared::bus::{Bus, BusConfig, Subscription};
use shared::config::Env;
use shared::message::SubmissionEvent;
use sqlx::PgPool;
use testkit::{ChildGuard, Postgres, PubsubEmulator, spawn_logged, wait_until};
use tokio::sync::oneshot;

/// An HTTP client aimed at one running ingest.
#[derive(Clone)]
pub struct Caller {
    pub base: String,
    pub client: reqwest::Client,
}

impl Caller {
    pub fn new(base: String) -> Self {
        Caller {
            base,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A text submission, ready for extra headers (Idempotency-Key, X-Anonymous-Id).
    pub fn submit(&self, text: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url("/v1/submissions"))
            .json(&serde_json::json!({ "text": text }))
    }

    pub async fn post_text(&self, text: &str) -> reqwest::Response {
        self.submit(text).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&self) {
        wait_until("ingest /healthz", Duration::from_secs(30), || async {
            self.client
                .get(self.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("ingest became healthy");
    }

    /// `n` text submissions, 8 at a time; every one must be accepted.
    pub async fn burst(&self, tag: &str, n: usize) -> HashSet<uuid::Uuid> {
        futures::stream::iter(0..n)
            .map(|i| async move { accepted_id(self.post_text(&format!("{tag} {i}")).await).await })
            .buffer_unordered(8)
            .collect()
            .await
    }
}

pub struct TestApp {
    pub api: Caller,
    pub db: PgPool,
    pub subscription: Subscription,
    pub env: BTreeMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Environment for a fresh ingest: anonymous auth, limits off, its own database, topic
/// and uploads folder. Tests override entries before spawning.
pub async fn test_env(emulator_host: &str) -> BTreeMap<String, String> {
    let pg = Postgres::shared().await.expect("postgres");
    let db_url = pg.create_database().await.expect("database");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let uploads = std::env::temp_dir().join(format!("radio24-uploads-{id}"));
    BTreeMap::from_iter(
        [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("AUTH_MODE", "anonymous".to_owned()),
            ("DATABASE_URL", db_url),
            ("PUBSUB_EMULATOR_HOST", emulator_host.to_owned()),
            ("GOOGLE_CLOUD_PROJECT", "radio24-test".to_owned()),
            ("TOPIC_SUBMISSION_INGESTED", format!("ingested-{id}")),
            ("UPLOADS_URL", format!("file:{}", uploads.display())),
            ("RATE_LIMIT_PER_IP", "off".to_owned()),
            ("RATE_LIMIT_PER_USER", "off".to_owned()),
            ("OUTBOX_GRACE", "1s".to_owned()),
            ("OUTBOX_RELAY_INTERVAL", "200ms".to_owned()),
            ("PUBLISH_TIMEOUT", "1s".to_owned()),
            ("LIVEKIT_URL", "ws://127.0.0.1:7880".to_owned()),
            ("LIVEKIT_API_KEY", "devkey".to_owned()),
            (
                "LIVEKIT_API_SECRET",
                "test-secret-0123456789abcdef0123456789".to_owned(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> TestApp {
    let emulator = PubsubEmulator::shared().await.expect("pubsub emulator");
    let mut env = test_env(&emulator.host()).await;
    tweak(&mut env);
    spawn_env(env).await
}

/// Starts ingest in this process with exactly `env`.
pub async fn spawn_env(env: BTreeMap<String, String>) -> TestApp {
    shared::telemetry::init("error");
    let config = ingest::config::Config::from_env(&Env::from_pairs(env.clone())).expect("config");
    let (_bus, _topic, subscription) = bus_for(&env).await;
    let app = ingest::Application::build(config)
        .await
        .expect("build ingest");
    let port = app.port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let db = PgPool::connect(&env["DATABASE_URL"]).await.expect("db");
    TestApp {
        api: Caller::new(format!("http://127.0.0.1:{port}")),
        db,
        subscription,
        env,
        stop: Some(stop),
        server: Some(server),
    }
}

/// A bus client plus a pull subscription on the ingest topic, created before any
/// submission so that every message is retained for the test.
pub async fn bus_for(env: &BTreeMap<String, String>) -> (Bus, String, Subscription) {
    let cfg = BusConfig::new(env["GOOGLE_CLOUD_PROJECT"].clone())
        .with_emulator_host(env["PUBSUB_EMULATOR_HOST"].clone())
        .with_publish_timeout(Duration::from_secs(1));
    let bus = Bus::connect(&cfg).await.expect("bus");
    let topic = env["TOPIC_SUBMISSION_INGESTED"].clone();
    let sub = format!("test-{topic}");
    bus.ensure_topic(&topic).await.expect("topic");
    bus.ensure_pull_subscription(&topic, &sub, Duration::from_secs(60))
        .await
        .expect("subscription");
    let subscription = bus.subscribe(&sub).await.expect("subscribe");
    (bus, topic, subscription)
}

impl std::ops::Deref for TestApp {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.api
    }
}

impl TestApp {
    /// Receives messages until every id in `expected` has been seen (duplicates are
    /// allowed and counted), or fails at the deadline.
    pub async fn expect_messages(
        &mut self,
        expected: &HashSet<uuid::Uuid>,
        deadline: Duration,
    ) -> Vec<SubmissionEvent> {
        receive_until(&mut self.subscription, expected, deadline).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("ingest ran cleanly");
        }
    }
}

pub async fn receive_until(
    subscription: &mut Subscription,
    expected: &HashSet<uuid::Uuid>,
    deadline: Duration,
) -> Vec<SubmissionEvent> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    while !expected.is_subset(&seen) {
        let msg = tokio::time::timeout_at(until, subscription.next())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<_> = expected.difference(&seen).take(5).collect();
                panic!(
                    "timed out: {} of {} expected messages missing, e.g. {missing:?}",
                    expected.difference(&seen).count(),
                    expected.len()
                )
            })
            .expect("subscription open")
            .expect("message");
        let event = SubmissionEvent::decode(&msg.data).expect("valid envelope");
        assert_eq!(
            msg.attributes.get("submission_id"),
            Some(&event.submission_id.to_string())
        );
        seen.insert(event.submission_id.0);
        all.push(event);
        msg.ack();
    }
    all
}

/// Reads the JSON body of a 202 and returns the submission id.
pub async fn accepted_id(res: reqwest::Response) -> uuid::Uuid {
    let status = res.status();
    let body: serde_json::Value = res.json().await.expect("json body");
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().expect("id").parse().expect("uuid")
}

/// Asserts an error answer: the status, problem+json, and a body naming the status.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = res.json().await.expect("problem body");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    body
}

/// Starts the ingest binary (a real process that can be killed or frozen).
pub fn start_ingest(env: &BTreeMap<String, String>, log: &std::path::Path) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest"));
    cmd.envs(env).env("RUST_LOG", "info");
    spawn_logged(cmd, log).expect("start ingest")
}

/// Messages committed but not yet known to be published.
pub async fn outbox_len(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits until the outbox is empty: every committed message has been published.
pub async fn wait_outbox_empty(db: &PgPool) {
    wait_until("outbox drained", Duration::from_secs(30), || async {
        outbox_len(db).await == 0
    })
    .await
    .unwrap();
}

/// How many submissions the database holds.
pub async fn submission_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM submission")
        .fetch_one(db)
        .await
        .unwrap()
}
