//! What the handler shares.

use std::sync::Arc;

use shared::embedding::Embedder;
use shared::outbox::Outbox;
use shared::push::{HasPushAuth, PushAuth};
use shared::store::ObjectStore;
use shared::transcription::Transcriber;
use sqlx::PgPool;

use crate::config::Config;

/// Handlers share the state through an `Arc`.
pub type AppState = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub pool: PgPool,
    pub outbox: Outbox,
    pub embedder: Arc<dyn Embedder>,
    pub transcriber: Arc<dyn Transcriber>,
    /// Where ingest put the recordings.
    pub store: Arc<dyn ObjectStore>,
}

impl HasPushAuth for Inner {
    fn push_auth(&self) -> &PushAuth {
        &self.config.stage.push_auth
    }
}
