//! Pub/Sub unreachable during a burst: every submission is still accepted (202 means
//! durable), and the backlog drains once Pub/Sub is back.

use std::time::Duration;

use testkit::PubsubEmulator;

use crate::helpers::*;

/// The emulator is frozen (SIGSTOP): calls hang rather than fail, the harder case for a
/// request path. Its state survives, so every accepted id must arrive after SIGCONT.
#[tokio::test]
async fn frozen_pubsub_then_recovery_drains_the_backlog() {
    let emulator = PubsubEmulator::start().await.unwrap();
    let mut app = spawn_with(|env| {
        env.insert("PUBSUB_EMULATOR_HOST".into(), emulator.host());
    })
    .await;
    let mut expected = app.burst("before", 20).await;

    emulator.pause();
    let during_burst = app.burst("during", 40);
    let during = tokio::time::timeout(Duration::from_secs(60), during_burst)
        .await
        .expect("ingest keeps answering while Pub/Sub hangs");
    assert_eq!(during.len(), 40);
    assert!(
        outbox_len(&app.db).await > 0,
        "unpublished messages wait in the outbox"
    );
    emulator.resume();
    expected.extend(during);
    expected.extend(app.burst("after", 20).await);

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
    let caller = Caller::new(format!("http://127.0.0.1:{port}"));
    caller.wait_healthy().await;
    let db = sqlx::PgPool::connect(&env["DATABASE_URL"]).await.unwrap();
    caller.burst("before", 10).await;
    emulator.stop();
    let started = std::time::Instant::now();
    let during = caller.burst("while down", 50).await;
    eprintln!(
        "50 submissions accepted with Pub/Sub down in {:?}",
        started.elapsed()
    );
    assert_eq!(during.len(), 50);
    let backlog = outbox_len(&db).await;
    assert!(backlog >= 50, "{backlog}");
    let readyz = caller.get("/readyz").await;
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
    let during = app.burst("while down", 20).await;
    assert_eq!(outbox_len(&app.db).await, 20);
    emulator.restart().await.unwrap();
    let (_bus, _topic, mut subscription) = bus_for(&app.env).await;

    let mut relay = tokio::process::Command::new(env!("CARGO_BIN_EXE_ingest"));
    relay.arg("relay").env_clear().envs(&app.env);
    testkit::run_ok(relay).await;
    receive_until(&mut subscription, &during, Duration::from_secs(30)).await;
    assert_eq!(outbox_len(&app.db).await, 0);
    app.stop().await;
}
