//! Radio24 moderate: the Pub/Sub push handler for `submission-embedded`, and the operators'
//! review queue for held submissions.

pub mod config;
pub mod decision;
pub mod error;
pub mod handler;
pub mod review;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use models::moderation::{LocalModerator, Moderator, OpenAiModerator};
use models::openai::OpenAiClient;

use models::provider::Provider;

use crate::config::Config;
use crate::state::{AppState, Inner};

pub async fn build(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Router, AppState)> {
    let (stage, listener) = config.stage.connect().await?;
    let moderator: Arc<dyn Moderator> = match config.provider {
        Provider::Local => Arc::new(LocalModerator::with_exemplars(stage.pool.clone())),
        Provider::OpenAi => Arc::new(OpenAiModerator::new(OpenAiClient::required(
            config.openai.as_ref(),
        ))),
    };
    let state: AppState = Arc::new(Inner {
        config,
        stage,
        moderator,
    });
    let router = shared::pipeline::routes(post(handler::push))
        .route("/v1/held", get(review::list))
        .route("/v1/held/{id}/decision", post(review::decide))
        .route("/v1/submissions/{id}/revoke", post(review::revoke))
        .with_state(state.clone());
    Ok((listener, shared::http::finish_router(router), state))
}
