//! Radio24 embed: the Pub/Sub push handler for `submission-ingested`.

pub mod config;
pub mod duplicates;
pub mod handler;
pub mod state;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::post;
use models::embedding::OpenAiEmbedder;
use models::embedding::{Embedder, LocalMiniLm};
use models::openai::OpenAiClient;

use models::transcription::{OpenAiTranscriber, Transcriber};
use models::whisper::LocalWhisper;

use models::provider::Provider;

use crate::config::Config;
use crate::state::{AppState, Inner};

pub async fn build(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Router, AppState)> {
    let (stage, listener) = config.stage.connect().await?;
    let openai = || OpenAiClient::required(config.openai.as_ref());
    let embedder: Arc<dyn Embedder> = match config.embedding {
        Provider::Local => Arc::new(
            LocalMiniLm::load(&LocalMiniLm::default_dir())
                .context("cannot load the local embedding model")?,
        ),
        Provider::OpenAi => Arc::new(OpenAiEmbedder::new(openai())),
    };
    let transcriber: Arc<dyn Transcriber> = match config.transcription {
        Provider::Local => Arc::new(
            LocalWhisper::load(&LocalWhisper::default_dir())
                .context("cannot load the local transcription model")?,
        ),
        Provider::OpenAi => Arc::new(OpenAiTranscriber::new(
            openai(),
            config.transcribe_model.clone(),
        )),
    };
    seed_exemplars(&stage.pool, embedder.clone()).await;
    let store = shared::store::open(&config.uploads_url, config.gcs_endpoint.as_deref())
        .await
        .context("cannot open the uploads store (UPLOADS_URL)")?;
    let state: AppState = Arc::new(Inner {
        config,
        stage,
        embedder,
        transcriber,
        store,
    });
    let router = shared::pipeline::routes(post(handler::push)).with_state(state.clone());
    Ok((listener, shared::http::finish_router(router), state))
}

/// Seeds the moderator's exemplars in this embedder's vector space (`models::moderation::
/// exemplars`) before the first message is embedded, so the moderator can read them for it.
/// When that fails (the embedding provider is down), the service starts anyway and keeps
/// trying in the background: until then the moderator judges by words alone, and says so.
async fn seed_exemplars(pool: &sqlx::PgPool, embedder: Arc<dyn Embedder>) {
    use models::moderation::exemplars;
    let version = exemplars::version();
    match exemplars::seed(pool, embedder.as_ref()).await {
        Ok(rows) => {
            tracing::info!(%version, rows, "moderation exemplars seeded");
            return;
        }
        Err(e) => {
            tracing::warn!(%version, error = %e, "cannot seed the moderation exemplars yet; retrying in the background")
        }
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_secs(5);
        loop {
            tokio::time::sleep(wait).await;
            match exemplars::seed(&pool, embedder.as_ref()).await {
                Ok(rows) => {
                    tracing::info!(%version, rows, "moderation exemplars seeded");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%version, error = %e, "cannot seed the moderation exemplars yet")
                }
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(300));
        }
    });
}
