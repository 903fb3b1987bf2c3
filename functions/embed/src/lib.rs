//! Radio24 embed: the Pub/Sub push handler for `submission-ingested`.

pub mod config;
pub mod duplicates;
pub mod handler;
pub mod state;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use shared::embedding::{Embedder, LocalMiniLm};
use shared::openai::{OpenAiClient, OpenAiEmbedder};
use shared::outbox::Outbox;

use crate::config::{Config, EmbeddingProvider};
use crate::state::{AppState, Inner};

pub async fn build(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Router, AppState)> {
    let (pool, bus) =
        shared::process::connect(&config.db, &config.bus, &[&config.topic_embedded]).await?;
    let embedder: Arc<dyn Embedder> = match config.provider {
        EmbeddingProvider::Local => Arc::new(
            LocalMiniLm::load(&LocalMiniLm::default_dir())
                .context("cannot load the local embedding model")?,
        ),
        EmbeddingProvider::OpenAi => Arc::new(OpenAiEmbedder::new(OpenAiClient::new(
            config.openai.clone().expect("checked by config"),
        ))),
    };
    let outbox = Outbox::new(pool.clone(), bus, config.outbox.clone());
    let listener = shared::process::bind(config.host, config.port).await?;
    let state: AppState = Arc::new(Inner {
        config,
        pool,
        outbox,
        embedder,
    });
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/push", post(handler::push))
        .with_state(state.clone());
    Ok((listener, shared::http::finish_router(router), state))
}
