//! A service that so far only reports its health: what embed, moderate and
//! host-streamer run until their own work lands. It already has the production shape:
//! validated config, telemetry, `/healthz`, `/readyz` (database), graceful shutdown.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;

use crate::config::Env;
use crate::db::DbConfig;
use crate::problem::Problem;

/// Runs until SIGTERM. Exit code 2 on a configuration error naming the variable.
pub async fn main(service: &'static str) -> std::process::ExitCode {
    crate::telemetry::init("info");
    crate::process::exit_code(service, run(service).await)
}

async fn run(service: &'static str) -> anyhow::Result<()> {
    let env = Env::from_process();
    let host: IpAddr = env.or("HOST", IpAddr::from([0, 0, 0, 0]))?;
    let port: u16 = env.or("PORT", 8080)?;
    let db = DbConfig::from_env(&env)?;
    let pool = crate::db::connect(&db)
        .await
        .context("cannot prepare the database")?;
    let router = Router::new()
        .route("/healthz", get(crate::http::healthz))
        .route("/readyz", get(readyz))
        .with_state(pool);
    let listener = crate::process::bind(host, port).await?;
    tracing::info!(service, port, "listening (health endpoints only)");
    crate::http::serve(
        listener,
        crate::http::finish_router(router),
        crate::http::shutdown_signal(),
        Duration::from_secs(8),
    )
    .await?;
    Ok(())
}

async fn readyz(State(pool): State<PgPool>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&pool)).await {
        Ok(Ok(())) => "ready".into_response(),
        _ => Problem::unavailable("database not reachable").into_response(),
    }
}
