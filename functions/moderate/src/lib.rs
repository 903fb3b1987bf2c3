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
use shared::moderation::{LocalModerator, Moderator, OpenAiModerator};
use shared::openai::OpenAiClient;
use shared::pipeline::StageResources;
use shared::provider::Provider;

use crate::config::Config;
use crate::state::{AppState, Inner};

pub async fn build(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Router, AppState)> {
    let StageResources {
        pool,
        outbox,
        listener,
    } = config.stage.connect().await?;
    let moderator: Arc<dyn Moderator> = match config.provider {
        Provider::Local => Arc::new(LocalModerator::new()),
        Provider::OpenAi => Arc::new(OpenAiModerator::new(OpenAiClient::new(
            config
                .openai
                .clone()
                .expect("config requires a key for openai"),
        ))),
    };
    let state: AppState = Arc::new(Inner {
        config,
        pool,
        outbox,
        moderator,
    });
    let router = shared::pipeline::routes(post(handler::push))
        .route("/v1/held", get(review::list))
        .route("/v1/held/{id}/decision", post(review::decide))
        .with_state(state.clone());
    Ok((listener, shared::http::finish_router(router), state))
}
