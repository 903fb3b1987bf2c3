//! embed as a push handler against real Postgres + pgvector and the Pub/Sub emulator, with
//! the local embedding model.

use std::time::Duration;

use base64::Engine;
use shared::bus::{Bus, BusConfig};
use shared::config::Env;
use shared::message::{Event, SubmissionEvent};
use shared::submission::{SubmissionId, SubmissionKind};
use testkit::{Postgres, PubsubEmulator};

struct App {
    base: String,
    db: sqlx::PgPool,
    sub: shared::bus::Subscription,
    client: reqwest::Client,
}

async fn spawn() -> App {
    let pg = Postgres::shared().await.unwrap();
    let emulator = PubsubEmulator::shared().await.unwrap();
    let db_url = pg.create_database().await.unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("embedded-{id}");
    let env = Env::from_pairs([
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("DATABASE_URL", db_url.clone()),
        ("PUBSUB_EMULATOR_HOST", emulator.host()),
        ("GOOGLE_CLOUD_PROJECT", "radio24-test".to_owned()),
        ("PUSH_AUTH", "off".to_owned()),
        ("TOPIC_SUBMISSION_EMBEDDED", topic.clone()),
        (
            "UPLOADS_URL",
            format!(
                "file:{}",
                std::env::temp_dir().join(format!("uploads-{id}")).display()
            ),
        ),
    ]);
    let config = embed::config::Config::from_env(&env).unwrap();
    let (listener, router, _state) = embed::build(config).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(shared::http::serve(
        listener,
        router,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let bus = Bus::connect(&BusConfig::new("radio24-test").with_emulator_host(emulator.host()))
        .await
        .unwrap();
    bus.ensure_pull_subscription(&topic, &format!("t-{topic}"), Duration::from_secs(60))
        .await
        .unwrap();
    let sub = bus.subscribe(&format!("t-{topic}")).await.unwrap();
    App {
        base: format!("http://127.0.0.1:{port}"),
        db: sqlx::PgPool::connect(&db_url).await.unwrap(),
        sub,
        client: reqwest::Client::new(),
    }
}

impl App {
    async fn submit_text(&self, text: &str) -> SubmissionId {
        let id = SubmissionId::new();
        sqlx::query(
            "INSERT INTO submission (id, channel_id, user_id, kind, text, status, ingested_at) \
             VALUES ($1, 'main', 'u', 'text', $2, 'ingested', now())",
        )
        .bind(id)
        .bind(text)
        .execute(&self.db)
        .await
        .unwrap();
        id
    }

    async fn push(&self, id: SubmissionId) -> u16 {
        let ev = SubmissionEvent::new(Event::Ingested, id, "main", SubmissionKind::Text, None);
        let data =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ev).unwrap());
        let envelope = serde_json::json!({
            "message": { "data": data, "attributes": ev.attributes(), "messageId": "1", "publishTime": "2026-11-22T00:00:00Z" },
            "subscription": "projects/radio24-test/subscriptions/embed",
        });
        self.client
            .post(format!("{}/push", self.base))
            .json(&envelope)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn status(&self, id: SubmissionId) -> (String, Option<uuid::Uuid>) {
        sqlx::query_as("SELECT status, duplicate_of FROM submission WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn embeds_once_under_concurrent_redelivery_and_spots_near_duplicates() {
    let mut app = spawn().await;
    let id = app
        .submit_text("Please play some jazz for the night shift at the hospital")
        .await;
    let answers = futures::future::join_all((0..3).map(|_| app.push(id))).await;
    assert!(answers.iter().all(|s| *s == 204), "{answers:?}");
    assert_eq!(app.push(id).await, 204);
    assert_eq!(app.status(id).await.0, "embedded");
    let vectors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM submission_embedding_local WHERE submission_id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(vectors, 1);
    let msg = tokio::time::timeout(Duration::from_secs(10), app.sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev = SubmissionEvent::decode(&msg.data).unwrap();
    assert_eq!(ev.submission_id, id);
    assert_eq!(ev.event, Event::Embedded);
    msg.ack();
    // Exactly one downstream message: nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), app.sub.next())
            .await
            .is_err()
    );

    let dup = app
        .submit_text("Please play some jazz for the night shift at the hospital!")
        .await;
    assert_eq!(app.push(dup).await, 204);
    assert_eq!(app.status(dup).await, ("duplicate".to_owned(), Some(id.0)));
    let other = app
        .submit_text("What is the weather going to be like in Osaka tomorrow?")
        .await;
    assert_eq!(app.push(other).await, 204);
    assert_eq!(app.status(other).await.0, "embedded");

    // Unknown ids and malformed envelopes are acknowledged, not retried forever.
    assert_eq!(app.push(SubmissionId::new()).await, 204);
    let res = app
        .client
        .post(format!("{}/push", app.base))
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}
