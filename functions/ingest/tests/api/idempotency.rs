//! A retried request with the same Idempotency-Key returns the first result.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

async fn post_keyed(app: &TestApp, key: &str, who: &str, text: &str) -> reqwest::Response {
    app.submit(text)
        .header("idempotency-key", key)
        .header("x-anonymous-id", who)
        .send()
        .await
        .unwrap()
}

async fn rows(app: &TestApp) -> i64 {
    submission_count(&app.db).await
}

#[tokio::test]
async fn sequential_retry_returns_the_first_result() {
    let mut app = spawn_app().await;
    let first = post_keyed(&app, "key-1", "alice", "hello").await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let id = accepted_id(first).await;
    let again = post_keyed(&app, "key-1", "alice", "hello").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(accepted_id(again).await, id);
    assert_eq!(rows(&app).await, 1);

    // Same key, different request: refused, nothing written.
    assert_problem(
        post_keyed(&app, "key-1", "alice", "something else").await,
        422,
    )
    .await;
    // Keys are per user: bob's key-1 is a different submission.
    let bobs = accepted_id(post_keyed(&app, "key-1", "bob", "hello").await).await;
    assert_ne!(bobs, id);
    assert_eq!(rows(&app).await, 2);
    // One message per submission.
    let events = app
        .expect_messages(&HashSet::from([id, bobs]), Duration::from_secs(10))
        .await;
    assert_eq!(events.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_retries_create_one_submission() {
    let app = spawn_app().await;
    let answers = futures::future::join_all(
        (0..16).map(|_| post_keyed(&app, "burst-key", "carol", "same request")),
    )
    .await;
    let mut ids = HashSet::new();
    for res in answers {
        ids.insert(accepted_id(res).await);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(rows(&app).await, 1);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(outbox <= 1);
    app.stop().await;
}
