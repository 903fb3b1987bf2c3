//! Pub/Sub unreachable during a burst: every submission is still accepted (202 means
//! durable), and the backlog drains once Pub/Sub is back.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use testkit::PubsubEmulator;

use crate::helpers::*;

async fn outbox_len(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn burst(app: &TestApp, tag: &str, n: usize) -> HashSet<uuid::Uuid> {
    futures::stream::iter(0..n)
        .map(|i| async move { accepted_id(app.post_text(&format!("{tag} {i}")).await).await })
        .buffer_unordered(8)
        .collect()
        .await
}

/// The emulator is frozen (SIGSTOP): calls hang rather than fail, the harder case for a
/// request path. Its state survives, so every accepted id must arrive after SIGCONT.
#[tokio::test]
async fn frozen_pubsub_then_recovery_drains_the_backlog() {
    let emulator = PubsubEmulator::start().await.unwrap();
    let mut app = spawn_with(|env| {
        env.insert("PUBSUB_EMULATOR_HOST".into(), emulator.host());
    })
    .await;
    let mut expected = burst(&app, "before", 20).await;

    emulator.pause();
    let during_burst = burst(&app, "during", 40);
    let during = tokio::time::timeout(Duration::from_secs(60), during_burst)
        .await
        .expect("ingest keeps answering while Pub/Sub hangs");
    assert_eq!(during.len(), 40);
    assert!(
        outbox_len(&app).await > 0,
        "unpublished messages wait in the outbox"
    );
    emulator.resume();
    expected.extend(during);
    expected.extend(burst(&app, "after", 20).await);

    app.expect_messages(&expected, Duration::from_secs(60))
        .await;
    wait_outbox_empty(&app.db).await;
    app.stop().await;
}

/// The emulator is killed and restarted. It keeps no state across restarts, so the test
/// recreates topic and subscription; ingest is frozen meanwhile so that its relay cannot
/// publish into the new topic before the subscription exists (a message published to a
/// topic without subscriptions is dropped by design). Submissions accepted while Pub/Sub was
/// down are then published by the relay.
#[tokio::test]
async fn killed_pubsub_then_restart_drains_the_backlog() {
    let mut emulator = PubsubEmulator::start().await.unwrap();
    let mut env = test_env(&emulator.host()).await;
    let port = testkit::free_port();
    env.insert("PORT".into(), port.to_string());
    let log = std::env::temp_dir().join(format!("ingest-outage-{port}.log"));
    let ingest = start_ingest(&env, &log);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base).await;
    let db = sqlx::PgPool::connect(&env["DATABASE_URL"]).await.unwrap();
    let post_burst = |tag: &'static str, n: usize| {
        let client = client.clone();
        let base = base.clone();
        async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let client = client.clone();
                    let base = base.clone();
                    async move {
                        let res = client
                            .post(format!("{base}/v1/submissions"))
                            .json(&serde_json::json!({ "text": format!("{tag} {i}") }))
                            .send()
                            .await
                            .unwrap();
                        accepted_id(res).await
                    }
                })
                .buffer_unordered(8)
                .collect::<HashSet<_>>()
                .await
        }
    };
    post_burst("before", 10).await;
    emulator.stop();
    let started = std::time::Instant::now();
    let during = post_burst("while down", 50).await;
    eprintln!(
        "50 submissions accepted with Pub/Sub down in {:?}",
        started.elapsed()
    );
    assert_eq!(during.len(), 50);
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(backlog >= 50, "{backlog}");
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_problem(readyz, 503).await;

    ingest.freeze();
    emulator.restart().await.unwrap();
    let (_bus, _topic, mut subscription) = bus_for(&env).await;
    ingest.thaw();
    receive_until(&mut subscription, &during, Duration::from_secs(60)).await;
    wait_outbox_empty(&db).await;
}

/// With no relay loop in the service (`OUTBOX_RELAY=off`, as on request-billed Cloud Run),
/// the `ingest relay` job publishes the backlog and exits.
#[tokio::test]
async fn relay_job_publishes_the_backlog() {
    let mut emulator = PubsubEmulator::start().await.unwrap();
    let app = spawn_with(|env| {
        env.insert("PUBSUB_EMULATOR_HOST".into(), emulator.host());
        env.insert("OUTBOX_RELAY".into(), "off".into());
        env.insert("OUTBOX_GRACE".into(), "0s".into());
    })
    .await;
    emulator.stop();
    let during = burst(&app, "while down", 20).await;
    assert_eq!(outbox_len(&app).await, 20);
    emulator.restart().await.unwrap();
    let (_bus, _topic, mut subscription) = bus_for(&app.env).await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ingest"))
        .arg("relay")
        .env_clear()
        .envs(&app.env)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receive_until(&mut subscription, &during, Duration::from_secs(30)).await;
    assert_eq!(outbox_len(&app).await, 0);
    app.stop().await;
}
