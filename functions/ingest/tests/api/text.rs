use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;

use crate::helpers::*;

#[tokio::test]
async fn text_submission_is_stored_and_announced() {
    let mut app = spawn_app().await;
    let res = app
        .post_text("  Play something for the night shift!  ")
        .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let id = accepted_id(res).await;
    assert_eq!(location, format!("/v1/submissions/{id}"));

    let row = sqlx::query(
        "SELECT text, status, kind, user_id, ingested_at IS NOT NULL AS stamped, trace_id \
         FROM submission WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row.get::<String, _>("text"),
        "Play something for the night shift!"
    );
    assert_eq!(row.get::<String, _>("status"), "ingested");
    assert_eq!(row.get::<String, _>("kind"), "text");
    assert!(row.get::<String, _>("user_id").starts_with("anon:"));
    assert!(row.get::<bool, _>("stamped"));
    let trace_id: String = row.get("trace_id");

    let events = app
        .expect_messages(&HashSet::from([id]), Duration::from_secs(10))
        .await;
    assert_eq!(events[0].channel_id, "main");
    assert_eq!(events[0].event.as_str(), "submission.ingested");
    // The request's trace follows the submission into the pipeline.
    assert!(events[0].traceparent.as_ref().unwrap().contains(&trace_id));

    let status: serde_json::Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(status["status"], "ingested");
    assert_eq!(status["id"], id.to_string());

    // Another caller cannot see it.
    let res = app
        .client
        .get(app.url(&location))
        .header("x-anonymous-id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn incoming_trace_context_is_kept() {
    let mut app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/v1/submissions"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&serde_json::json!({"text": "traced"}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    let id = accepted_id(res).await;
    let events = app
        .expect_messages(&HashSet::from([id]), Duration::from_secs(10))
        .await;
    let tp = events[0].traceparent.clone().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["pubsub"], "ok");
    app.stop().await;
}
