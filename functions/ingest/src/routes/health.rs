//! Readiness: the database and the bus both answer.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use shared::problem::Problem;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when Postgres and Pub/Sub answer within 2 s, else 503 naming the
/// dependency that did not.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (db, bus) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, shared::db::ping(&state.pool)),
        tokio::time::timeout(CHECK_TIMEOUT, state.bus.ping()),
    );
    let mut down = Vec::new();
    if !matches!(db, Ok(Ok(()))) {
        down.push("database");
    }
    if !matches!(bus, Ok(Ok(()))) {
        down.push("pubsub");
    }
    if down.is_empty() {
        Json(serde_json::json!({"status": "ready", "database": "ok", "pubsub": "ok"}))
            .into_response()
    } else {
        tracing::warn!(?down, "not ready");
        Problem::unavailable(format!("not reachable: {}", down.join(", "))).into_response()
    }
}
