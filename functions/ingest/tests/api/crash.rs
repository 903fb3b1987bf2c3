//! kill -9 of ingest in the middle of a burst, then a restart: every id that got a 202 is
//! in the database and on the topic, and nothing is half-written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use testkit::{PubsubEmulator, free_port, wait_until};

use crate::helpers::*;

const REQUESTS: usize = 400;
const CONCURRENCY: usize = 16;
const KILL_AFTER: usize = 120;

#[tokio::test]
async fn kill_9_mid_burst_loses_nothing_accepted() {
    let emulator = PubsubEmulator::shared().await.unwrap();
    let mut env = test_env(&emulator.host()).await;
    let port = free_port();
    env.insert("PORT".into(), port.to_string());
    let (_bus, _topic, mut subscription) = bus_for(&env).await;
    let log = std::env::temp_dir().join(format!("ingest-crash-{port}.log"));
    let caller = Caller {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };

    let ingest = start_ingest(&env, &log);
    caller.wait_healthy().await;

    // The burst: every request has its own Idempotency-Key so it can be retried safely.
    let accepted: Arc<Mutex<HashMap<String, uuid::Uuid>>> = Arc::default();
    let burst = {
        let accepted = accepted.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..REQUESTS)
                .map(|i| {
                    let caller = caller.clone();
                    let accepted = accepted.clone();
                    async move {
                        let key = format!("crash-{i}");
                        let res = caller
                            .submit(&format!("message {i}"))
                            .header("idempotency-key", &key)
                            .send()
                            .await;
                        if let Ok(res) = res
                            && res.status() == 202
                        {
                            let body: serde_json::Value = res.json().await.unwrap();
                            let id = body["id"].as_str().unwrap().parse().unwrap();
                            accepted.lock().unwrap().insert(key, id);
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<()>()
                .await;
        })
    };
    wait_until(
        "enough accepted before the kill",
        Duration::from_secs(60),
        || {
            let n = accepted.lock().unwrap().len();
            async move { n >= KILL_AFTER }
        },
    )
    .await
    .unwrap();
    ingest.kill(); // SIGKILL to the process group: no shutdown hooks run.
    burst.await.unwrap();
    let first_run = accepted.lock().unwrap().clone();
    assert!(
        first_run.len() < REQUESTS,
        "the kill must interrupt the burst"
    );
    eprintln!(
        "kill -9 after {} of {REQUESTS} requests accepted",
        first_run.len()
    );

    // Restart. The relay publishes whatever the crash left in the outbox.
    let _ingest = start_ingest(&env, &log);
    caller.wait_healthy().await;
    let db = sqlx::PgPool::connect(&env["DATABASE_URL"]).await.unwrap();

    // Every row in the database, including rows whose 202 was lost in the crash, is whole:
    // it reaches the topic. And every id that got a 202 is among them.
    let in_db: HashSet<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM submission")
        .fetch_all(&db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let acked: HashSet<uuid::Uuid> = first_run.values().copied().collect();
    assert!(
        acked.is_subset(&in_db),
        "a 202'd submission is missing from the database"
    );
    let events = receive_until(&mut subscription, &in_db, Duration::from_secs(60)).await;
    assert!(events.iter().all(|e| in_db.contains(&e.submission_id.0)));

    // Clients retry what failed with the same key: one submission per key, no more.
    for i in 0..REQUESTS {
        let key = format!("crash-{i}");
        let res = caller
            .submit(&format!("message {i}"))
            .header("idempotency-key", &key)
            .send()
            .await
            .unwrap();
        let id = accepted_id(res).await;
        if let Some(first) = first_run.get(&key) {
            assert_eq!(*first, id, "a retry must return the first result");
        }
    }
    let rows = submission_count(&db).await;
    assert_eq!(rows, REQUESTS as i64);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM submission WHERE status <> 'ingested' OR ingested_at IS NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    wait_outbox_empty(&db).await;
}
